"""The one-process group of a plain ``python`` run."""

import os
import subprocess
import sys

import torch.distributed as dist

from torchrec_automtl.pipelines.process_group import destroy_distributed, init_distributed


def test_a_plain_run_leaves_no_rendezvous_address_for_the_processes_it_starts(monkeypatch):
    for name in ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    context = init_distributed("cpu")
    try:
        assert (context.rank, context.world_size, dist.get_backend()) == (0, 1, "gloo")
        assert "MASTER_ADDR" not in os.environ and "MASTER_PORT" not in os.environ
        # A child starting its own one-process group while this one holds its port.
        child = "from torchrec_automtl.pipelines.process_group import init_distributed; print(init_distributed('cpu').world_size)"
        result = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0 and result.stdout.strip() == "1", result.stderr[-2000:]
    finally:
        destroy_distributed()
