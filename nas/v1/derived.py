"""The derived network of a paper-000 search: a plain dense arch built from its ``architecture.json``.

The chosen interaction op, the experts some task selected (one op per block), a gating network per
task over its selected experts (section 3.3.3: "in the retrain stage, we use the gating network to
adaptively aggregate representations from the task-dependent experts"), reading the flattened field
embeddings as MMoE's gates read the input, and the towers.
``derive_from_supernet`` carries the supernet's weights over and starts each gate at the
supernet's renormalized softmax(beta) (zero weights, bias beta), so it computes exactly the
discretized supernet; the search retrains it from fresh weights (paper 000's way).
"""

from __future__ import annotations

import torch
from torch import nn

from torchrec_automtl.datasets.schema import Schema
from torchrec_automtl.modules.mlp import TaskTowers
from torchrec_automtl.nas.operations import build_operation
from torchrec_automtl.nas.v1.architecture import V1Architecture
from torchrec_automtl.nas.v1.interaction import build_interaction
from torchrec_automtl.nas.v1.supernet import FieldEmbeddings, V1Supernet


class V1DerivedArch(nn.Module):
    """``(embeddings [B, S, E], dense [B, D]) -> logits [B, T]`` of a ``V1Architecture``."""

    def __init__(self, architecture: V1Architecture) -> None:
        super().__init__()
        arch = self.architecture = architecture
        num_fields = len(arch.sparse_features) + len(arch.dense_features)
        self.fields = FieldEmbeddings(len(arch.dense_features), arch.embedding_dim)
        self.interaction = build_interaction(arch.interaction, num_fields, arch.embedding_dim, arch.width)
        self.used = arch.used_experts()
        self.experts = nn.ModuleList(
            nn.Sequential(*(build_operation(name, 1, arch.width, arch.mlp_batchnorm).expert(0) for name in arch.experts[j].operations))
            for j in self.used
        )
        position = {arch.experts[j].name: i for i, j in enumerate(self.used)}
        self.task_experts = [[position[name] for name in arch.task_experts[task]] for task in arch.tasks]
        self.gates = nn.ModuleList(nn.Linear(num_fields * arch.embedding_dim, len(chosen)) for chosen in self.task_experts)
        self.towers = TaskTowers(arch.width, len(arch.tasks), arch.tower_hidden)

    def forward(self, embeddings: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        fields = self.fields(embeddings, dense)
        shared = self.interaction(fields)
        hidden = [expert(shared) for expert in self.experts]
        flat = fields.flatten(1)
        task_inputs = []
        for gate, chosen in zip(self.gates, self.task_experts):
            stacked = torch.stack([hidden[i] for i in chosen], dim=1)  # [B, c, width]
            task_inputs.append(torch.bmm(gate(flat).softmax(dim=-1).unsqueeze(1), stacked).squeeze(1))
        return self.towers(torch.stack(task_inputs, dim=1))

    def task_gate_weights(self, embeddings: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        """Each task's gate weights over all the architecture's experts ``[B, T, N]`` (0 for experts it did not select)."""
        flat = self.fields(embeddings, dense).flatten(1)
        out = flat.new_zeros(flat.shape[0], len(self.gates), len(self.architecture.experts))
        for t, (gate, chosen) in enumerate(zip(self.gates, self.task_experts)):
            out[:, t, [self.used[i] for i in chosen]] = gate(flat).softmax(dim=-1)
        return out


def derive_v1_from_supernet(supernet: V1Supernet, schema: Schema) -> V1DerivedArch:
    """The derived network of a discretized supernet with its weights: the same function in evaluation mode."""
    derived = V1DerivedArch(V1Architecture.from_supernet(supernet, schema))
    with torch.no_grad():
        derived.fields.load_state_dict(supernet.fields.state_dict())
        derived.interaction.load_state_dict(supernet.interactions[int(supernet.interaction_choice)].state_dict())
        for expert, j in zip(derived.experts, derived.used):
            for k, operation in enumerate(expert):
                chosen = int(supernet.block_choice[j, k])
                operation.load_state_dict(supernet.experts.blocks[k].operations[chosen].expert(j).state_dict())
        n = supernet.config.num_experts
        for t, (gate, chosen) in enumerate(zip(derived.gates, derived.task_experts)):
            experts = [derived.used[i] for i in chosen]
            if supernet.gates is None:  # softmax(beta) over the kept experts: a gate with zero weights and bias beta
                gate.weight.zero_()
                gate.bias.copy_(supernet.beta[t, experts])
            else:
                rows = [t * n + j for j in experts]
                gate.weight.copy_(supernet.gates.weight[rows])
                gate.bias.copy_(supernet.gates.bias[rows])
        derived.towers.load_state_dict(supernet.towers.state_dict())
    return derived
