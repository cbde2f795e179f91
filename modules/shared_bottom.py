"""Single-Task (one network per task) and Shared-Bottom (Caruana, 1997) dense archs."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from torchrec_automtl.datasets.schema import Schema
from torchrec_automtl.modules.mlp import MLP, TaskTowers
from torchrec_automtl.modules.moe_blocks import flat_features
from torchrec_automtl.modules.registry import ModelConfig, register_model


class SingleTask(nn.Module):
    """An independent MLP ``bottom_hidden`` + logit per task over the same input; tasks share only embeddings."""

    def __init__(self, input_dim: int, num_tasks: int, bottom_hidden: tuple[int, ...], dropout: float = 0.0) -> None:
        super().__init__()
        self.networks = nn.ModuleList(
            nn.Sequential(MLP(input_dim, bottom_hidden, dropout), nn.Linear(bottom_hidden[-1], 1)) for _ in range(num_tasks)
        )

    def forward(self, embeddings: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        features = flat_features(embeddings, dense)
        return torch.cat([network(features) for network in self.networks], dim=1)


class SharedBottom(nn.Module):
    """One shared MLP bottom, then a tower per task."""

    def __init__(self, input_dim: int, num_tasks: int, bottom_hidden: tuple[int, ...], tower_hidden: tuple[int, ...],
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.bottom = MLP(input_dim, bottom_hidden, dropout)
        self.num_tasks = num_tasks
        self.towers = TaskTowers(bottom_hidden[-1], num_tasks, tower_hidden, dropout)

    def forward(self, embeddings: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        shared = self.bottom(flat_features(embeddings, dense))
        return self.towers(shared.unsqueeze(1).expand(-1, self.num_tasks, -1))


@dataclass
class SingleTaskConfig(ModelConfig):
    """``model=single_task``: bottom MLP [512, 256, 128, 64] per task (paper 001, section 4.1.4)."""

    bottom_hidden: list[int] = field(default_factory=lambda: [512, 256, 128, 64])
    dropout: float = 0.0


@dataclass
class SharedBottomConfig(ModelConfig):
    """``model=shared_bottom``: shared bottom [512, 256, 128] (our choice: about MMoE's parameter count), towers [128, 64]."""

    bottom_hidden: list[int] = field(default_factory=lambda: [512, 256, 128])
    tower_hidden: list[int] = field(default_factory=lambda: [128, 64])
    dropout: float = 0.0


def input_width(config: ModelConfig, schema: Schema) -> int:
    """Width of ``flat_features``: every sparse field's embedding plus every dense feature."""
    return len(schema.sparse) * config.embedding_dim + len(schema.dense)


@register_model("single_task", SingleTaskConfig)
def build_single_task(config: SingleTaskConfig, schema: Schema) -> SingleTask:
    return SingleTask(input_width(config, schema), len(schema.tasks), tuple(config.bottom_hidden), config.dropout)


@register_model("shared_bottom", SharedBottomConfig)
def build_shared_bottom(config: SharedBottomConfig, schema: Schema) -> SharedBottom:
    return SharedBottom(input_width(config, schema), len(schema.tasks), tuple(config.bottom_hidden),
                        tuple(config.tower_hidden), config.dropout)
