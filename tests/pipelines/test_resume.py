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


def _torchrun(data: Path, run_dir: Path, *extra: str) -> subprocess.Popen:
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "pipelines.train",
        f"dataset.path={data}", f"run_dir={run_dir}", "trainer=smoke", "trainer.epochs=6", "trainer.patience=2",
        "trainer.max_steps_per_epoch=6", "trainer.batch_size=64", "trainer.sharding_type=table_wise",
        "trainer.dense_weight_decay=0.01", *extra,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _finish(process: subprocess.Popen) -> None:
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr[-3000:]


def _saved_epoch(run_dir: Path) -> int:
    try:
        return json.loads((run_dir / STATE_DIR / "meta.json").read_text())["epoch"]
    except (FileNotFoundError, json.JSONDecodeError):
        return -1


def _kill_after_epoch(process: subprocess.Popen, run_dir: Path, epoch: int) -> None:
    """SIGKILL the whole torchrun job once ``state/`` holds ``epoch`` (it may be mid-way through the next one)."""
    while _saved_epoch(run_dir) < epoch:
        assert process.poll() is None, "the run ended before it could be killed"
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _comparable(metrics: dict) -> dict:
    """metrics.json without the timings, which differ from run to run."""
    epochs = [{k: v for k, v in e.items() if k not in ("seconds", "samples_per_s")} for e in metrics["epochs"]]
    return {**{k: v for k, v in metrics.items() if k not in ("train_seconds", "wall_time_s")}, "epochs": epochs}


@pytest.mark.slow
@pytest.mark.distributed
def test_a_killed_run_resumes_to_the_same_metrics(tiny_aliccp, tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    _finish(_torchrun(tiny_aliccp, whole))
    expected = json.loads((whole / "metrics.json").read_text())
    assert expected["best_epoch"] < len(expected["epochs"]) - 1 < 5  # early stopping decides where it ends

    _kill_after_epoch(_torchrun(tiny_aliccp, killed), killed, epoch=0)
    _finish(_torchrun(tiny_aliccp, killed, "resume=true"))
    assert _comparable(json.loads((killed / "metrics.json").read_text())) == _comparable(expected)

    # Killed again, this time as if inside a save, between its two renames: only the old copy is left.
    again = tmp_path / "again"
    _kill_after_epoch(_torchrun(tiny_aliccp, again), again, epoch=1)
    (again / STATE_DIR).rename(again / f".{STATE_DIR}.old")
    _finish(_torchrun(tiny_aliccp, again, "resume=true"))
    assert _comparable(json.loads((again / "metrics.json").read_text())) == _comparable(expected)


def test_resume_needs_a_state_to_resume_from(tiny_aliccp, tmp_path):
    result = subprocess.run([sys.executable, "-m", "pipelines.train", f"dataset.path={tiny_aliccp}", f"run_dir={tmp_path}",
                             "trainer=smoke", "resume=true"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "holds no training state" in result.stderr
