"""CGC and PLE (Tang et al., RecSys 2020): task-specific and shared experts, progressive extraction."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from torchrec_automtl.datasets.schema import Schema
from torchrec_automtl.modules.moe_blocks import ExpertGroup, SoftmaxGate, TaskStreamNetwork
from torchrec_automtl.modules.registry import ModelConfig, register_model
from torchrec_automtl.modules.shared_bottom import input_width


class ExtractionLayer(nn.Module):
    """One CGC layer: per task ``specific`` experts plus ``shared`` experts.

    Task t's gate (reading task t's stream) mixes its own and the shared experts. With
    ``shared_output`` (every PLE level but the last) a shared gate mixes all experts into the
    shared stream of the next level. Streams: ``[B, T + 1, in]`` (tasks, then shared).
    """

    def __init__(self, in_features: int, num_tasks: int, specific: int, shared: int, hidden: tuple[int, ...],
                 shared_output: bool, dropout: float = 0.0, batchnorm: bool = False) -> None:
        super().__init__()
        self.task_experts = nn.ModuleList(ExpertGroup(in_features, specific, hidden, dropout, batchnorm) for _ in range(num_tasks))
        self.shared_experts = ExpertGroup(in_features, shared, hidden, dropout, batchnorm)
        self.task_gates = nn.ModuleList(SoftmaxGate(in_features, specific + shared) for _ in range(num_tasks))
        self.shared_gate = SoftmaxGate(in_features, num_tasks * specific + shared) if shared_output else None

    def forward(self, streams: torch.Tensor) -> torch.Tensor:
        shared = self.shared_experts(streams[:, -1])  # [B, shared, H]
        specific = [group(streams[:, t]) for t, group in enumerate(self.task_experts)]
        outputs = [gate(streams[:, t], torch.cat([own, shared], dim=1)) for t, (gate, own) in enumerate(zip(self.task_gates, specific, strict=True))]
        if self.shared_gate is not None:
            outputs.append(self.shared_gate(streams[:, -1], torch.cat(specific + [shared], dim=1)))
        return torch.stack(outputs, dim=1)


@dataclass
class PLEConfig(ModelConfig):
    """``model=ple`` (2 levels) / ``model=cgc`` (1 level).

    Expert budget: paper 001 keeps MoE models at 8 experts; with 2 tasks we split it as 2 specific
    experts per task + 4 shared (``specific_experts``, ``shared_experts``), experts [256, 128].
    ``expert_batchnorm``: a BatchNorm after every expert Linear (not in the papers; as ``model=mmoe_bn``).
    """

    num_levels: int = 2
    specific_experts: int = 2
    shared_experts: int = 4
    expert_hidden: list[int] = field(default_factory=lambda: [256, 128])
    tower_hidden: list[int] = field(default_factory=lambda: [128, 64])
    dropout: float = 0.0
    expert_batchnorm: bool = False


@dataclass
class CGCConfig(PLEConfig):
    """``model=cgc``: PLE's single extraction layer (customized gate control)."""

    num_levels: int = 1


def build_levels(level_class: type[nn.Module], config: PLEConfig, schema: Schema) -> TaskStreamNetwork:
    """``config.num_levels`` levels of ``level_class`` (ExtractionLayer, or AdaTT's FusionLevel), then a tower per task."""
    width, tasks = config.expert_hidden[-1], len(schema.tasks)
    levels = [
        level_class(input_width(config, schema) if level == 0 else width, tasks, config.specific_experts,
                    config.shared_experts, tuple(config.expert_hidden), level < config.num_levels - 1, config.dropout,
                    config.expert_batchnorm)
        for level in range(config.num_levels)
    ]
    return TaskStreamNetwork(levels, tasks, width, config.tower_hidden, config.dropout)


@register_model("ple", PLEConfig)
def build_ple(config: PLEConfig, schema: Schema) -> TaskStreamNetwork:
    return build_levels(ExtractionLayer, config, schema)


register_model("cgc", CGCConfig)(build_ple)
