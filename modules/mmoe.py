"""MMoE (Ma et al., KDD 2018): shared experts mixed per task by softmax gates."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from torchrec_automtl.datasets.schema import Schema
from torchrec_automtl.modules.mlp import TaskTowers
from torchrec_automtl.modules.moe_blocks import ExpertGroup, flat_features
from torchrec_automtl.modules.registry import ModelConfig, register_model
from torchrec_automtl.modules.shared_bottom import input_width


class MMoE(nn.Module):
    """Multi-gate mixture of experts over the flattened input features.

    Args:
        input_dim: width of the flattened input (pooled embeddings + dense features).
        num_tasks: number of task towers / gates.
        num_experts: shared experts (8 in paper 001's implementation details).
        expert_hidden: expert MLP widths ([256, 128] in paper 001).
        tower_hidden: task tower widths ([128, 64] in paper 001).
        expert_batchnorm: BatchNorm after every expert Linear (not in the MMoE paper; the MLP op of
            AutoMTL's official code has it, so this isolates what BatchNorm alone is worth).
    """

    def __init__(
        self,
        input_dim: int,
        num_tasks: int,
        num_experts: int = 8,
        expert_hidden: tuple[int, ...] = (256, 128),
        tower_hidden: tuple[int, ...] = (128, 64),
        dropout: float = 0.0,
        expert_batchnorm: bool = False,
    ) -> None:
        super().__init__()
        self.experts = ExpertGroup(input_dim, num_experts, expert_hidden, dropout, expert_batchnorm)
        self.gates = nn.Linear(input_dim, num_tasks * num_experts)
        self.num_tasks, self.num_experts = num_tasks, num_experts
        self.towers = TaskTowers(expert_hidden[-1], num_tasks, tower_hidden, dropout)

    def gate_weights(self, features: torch.Tensor) -> torch.Tensor:
        """Softmax gate weights ``[B, num_tasks, num_experts]`` for flattened ``features`` ``[B, input_dim]``."""
        return self.gates(features).view(-1, self.num_tasks, self.num_experts).softmax(dim=-1)

    def forward(self, embeddings: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        """``embeddings [B, S, E]``, ``dense [B, D]`` -> logits ``[B, num_tasks]``."""
        features = flat_features(embeddings, dense)
        experts = self.experts(features)  # [B, E, H]
        mixed = torch.bmm(self.gate_weights(features), experts)  # [B, T, H]
        return self.towers(mixed)


@dataclass
class MMoEConfig(ModelConfig):
    """``model=mmoe``: defaults from paper 001, section 4.1.4."""

    num_experts: int = 8
    expert_hidden: list[int] = field(default_factory=lambda: [256, 128])
    tower_hidden: list[int] = field(default_factory=lambda: [128, 64])
    dropout: float = 0.0
    expert_batchnorm: bool = False


@register_model("mmoe", MMoEConfig)
def build_mmoe(config: MMoEConfig, schema: Schema) -> MMoE:
    return MMoE(
        input_dim=input_width(config, schema),
        num_tasks=len(schema.tasks),
        num_experts=config.num_experts,
        expert_hidden=tuple(config.expert_hidden),
        tower_hidden=tuple(config.tower_hidden),
        dropout=config.dropout,
        expert_batchnorm=config.expert_batchnorm,
    )
