"""Distributed evaluation gathers every rank's rows: its AUC is the one-process AUC, not a mean of rank AUCs."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from torchrec_automtl.datasets.parquet_reader import BatchReader, ParquetSplit
from torchrec_automtl.datasets.schema import Schema
from torchrec_automtl.pipelines.evaluation import evaluate, predict
from torchrec_automtl.common.ranking import auc
from torchrec_automtl.pipelines.metrics import task_metrics
from torchrec_automtl.pipelines.process_group import destroy_distributed, init_distributed
from tests.conftest import write_indexed_dataset
from tests.distributed.spawn import run_on_ranks


EVAL_BATCH = 50  # 301 rows are 150 + 151 on 2 ranks: 3 batches of rank 0's own, 4 of rank 1's


class _FixedScorer(nn.Module):
    """Logits from the dense feature (row id / 10) only: the same function of the row on every rank.

    Task a's scores are informative within a rank but shifted up by 3 for rows >= 151 (rank 1), so
    the pooled AUC differs clearly from the mean of the two ranks' AUCs.
    """

    def forward(self, batch):
        x = batch.dense_features[:, 0]
        row = torch.round(x * 10)
        logits = torch.stack([torch.sin(7 * x) + 1.5 * (row % 2) + 3.0 * (row >= 151), torch.cos(3 * x)], dim=1)
        return logits.sum(), (logits.sum(), logits, batch.labels)


def _evaluate_on_rank(rank: int, folder: str) -> dict:
    ctx = init_distributed("cpu")
    try:
        schema = Schema.load(folder)
        reader = BatchReader(ParquetSplit.open(folder, "valid", schema), batch_size=EVAL_BATCH, rank=rank, world_size=ctx.world_size)
        metrics = evaluate(_FixedScorer(), reader, schema.tasks, ctx, with_gauc=True, progress=False)
        local = BatchReader(ParquetSplit.open(folder, "valid", schema), batch_size=EVAL_BATCH, rank=rank, world_size=ctx.world_size)
        rows = [b for b in local.epoch()]
        scores = torch.sigmoid(torch.cat([_FixedScorer()(b)[1][1][b.mask] for b in rows])).numpy()
        labels = torch.cat([b.labels[b.mask] for b in rows]).numpy()
        return {"metrics": metrics, "local_auc": auc(scores[:, 0], labels[:, 0])}
    finally:
        destroy_distributed()


@pytest.mark.distributed
def test_distributed_auc_equals_single_process_auc_of_gathered_predictions(tmp_path):
    folder = tmp_path / "data"
    schema = write_indexed_dataset(folder, {"train": 10, "valid": 301})
    results = run_on_ranks(_evaluate_on_rank, 2, tmp_path / "out", str(folder))
    assert results[0]["metrics"] == results[1]["metrics"]  # every rank agrees

    reader = BatchReader(ParquetSplit.open(folder, "valid", schema), batch_size=1000)
    batches = list(reader.epoch())
    scores = torch.sigmoid(torch.cat([_FixedScorer()(b)[1][1][b.mask] for b in batches])).numpy()
    labels = torch.cat([b.labels[b.mask] for b in batches]).numpy()
    groups = torch.cat([b.group_ids[b.mask] for b in batches]).numpy()
    single = task_metrics(scores, labels, schema.tasks, groups)
    distributed = results[0]["metrics"]
    assert math.ceil(150 / EVAL_BATCH) != math.ceil(151 / EVAL_BATCH)  # rank 0 must take an all-padding step
    assert distributed["rows"] == 301
    for task in schema.task_names:
        assert distributed[task]["auc"] == pytest.approx(single[task]["auc"], abs=1e-12)
        assert distributed[task]["gauc"] == pytest.approx(single[task]["gauc"], abs=1e-12)
        assert distributed[task]["logloss"] == pytest.approx(single[task]["logloss"], rel=1e-6)
    mean_of_rank_aucs = np.mean([r["local_auc"] for r in results])
    assert abs(mean_of_rank_aucs - distributed["a"]["auc"]) > 0.05  # the naive average would be wrong here


def test_predict_in_one_process_drops_padding(tmp_path):
    folder = tmp_path / "data"
    schema = write_indexed_dataset(folder, {"train": 10, "valid": 50})
    ctx = init_distributed("cpu")
    try:
        reader = BatchReader(ParquetSplit.open(folder, "valid", schema), batch_size=16)
        predictions = predict(_FixedScorer(), reader, schema.tasks, ctx, progress=False)
    finally:
        destroy_distributed()
    assert predictions.scores.shape == (50, 2)
    np.testing.assert_array_equal(predictions.groups, np.arange(50) % 11)
