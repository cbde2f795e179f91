"""A training job SIGKILLed on 2 gloo ranks and resumed ends exactly where the uninterrupted job ends;
resumed on 1 rank it restores every saved tensor and keeps the global batch."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from hydra import compose, initialize_config_dir
from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

from torchrec_automtl.datasets.parquet_reader import ParquetSplit
from torchrec_automtl.datasets.schema import Schema
from torchrec_automtl.pipelines.config import parse_train_config
from torchrec_automtl.pipelines.metrics import task_metrics
from torchrec_automtl.pipelines.trainer import Trainer
from torchrec_automtl.pipelines.training_state import STATE_DIR, find_training_state, save_training_state
from tests.distributed.spawn import run_on_ranks

REPO = Path(__file__).resolve().parents[2]


TRAIN = ["-m", "torchrec_automtl.pipelines.train", "trainer=smoke", "trainer.epochs=6", "trainer.patience=2", "trainer.max_steps_per_epoch=6",
         "trainer.batch_size=64", "trainer.sharding_type=table_wise", "trainer.dense_weight_decay=0.01"]
TIMINGS = ("seconds", "samples_per_s", "train_seconds", "wall_time_s")


def torchrun(arguments: list[str], nproc: int = 2) -> subprocess.Popen:
    """``torchrun --standalone --nproc_per_node nproc <arguments>`` in its own process group (so it can be killed whole)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc), *arguments]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _train(data: Path, run_dir: Path, *extra: str) -> subprocess.Popen:
    return torchrun([*TRAIN, f"dataset.path={data}", f"run_dir={run_dir}", *extra])


def finish(process: subprocess.Popen) -> None:
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr[-3000:]


