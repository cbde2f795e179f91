"""The state a killed training run resumes from: ``run_dir/state/``, rewritten after every epoch.

It holds, with ``torch.distributed.checkpoint``, the model (sharded tables and dense weights, a
supernet's alpha, beta and decision buffers), every optimizer's state (the fused embedding
optimizer's sharded state, the dense optimizer's, a search's architecture optimizer's), and in
``meta.json`` the finished epoch, the epoch history, the early-stopping state, the dense step count,
what the Trainer's hooks keep (``TrainerHooks.state``) and, for a state saved within an epoch, how far
that epoch got; each rank adds what differs between ranks (``rank<r>.pt``: its torch RNG state,
BatchNorm running statistics, partial loss sum). ``save_checkpoint`` replaces the folder atomically, so a kill
during a save leaves the previous state usable (or its ``.state.old`` copy, when the kill fell between
the two renames). DCP reshards on load, so a state can be resumed at another world size; the per-rank
part is then not restored.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torchrec.optim.keyed import CombinedOptimizer, KeyedOptimizer

from torchrec_automtl.pipelines.checkpoint import META_FILE, save_checkpoint
from torchrec_automtl.pipelines.sharding import batchnorm_statistics

STATE_DIR = "state"


def _rank_and_size() -> tuple[int, int]:
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def _combined(fused: KeyedOptimizer, optimizers: list[KeyedOptimizer]) -> CombinedOptimizer:
    return CombinedOptimizer([fused, *optimizers])


def _rank_file(folder: Path, rank: int) -> Path:
    return folder / f"rank{rank}.pt"


def save_training_state(run_dir: Path, model: nn.Module, fused: KeyedOptimizer, optimizers: list[KeyedOptimizer], meta: dict,
                        rank_state: dict | None = None) -> None:
    """Write ``run_dir/state``: the model, the fused embedding optimizer and ``optimizers`` (dense,
    architecture), ``meta`` plus the world size, and per rank what differs between ranks: the RNG
    state, the BatchNorm running statistics (averaged only at epoch ends) and ``rank_state``."""
    rank, world_size = _rank_and_size()
    folder = Path(run_dir) / STATE_DIR
    local = {"rng": torch.get_rng_state(), "batchnorm": {k: v.clone() for k, v in batchnorm_statistics(model).items()},
             **(rank_state or {})}

    def add_rank_state(tmp: Path) -> None:
        torch.save(local, _rank_file(tmp, rank))

    save_checkpoint(model, folder, {**meta, "world_size": world_size}, _combined(fused, optimizers).state_dict(),
                    before_commit=add_rank_state)


def discard_training_state(run_dir: Path) -> None:
    """Remove ``run_dir``'s state folders (a fresh run must never resume an older run's state)."""
    for folder in (Path(run_dir) / STATE_DIR, Path(run_dir) / f".{STATE_DIR}.old", Path(run_dir) / f"{STATE_DIR}.tmp"):
        shutil.rmtree(folder, ignore_errors=True)


def find_training_state(run_dir: Path) -> Path | None:
    """The complete state folder of ``run_dir``: ``state/``, or its old copy when a save was killed mid-swap."""
    for folder in (Path(run_dir) / STATE_DIR, Path(run_dir) / f".{STATE_DIR}.old"):
        if (folder / META_FILE).is_file():
            return folder
    return None


def read_state_meta(folder: Path) -> dict:
    """``meta.json`` of a state folder (epoch, history, world size, batch size, ...)."""
    return json.loads((folder / META_FILE).read_text())


def load_training_state(folder: Path, model: nn.Module, fused: KeyedOptimizer, optimizers: list[KeyedOptimizer]) -> dict:
    """Restore ``folder`` into ``model`` and the optimizers in place; returns its meta, with this rank's
    ``rank_state`` (empty at another world size, where the per-rank part is not restored).

    ``optimizers`` create their state on the first step (Adam, SGD's momentum); they take a
    zero-gradient step first so that the state exists to be loaded into (the loaded weights replace
    any change).
    """
    for keyed in optimizers:
        keyed.init_state()
    optimizer = _combined(fused, optimizers)
    state = dict(model.state_dict())
    state["optimizer"] = optimizer.state_dict()
    dcp.load(state, checkpoint_id=str(folder))
    model.load_state_dict({k: v for k, v in state.items() if k != "optimizer"})
    optimizer.load_state_dict(state["optimizer"])
    meta = read_state_meta(folder)
    rank, world_size = _rank_and_size()
    meta["rank_state"] = {}
    if meta["world_size"] == world_size:
        local = torch.load(_rank_file(folder, rank))
        torch.set_rng_state(local.pop("rng"))
        statistics = batchnorm_statistics(model)
        for name, value in local.pop("batchnorm").items():
            statistics[name].copy_(value)
        meta["rank_state"] = local
    return meta
