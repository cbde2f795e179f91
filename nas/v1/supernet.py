"""Paper 000's supernet (section 3.3) as a dense arch over pooled embeddings and dense features.

``forward(embeddings [B, S, E], dense [B, D]) -> logits [B, T]``:

* fields: the S pooled embeddings and the D dense features, each linearly transformed to E
  (section 4.1.4), ``[B, S + D, E]``;
* one feature-interaction choice block over the fields (softmax(alpha_interaction) over its ops),
  ``[B, width]``, shared by every expert;
* N heterogeneous experts, each ``num_blocks`` choice blocks width -> width (softmax(alpha_experts)
  per expert and block; one alpha per block position under ``homogeneous_experts``), with the
  DARTS- auxiliary skip ``auxiliary_skip * x`` around every block;
* expert selection: task k's tower reads ``sum_i softmax(beta_k)_i E_i`` (or, without
  ``expert_selection``, a gating network's softmax over the experts, as MMoE).

``discretize()`` fixes the argmax op of every block and the top-c experts of every task in buffers;
afterwards the forward pass is the discretized network (one op per block, softmax(beta) renormalized
over the kept experts), which ``nas.v1.derived`` rebuilds exactly.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from torchrec_automtl.modules.mlp import TaskTowers
from torchrec_automtl.nas.supernet import ExpertLayer
from torchrec_automtl.nas.v1.interaction import build_interaction
from torchrec_automtl.nas.v1.space import V1SearchSpaceConfig


def negative_jensen_shannon(probabilities: torch.Tensor) -> torch.Tensor:
    """Paper 000's eq. 2 for K distributions ``[K, N]``: ``sum_i m_i log m_i - mean_k sum_i p_i log p_i``.

    It is minus the generalized JS divergence (the entropy of the mean minus the mean entropy): 0 when
    every task has the same distribution, ``-log K`` (its minimum) for disjoint one-hot ones.
    """
    mean = probabilities.mean(dim=0)
    return _plogp(mean).sum() - _plogp(probabilities).sum(dim=1).mean()


def _plogp(p: torch.Tensor) -> torch.Tensor:
    return torch.where(p > 0, p * p.clamp_min(1e-30).log(), torch.zeros_like(p))


class FieldEmbeddings(nn.Module):
    """``[B, S, E]`` embeddings and ``[B, D]`` dense features -> ``[B, S + D, E]``: each dense feature
    linearly transformed to E dimensions (its own weight and bias vector)."""

    def __init__(self, num_dense: int, embedding_dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_dense, embedding_dim).uniform_(-1.0, 1.0))  # nn.Linear(1, E)'s bound
        self.bias = nn.Parameter(torch.empty(num_dense, embedding_dim).uniform_(-1.0, 1.0))

    def forward(self, embeddings: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        return torch.cat([embeddings, dense.unsqueeze(2) * self.weight + self.bias], dim=1)


class V1Supernet(nn.Module):
    """Paper 000's supernet; ``architecture_parameters()`` (alpha, stepped on architecture batches),
    ``selection_parameters()`` (beta, stepped on training batches) and ``weight_parameters()``."""

    def __init__(self, config: V1SearchSpaceConfig, sparse_names: Sequence[str], dense_names: Sequence[str],
                 task_names: Sequence[str]) -> None:
        super().__init__()
        self.config = config
        self.sparse_names, self.dense_names, self.task_names = list(sparse_names), list(dense_names), list(task_names)
        n, T, E = config.num_experts, len(task_names), config.embedding_dim
        num_fields = len(sparse_names) + len(dense_names)
        self.fields = FieldEmbeddings(len(dense_names), E)
        self.interactions = nn.ModuleList(build_interaction(name, num_fields, E, config.width) for name in config.searched_interactions)
        self.experts = ExpertLayer(config.expert_operations, n, config.width, config.num_blocks, config.mlp_batchnorm)
        self.alpha_interaction = nn.Parameter(torch.zeros(len(self.interactions)))
        self.alpha_experts = nn.Parameter(torch.zeros(1 if config.homogeneous_experts else n, config.num_blocks,
                                                      len(config.expert_operations)))
        self.beta = nn.Parameter(torch.zeros(T, n)) if config.expert_selection else None
        self.gates = None if config.expert_selection else nn.Linear(num_fields * E, T * n)
        self.towers = TaskTowers(config.width, T, config.tower_hidden)
        self.register_buffer("discretized", torch.zeros((), dtype=torch.bool))
        self.register_buffer("interaction_choice", torch.zeros((), dtype=torch.long))
        self.register_buffer("block_choice", torch.zeros(n, config.num_blocks, dtype=torch.long))
        self.register_buffer("expert_kept", torch.ones(T, n, dtype=torch.bool))
        self.auxiliary_skip = 0.0  # the DARTS- weight, set by the search each epoch (0 once it ends)

    def architecture_parameters(self) -> list[nn.Parameter]:
        return [self.alpha_interaction, self.alpha_experts]

    def selection_parameters(self) -> list[nn.Parameter]:
        return [self.beta] if self.beta is not None else []

    def weight_parameters(self) -> list[nn.Parameter]:
        apart = {id(p) for p in self.architecture_parameters() + self.selection_parameters()}
        return [p for p in self.parameters() if id(p) not in apart]

    def interaction_weights(self) -> torch.Tensor:
        """``[M_I]``: softmax(alpha_interaction), one-hot once discretized."""
        if bool(self.discretized):
            return F.one_hot(self.interaction_choice, len(self.interactions)).to(self.alpha_interaction.dtype)
        return self.alpha_interaction.softmax(dim=0)

    def block_weights(self) -> torch.Tensor:
        """``[N, K, M]``: every expert block's op weights, one-hot once discretized."""
        if bool(self.discretized):
            return F.one_hot(self.block_choice, self.alpha_experts.shape[-1]).to(self.alpha_experts.dtype)
        return self.alpha_experts.softmax(dim=-1).expand(self.config.num_experts, -1, -1)

    def selection_weights(self) -> torch.Tensor:
        """``[T, N]``: softmax(beta) per task, renormalized over its kept experts once discretized."""
        return self.beta.masked_fill(~self.expert_kept, float("-inf")).softmax(dim=-1)

    def selection_loss(self) -> torch.Tensor:
        """The JSD auxiliary loss (eq. 2) of the tasks' expert-selection distributions."""
        if self.beta is None:
            return self.alpha_experts.new_zeros(())
        return negative_jensen_shannon(self.beta.softmax(dim=-1))

    @torch.no_grad()
    def discretize(self) -> None:
        """The argmax op of the interaction and of every block; the top-c experts of every task."""
        self.interaction_choice.copy_(self.alpha_interaction.argmax())
        self.block_choice.copy_(self.alpha_experts.argmax(dim=-1).expand_as(self.block_choice))
        if self.beta is not None:
            kept = torch.zeros_like(self.expert_kept)
            kept.scatter_(1, self.beta.topk(self.config.top_experts, dim=1).indices, True)
            self.expert_kept.copy_(kept)
        self.discretized.fill_(True)

    def forward(self, embeddings: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        fields = self.fields(embeddings, dense)
        weights = self.interaction_weights()
        used = (weights > 0).tolist()  # one device sync per step, not one per op
        shared = sum(weights[m] * op(fields) for m, op in enumerate(self.interactions) if used[m])
        experts = shared.unsqueeze(0).expand(self.config.num_experts, -1, -1)
        hidden = self.experts(experts, self.block_weights(), self.auxiliary_skip)  # [N, B, width]
        if self.gates is None:
            task_inputs = torch.einsum("tn,nbw->btw", self.selection_weights(), hidden)
        else:
            gate = self.gates(fields.flatten(1)).view(fields.shape[0], len(self.task_names), -1).softmax(dim=-1)
            task_inputs = torch.einsum("btn,nbw->btw", gate, hidden)
        return self.towers(task_inputs)
