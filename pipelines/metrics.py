"""Exact evaluation metrics over all ranks' predictions: AUC, GAUC, logloss, MSE."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.distributed as dist

from torchrec_automtl.common.ranking import auc
from torchrec_automtl.datasets.schema import TaskSpec


def grouped_auc(scores: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> float:
    """GAUC: per-group AUC weighted by group size, over groups holding both classes (NaN if none)."""
    labels = (np.asarray(labels) > 0.5).astype(np.float64)
    order = np.lexsort((scores, groups))
    groups, scores, labels = np.asarray(groups)[order], np.asarray(scores)[order], labels[order]
    n = len(scores)
    if n == 0:
        return float("nan")
    new_group = np.r_[True, groups[1:] != groups[:-1]]
    new_tie = new_group | np.r_[True, scores[1:] != scores[:-1]]
    tie_id = np.cumsum(new_tie) - 1
    tie_start = np.flatnonzero(new_tie)
    tie_end = np.r_[tie_start[1:], n]
    average_position = (tie_start + tie_end - 1) / 2.0  # 0-based, averaged over ties
    group_id = np.cumsum(new_group) - 1
    group_start = np.flatnonzero(new_group)
    rank_in_group = average_position[tie_id] - group_start[group_id] + 1  # 1-based
    size = np.bincount(group_id).astype(np.float64)
    positives = np.bincount(group_id, weights=labels)
    positive_rank_sum = np.bincount(group_id, weights=rank_in_group * labels)
    both = (positives > 0) & (positives < size)
    if not both.any():
        return float("nan")
    negatives = size - positives
    group_auc = (positive_rank_sum[both] - positives[both] * (positives[both] + 1) / 2) / (positives[both] * negatives[both])
    return float((group_auc * size[both]).sum() / size[both].sum())


def logloss(probabilities: np.ndarray, labels: np.ndarray, eps: float = 1e-7) -> float:
    p = np.clip(np.asarray(probabilities, dtype=np.float64), eps, 1 - eps)
    y = np.asarray(labels, dtype=np.float64)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def mse(predictions: np.ndarray, targets: np.ndarray) -> float:
    return float(np.mean((np.asarray(predictions, np.float64) - np.asarray(targets, np.float64)) ** 2))


def task_metrics(
    predictions: np.ndarray, labels: np.ndarray, tasks: Sequence[TaskSpec], groups: np.ndarray | None = None
) -> dict:
    """Metrics per task and averaged over tasks.

    ``predictions`` ``[N, T]`` are probabilities for binary tasks and values for regression tasks.
    Returns ``{task: {auc, logloss[, gauc]} | {mse}, "avg_auc", "avg_logloss"[, "avg_gauc"], "avg_mse"}``
    (averages only over the tasks that have the metric).
    """
    result: dict = {}
    for t, task in enumerate(tasks):
        if task.type == "binary":
            scores = {"auc": auc(predictions[:, t], labels[:, t]), "logloss": logloss(predictions[:, t], labels[:, t])}
            if groups is not None:
                scores["gauc"] = grouped_auc(predictions[:, t], labels[:, t], groups)
        else:
            scores = {"mse": mse(predictions[:, t], labels[:, t])}
        result[task.name] = scores
    for metric in ("auc", "gauc", "logloss", "mse"):
        values = [result[task.name][metric] for task in tasks if metric in result[task.name]]
        if values:
            result[f"avg_{metric}"] = float(np.mean(values))
    result["rows"] = int(len(labels))
    return result


def gather_rows(local: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's ``local`` tensor (same shape on each rank) in rank order."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return local
    parts = [torch.empty_like(local) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, local)
    return torch.cat(parts)
