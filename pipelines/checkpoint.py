"""Sharded checkpoints with torch.distributed.checkpoint, replaced atomically.

Every rank writes its own shards into ``<folder>.tmp``; once all are done rank 0 renames it to
``<folder>`` (the previous checkpoint is removed only after the rename). A checkpoint can be
loaded at another world size: DCP reshards on load. All ranks must see the same filesystem.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from typing import Callable

import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn

from torchrec_automtl.common.atomic_files import atomic_write_json, replace_directory

META_FILE = "meta.json"


def _barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def _is_main() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


def save_checkpoint(model: nn.Module, folder: str | Path, meta: dict, optimizer_state: dict | None = None,
                    before_commit: Callable[[Path], None] | None = None) -> None:
    """Save ``model.state_dict()`` (sharded tables included) and ``meta`` to ``folder``, atomically.

    ``optimizer_state`` (e.g. DMP's ``fused_optimizer.state_dict()``) is stored under the key
    ``optimizer`` beside the model's keys. ``before_commit(tmp)`` runs on every rank after the
    shards are written, to add files of its own before the folder replaces the previous one.
    """
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".tmp")
    if _is_main():
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    _barrier()
    state = dict(model.state_dict())
    if optimizer_state is not None:
        state["optimizer"] = optimizer_state
    dcp.save(state, checkpoint_id=str(tmp))
    if before_commit is not None:
        before_commit(tmp)
    _barrier()
    if _is_main():
        atomic_write_json(tmp / META_FILE, meta)
        replace_directory(tmp, folder)
    _barrier()


def load_state(state: dict, folder: str | Path) -> None:
    """``dcp.load`` of ``folder`` into ``state`` in place, under a process group or in a single process
    (where DCP's notice that it assumes a single process is what was meant, so it is not shown)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled, unavailable or uninitialized")
        dcp.load(state, checkpoint_id=str(folder))


def load_checkpoint(model: nn.Module, folder: str | Path) -> dict:
    """Load ``folder`` into ``model`` in place; return the saved ``meta``."""
    folder = Path(folder)
    if not (folder / META_FILE).is_file():
        raise FileNotFoundError(f"no checkpoint at {folder} (expected {folder / META_FILE})")
    state = model.state_dict()
    load_state(state, folder)
    model.load_state_dict(state)
    return json.loads((folder / META_FILE).read_text())
