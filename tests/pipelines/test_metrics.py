import numpy as np
import pytest

from torchrec_automtl.datasets.schema import TaskSpec
from torchrec_automtl.common.ranking import auc
from torchrec_automtl.pipelines.metrics import grouped_auc, task_metrics


def _pairwise_auc(scores, labels):
    pos, neg = scores[labels == 1], scores[labels == 0]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return wins / (len(pos) * len(neg))


def test_auc_matches_pairwise_definition_with_ties():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, 300) / 4.0  # many ties
    labels = (rng.random(300) < 0.3).astype(float)
    assert auc(scores, labels) == pytest.approx(_pairwise_auc(scores, labels))
    assert auc(np.array([0.1, 0.9]), np.array([0.0, 1.0])) == 1.0
    assert np.isnan(auc(np.array([0.1, 0.2]), np.array([1.0, 1.0])))


def test_grouped_auc_is_size_weighted_mean_of_group_aucs():
    rng = np.random.default_rng(1)
    groups = rng.integers(0, 12, 500)
    scores = rng.integers(0, 6, 500) / 5.0
    labels = (rng.random(500) < 0.4).astype(float)
    labels[groups == 3] = 1.0  # a one-class group is skipped
    expected_num, expected_den = 0.0, 0.0
    for g in np.unique(groups):
        in_group = groups == g
        if 0 < labels[in_group].sum() < in_group.sum():
            expected_num += in_group.sum() * _pairwise_auc(scores[in_group], labels[in_group])
            expected_den += in_group.sum()
    assert grouped_auc(scores, labels, groups) == pytest.approx(expected_num / expected_den)


def test_logloss_and_task_metrics_layout():
    predictions = np.array([[0.9, 1.5], [0.2, -0.5], [0.6, 0.0]])
    labels = np.array([[1.0, 1.0], [0.0, 0.0], [0.0, 0.5]])
    metrics = task_metrics(predictions, labels, [TaskSpec("click"), TaskSpec("time", "regression")])
    expected_logloss = -np.mean([np.log(0.9), np.log(0.8), np.log(0.4)])
    assert metrics["click"]["logloss"] == pytest.approx(expected_logloss)
    assert metrics["time"]["mse"] == pytest.approx(np.mean([0.25, 0.25, 0.25]))
    assert metrics["avg_auc"] == metrics["click"]["auc"] == 1.0
    assert metrics["rows"] == 3 and "gauc" not in metrics["click"]
