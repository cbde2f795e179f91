"""Process-group setup for one process or for every rank started by torchrun / TorchX."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistributedContext:
    """Where this process sits: rank, world size, its device and the collective backend."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def init_distributed(device: str = "auto") -> DistributedContext:
    """Join (or, in a plain ``python`` run, create) the default process group.

    Uses the ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` variables set by torchrun and TorchX; without
    them it starts a one-process group. CUDA ranks use nccl on ``cuda:LOCAL_RANK``, CPU ranks gloo.
    """
    rank = int(os.environ.get("RANK", 0))
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if use_cuda and not torch.cuda.is_available():
        raise RuntimeError("trainer.device=cuda but no CUDA device is visible")
    if use_cuda:
        torch_device = torch.device("cuda", local_rank)
        torch.cuda.set_device(torch_device)
    else:
        torch_device = torch.device("cpu")
    backend = "nccl" if use_cuda else "gloo"
    if not dist.is_initialized():
        init_method = None  # env://: MASTER_ADDR / MASTER_PORT from the launcher
        if "MASTER_ADDR" not in os.environ:
            if world_size != 1:
                raise RuntimeError("WORLD_SIZE > 1 but MASTER_ADDR is not set; launch with torchrun or TorchX")
            # Not through os.environ: a process this one starts later must not inherit (and collide on) the port.
            init_method = f"tcp://127.0.0.1:{_free_port()}"
        dist.init_process_group(backend, init_method=init_method, rank=rank, world_size=world_size)
    return DistributedContext(dist.get_rank(), dist.get_world_size(), local_rank, torch_device, dist.get_backend())


def destroy_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
