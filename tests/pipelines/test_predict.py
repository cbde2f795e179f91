"""Batch scoring writes, for every row of a split once, the scores evaluation computes for it."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from torchrec_automtl.datasets.parquet_reader import BatchReader, ParquetSplit
from torchrec_automtl.datasets.schema import Schema
from torchrec_automtl.modules.multitask import MultiTaskTrain, build_multitask_model
from torchrec_automtl.pipelines.checkpoint import load_checkpoint
from torchrec_automtl.pipelines.evaluation import to_scores
from torchrec_automtl.pipelines.metrics import task_metrics
from torchrec_automtl.pipelines.predict import ROW_COLUMN, load_run_config, score_columns
from tests.pipelines.test_resume import REPO, finish, torchrun


@pytest.fixture(scope="module")
def trained_run(tiny_aliccp, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("predict") / "run"
    command = [sys.executable, "-m", "torchrec_automtl.pipelines.train", f"dataset.path={tiny_aliccp}", f"run_dir={run_dir}", "trainer=smoke",
               "trainer.eval_batch_size=128", "trainer.sharding_type=table_wise"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


def _predict(run_dir: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torchrec_automtl.pipelines.predict", str(run_dir), "--out", str(out), "--no-progress", *extra]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)


def _reference_scores(run_dir: Path, dataset: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Scores and labels of the run's checkpoint, restored unsharded, over the whole split in file order."""
    schema = Schema.load(dataset)
    model = MultiTaskTrain(build_multitask_model(load_run_config(run_dir).model, schema), schema.tasks)
    load_checkpoint(model, run_dir / "checkpoint")
    model.eval()
    scores, labels = [], []
    with torch.no_grad():
        for batch in BatchReader(ParquetSplit.open(dataset, split, schema), batch_size=500).epoch():
            scores.append(to_scores(model(batch)[1][1], schema.tasks)[batch.mask])
            labels.append(batch.labels[batch.mask])
    return torch.cat(scores).numpy(), torch.cat(labels).numpy()


@pytest.mark.slow
@pytest.mark.distributed
def test_scores_of_two_ranks_are_the_evaluations_for_every_row_once(trained_run, tiny_aliccp, tmp_path):
    out = tmp_path / "scores.parquet"
    # 2 ranks x batches of 64 rows do not divide the split: the last batches are padded.
    finish(torchrun(["-m", "torchrec_automtl.pipelines.predict", str(trained_run), "--out", str(out), "--batch-size", "64", "--no-progress"]))
    table = pq.read_table(out)
    tasks = Schema.load(tiny_aliccp).tasks
    expected, labels = _reference_scores(trained_run, tiny_aliccp, "test")
    assert table.column_names == [ROW_COLUMN, *score_columns(tasks)]
    order = np.argsort(table[ROW_COLUMN].to_numpy())
    assert table[ROW_COLUMN].to_numpy()[order].tolist() == list(range(len(expected)))
    scores = np.stack([table[name].to_numpy()[order] for name in score_columns(tasks)], axis=1)
    np.testing.assert_allclose(scores, expected, rtol=0, atol=1e-6)
    # ... and they give the test metrics training wrote for the same checkpoint.
    written = json.loads((trained_run / "metrics.json").read_text())["test"]
    metrics = task_metrics(scores, labels, tasks)
    for task in ("click", "conversion"):
        assert metrics[task]["auc"] == pytest.approx(written[task]["auc"], abs=1e-9)
        assert metrics[task]["logloss"] == pytest.approx(written[task]["logloss"], abs=1e-6)


@pytest.mark.slow
def test_scoring_refuses_to_replace_a_file_and_data_of_another_schema(trained_run, tiny_aliccp, tmp_path):
    out = tmp_path / "scores.parquet"
    out.write_text("a user's file")
    refused = _predict(trained_run, out, "--split", "valid")
    assert refused.returncode == 2 and "already exists" in refused.stderr and out.read_text() == "a user's file"

    replaced = _predict(trained_run, out, "--split", "valid", "--overwrite")
    assert replaced.returncode == 0, replaced.stderr[-3000:]
    assert pq.read_table(out).num_rows == ParquetSplit.open(tiny_aliccp, "valid", Schema.load(tiny_aliccp)).num_rows

    other = tmp_path / "other"
    shutil.copytree(tiny_aliccp, other)
    schema = json.loads((other / "schema.json").read_text())
    schema["tasks"] = schema["tasks"][::-1]
    (other / "schema.json").write_text(json.dumps(schema))
    mismatch = _predict(trained_run, tmp_path / "x.parquet", "--dataset", str(other))
    assert mismatch.returncode == 2 and "is not the schema" in mismatch.stderr and str(other) in mismatch.stderr
    assert not (tmp_path / "x.parquet").exists()
