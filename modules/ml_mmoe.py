"""ML-MMoE: multi-level MMoE (paper 001's baseline): upper experts read gated mixtures of the lower ones."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from torchrec_automtl.datasets.schema import Schema
from torchrec_automtl.modules.mlp import MLP, TaskTowers
from torchrec_automtl.modules.moe_blocks import ExpertGroup, SoftmaxGate, flat_features
from torchrec_automtl.modules.registry import ModelConfig, register_model
from torchrec_automtl.modules.shared_bottom import input_width


class MultiLevelMMoE(nn.Module):
    """``num_levels`` MoE levels of ``num_experts`` experts each.

    Level 1 experts read the input features; expert j of level l > 1 reads its own softmax gate's
    mixture of level l-1's experts (the gate reads the input features, as in MMoE); each task's gate
    mixes the last level's experts into its tower.
    """

    def __init__(self, input_dim: int, num_tasks: int, num_levels: int, num_experts: int, expert_hidden: tuple[int, ...],
                 tower_hidden: tuple[int, ...], dropout: float = 0.0, expert_batchnorm: bool = False) -> None:
        super().__init__()
        width = expert_hidden[-1]
        self.first_level = ExpertGroup(input_dim, num_experts, expert_hidden, dropout, expert_batchnorm)
        self.upper_levels = nn.ModuleList(
            nn.ModuleList(MLP(width, expert_hidden, dropout, expert_batchnorm) for _ in range(num_experts)) for _ in range(num_levels - 1)
        )
        self.upper_gates = nn.ModuleList(
            nn.ModuleList(SoftmaxGate(input_dim, num_experts) for _ in range(num_experts)) for _ in range(num_levels - 1)
        )
        self.task_gates = nn.ModuleList(SoftmaxGate(input_dim, num_experts) for _ in range(num_tasks))
        self.towers = TaskTowers(width, num_tasks, tower_hidden, dropout)

    def forward(self, embeddings: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        features = flat_features(embeddings, dense)
        experts = self.first_level(features)  # [B, n, H]
        for level, gates in zip(self.upper_levels, self.upper_gates, strict=True):
            experts = torch.stack([expert(gate(features, experts)) for expert, gate in zip(level, gates, strict=True)], dim=1)
        return self.towers(torch.stack([gate(features, experts) for gate in self.task_gates], dim=1))


@dataclass
class MultiLevelMMoEConfig(ModelConfig):
    """``model=ml_mmoe``: 2 levels (as PLE and AdaTT in paper 001) of 8 experts [256, 128], towers [128, 64]
    (``expert_batchnorm``: a BatchNorm after every expert Linear, as ``model=mmoe_bn``)."""

    num_levels: int = 2
    num_experts: int = 8
    expert_hidden: list[int] = field(default_factory=lambda: [256, 128])
    tower_hidden: list[int] = field(default_factory=lambda: [128, 64])
    dropout: float = 0.0
    expert_batchnorm: bool = False


@register_model("ml_mmoe", MultiLevelMMoEConfig)
def build_ml_mmoe(config: MultiLevelMMoEConfig, schema: Schema) -> MultiLevelMMoE:
    return MultiLevelMMoE(input_width(config, schema), len(schema.tasks), config.num_levels, config.num_experts,
                          tuple(config.expert_hidden), tuple(config.tower_hidden), config.dropout, config.expert_batchnorm)
