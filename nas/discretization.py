"""Progressive discretization (paper 001, section 3.2.4): decide the most certain items first.

Every undecided item gets a confidence on one scale in [0, 1]:

* a mixture-of-operations block: ``1 - H(softmax(alpha)) / log(M)``, one minus eq. 7's normalized
  entropy, over the ops it has not pruned (``prune_operations``); its decision is the argmax op.
* a feature or expert connection: ``|2 sigmoid(beta) - 1|``; kept when sigmoid(beta) >= 0.5.

Algorithm 1 says to discretize the item with the "largest discretization score", but with the score
of eq. 7 (entropy) that would pick the *least* decided block, against the method's intent and the
official implementation, which discretizes the lowest-entropy block first. We therefore rank by
confidence (highest first), the same for all item kinds, so blocks and selections compete fairly.

A gate or a layer-1 expert is never left with no input, nor a gate with no expert: when the
decisions of a step would leave a row of features or connections fully decided and empty, its
strongest item (largest beta) is kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Sequence

import torch

from torchrec_automtl.nas.supernet import DesanSupernet

Kind = Literal["block", "feature", "connection"]
KINDS: tuple[Kind, ...] = ("block", "feature", "connection")


def normalized_entropy(alpha: torch.Tensor) -> torch.Tensor:
    """Entropy of softmax(alpha) over the last dim divided by log(M): 0 for one-hot, 1 for uniform."""
    probabilities = alpha.softmax(dim=-1)
    entropy = -(probabilities * probabilities.clamp_min(1e-30).log()).sum(dim=-1)
    return entropy / math.log(alpha.shape[-1]) if alpha.shape[-1] > 1 else torch.zeros_like(entropy)


def block_confidence(alpha: torch.Tensor) -> torch.Tensor:
    return 1.0 - normalized_entropy(alpha)


def selection_confidence(beta: torch.Tensor) -> torch.Tensor:
    return (2 * torch.sigmoid(beta) - 1).abs()


@dataclass(frozen=True)
class Decision:
    """One discretization: a block's op index, or keep (1) / drop (0) of a feature or connection."""

    kind: Kind
    index: tuple[int, ...]
    value: int
    confidence: float


def undecided_items(supernet: DesanSupernet) -> list[Decision]:
    """Every undecided item with the decision it would take now and its confidence."""
    items: list[Decision] = []
    with torch.no_grad():
        alpha, beta_f, beta_c = supernet.mixing_logits(), supernet.feature_beta, supernet.connection_beta
        block_conf, block_arg = block_confidence(alpha), alpha.argmax(dim=-1)
        for index in (~supernet.block_decided).nonzero().tolist():
            items.append(Decision("block", tuple(index), int(block_arg[tuple(index)]), float(block_conf[tuple(index)])))
        for kind, beta, decided in (("feature", beta_f, supernet.feature_decided), ("connection", beta_c, supernet.connection_decided)):
            confidence, keep = selection_confidence(beta), torch.sigmoid(beta) >= 0.5
            for index in (~decided).nonzero().tolist():
                items.append(Decision(kind, tuple(index), int(keep[tuple(index)]), float(confidence[tuple(index)])))
    return items


def next_decisions(supernet: DesanSupernet, count: int, kinds: Sequence[Kind] = KINDS) -> list[Decision]:
    """The ``count`` most confident undecided items of ``kinds`` (ties: blocks, features, connections, then index order)."""
    order = {"block": 0, "feature": 1, "connection": 2}
    items = [item for item in undecided_items(supernet) if item.kind in kinds]
    items.sort(key=lambda d: (-d.confidence, order[d.kind], d.index))
    return items[:count]


def apply_decisions(supernet: DesanSupernet, decisions: list[Decision]) -> list[Decision]:
    """Write ``decisions`` into the supernet's buffers; returns the extra keeps the keep-one rule added."""
    with torch.no_grad():
        for decision in decisions:
            if decision.kind == "block":
                supernet.block_decided[decision.index] = True
                supernet.block_choice[decision.index] = decision.value
            else:
                decided, kept = _selection_buffers(supernet, decision.kind)
                decided[decision.index] = True
                kept[decision.index] = bool(decision.value)
        return _keep_one_per_row(supernet, "feature") + _keep_one_per_row(supernet, "connection")


def drop_features(supernet: DesanSupernet, features: Sequence[int]) -> list[Decision]:
    """Drop ``features`` (input indices) for every consumer of a supernet whose selections are all
    decided; returns the keeps the keep-one rule adds back to consumers left with no input."""
    with torch.no_grad():
        supernet.feature_kept[:, list(features)] = False
        return _keep_one_per_row(supernet, "feature")


def _selection_buffers(supernet: DesanSupernet, kind: Kind) -> tuple[torch.Tensor, torch.Tensor]:
    if kind == "feature":
        return supernet.feature_decided, supernet.feature_kept
    return supernet.connection_decided, supernet.connection_kept


def _keep_one_per_row(supernet: DesanSupernet, kind: Kind) -> list[Decision]:
    decided, kept = _selection_buffers(supernet, kind)
    beta = supernet.feature_beta if kind == "feature" else supernet.connection_beta
    added = []
    empty_rows = (decided.all(dim=1) & ~kept.any(dim=1)).nonzero().flatten().tolist()
    for row in empty_rows:
        strongest = int(beta[row].argmax())
        kept[row, strongest] = True
        added.append(Decision(kind, (row, strongest), 1, float(selection_confidence(beta[row, strongest]))))
    return added


def prune_operations(supernet: DesanSupernet, share: float) -> int:
    """Drop from every undecided block the ops whose mixing weight is below ``share / M`` (M ops per
    block); returns how many were dropped. With ``share`` < 1 a block's strongest op always stays.

    P-DARTS's search-space approximation (Chen et al., 2019) shrinks the candidate ops between search
    stages by their weights; here an op that weighs less than ``share`` of a uniform mixture's weight
    leaves its block at the start of an epoch. The block then mixes the other ops, renormalized, and
    no longer runs the dropped one (``MixtureOfOperations`` runs an op only for the experts weighing it).
    """
    with torch.no_grad():
        weights = supernet.block_weights()
        dropped = (weights < share / weights.shape[-1]) & ~supernet.block_decided.unsqueeze(-1) & ~supernet.operation_pruned
        supernet.operation_pruned |= dropped
    return int(dropped.sum())


def undecided_count(supernet: DesanSupernet, kinds: Sequence[Kind] = KINDS) -> int:
    """How many items of ``kinds`` are still undecided."""
    decided = {"block": supernet.block_decided, "feature": supernet.feature_decided, "connection": supernet.connection_decided}
    return sum(int((~decided[kind]).sum()) for kind in kinds)


def is_discretized(supernet: DesanSupernet) -> bool:
    """True once every block, feature and connection is decided: the supernet is a regular network."""
    return undecided_count(supernet) == 0
