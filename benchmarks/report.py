"""Shared helpers of the benchmarks: where results go and how they are written."""

from __future__ import annotations

import platform
import time
from pathlib import Path

import torch

from torchrec_automtl.common.atomic_files import atomic_write_json

RESULTS = Path(__file__).resolve().parent / "results"


def write_report(name: str, payload: dict) -> Path:
    """Write ``benchmarks/results/<name>.json`` with machine facts added; print and return its path."""
    report = {
        "benchmark": name,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "machine": {"cpus": torch.get_num_threads(), "platform": platform.platform(), "torch": torch.__version__},
        **payload,
    }
    path = RESULTS / f"{name}.json"
    atomic_write_json(path, report)
    print(f"wrote {path}")
    return path
