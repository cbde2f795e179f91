"""The DESAN search space's settings (Hydra group ``search_space``) and the names of its parts."""

from __future__ import annotations

from dataclasses import dataclass, field

from torchrec_automtl.modules.embeddings import MULTI_HOT_POOLINGS
from torchrec_automtl.nas.operations import build_operation

PAPER_OPERATIONS = ["skip", "linear", "mlp-16", "mlp-32", "mlp-64", "mlp-128", "mlp-256", "mlp-512", "mlp-1024"]
GATE_NORMALIZATIONS = ("selected", "all")
SELECTION_SAMPLINGS = ("example", "batch", "none")


@dataclass
class SearchSpaceConfig:
    """Sizes of the supernet; defaults are paper 001's (section 4.1.4) and its official implementation's.

    ``gate_normalization``: eq. 1 of the paper takes the softmax over all experts of a gate and sums
    only the selected ones. ``selected`` (default) renormalizes the softmax over the selected experts,
    so a derived gate is exactly a softmax over the experts it kept and its weights sum to 1 as in
    MMoE; ``all`` follows eq. 1 literally.
    ``selection_sampling``: eq. 3 draws s(beta) without saying how often. ``example`` draws
    every feature / connection mask independently per row of the batch, so the straight-through
    gradient of beta averages over the batch instead of resting on one draw per step (far less
    noisy, at no extra matmul cost); ``batch`` draws one mask per step; ``none`` is the official
    implementation's way: the masks stay all-ones while searching (every option is used) and beta
    learns by the straight-through gradient alone; decisions threshold sigmoid(beta) at 0.5.
    ``feature_selection`` / ``connection_selection``: false keeps every feature / expert connection
    (paper 001's ablations "w/o FS" and "Full.Shr"); nothing of that kind is searched.
    ``mlp_batchnorm``: the official implementation's MLP op, Linear -> BatchNorm -> ReLU -> Linear.
    ``beta_init``: initial selection logit of every feature and expert connection. With all-ones
    masks it only sets how much evidence a drop needs: an item is dropped when its logit falls below
    0, i.e. by more than ``beta_init``, which Adam's near-constant steps reach only after about
    ``beta_init / search.arch_lr`` architecture steps in which the held-out gradient keeps saying
    "less of it". 6.0 (sigmoid 0.9975) drops the memorized noise fields of the AliCCP-like data (12 of
    27 inputs kept) and keeps 97-100 of the 100 informative inputs of the Table 5 data, where 0.5 kept
    43-59 of them and lost 10x in MSE (README, "Why these defaults").
    """

    name: str = "desan"
    embedding_dim: int = 16
    multi_hot_pooling: str = "mean"  # pooling of multi-hot fields' embeddings: mean or sum
    num_layers: int = 2  # MoE layers, as PLE / AdaTT in paper 001
    num_experts: int = 8  # per layer (paper keeps MoE models at 8)
    num_blocks: int = 3  # mixture-of-operations blocks per expert
    block_width: int = 64  # the official implementation's width
    operations: list[str] = field(default_factory=lambda: list(PAPER_OPERATIONS))
    conv1d: bool = False  # add the "conv1d" op (paper's +Conv1D variant)
    tower_hidden: list[int] = field(default_factory=lambda: [128, 64])
    beta_init: float = 6.0  # evidence needed to drop an item (see above); not given by the papers
    gate_normalization: str = "selected"
    selection_sampling: str = "none"
    feature_selection: bool = True
    connection_selection: bool = True
    mlp_batchnorm: bool = True

    def __post_init__(self) -> None:
        for key in ("embedding_dim", "num_layers", "num_experts", "num_blocks", "block_width"):
            if getattr(self, key) < 1:
                raise ValueError(f"search_space.{key} must be >= 1, got {getattr(self, key)}")
        if self.multi_hot_pooling not in MULTI_HOT_POOLINGS:
            raise ValueError(f"search_space.multi_hot_pooling must be one of {sorted(MULTI_HOT_POOLINGS)}, got '{self.multi_hot_pooling}'")
        if self.gate_normalization not in GATE_NORMALIZATIONS:
            raise ValueError(f"search_space.gate_normalization must be one of {GATE_NORMALIZATIONS}, got '{self.gate_normalization}'")
        if self.selection_sampling not in SELECTION_SAMPLINGS:
            raise ValueError(f"search_space.selection_sampling must be one of {SELECTION_SAMPLINGS}, got '{self.selection_sampling}'")
        if len(set(self.operations)) != len(self.operations) or not self.operations:
            raise ValueError(f"search_space.operations must be a non-empty list without repeats, got {self.operations}")
        for name in self.candidate_operations:
            _check_operation_name(name)

    @property
    def candidate_operations(self) -> list[str]:
        """The ops of every mixture-of-operations block, in alpha order."""
        return list(self.operations) + (["conv1d"] if self.conv1d and "conv1d" not in self.operations else [])


def _check_operation_name(name: str) -> None:
    try:
        build_operation(name, 1, 2)
    except ValueError as error:
        raise ValueError(f"search_space.operations: {error}") from None


def expert_name(layer: int, expert: int) -> str:
    """``layer`` and ``expert`` count from 0 in code, from 1 in names."""
    return f"layer{layer + 1}.expert{expert + 1}"


def gate_name(layer: int, expert: int) -> str:
    """The gate that mixes layer ``layer - 1``'s experts into expert ``expert`` of ``layer``."""
    return f"{expert_name(layer, expert)}.gate"


def task_gate_name(task: str) -> str:
    return f"task.{task}.gate"
