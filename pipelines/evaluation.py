"""Evaluation: predictions of every rank gathered, padding dropped, metrics computed exactly."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from torchrec_automtl.datasets.parquet_reader import BatchReader
from torchrec_automtl.datasets.schema import TaskSpec
from torchrec_automtl.pipelines.metrics import gather_rows, task_metrics
from torchrec_automtl.pipelines.process_group import DistributedContext


@dataclass
class Predictions:
    """Every real row of a split, in file order: ``scores`` and ``labels`` ``[N, T]``, ``groups`` ``[N]``."""

    scores: np.ndarray
    labels: np.ndarray
    groups: np.ndarray


def to_scores(logits: torch.Tensor, tasks: Sequence[TaskSpec]) -> torch.Tensor:
    """Probabilities for binary tasks, raw values for regression tasks; ``[B, T]``."""
    is_binary = torch.tensor([t.type == "binary" for t in tasks], device=logits.device)
    return torch.where(is_binary, torch.sigmoid(logits), logits)


@torch.no_grad()
def predict(
    model: nn.Module, reader: BatchReader, tasks: Sequence[TaskSpec], ctx: DistributedContext, desc: str = "eval", progress: bool = True
) -> Predictions:
    """Run ``model`` (a train module returning ``(loss, (loss, logits, labels))``) over ``reader``'s split.

    Every rank runs the same number of equally sized batches, so the gather needs no padding logic.
    """
    was_training = model.training
    model.eval()
    scores, labels, masks, groups = [], [], [], []
    for batch in tqdm(reader.epoch(), total=len(reader), desc=desc, unit="batch", disable=not (progress and ctx.is_main), leave=False):
        batch = batch.to(ctx.device, non_blocking=True)
        _, (_, logits, batch_labels) = model(batch)
        scores.append(to_scores(logits.float(), tasks))
        labels.append(batch_labels)
        masks.append(batch.mask)
        groups.append(batch.group_ids)
    model.train(was_training)
    mask = gather_rows(torch.cat(masks)).cpu().numpy()
    return Predictions(
        scores=gather_rows(torch.cat(scores)).cpu().numpy()[mask],
        labels=gather_rows(torch.cat(labels)).cpu().numpy()[mask],
        groups=gather_rows(torch.cat(groups)).cpu().numpy()[mask],
    )


def evaluate(
    model: nn.Module,
    reader: BatchReader,
    tasks: Sequence[TaskSpec],
    ctx: DistributedContext,
    with_gauc: bool = False,
    desc: str = "eval",
    progress: bool = True,
) -> dict:
    """Metrics of ``model`` on ``reader``'s whole split; identical on every rank."""
    predictions = predict(model, reader, tasks, ctx, desc, progress)
    return task_metrics(predictions.scores, predictions.labels, tasks, predictions.groups if with_gauc else None)
