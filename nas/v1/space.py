"""AutoMTL v1 (paper 000): the search space's and the search's settings (``method=v1``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from torchrec_automtl.modules.embeddings import MULTI_HOT_POOLINGS
from torchrec_automtl.modules.multitask import OBJECTIVES
from torchrec_automtl.nas.operations import build_operation
from torchrec_automtl.nas.v1.interaction import build_interaction
from torchrec_automtl.pipelines.optimizers import DENSE_OPTIMIZERS

# Paper 000, Table 1.
PAPER_INTERACTIONS = ["inner-product", "outer-product", "cross-1", "cross-2", "cross-3", "cross-4",
                      "attention-1", "attention-2", "attention-4", "attention-8",
                      "mlp-64", "mlp-128", "mlp-256", "mlp-512", "mlp-1024", "skip"]
PAPER_EXPERT_OPERATIONS = ["gating", "mlp-16", "mlp-32", "mlp-64", "mlp-128", "mlp-256", "mlp-512", "mlp-1024",
                           "conv1d-3", "conv1d-5", "conv1d-7", "skip"]


@dataclass
class V1SearchSpaceConfig:
    """Sizes of paper 000's supernet (section 3.3, Table 1; section 4.1.4 for the sizes it names).

    ``width``: the interaction module's output width, which every expert block keeps (width -> width);
    the paper does not give it, we take DESAN's official block width, 64.
    ``top_experts``: experts kept per task after the search (the paper's c: 3 for UserBehavior, 6 for
    IJCAI-2015 and AliExpress; the default is 6 of the paper's 8 experts).
    ``interaction``: false is Table 3's "w/o INT": the experts read the flattened field embeddings
    through one linear projection (the ``skip`` interaction), nothing is searched there.
    ``homogeneous_experts``: Table 3's "hom Expert": every expert shares one searched architecture
    (one alpha per block position instead of one per expert).
    ``expert_selection``: false is Table 3's "w/o SEL": plain gating networks over all experts, in the
    search and in retraining, instead of softmax(beta) and the top-c selection.
    ``mlp_batchnorm``: paper 000's MLP op has no BatchNorm (false); true is DESAN's official MLP op.
    """

    name: str = "v1"
    embedding_dim: int = 16
    multi_hot_pooling: str = "mean"
    width: int = 64
    interaction_operations: list[str] = field(default_factory=lambda: list(PAPER_INTERACTIONS))
    num_experts: int = 8
    num_blocks: int = 3  # the paper uses 3-5
    expert_operations: list[str] = field(default_factory=lambda: list(PAPER_EXPERT_OPERATIONS))
    top_experts: int = 6
    tower_hidden: list[int] = field(default_factory=lambda: [128, 64])
    interaction: bool = True
    homogeneous_experts: bool = False
    expert_selection: bool = True
    mlp_batchnorm: bool = False

    def __post_init__(self) -> None:
        for key in ("embedding_dim", "width", "num_experts", "num_blocks", "top_experts"):
            if getattr(self, key) < 1:
                raise ValueError(f"search_space.{key} must be >= 1, got {getattr(self, key)}")
        if self.top_experts > self.num_experts:
            raise ValueError(f"search_space.top_experts={self.top_experts} exceeds search_space.num_experts={self.num_experts}")
        if self.multi_hot_pooling not in MULTI_HOT_POOLINGS:
            raise ValueError(f"search_space.multi_hot_pooling must be one of {sorted(MULTI_HOT_POOLINGS)}, got '{self.multi_hot_pooling}'")
        for key, check in (("interaction_operations", lambda name: build_interaction(name, 2, self.embedding_dim, self.width)),
                           ("expert_operations", lambda name: build_operation(name, 1, self.width))):
            names = getattr(self, key)
            if len(set(names)) != len(names) or not names:
                raise ValueError(f"search_space.{key} must be a non-empty list without repeats, got {names}")
            for name in names:
                try:
                    check(name)
                except ValueError as error:
                    raise ValueError(f"search_space.{key}: {error}") from None

    @property
    def searched_interactions(self) -> list[str]:
        """The interaction block's candidates: ``skip`` alone under "w/o INT"."""
        return list(self.interaction_operations) if self.interaction else ["skip"]


@dataclass
class V1SearchConfig:
    """Paper 000's search (section 3.4, Algorithm 1; settings of section 4.1.4).

    Bi-level, first-order: alpha (ops of the interaction and expert blocks) steps on architecture
    batches, a seeded slice of ``architecture_fraction`` of the training rows held out from the weight
    steps (as the default method's bi-level search; the validation split stays for early stopping and
    model selection), with Adam at ``arch_lr``; the supernet weights step on training batches with
    ``weight_optimizer`` (the paper's SGD, momentum ``weight_momentum``) at ``weight_lr`` and cosine
    decay over the search; beta (expert
    selection) steps on the training batches with Adam at ``selection_lr``, frozen for the first
    ``selection_warmup_epochs`` epochs (the paper says "several"; 1 here) with ``jsd_weight`` times the
    JSD loss (eq. 2), whose weight decays linearly to 0 over the search; an auxiliary skip around
    every expert block (DARTS-) decays from ``auxiliary_skip`` to 0 likewise. After the last epoch:
    the argmax op per block, the top-c experts per task, and the derived model is retrained from
    fresh weights with the trainer config every baseline uses.
    """

    epochs: int = 10
    selection_warmup_epochs: int = 1
    weight_optimizer: str = "sgd"  # the paper's; adam for short budgets (search=v1_fast)
    weight_lr: float = 0.02
    weight_momentum: float = 0.9
    arch_lr: float = 1e-3
    selection_lr: float = 1e-3
    jsd_weight: float = 1.0  # 0 is Table 3's "w/o AUX"
    auxiliary_skip: float = 1.0
    architecture_fraction: float = 0.1
    architecture_batch_size: int = 0  # rows per rank of an architecture batch; 0: trainer.batch_size
    validate_epochs: bool = False  # score the supernet on the validation split after every epoch (as DESAN's search)
    architecture_objective: str = "sum"  # the architecture steps' loss (modules.multitask.OBJECTIVES), as DESAN's search

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"search.epochs must be >= 1, got {self.epochs}")
        if not 0 <= self.selection_warmup_epochs < self.epochs:
            raise ValueError(f"search.selection_warmup_epochs must be in [0, search.epochs={self.epochs}), got {self.selection_warmup_epochs}")
        if self.weight_optimizer not in DENSE_OPTIMIZERS:
            raise ValueError(f"search.weight_optimizer must be one of {DENSE_OPTIMIZERS}, got '{self.weight_optimizer}'")
        for key in ("weight_lr", "arch_lr", "selection_lr"):
            if getattr(self, key) <= 0:
                raise ValueError(f"search.{key} must be > 0, got {getattr(self, key)}")
        for key in ("weight_momentum", "jsd_weight", "auxiliary_skip", "architecture_batch_size"):
            if getattr(self, key) < 0:
                raise ValueError(f"search.{key} must be >= 0, got {getattr(self, key)}")
        if not 0 < self.architecture_fraction < 1:
            raise ValueError(f"search.architecture_fraction must be in (0, 1), got {self.architecture_fraction}")
        if self.architecture_objective not in OBJECTIVES:
            raise ValueError(f"search.architecture_objective must be one of {OBJECTIVES}, got '{self.architecture_objective}'")

    def decay(self, epoch: int) -> float:
        """The linear decay factor of epoch ``epoch``: 1 at the first epoch, 0 at the last."""
        return 1.0 - min(1.0, epoch / max(1, self.epochs - 1))
