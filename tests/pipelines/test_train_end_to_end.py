"""End to end: the CLI trains MMoE on planted synthetic data and writes a complete run directory."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from torchrec_automtl.datasets.synthetic import write_aliccp_like

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_mmoe_learns_the_planted_click_signal(tmp_path):
    data = tmp_path / "data"
    write_aliccp_like(data, rows=60_000, seed=0, progress=False)
    run_dir = tmp_path / "run"
    command = [
        sys.executable, "-m", "torchrec_automtl.pipelines.train", f"dataset.path={data}", f"run_dir={run_dir}",
        "trainer.epochs=2", "trainer.batch_size=512", "trainer.progress=false", "trainer.gauc=true",
    ]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["valid"]["click"]["auc"] > 0.65
    assert metrics["test"]["click"]["auc"] > 0.65
    assert metrics["valid"]["rows"] == 6_000 and metrics["test"]["rows"] == 6_000
    assert 0.5 < metrics["test"]["click"]["gauc"] <= 1.0
    assert len(metrics["epochs"]) == 2 and metrics["epochs"][0]["samples_per_s"] > 0
    assert (run_dir / "checkpoint" / "meta.json").is_file()
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["model"]["name"] == "mmoe"
    assert "click" in result.stdout and "test" in result.stdout

    rerun = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert rerun.returncode != 0 and "overwrite=true" in rerun.stderr
    assert json.loads((run_dir / "metrics.json").read_text()) == metrics
