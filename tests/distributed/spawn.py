"""Run a test worker on N gloo ranks (spawned processes) and collect each rank's return value."""

from __future__ import annotations

import os
import pickle
import socket
from pathlib import Path
from typing import Any, Callable

import torch
import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _entry(rank: int, worker: Callable, world_size: int, port: int, out_dir: str, args: tuple) -> None:
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_WORLD_SIZE=str(world_size),
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
    )
    torch.set_num_threads(1)
    result = worker(rank, *args)
    with open(Path(out_dir) / f"rank{rank}.pkl", "wb") as handle:
        pickle.dump(result, handle)


def run_on_ranks(worker: Callable, world_size: int, out_dir: Path, *args: Any) -> list[Any]:
    """Spawn ``world_size`` processes running ``worker(rank, *args)``; return their results by rank.

    ``worker`` must be a module-level function (it is pickled by name).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    mp.spawn(_entry, args=(worker, world_size, _free_port(), str(out_dir), args), nprocs=world_size, join=True)
    results = []
    for rank in range(world_size):
        with open(out_dir / f"rank{rank}.pkl", "rb") as handle:
            results.append(pickle.load(handle))
    return results
