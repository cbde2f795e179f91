"""Typed config of the search entry (``nas/search.py``): groups dataset, search_space, search, trainer."""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig

from torchrec_automtl.modules.multitask import OBJECTIVES
from torchrec_automtl.nas.search_space import SearchSpaceConfig
from torchrec_automtl.nas.v1.space import V1SearchConfig, V1SearchSpaceConfig
from torchrec_automtl.pipelines.config import ConfigError, DatasetConfig, TrainerConfig, check_top_level, typed_group


DISCRETIZATIONS = ("progressive", "final")
RELAXATIONS = ("softmax", "gumbel", "sampled")
OPTIMIZATIONS = ("single_level", "bi_level")
FINETUNE_MODES = ("inherit", "retrain")


@dataclass
class SearchConfig:
    """PD-DARTS schedule (paper 001, Algorithm 1), defaults from the official implementation.

    The official run uses 15 epochs in all with 2 warm-up epochs; we split those into
    ``warmup_weights_epochs`` (N1, w only) = 1 and ``warmup_joint_epochs`` (N2, w, alpha, beta) = 1.
    ``decisions_per_epoch``: items discretized at the start of each later epoch; 0 spreads all
    decisions evenly so the supernet is a regular network by the end of epoch ``epochs`` (the official
    implementation discretizes 10 blocks per epoch, but our single confidence scale also ranks
    features and expert connections, which are far more numerous).
    ``block_discretization`` / ``selection_discretization``: ``progressive`` decides blocks /
    features and connections during the search (Algorithm 1); ``final`` thresholds all of them once
    after the last epoch (the official implementation does so for features and connections; both
    ``final`` is paper 001's "w/o PD" ablation).
    ``optimization``: ``single_level`` (eq. 6: w, alpha, beta step on the same training batches) or
    ``bi_level`` (first-order DARTS, "Bi.Opt": alpha and beta step on batches of a seeded slice of
    ``architecture_fraction`` of the training rows, held out from the weights' steps, with the
    embedding tables frozen; see ``nas/bilevel.py``). ``architecture_batch_size`` sets those batches'
    rows per rank (0: the search's batch size); alpha and beta are few, so a smaller batch than the
    weights' steps costs little precision and saves most of an architecture step's time.
    ``batch_size``: rows per rank of the search's weight steps (0: ``trainer.batch_size``); the
    architecture batches follow it unless ``architecture_batch_size`` is set. Fine-tuning keeps
    ``trainer.batch_size``. A smaller search batch makes every search step cheaper and lets the
    search see fewer rows (measured on `make compare`'s data: a quarter-size batch saves 40% of the
    search and loses 0.015 average AUC, docs/results.md).
    ``relaxation``: ``softmax`` (DARTS), ``gumbel`` (SNAS: Gumbel-softmax samples of alpha in
    training, temperature annealed linearly from ``gumbel_temperature`` to ``gumbel_final_temperature``)
    or ``sampled`` (each training step runs one uniformly drawn op per block position, shared by the
    layer's experts, with a straight-through weight that gives alpha DARTS's gradient of that op:
    a weight or architecture step costs about one op per block instead of all of them; see
    ``DesanSupernet.sampled_path_weights``).
    ``auxiliary_skip``: DARTS-'s remedy for the collapse onto skip/cheap ops: an extra skip
    ``w * x`` around every block whose weight decays linearly from this value to 0 over the search
    epochs (0 disables it), so a deep op does not lose to skip merely for being harder to train.
    ``operation_pruning``: P-DARTS-style shrinking of the op set while searching: at the start of
    every epoch after one with architecture steps, each undecided block drops the ops whose softmax
    weight is below ``operation_pruning / M`` (M candidate ops; ``nas.discretization.prune_operations``)
    and stops computing them. 0 keeps every op until the block is decided; must be below 1 so a
    block's strongest op stays. ``relaxation=sampled`` never prunes: its steps already run one op
    per block, drawn among all of them.
    ``validate_epochs``: score the supernet on the validation split after every search epoch (the
    search curve of ``auc_curves.png``). Nothing in the search is decided by these scores, so it is off
    by default (on `make search`'s budget it cost 7.5 of the search's 114 s); the discretized supernet
    is always scored once, at the end.
    ``architecture_objective``: what a bi-level architecture step minimizes, ``sum`` (the training
    loss) or ``balanced`` (sum_t w_t log L_t: each task weighed by 1 / L_t, so a rare task's evidence
    counts as much as a common one's in the shared choices); measured as neutral on `make compare`'s
    data and the held-out proxy (docs/results.md), so the default stays ``sum``.
    ``feature_test``: after the last epoch, shuffle each feature the discretized supernet still
    reads across the validation rows and drop it for every consumer unless some task's loss rises by
    more than ``feature_test_z`` standard errors (``nas/feature_test.py``; 0: by anything at all), each
    row's loss after shuffling averaged over ``feature_test_permutations`` shuffles, on at most
    ``feature_test_rows`` validation rows (0: all of them).
    ``finetune``: ``inherit`` fine-tunes the derived model from the supernet's weights and tables
    (the paper's way); ``retrain`` trains it from fresh weights. Either way the trainer config
    (``trainer.epochs``, early stopping) is the same as every baseline's.
    """

    epochs: int = 15
    warmup_weights_epochs: int = 1
    warmup_joint_epochs: int = 1
    decisions_per_epoch: int = 0
    block_discretization: str = "progressive"
    selection_discretization: str = "final"
    arch_lr: float = 1e-3  # Adam on alpha and beta (official default)
    arch_weight_decay: float = 0.0
    optimization: str = "bi_level"
    architecture_fraction: float = 0.1
    architecture_batch_size: int = 0  # rows per rank of an architecture batch; 0: the search's batch size
    batch_size: int = 0  # rows per rank of the search's weight steps; 0: trainer.batch_size
    relaxation: str = "softmax"
    gumbel_temperature: float = 1.0
    gumbel_final_temperature: float = 0.1
    auxiliary_skip: float = 1.0
    operation_pruning: float = 0.5  # not in the papers: P-DARTS shrinks its op set by fixed counts per stage
    feature_test: bool = True  # not in the papers: a permutation test of the selected features on validation
    feature_test_z: float = 0.0  # the z a feature's shuffling must exceed for some task to keep it
    feature_test_permutations: int = 1  # shuffles per feature and batch, averaged per row
    feature_test_rows: int = 65536  # validation rows the test reads at most (0: all): its cost stays bounded on large data
    finetune: str = "retrain"
    validate_epochs: bool = False  # score the supernet on the validation split after every epoch; the end is always scored
    architecture_objective: str = "sum"  # or balanced: sum_t w_t log L_t in the architecture steps (bi_level only)

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"search.epochs must be >= 1, got {self.epochs}")
        for key in ("warmup_weights_epochs", "warmup_joint_epochs", "decisions_per_epoch", "architecture_batch_size", "batch_size"):
            if getattr(self, key) < 0:
                raise ValueError(f"search.{key} must be >= 0, got {getattr(self, key)}")
        for key, allowed in (("block_discretization", DISCRETIZATIONS), ("selection_discretization", DISCRETIZATIONS),
                             ("optimization", OPTIMIZATIONS), ("relaxation", RELAXATIONS), ("finetune", FINETUNE_MODES),
                             ("architecture_objective", OBJECTIVES)):
            if getattr(self, key) not in allowed:
                raise ValueError(f"search.{key} must be one of {allowed}, got '{getattr(self, key)}'")
        if not 0 < self.gumbel_final_temperature <= self.gumbel_temperature:
            raise ValueError(f"search.gumbel_final_temperature must be in (0, gumbel_temperature={self.gumbel_temperature}], "
                             f"got {self.gumbel_final_temperature}")
        if not 0 < self.architecture_fraction < 1:
            raise ValueError(f"search.architecture_fraction must be in (0, 1), got {self.architecture_fraction}")
        if self.architecture_objective != "sum" and self.optimization != "bi_level":
            raise ValueError(f"search.architecture_objective={self.architecture_objective} needs search.optimization=bi_level "
                             f"(single-level steps alpha, beta and the weights on one loss); set it to sum")
        if self.feature_test_rows < 0:
            raise ValueError(f"search.feature_test_rows must be >= 0 (0: every validation row), got {self.feature_test_rows}")
        if self.feature_test_permutations < 1:
            raise ValueError(f"search.feature_test_permutations must be >= 1, got {self.feature_test_permutations}")
        if self.feature_test_z < 0:
            raise ValueError(f"search.feature_test_z must be >= 0, got {self.feature_test_z}")
        if not 0 <= self.operation_pruning < 1:
            raise ValueError(f"search.operation_pruning must be in [0, 1), got {self.operation_pruning}")
        if self.auxiliary_skip < 0:
            raise ValueError(f"search.auxiliary_skip must be >= 0, got {self.auxiliary_skip}")
        if self.decisions_per_epoch == 0 and self.epochs <= self.warmup_weights_epochs + self.warmup_joint_epochs:
            raise ValueError(
                f"search.epochs={self.epochs} leaves no epoch for discretization after "
                f"{self.warmup_weights_epochs}+{self.warmup_joint_epochs} warm-up epochs"
            )

    @property
    def prunes_operations(self) -> bool:
        """Whether weak ops leave their blocks during the search (``operation_pruning``; not under sampled paths)."""
        return self.operation_pruning > 0 and self.relaxation != "sampled"

    @property
    def progressive_kinds(self) -> tuple[str, ...]:
        """The item kinds decided during the search; the others are thresholded after the last epoch."""
        kinds = ("block",) if self.block_discretization == "progressive" else ()
        return kinds + (("feature", "connection") if self.selection_discretization == "progressive" else ())

    def schedule_fraction(self, epoch: int) -> float:
        """How far ``epoch`` is through the search, 0 at the first epoch and 1 at epoch ``epochs - 1``."""
        return min(1.0, epoch / max(1, self.epochs - 1))

    def auxiliary_skip_weight(self, epoch: int) -> float:
        return self.auxiliary_skip * (1.0 - self.schedule_fraction(epoch))

    def temperature(self, epoch: int) -> float | None:
        if self.relaxation != "gumbel":
            return None
        return self.gumbel_temperature + (self.gumbel_final_temperature - self.gumbel_temperature) * self.schedule_fraction(epoch)


