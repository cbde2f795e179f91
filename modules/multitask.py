"""The multi-task model: sparse arch + dense arch, and the train wrapper returning the multi-task loss."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchrec.modules.embedding_modules import EmbeddingBagCollection

from torchrec_automtl.datasets.batch import Batch
from torchrec_automtl.datasets.schema import Schema, TaskSpec
from torchrec_automtl.modules.embeddings import build_embedding_bag_collection
from torchrec_automtl.modules.registry import ModelConfig, model_entry


# The loss a train module differentiates: ``sum`` is sum_t w_t L_t; ``balanced`` is sum_t w_t log(L_t), whose
# gradient weighs each task's loss gradient by w_t / L_t, so every task's *relative* improvement counts alike
# whatever its positive rate (a task at 6% positives has a BCE about a third of one at 43%).
OBJECTIVES = ("sum", "balanced")


class MultiTaskModel(nn.Module):
    """``Batch -> logits [B, num_tasks]``: pooled embeddings ``[B, S, E]`` and dense features feed the dense arch.

    The EBC stays a direct child so DistributedModelParallel shards it and TrainPipelineSparseDist
    can trace the model; the dense arch is free to hold any control flow.
    """

    def __init__(self, sparse_arch: EmbeddingBagCollection | None, dense_arch: nn.Module, sparse_names: list[str], embedding_dim: int) -> None:
        super().__init__()
        self.sparse_arch = sparse_arch
        self.dense_arch = dense_arch
        self.sparse_names = list(sparse_names)
        self.embedding_dim = embedding_dim
        # True: no gradient reaches the tables, so a fused (in-backward) optimizer leaves them as they are.
        self.freeze_embeddings = False

    def pooled_embeddings(self, batch: Batch) -> torch.Tensor:
        """Pooled embeddings ``[B, S, E]`` in schema order (``[B, 0, E]`` without sparse fields)."""
        if self.sparse_arch is None:
            return batch.dense_features.new_zeros(batch.dense_features.shape[0], 0, self.embedding_dim)
        # Pick fields by name: a sharded EBC orders its output keys by shard placement, not by schema.
        pooled = self.sparse_arch(batch.sparse_features).to_dict()
        return torch.stack([pooled[name] for name in self.sparse_names], dim=1)

    def forward(self, batch: Batch) -> torch.Tensor:
        embeddings = self.pooled_embeddings(batch)
        if self.freeze_embeddings:
            embeddings = embeddings.detach()
        return self.dense_arch(embeddings, batch.dense_features)


def per_row_losses(logits: torch.Tensor, labels: torch.Tensor, is_binary: torch.Tensor) -> torch.Tensor:
    """Per-row, per-task loss ``[B, T]``: BCE with logits where ``is_binary`` ``[T]``, squared error elsewhere."""
    bce = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
    return torch.where(is_binary, bce, (logits - labels) ** 2)


class MultiTaskTrain(nn.Module):
    """Wraps a model with the multi-task loss, in TorchRec's train-module shape.

    ``forward(batch)`` returns ``(loss, (loss.detach(), logits.detach(), labels))``. The loss is the
    weighted mean of per-task losses (BCE with logits for binary tasks, MSE for regression), each
    averaged over the batch's real rows (``batch.mask``); equal weights by default, as in paper 001.
    ``objective`` (``OBJECTIVES``) sets the differentiated loss; the reported one is always that mean.
    """

    def __init__(self, model: nn.Module, tasks: Sequence[TaskSpec], task_weights: Sequence[float] | None = None) -> None:
        super().__init__()
        weights = torch.ones(len(tasks)) if task_weights is None else torch.tensor(task_weights, dtype=torch.float32)
        if weights.shape != (len(tasks),) or bool((weights < 0).any()) or float(weights.sum()) <= 0:
            raise ValueError(f"task weights must be {len(tasks)} non-negative numbers with a positive sum, got {task_weights}")
        self.model = model
        self.register_buffer("task_weights", weights / weights.sum(), persistent=False)
        self.register_buffer("is_binary", torch.tensor([t.type == "binary" for t in tasks]), persistent=False)
        self.objective = "sum"  # the loss differentiated (see ``OBJECTIVES``); the reported loss is always the weighted mean

    def task_losses(self, logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Per-task mean loss ``[num_tasks]`` over the rows where ``mask`` is True."""
        per_row = per_row_losses(logits, labels, self.is_binary)  # [B, T]
        weight = mask.to(per_row.dtype).unsqueeze(1)
        return (per_row * weight).sum(0) / weight.sum().clamp(min=1.0)

    def forward(self, batch: Batch) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        logits = self.model(batch)
        losses = self.task_losses(logits, batch.labels, batch.mask)
        loss = (losses * self.task_weights).sum()
        objective = loss if self.objective == "sum" else (torch.log(losses.clamp(min=1e-12)) * self.task_weights).sum()
        return objective, (loss.detach(), logits.detach(), batch.labels)


def build_multitask_model(config: ModelConfig, schema: Schema, device: torch.device | None = None,
                          dense_arch: nn.Module | None = None) -> MultiTaskModel:
    """The registered dense arch ``config.name`` (or ``dense_arch``, built already) over an EBC built
    from ``schema`` on ``device``."""
    dense_arch = dense_arch if dense_arch is not None else model_entry(config.name).build(config, schema)
    sparse_arch = (
        build_embedding_bag_collection(schema, config.embedding_dim, device, config.multi_hot_pooling) if schema.sparse else None
    )
    return MultiTaskModel(sparse_arch, dense_arch, schema.sparse_names, config.embedding_dim)
