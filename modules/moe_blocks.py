"""Expert groups and softmax gates shared by the MoE baselines (MMoE, ML-MMoE, CGC, PLE)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from torchrec_automtl.modules.mlp import MLP, TaskTowers


class ExpertGroup(nn.Module):
    """``num_experts`` MLP experts reading the same input: ``[B, in] -> [B, num_experts, hidden[-1]]``
    (``batchnorm``: a BatchNorm after every expert Linear)."""

    def __init__(self, in_features: int, num_experts: int, hidden: Sequence[int], dropout: float = 0.0,
                 batchnorm: bool = False) -> None:
        super().__init__()
        self.experts = nn.ModuleList(MLP(in_features, hidden, dropout, batchnorm) for _ in range(num_experts))
        self.out_features = hidden[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([expert(x) for expert in self.experts], dim=1)


class SoftmaxGate(nn.Module):
    """Mixes ``[B, n, H]`` expert outputs by ``softmax(W x)``; ``weights`` exposes the ``[B, n]`` mixture."""

    def __init__(self, in_features: int, num_experts: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, num_experts)

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).softmax(dim=-1)

    def forward(self, x: torch.Tensor, experts: torch.Tensor) -> torch.Tensor:
        return torch.bmm(self.weights(x).unsqueeze(1), experts).squeeze(1)


def flat_features(embeddings: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
    """The dense archs' common input: pooled embeddings flattened next to the dense features, ``[B, S*E + D]``."""
    return torch.cat([embeddings.flatten(1), dense], dim=1)


class TaskStreamNetwork(nn.Module):
    """Levels over per-task streams plus a shared one, then a tower per task (the shape of PLE and AdaTT).

    Every stream starts as the input features; each level maps streams ``[B, T + 1, in]`` to
    ``[B, T + 1, width]`` (the last level may drop the shared stream); task t's tower reads stream t.
    """

    def __init__(self, levels: Sequence[nn.Module], num_tasks: int, width: int, tower_hidden: Sequence[int], dropout: float = 0.0) -> None:
        super().__init__()
        self.levels = nn.ModuleList(levels)
        self.num_tasks = num_tasks
        self.towers = TaskTowers(width, num_tasks, tower_hidden, dropout)

    def forward(self, embeddings: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        streams = flat_features(embeddings, dense).unsqueeze(1).expand(-1, self.num_tasks + 1, -1)
        for level in self.levels:
            streams = level(streams)
        return self.towers(streams[:, : self.num_tasks])
