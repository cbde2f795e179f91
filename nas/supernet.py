"""The DESAN supernet (paper 001, section 3.1) as a dense arch over pooled embeddings and dense features.

Structure, for L MoE layers of n experts and T tasks:

* feature selection: every layer-1 expert and every gate has its own keep-logit beta per input
  feature (each sparse field and each dense feature). Its input is the concatenation of the kept
  single features and the FM bi-interaction vector of the kept sparse fields.
* layer 1: each expert projects its input to ``block_width`` and applies ``num_blocks``
  mixture-of-operations blocks; each block mixes the candidate ops by softmax(alpha) (eq. 2).
* layer l > 1: expert j's input is a gated mixture of the layer l-1 experts that its connection
  betas keep (eq. 1); the gate reads its own selected features.
* tasks: task t's tower reads a gated mixture of the last layer's kept experts.

Discretization never swaps modules (DDP would lose track of them): decisions live in buffers
(``*_decided`` / ``*_kept`` / ``block_choice``) and the forward pass honours them, skipping ops that no
expert of a layer uses any more.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from torchrec_automtl.modules.mlp import TaskTowers
from torchrec_automtl.nas.operations import BatchedLinear, build_operation
from torchrec_automtl.nas.search_space import SearchSpaceConfig, expert_name, gate_name, task_gate_name
from torchrec_automtl.nas.selection import bi_interaction, selection_mask


class MixtureOfOperations(nn.Module):
    """One block position of every expert in a layer: ``[n, B, width] -> [n, B, width]``."""

    def __init__(self, operations: Sequence[str], num_experts: int, width: int, mlp_batchnorm: bool = False) -> None:
        super().__init__()
        self.operations = nn.ModuleList(build_operation(name, num_experts, width, mlp_batchnorm) for name in operations)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """``weights`` ``[n, M]``: each expert's mixing weights over the ops (one-hot once decided).

        Each op runs only for the experts that weigh it (all of them while their block is undecided;
        a decided expert runs its chosen op alone), so discretizing makes the supernet cheaper.
        """
        out = None
        users = (weights > 0).T.tolist()  # [M][n]
        for m, operation in enumerate(self.operations):
            experts = [i for i, uses in enumerate(users[m]) if uses]
            if len(experts) == len(users[m]):
                term = weights[:, m, None, None] * operation(x)
                out = term if out is None else out + term
            elif experts:
                index = torch.tensor(experts, device=x.device)
                term = weights[index, m, None, None] * operation(x[index], index)
                out = (torch.zeros_like(x) if out is None else out).index_add(0, index, term)
        return out


class ExpertLayer(nn.Module):
    """The n experts of one MoE layer, each a stack of mixture-of-operations blocks."""

    def __init__(self, operations: Sequence[str], num_experts: int, width: int, num_blocks: int, mlp_batchnorm: bool,
                 in_features: int | None = None) -> None:
        super().__init__()
        # Layer 1 projects the selected features to the block width; higher layers already have it.
        self.projection = BatchedLinear(num_experts, in_features, width) if in_features is not None else None
        self.blocks = nn.ModuleList(
            MixtureOfOperations(operations, num_experts, width, mlp_batchnorm) for _ in range(num_blocks)
        )

    def forward(self, x: torch.Tensor, block_weights: torch.Tensor, auxiliary_skip: float = 0.0) -> torch.Tensor:
        """``x`` ``[n, B, width]``, ``block_weights`` ``[n, K, M]`` -> ``[n, B, width]``.

        Layer 1's ``projection`` is applied by the supernet, which folds the feature masks into it.
        ``auxiliary_skip`` > 0 adds ``auxiliary_skip * x`` around every block (DARTS-).
        """
        for k, block in enumerate(self.blocks):
            out = block(x, block_weights[:, k])
            x = out + auxiliary_skip * x if auxiliary_skip else out
        return x


class DesanSupernet(nn.Module):
    """The supernet: ``forward(embeddings [B, S, E], dense [B, D]) -> logits [B, T]``.

    Architecture parameters: ``alpha`` ``[L, n, K, M]`` (ops of every block), ``feature_beta``
    ``[C, S + D]`` (features of every consumer: layer-1 experts, then gates) and ``connection_beta``
    ``[G, n]`` (lower-layer experts of every gate). ``architecture_parameters()`` and
    ``weight_parameters()`` split them from the supernet weights w.
    """

    def __init__(self, config: SearchSpaceConfig, sparse_names: Sequence[str], dense_names: Sequence[str], task_names: Sequence[str]) -> None:
        super().__init__()
        self.config = config
        self.sparse_names, self.dense_names, self.task_names = list(sparse_names), list(dense_names), list(task_names)
        n, L, T = config.num_experts, config.num_layers, len(task_names)
        S, D, E = len(sparse_names), len(dense_names), config.embedding_dim
        M, K = len(config.candidate_operations), config.num_blocks
        self.gate_names = [gate_name(layer, j) for layer in range(1, L) for j in range(n)] + [task_gate_name(t) for t in task_names]
        self.consumer_names = [expert_name(0, j) for j in range(n)] + self.gate_names
        C, G = len(self.consumer_names), len(self.gate_names)
        self.input_features = S * E + D + (E if S else 0)

        self.alpha = nn.Parameter(torch.zeros(L, n, K, M))
        self.feature_beta = nn.Parameter(torch.full((C, S + D), float(config.beta_init)))
        self.connection_beta = nn.Parameter(torch.full((G, n), float(config.beta_init)))
        self.register_buffer("block_decided", torch.zeros(L, n, K, dtype=torch.bool))
        self.register_buffer("block_choice", torch.zeros(L, n, K, dtype=torch.long))
        self.register_buffer("feature_decided", torch.zeros(C, S + D, dtype=torch.bool))
        self.register_buffer("feature_kept", torch.zeros(C, S + D, dtype=torch.bool))
        self.register_buffer("connection_decided", torch.zeros(G, n, dtype=torch.bool))
        self.register_buffer("connection_kept", torch.zeros(G, n, dtype=torch.bool))
        self.register_buffer("operation_pruned", torch.zeros(L, n, K, M, dtype=torch.bool))  # search.operation_pruning

        # Kinds of selection the space does not search are decided "keep" from the start (w/o FS, Full.Shr).
        if not config.feature_selection:
            self.feature_decided.fill_(True)
            self.feature_kept.fill_(True)
        if not config.connection_selection:
            self.connection_decided.fill_(True)
            self.connection_kept.fill_(True)
        # Set by the search each epoch: the DARTS- auxiliary skip weight (0 once the search ends), the
        # Gumbel-softmax temperature of SNAS (None: plain softmax(alpha)) and single-path sampling
        # (search.relaxation=sampled); the last two apply in training mode only.
        self.auxiliary_skip = 0.0
        self.gumbel_temperature: float | None = None
        self.sample_paths = False

        self.layers = nn.ModuleList(
            ExpertLayer(config.candidate_operations, n, config.block_width, K, config.mlp_batchnorm,
                        self.input_features if layer == 0 else None)
            for layer in range(L)
        )
        self.gates = BatchedLinear(G, self.input_features, n)
        self.towers = TaskTowers(config.block_width, T, config.tower_hidden)

    def architecture_parameters(self) -> list[nn.Parameter]:
        return [self.alpha, self.feature_beta, self.connection_beta]

    def weight_parameters(self) -> list[nn.Parameter]:
        architecture = {id(p) for p in self.architecture_parameters()}
        return [p for p in self.parameters() if id(p) not in architecture]

    def mixing_logits(self) -> torch.Tensor:
        """alpha with the pruned ops of every block at -inf: they get weight 0 and no gradient."""
        return self.alpha.masked_fill(self.operation_pruned, float("-inf"))

    def block_weights(self) -> torch.Tensor:
        """Mixing weights ``[L, n, K, M]``: softmax over the unpruned ops' alpha, one-hot where a block is decided."""
        chosen = F.one_hot(self.block_choice, self.alpha.shape[-1]).to(self.alpha.dtype)
        return torch.where(self.block_decided.unsqueeze(-1), chosen, self.mixing_logits().softmax(dim=-1))

    def training_block_weights(self) -> torch.Tensor:
        """The block weights of a training step: a sampled single path (``sample_paths``), Gumbel-softmax
        samples of alpha under SNAS, else ``block_weights``. Decided blocks stay one-hot."""
        if self.sample_paths:
            relaxed = self.sampled_path_weights()
        elif self.gumbel_temperature is not None:
            relaxed = F.gumbel_softmax(self.mixing_logits(), tau=self.gumbel_temperature, dim=-1)
        else:
            return self.block_weights()
        chosen = F.one_hot(self.block_choice, self.alpha.shape[-1]).to(self.alpha.dtype)
        return torch.where(self.block_decided.unsqueeze(-1), chosen, relaxed)

    def sampled_path_weights(self) -> torch.Tensor:
        """One op per block position of each layer, drawn uniformly and shared by the layer's experts.

        Expert i's weight of the drawn op m is ``1 + p_im - stop_gradient(p_im)`` with p_i = softmax(alpha_i):
        exactly 1 in the forward pass (the block runs op m alone, and ``MixtureOfOperations`` skips every
        other op, so a step costs one op per block position), while alpha_i receives DARTS's gradient of
        op m's term. Uniform paths train every op's weights equally often (single-path one-shot, Guo et
        al. 2020), the straight-through weight is GDAS's (Dong & Yang, 2019). Sharing the draw across a
        layer's experts is what makes it cheap: the batched op runs once for all of them.
        """
        L, n, K, M = self.alpha.shape
        drawn = torch.randint(M, (L, 1, K, 1), device=self.alpha.device).expand(L, n, K, 1)
        probability = self.alpha.softmax(dim=-1).gather(-1, drawn)
        straight_through = (probability - probability.detach()) + 1.0
        return torch.zeros_like(self.alpha).scatter(-1, drawn, straight_through)

    def _selection_mask(self, beta: torch.Tensor, decided: torch.Tensor, kept: torch.Tensor, batch_size: int) -> torch.Tensor:
        sampling = self.config.selection_sampling
        return selection_mask(beta, decided, kept, self.training, batch_size if sampling == "example" else 1,
                              all_ones=sampling == "none")

    def feature_mask(self, batch_size: int) -> torch.Tensor:
        """Keep-mask ``[C, B or 1, S + D]`` of every consumer's input features (sampled in training)."""
        return self._selection_mask(self.feature_beta, self.feature_decided, self.feature_kept, batch_size)

    def connection_mask(self, batch_size: int) -> torch.Tensor:
        """Keep-mask ``[G, B or 1, n]`` of every gate's lower-layer experts (sampled in training)."""
        return self._selection_mask(self.connection_beta, self.connection_decided, self.connection_kept, batch_size)

    def consumer_projections(self, embeddings: torch.Tensor, dense: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Layer-1 expert inputs ``[n, B, width]`` and gate logits ``[G, B, n]`` from the consumers' selected features.

        Consumer c reads its kept embeddings, its kept dense features and the FM vector of its kept
        fields; ``mask`` is ``[C, B or 1, S + D]``.
        """
        S, E, n = len(self.sparse_names), self.config.embedding_dim, self.config.num_experts
        sparse_mask, dense_mask = mask[..., :S], mask[..., S:]
        shared, column_mask, tail = dense, dense_mask, None
        if S:
            shared = torch.cat([embeddings.flatten(1), dense], dim=1)
            column_mask = torch.cat([sparse_mask.repeat_interleave(E, dim=2), dense_mask], dim=2)
            tail = bi_interaction(embeddings, sparse_mask)
        experts = self.layers[0].projection.forward_masked(shared, column_mask[:n], tail[:n] if S else None)
        gates = self.gates.forward_masked(shared, column_mask[n:], tail[n:] if S else None)
        return experts, gates

    def gate_weights(self, gate_logits: torch.Tensor, connection_mask: torch.Tensor) -> torch.Tensor:
        """Mixing weights ``[G, B, n]`` of every gate over its lower-layer experts (``connection_mask`` ``[G, B or 1, n]``)."""
        probabilities = gate_logits.softmax(dim=-1) * connection_mask
        if self.config.gate_normalization == "selected":
            probabilities = probabilities / probabilities.sum(dim=-1, keepdim=True).clamp_min(1e-12)
        return probabilities

    def forward(self, embeddings: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        n, batch_size = self.config.num_experts, dense.shape[0]
        projected, gate_logits = self.consumer_projections(embeddings, dense, self.feature_mask(batch_size))
        gates = self.gate_weights(gate_logits, self.connection_mask(batch_size))  # [G, B, n]
        block_weights = self.training_block_weights() if self.training else self.block_weights()
        skip = self.auxiliary_skip
        hidden = self.layers[0](projected, block_weights[0], skip)  # [n, B, width]
        for layer in range(1, len(self.layers)):
            mixed = torch.einsum("jbi,ibw->jbw", gates[(layer - 1) * n : layer * n], hidden)
            hidden = self.layers[layer](mixed, block_weights[layer], skip)
        task_inputs = torch.einsum("tbi,ibw->btw", gates[-len(self.task_names):], hidden)  # [B, T, width]
        return self.towers(task_inputs)