def _saved_position(state: Path) -> tuple[int, int]:
    """(last finished epoch, steps of the next one) the state folder holds; (-2, 0) before the first save."""
    try:
        meta = json.loads((state / "meta.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return -2, 0
    return meta["epoch"], (meta["partial"] or {}).get("steps", 0)


def kill_after_epoch(process: subprocess.Popen, state: Path, epoch: int, steps: int = 0) -> None:
    """SIGKILL the whole torchrun job once the state folder ``state`` holds ``epoch`` (and, with
    ``steps``, that many steps of the next epoch); the job may be further along by then."""
    while _saved_position(state) < (epoch, steps):
        assert process.poll() is None, "the run ended before it could be killed: " + process.communicate()[1][-3000:]
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def without_timings(value):
    """A metrics.json or search-log value without the timings, which differ from run to run."""
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if k not in TIMINGS}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


@pytest.fixture(scope="module")
def whole_run(tiny_aliccp, tmp_path_factory) -> Path:
    """The uninterrupted 2-rank job: early stopping ends it after a best epoch that is not the last."""
    whole = tmp_path_factory.mktemp("whole") / "run"
    finish(_train(tiny_aliccp, whole))
    metrics = json.loads((whole / "metrics.json").read_text())
    assert metrics["best_epoch"] < len(metrics["epochs"]) - 1 < 5
    return whole


@pytest.mark.slow
@pytest.mark.distributed
def test_the_best_epoch_is_reported_and_its_checkpoint_is_what_is_tested(whole_run, tiny_aliccp, tmp_path):
    metrics = json.loads((whole_run / "metrics.json").read_text())
    best, last = metrics["epochs"][metrics["best_epoch"]], metrics["epochs"][-1]
    assert metrics["valid"] == best["valid"] != last["valid"]
    # Scoring the checkpoint again, apart from training, gives the test metrics training wrote.
    out = tmp_path / "scores.parquet"
    scored = subprocess.run([sys.executable, "-m", "torchrec_automtl.pipelines.predict", str(whole_run), "--out", str(out),
                             "--no-progress"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert scored.returncode == 0, scored.stderr[-3000:]
    table = pq.read_table(out)
    schema = Schema.load(tiny_aliccp)
    order = np.argsort(table["row"].to_numpy())
    scores = np.stack([table[f"{t.name}_score"].to_numpy()[order] for t in schema.tasks], axis=1)
    files = ParquetSplit.open(tiny_aliccp, "test", schema).files  # rows are numbered over the files in this order
    table = pa.concat_tables([pq.read_table(f, columns=schema.task_names) for f in files])
    labels = np.stack([table[name].to_numpy() for name in schema.task_names], axis=1)
    rescored = task_metrics(scores, labels, schema.tasks)
    for task in schema.task_names:
        assert rescored[task]["auc"] == pytest.approx(metrics["test"][task]["auc"], abs=1e-6)


@pytest.mark.slow
@pytest.mark.distributed
def test_a_killed_run_resumes_to_the_same_metrics(whole_run, tiny_aliccp, tmp_path):
    """One job killed twice: after its first epoch, then within a later epoch (states saved every 2
    steps) as if inside a save, between its two renames, so only the old copy is left."""
    killed = tmp_path / "killed"
    every_2_steps = "trainer.state_every_steps=2"
    kill_after_epoch(_train(tiny_aliccp, killed, every_2_steps), killed / STATE_DIR, epoch=0)
    kill_after_epoch(_train(tiny_aliccp, killed, every_2_steps, "resume=true"), killed / STATE_DIR, epoch=1, steps=4)
    (killed / STATE_DIR).rename(killed / f".{STATE_DIR}.old")
    finish(_train(tiny_aliccp, killed, every_2_steps, "resume=true"))
    expected = json.loads((whole_run / "metrics.json").read_text())
    assert without_timings(json.loads((killed / "metrics.json").read_text())) == without_timings(expected)


def test_resume_needs_a_state_to_resume_from(tiny_aliccp, tmp_path):
    result = subprocess.run([sys.executable, "-m", "torchrec_automtl.pipelines.train", f"dataset.path={tiny_aliccp}", f"run_dir={tmp_path}",
                             "trainer=smoke", "resume=true"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "holds no training state" in result.stderr


def _resume_on_one_rank(rank: int, overrides: list[str], run_dir: str, restored_copy: str) -> dict:
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        config = parse_train_config(compose(config_name="train", overrides=[*overrides, "resume=true"]))
    trainer = Trainer.for_model(config, run_dir, keep_state=True)
    try:
        trainer.setup()
        restored = {"batch_size": trainer.options.batch_size, "reader_batch": trainer.readers["train"].batch_size}
        # What was restored, written straight back: compared with the saved state tensor by tensor.
        save_training_state(Path(restored_copy), trainer.model, trainer.model.fused_optimizer, trainer.state_optimizers, {})
        result = trainer.test(trainer.fit())
        return {**restored, "epochs": [record["epoch"] for record in result.epochs], "history": result.epochs}
    finally:
        trainer.close()


def _tensors(state: Path, into: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a DCP state folder, whole (shards joined), by flattened key."""
    dcp_to_torch_save(str(state), str(into))
    flat = {}

    def walk(value, key: str) -> None:
        if isinstance(value, dict):
            for name, inner in value.items():
                walk(inner, f"{key}/{name}")
        elif isinstance(value, torch.Tensor):
            flat[key] = value

    walk(torch.load(into, weights_only=False), "")
    return flat


@pytest.mark.slow
@pytest.mark.distributed
def test_a_two_rank_state_resumes_on_one_rank_with_the_same_global_batch(tiny_aliccp, tmp_path):
    run_dir = tmp_path / "run"
    kill_after_epoch(_train(tiny_aliccp, run_dir), run_dir / STATE_DIR, epoch=0)
    saved = tmp_path / "saved"
    shutil.copytree(find_training_state(run_dir), saved)
    overrides = [*TRAIN[2:], f"dataset.path={tiny_aliccp}", f"run_dir={run_dir}"]
    [resumed] = run_on_ranks(_resume_on_one_rank, 1, tmp_path / "out", overrides, str(run_dir), str(tmp_path / "restored"))

    assert resumed["batch_size"] == resumed["reader_batch"] == 128  # 2 ranks x 64 rows
    expected, restored = _tensors(saved, tmp_path / "saved.pt"), _tensors(tmp_path / "restored" / STATE_DIR, tmp_path / "restored.pt")
    assert set(restored) == set(expected) and any("optimizer" in key for key in expected)
    for key, tensor in expected.items():
        assert torch.equal(restored[key], tensor), key
    # The interrupted epoch restarts; the saved epochs stay as they were.
    saved_history = json.loads((saved / "meta.json").read_text())["history"]
    assert resumed["epochs"][: len(saved_history) + 1] == list(range(len(saved_history) + 1))
    assert resumed["history"][: len(saved_history)] == saved_history
