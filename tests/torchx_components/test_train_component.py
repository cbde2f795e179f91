import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from torchrec_automtl.torchx_components.train import search, train

REPO = Path(__file__).resolve().parents[2]


def test_component_runs_the_training_module_on_every_rank():
    app = train("trainer.epochs=1", j="1x4", run_dir="runs/x")
    role = app.roles[0]
    assert role.num_replicas == 1
    command = " ".join(role.args)
    assert "--nproc_per_node 4" in command
    assert "-m torchrec_automtl.pipelines.train" in command
    assert command.index("trainer.epochs=1") < command.index("run_dir=runs/x")
    assert "-m torchrec_automtl.nas.search" in " ".join(search("search=fast").roles[0].args)


@pytest.mark.slow
@pytest.mark.distributed
def test_torchx_local_cwd_launch_trains_on_two_processes(tiny_aliccp, tmp_path):
    run_dir = tmp_path / "run"
    # TorchX's dist.ddp starts `torchrun` from PATH: put this interpreter's environment first, as `activate` does.
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run(
        [str(bin_dir / "torchx"), "run", "-s", "local_cwd", "torchx_components/train.py:train", "-j", "1x2", "--run_dir", str(run_dir),
         "--", f"dataset.path={tiny_aliccp}", "trainer=smoke", "trainer.epochs=1"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["test"]["rows"] == 300
