"""`pip install .` (not editable) in a fresh environment: everything under torchrec_automtl, the Hydra
configs packaged, and console commands that work from any directory."""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _tracked_copy(target: Path) -> Path:
    """The checkout's tracked files (pip builds in the source tree: keep its build/ out of the checkout)."""
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    for name in files:
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, target / name)
    return target


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv whose only copy of the project is the installed wheel; the pinned stack comes from
    this environment through a .pth file (its editable-install hook is not read from there)."""
    root = tmp_path_factory.mktemp("install")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    purelib = Path(subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  capture_output=True, text=True, check=True).stdout.strip())
    (purelib / "pinned_stack.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    source = _tracked_copy(root / "source")
    result = subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--no-deps",
                             "--no-build-isolation", "--no-index", "--quiet", str(source)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return venv


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_the_wheel_installs_one_namespace_and_no_top_level_datasets(installed, tmp_path):
    probe = ("import importlib.util, torchrec_automtl.datasets.schema as s, torchrec_automtl.nas.head as h; "
             "print(s.__file__); print(importlib.util.find_spec('datasets')); print(importlib.util.find_spec('pipelines'))")
    result = _run([str(installed / "bin" / "python"), "-c", probe], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    location, datasets, pipelines = result.stdout.split()[0], *result.stdout.split()[1:]
    assert location.startswith(str(installed)) and datasets == pipelines == "None"


@pytest.mark.slow
def test_console_commands_work_from_another_directory_with_the_packaged_configs(installed, tiny_aliccp, tmp_path):
    bin_dir = installed / "bin"
    run_dir = tmp_path / "run"
    trained = _run([str(bin_dir / "automtl-train"), f"dataset.path={tiny_aliccp}", f"run_dir={run_dir}", "trainer=smoke",
                    "trainer.progress=false"], tmp_path)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert json.loads((run_dir / "metrics.json").read_text())["model"] == "mmoe"

    scored = _run([str(bin_dir / "automtl-predict"), str(run_dir), "--out", str(tmp_path / "scores.parquet"), "--no-progress"], tmp_path)
    assert scored.returncode == 0 and (tmp_path / "scores.parquet").is_file(), scored.stderr[-3000:]

    composed = _run([str(bin_dir / "automtl-search"), "--cfg", "job", "search_space=small", "search=fast"], tmp_path)
    assert composed.returncode == 0 and "num_experts: 4" in composed.stdout, composed.stderr[-3000:]
    prepare = _run([str(bin_dir / "automtl-prepare"), "--help"], tmp_path)
    assert prepare.returncode == 0 and "aliccp" in prepare.stdout
