"""Multi-layer perceptrons and per-task towers shared by every dense arch."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class MLP(nn.Sequential):
    """``Linear (-> BatchNorm) -> ReLU (-> Dropout)`` for each width in ``hidden``; ``[B, in] -> [B, hidden[-1]]``."""

    def __init__(self, in_features: int, hidden: Sequence[int], dropout: float = 0.0, batchnorm: bool = False) -> None:
        layers: list[nn.Module] = []
        width = in_features
        for out in hidden:
            layers += [nn.Linear(width, out), *([nn.BatchNorm1d(out)] if batchnorm else []), nn.ReLU()]
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = out
        super().__init__(*layers)
        self.out_features = width


class TaskTowers(nn.Module):
    """One MLP tower plus a linear logit head per task.

    ``forward`` takes ``[B, num_tasks, in_features]`` (task ``t`` reads slice ``t``) and returns
    logits ``[B, num_tasks]``.
    """

    def __init__(self, in_features: int, num_tasks: int, hidden: Sequence[int], dropout: float = 0.0) -> None:
        super().__init__()
        self.towers = nn.ModuleList(
            nn.Sequential(MLP(in_features, hidden, dropout), nn.Linear(hidden[-1] if hidden else in_features, 1))
            for _ in range(num_tasks)
        )

    def forward(self, task_inputs: torch.Tensor) -> torch.Tensor:
        return torch.cat([tower(task_inputs[:, t]) for t, tower in enumerate(self.towers)], dim=1)
