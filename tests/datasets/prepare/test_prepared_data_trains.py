"""A converted dataset is usable as it is: ``dataset=aliccp dataset.path=...`` trains and learns."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.datasets.prepare.helpers import convert
from tests.datasets.prepare.test_aliccp import common_line, skeleton_line, write_lines

REPO = Path(__file__).resolve().parents[3]


def write_planted_raw(folder: Path, rows: int, seed: int = 0) -> None:
    """AliCCP raw files where a click happens mostly on 'good' items (205 ids below 50) of active users."""
    rng = np.random.default_rng(seed)
    users = [f"u{u:04d}" for u in range(200)]
    for split, count in (("train", rows), ("test", rows // 5)):
        common = [common_line(md5, ("101", u, 1), ("109_14", u % 17, 0.5), ("109_14", 100 + u % 5, 2.0))
                  for u, md5 in enumerate(users)]
        write_lines(folder / f"common_features_{split}.csv", common)
        lines = []
        for sample in range(count):
            item, user = int(rng.integers(0, 100)), int(rng.integers(0, len(users)))
            click = int(rng.random() < (0.6 if item < 50 else 0.05))
            lines.append(skeleton_line(sample, click, click * int(rng.random() < 0.3), users[user],
                                       ("205", item, 1), ("210", item % 7, 1), ("210", 7 + item % 3, 1)))
        write_lines(folder / f"sample_skeleton_{split}.csv", lines)


@pytest.mark.slow
def test_converted_aliccp_trains_with_the_dataset_config(tmp_path: Path) -> None:
    write_planted_raw(tmp_path / "raw", rows=6000)
    convert("aliccp", tmp_path / "raw", tmp_path / "aliccp")
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "torchrec_automtl.pipelines.train", "dataset=aliccp", f"dataset.path={tmp_path / 'aliccp'}",
               "model=mmoe", "trainer=smoke", "trainer.epochs=3", f"run_dir={run_dir}"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test"]["rows"] == 1200
    assert metrics["test"]["click"]["auc"] > 0.75  # the planted item effect is learned through the vocabularies
