"""Atomic output folders: a killed run's temp folder is cleaned up by the next run, and outputs get umask permissions."""

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

from torchrec_automtl.common.atomic_files import atomic_directory

# A run that writes into its temp folder, says where, and then waits to be killed.
HOLDER = """
import sys, time
from torchrec_automtl.common.atomic_files import atomic_directory
with atomic_directory(sys.argv[1]) as folder:
    (folder / "part-0.parquet").write_bytes(b"x" * 4096)
    print(folder, flush=True)
    time.sleep(600)
"""


def _holder(out: Path) -> tuple[subprocess.Popen, Path]:
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdout=subprocess.PIPE, text=True)
    return process, Path(process.stdout.readline().strip())


def test_the_next_run_removes_a_killed_runs_temp_folder_but_not_a_running_ones(tmp_path, capsys):
    out = tmp_path / "prepared"
    killed, killed_folder = _holder(out)
    running, running_folder = _holder(out)
    try:
        os.kill(killed.pid, signal.SIGKILL)
        killed.wait(timeout=60)
        assert killed_folder.is_dir() and not out.exists()  # SIGKILL: nothing could clean up
        with atomic_directory(out) as folder:
            (folder / "schema.json").write_text("{}")
        assert not killed_folder.exists() and running_folder.is_dir()
        assert str(killed_folder) in capsys.readouterr().err
        assert (out / "schema.json").read_text() == "{}"
    finally:
        running.kill()
        running.wait(timeout=60)


def test_an_output_folder_gets_the_umask_permissions(tmp_path):
    previous = os.umask(0o022)
    try:
        with atomic_directory(tmp_path / "prepared") as folder:
            (folder / "schema.json").write_text("{}")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "prepared").stat().st_mode) == 0o755  # not mkdtemp's private 0700
