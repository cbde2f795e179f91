"""TorchX components launching the project's entries on ``j`` = nodes x processes (torchrun underneath).

    torchx run -s local_cwd torchx_components/train.py:train -j 1x2 -- trainer.epochs=3 model=mmoe
    torchx run -s local_cwd torchx_components/train.py:search -j 1x2 -- search_space=small search=fast
"""

import torchx.specs as specs
from torchx.components import dist

IMAGE = "ghcr.io/pytorch/torchx:0.7.0"


def _launch(module: str, name: str, overrides: tuple[str, ...], run_dir: str, j: str, cpu: int, gpu: int, memMB: int,
            image: str, rdzv_port: int) -> specs.AppDef:
    return dist.ddp(*overrides, f"run_dir={run_dir}", m=module, j=j, cpu=cpu, gpu=gpu, memMB=memMB, image=image,
                    name=name, rdzv_port=rdzv_port)


def train(
    *overrides: str,
    j: str = "1x2",
    run_dir: str = "runs/torchx-train",
    cpu: int = 2,
    gpu: int = 0,
    memMB: int = 8192,
    image: str = IMAGE,
    rdzv_port: int = 29500,
) -> specs.AppDef:
    """Train a multi-task model with DistributedModelParallel on every rank.

    Args:
        overrides: Hydra overrides for pipelines/train.py, e.g. model=mmoe trainer.epochs=3
        j: nodes x processes per node, e.g. 1x2 or 2x8
        run_dir: output folder shared by all ranks (a fixed path, so every rank agrees on it)
        cpu: CPUs per replica
        gpu: GPUs per replica (one process per GPU; the pipeline picks nccl)
        memMB: memory per replica in MB
        image: container image (ignored by the local_cwd scheduler)
        rdzv_port: rendezvous port of the first node
    """
    return _launch("torchrec_automtl.pipelines.train", "automtl-train", overrides, run_dir, j, cpu, gpu, memMB, image, rdzv_port)


def search(
    *overrides: str,
    j: str = "1x2",
    run_dir: str = "runs/torchx-search",
    cpu: int = 2,
    gpu: int = 0,
    memMB: int = 8192,
    image: str = IMAGE,
    rdzv_port: int = 29500,
) -> specs.AppDef:
    """Search an AutoMTL architecture, fine-tune and test it, with DistributedModelParallel on every rank.

    Args:
        overrides: Hydra overrides for nas/search.py, e.g. search_space=small search=fast
        j: nodes x processes per node, e.g. 1x2 or 2x8
        run_dir: output folder shared by all ranks (a fixed path, so every rank agrees on it)
        cpu: CPUs per replica
        gpu: GPUs per replica (one process per GPU; the pipeline picks nccl)
        memMB: memory per replica in MB
        image: container image (ignored by the local_cwd scheduler)
        rdzv_port: rendezvous port of the first node
    """
    return _launch("torchrec_automtl.nas.search", "automtl-search", overrides, run_dir, j, cpu, gpu, memMB, image, rdzv_port)
