"""AdaTT (Li et al., KDD 2023), the AdaTT-sp form: adaptive task-to-task fusion with shared experts.

Each level has a group of task-specific experts per task and a shared group. Task t's fusion unit
mixes *all* experts (every task's and the shared ones) with a softmax gate reading task t's stream,
and adds a learned linear combination of its own experts (the residual "native" path). A shared
gate over all experts feeds the next level's shared stream (our choice, as in PLE; the last level
has none). The expert budget is split as for PLE: 2 specific experts per task + 4 shared.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from torchrec_automtl.datasets.schema import Schema
from torchrec_automtl.modules.moe_blocks import ExpertGroup, SoftmaxGate, TaskStreamNetwork
from torchrec_automtl.modules.ple import PLEConfig, build_levels
from torchrec_automtl.modules.registry import register_model


class FusionLevel(nn.Module):
    """One AdaTT level over streams ``[B, T + 1, in]`` (tasks, then shared) -> ``[B, T (+1), H]``."""

    def __init__(self, in_features: int, num_tasks: int, specific: int, shared: int, hidden: tuple[int, ...],
                 shared_output: bool, dropout: float = 0.0, batchnorm: bool = False) -> None:
        super().__init__()
        total = num_tasks * specific + shared
        self.task_experts = nn.ModuleList(ExpertGroup(in_features, specific, hidden, dropout, batchnorm) for _ in range(num_tasks))
        self.shared_experts = ExpertGroup(in_features, shared, hidden, dropout, batchnorm)
        self.task_gates = nn.ModuleList(SoftmaxGate(in_features, total) for _ in range(num_tasks))
        self.native_weights = nn.Parameter(torch.full((num_tasks, specific), 1.0 / specific))
        self.shared_gate = SoftmaxGate(in_features, total) if shared_output else None

    def forward(self, streams: torch.Tensor) -> torch.Tensor:
        specific = [group(streams[:, t]) for t, group in enumerate(self.task_experts)]  # T x [B, m, H]
        everything = torch.cat(specific + [self.shared_experts(streams[:, -1])], dim=1)  # [B, T*m + s, H]
        outputs = [
            gate(streams[:, t], everything) + torch.einsum("m,bmh->bh", self.native_weights[t], own)
            for t, (gate, own) in enumerate(zip(self.task_gates, specific, strict=True))
        ]
        if self.shared_gate is not None:
            outputs.append(self.shared_gate(streams[:, -1], everything))
        return torch.stack(outputs, dim=1)


@dataclass
class AdaTTConfig(PLEConfig):
    """``model=adatt``: 2 levels (as in paper 001), 2 specific experts per task + 4 shared, experts [256, 128]."""


@register_model("adatt", AdaTTConfig)
def build_adatt(config: AdaTTConfig, schema: Schema) -> TaskStreamNetwork:
    return build_levels(FusionLevel, config, schema)