# method -> (its search_space config, its search config): paper 001's DESAN (default), paper 000's v1.
METHODS: dict[str, tuple[type, type]] = {"desan": (SearchSpaceConfig, SearchConfig), "v1": (V1SearchSpaceConfig, V1SearchConfig)}


@dataclass
class NasConfig:
    """The whole search run: search, then fine-tune the derived model, then test it."""

    dataset: DatasetConfig
    search_space: SearchSpaceConfig | V1SearchSpaceConfig
    search: SearchConfig | V1SearchConfig
    trainer: TrainerConfig
    seed: int = 0
    run_dir: str = "runs/search"
    overwrite: bool = False
    resume: bool = False  # continue the killed search or fine-tune in run_dir from its state/ folders
    method: str = "desan"  # the search method (conf/method/): desan (paper 001) or v1 (paper 000)


def parse_nas_config(cfg: DictConfig) -> NasConfig:
    """The typed ``NasConfig`` of a composed Hydra config; unknown keys and bad values are named."""
    check_top_level(cfg, NasConfig)
    method = str(cfg.get("method", "desan"))
    if method not in METHODS:
        raise ConfigError(f"method must be one of {sorted(METHODS)}, got '{method}'")
    space_config, search_config = METHODS[method]
    return NasConfig(
        dataset=typed_group(cfg.dataset, DatasetConfig, "dataset"),
        search_space=_method_group(cfg.search_space, space_config, "search_space", method),
        search=_method_group(cfg.search, search_config, "search", method),
        trainer=typed_group(cfg.trainer, TrainerConfig, "trainer"),
        seed=int(cfg.seed),
        run_dir=str(cfg.run_dir),
        overwrite=bool(cfg.overwrite),
        resume=bool(cfg.resume),
        method=method,
    )


def _method_group(node: DictConfig, cls: type, group: str, method: str):
    """``typed_group``, with errors that say which method's keys were expected (a v1 preset needs method=v1)."""
    try:
        return typed_group(node, cls, group)
    except ConfigError as error:
        raise ConfigError(f"{error} [method={method}: its presets are conf/method/{method}.yaml's]") from None
