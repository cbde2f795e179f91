"""Ranking metrics shared by the data generators (oracle AUC) and the training metrics."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC by the rank-sum statistic, ties counted as half; NaN when only one class is present."""
    labels = np.asarray(labels) > 0.5
    positives = int(labels.sum())
    negatives = len(labels) - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    ranks = rankdata(scores)  # average ranks for ties, 1-based
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))
