"""AITM (Xi et al., KDD 2021): adaptive information transfer along a sequence of tasks (click -> conversion).

Tasks follow the schema's order. Each task has its own tower over the shared input. From the second
task on, the previous task's representation passes through a transfer MLP and is fused with the
task's own tower output by the AIT attention, so information only flows from earlier to later tasks.
The paper's optional calibration loss (a later task's probability never above an earlier one's) is
not part of this arch; the multi-task loss is the pipeline's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from torchrec_automtl.datasets.schema import Schema
from torchrec_automtl.modules.mlp import MLP
from torchrec_automtl.modules.moe_blocks import flat_features
from torchrec_automtl.modules.registry import ModelConfig, register_model
from torchrec_automtl.modules.shared_bottom import input_width


class AdaptiveInformationTransfer(nn.Module):
    """Self-attention over the two vectors [transferred, own]: ``2 x [B, d] -> [B, d]``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.query, self.key, self.value = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.scale = 1 / math.sqrt(dim)

    def forward(self, transferred: torch.Tensor, own: torch.Tensor) -> torch.Tensor:
        inputs = torch.stack([transferred, own], dim=1)  # [B, 2, d]
        scores = (self.query(inputs) * self.key(inputs)).sum(-1) * self.scale  # [B, 2]
        return torch.bmm(scores.softmax(dim=-1).unsqueeze(1), self.value(inputs)).squeeze(1)


class AITM(nn.Module):
    """Per-task towers; task t > 0 fuses task t-1's representation through the AIT module."""

    def __init__(self, input_dim: int, num_tasks: int, tower_hidden: tuple[int, ...], dropout: float = 0.0) -> None:
        super().__init__()
        dim = tower_hidden[-1]
        self.towers = nn.ModuleList(MLP(input_dim, tower_hidden, dropout) for _ in range(num_tasks))
        self.transfers = nn.ModuleList(nn.Sequential(nn.Linear(dim, dim), nn.ReLU()) for _ in range(num_tasks - 1))
        self.fusions = nn.ModuleList(AdaptiveInformationTransfer(dim) for _ in range(num_tasks - 1))
        self.heads = nn.ModuleList(nn.Linear(dim, 1) for _ in range(num_tasks))

    def forward(self, embeddings: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        features = flat_features(embeddings, dense)
        representation = self.towers[0](features)
        logits = [self.heads[0](representation)]
        for t in range(1, len(self.towers)):
            representation = self.fusions[t - 1](self.transfers[t - 1](representation), self.towers[t](features))
            logits.append(self.heads[t](representation))
        return torch.cat(logits, dim=1)


@dataclass
class AITMConfig(ModelConfig):
    """``model=aitm``: towers [256, 128, 64] per task (our choice, about MMoE's size on AliCCP-like input)."""

    tower_hidden: list[int] = field(default_factory=lambda: [256, 128, 64])
    dropout: float = 0.0


@register_model("aitm", AITMConfig)
def build_aitm(config: AITMConfig, schema: Schema) -> AITM:
    return AITM(input_width(config, schema), len(schema.tasks), tuple(config.tower_hidden), config.dropout)
