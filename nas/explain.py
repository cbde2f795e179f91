"""What the derived model uses: each task's average gate weight per last-layer expert on validation data."""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist
from torchrec.distributed.model_parallel import DistributedModelParallel

from torchrec_automtl.datasets.parquet_reader import BatchReader
from torchrec_automtl.pipelines.process_group import DistributedContext


@torch.no_grad()
def average_task_gate_weights(model: DistributedModelParallel, reader: BatchReader, ctx: DistributedContext) -> np.ndarray:
    """``[T, n]``: mean over every real validation row (all ranks) of each task gate's weight per expert.

    ``model`` wraps a ``MultiTaskTrain`` whose dense arch is a ``DerivedMultiTaskArch``.
    """
    network = model.module.model
    was_training = model.training
    model.eval()
    total, rows = None, torch.zeros((), device=ctx.device)
    for batch in reader.epoch():
        batch = batch.to(ctx.device)
        weights = network.dense_arch.task_gate_weights(network.pooled_embeddings(batch), batch.dense_features)  # [B, T, n]
        mask = batch.mask.to(weights.dtype)[:, None, None]
        summed = (weights * mask).sum(dim=0)
        total = summed if total is None else total + summed
        rows += batch.mask.sum()
    model.train(was_training)
    if dist.is_initialized() and ctx.world_size > 1:
        dist.all_reduce(total)
        dist.all_reduce(rows)
    return (total / rows.clamp_min(1)).cpu().numpy()
