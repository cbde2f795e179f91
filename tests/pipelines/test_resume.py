"""A training job SIGKILLed on 2 gloo ranks and resumed ends exactly where the uninterrupted job ends."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipelines.training_state import STATE_DIR

REPO = Path(__file__).resolve().parents[2]


TRAIN = ["-m", "pipelines.train", "trainer=smoke", "trainer.epochs=6", "trainer.patience=2", "trainer.max_steps_per_epoch=6",
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


def _saved_epoch(state: Path) -> int:
    try:
        return json.loads((state / "meta.json").read_text())["epoch"]
    except (FileNotFoundError, json.JSONDecodeError):
        return -1


def kill_after_epoch(process: subprocess.Popen, state: Path, epoch: int) -> None:
    """SIGKILL the whole torchrun job once the state folder ``state`` holds ``epoch`` (it may be mid-way through the next one)."""
    while _saved_epoch(state) < epoch:
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


@pytest.mark.slow
@pytest.mark.distributed
def test_a_killed_run_resumes_to_the_same_metrics(tiny_aliccp, tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    finish(_train(tiny_aliccp, whole))
    expected = json.loads((whole / "metrics.json").read_text())
    assert expected["best_epoch"] < len(expected["epochs"]) - 1 < 5  # early stopping decides where it ends

    kill_after_epoch(_train(tiny_aliccp, killed), killed / STATE_DIR, epoch=0)
    finish(_train(tiny_aliccp, killed, "resume=true"))
    assert without_timings(json.loads((killed / "metrics.json").read_text())) == without_timings(expected)

    # Killed again, this time as if inside a save, between its two renames: only the old copy is left.
    again = tmp_path / "again"
    kill_after_epoch(_train(tiny_aliccp, again), again / STATE_DIR, epoch=1)
    (again / STATE_DIR).rename(again / f".{STATE_DIR}.old")
    finish(_train(tiny_aliccp, again, "resume=true"))
    assert without_timings(json.loads((again / "metrics.json").read_text())) == without_timings(expected)


def test_resume_needs_a_state_to_resume_from(tiny_aliccp, tmp_path):
    result = subprocess.run([sys.executable, "-m", "pipelines.train", f"dataset.path={tiny_aliccp}", f"run_dir={tmp_path}",
                             "trainer=smoke", "resume=true"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "holds no training state" in result.stderr
