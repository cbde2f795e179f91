"""DistributedModelParallel setup: fused embedding optimizers, a sharding plan, and which parameters are dense."""

from __future__ import annotations

import os
import warnings

import torch
import torch.distributed as dist
from torch import nn
from torchrec.distributed.embeddingbag import EmbeddingBagCollectionSharder
from torchrec.distributed.model_parallel import DefaultDataParallelWrapper, DistributedModelParallel
from torchrec.distributed.planner import EmbeddingShardingPlanner, ParameterConstraints
from torchrec.distributed.planner.types import KernelConfig, TopologyFactory
from torchrec.distributed.planner.types import TrainerConfig as PlannerTrainerConfig
from torchrec.modules.embedding_modules import EmbeddingBagCollection
from torchrec.optim import RowWiseAdagrad
from torchrec.optim.apply_optimizer_in_backward import apply_optimizer_in_backward
from torchrec.optim.optimizers import in_backward_optimizer_filter

from torchrec_automtl.pipelines.process_group import DistributedContext

_EMBEDDING_OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "rowwise_adagrad": RowWiseAdagrad,
    "adagrad": torch.optim.Adagrad,
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
}


def _embedding_collections(module: nn.Module) -> list[tuple[str, EmbeddingBagCollection]]:
    return [(name, m) for name, m in module.named_modules() if isinstance(m, EmbeddingBagCollection)]


# fbgemm's CPU lookup for data-parallel tables (``dense_embedding_codegen_lookup_function``) has no
# kernel registered under the Autograd key, so torch warns on every backward through it that the
# gradient "may be silently incorrect". It is correct here: tests/distributed/test_data_parallel_tables.py
# checks that a data-parallel table receives exactly the gradient of the same table sharded table-wise
# (whose fused optimizer applies it in backward). Only this message is silenced.
BENIGN_FBGEMM_WARNING = r"fbgemm::dense_embedding_codegen_lookup_function: an autograd kernel was not registered"


def silence_benign_fbgemm_warning() -> None:
    """Hide fbgemm's data-parallel lookup warning (see above); every other warning still shows."""
    warnings.filterwarnings("ignore", message=BENIGN_FBGEMM_WARNING, category=UserWarning)


def shard_model(
    module: nn.Module,
    ctx: DistributedContext,
    embedding_optimizer: str = "rowwise_adagrad",
    embedding_lr: float = 0.05,
    sharding_type: str = "auto",
    static_graph: bool = True,
) -> DistributedModelParallel:
    """Wrap ``module`` (EBCs built on the meta device) in DMP.

    Embedding tables get ``embedding_optimizer`` fused into the backward pass. ``sharding_type``
    ``auto`` lets the planner choose per table; otherwise every table is constrained to that type.
    ``static_graph=False`` (with unused-parameter search) is for dense archs whose graph changes
    between steps, such as a NAS supernet.
    """
    if embedding_optimizer == "adam" and ctx.device.type == "cpu":
        raise ValueError("trainer.embedding_optimizer=adam needs CUDA: fbgemm's CPU kernels support rowwise_adagrad, adagrad, sgd")
    silence_benign_fbgemm_warning()
    collections = _embedding_collections(module)
    for _, collection in collections:
        apply_optimizer_in_backward(_EMBEDDING_OPTIMIZERS[embedding_optimizer], collection.parameters(), {"lr": embedding_lr})
    plan = None
    if collections and sharding_type != "auto":
        constraints = {
            config.name: ParameterConstraints(sharding_types=[sharding_type])
            for _, collection in collections
            for config in collection.embedding_bag_configs()
        }
        topology = TopologyFactory.create_topology(
            PlannerTrainerConfig(
                world_size=ctx.world_size, local_world_size=int(os.environ.get("LOCAL_WORLD_SIZE", ctx.world_size))
            ),
            kernel_config=KernelConfig(compute_device=ctx.device.type),
        )
        planner = EmbeddingShardingPlanner(topology=topology, constraints=constraints)
        plan = planner.collective_plan(module, [EmbeddingBagCollectionSharder()], dist.GroupMember.WORLD)
    wrapper = DefaultDataParallelWrapper(static_graph=static_graph, find_unused_parameters=not static_graph)
    return DistributedModelParallel(module, device=ctx.device, plan=plan, data_parallel_wrapper=wrapper)


def dense_parameters(model: DistributedModelParallel) -> dict[str, nn.Parameter]:
    """The parameters that no fused (in-backward) optimizer updates: dense archs, data-parallel tables aside."""
    return dict(in_backward_optimizer_filter(model.named_parameters()))


def batchnorm_layers(model: nn.Module) -> dict[str, nn.modules.batchnorm._NormBase]:
    """Every BatchNorm-like layer of ``model`` that keeps running statistics, by module name."""
    return {name: module for name, module in model.named_modules()
            if isinstance(module, nn.modules.batchnorm._NormBase) and module.track_running_stats}


def batchnorm_statistics(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every BatchNorm's running mean and variance by name: the buffers in which ranks differ within an epoch."""
    return {f"{name}.{kind}": getattr(module, kind) for name, module in batchnorm_layers(model).items()
            for kind in ("running_mean", "running_var")}


def average_batchnorm_statistics(model: nn.Module) -> None:
    """Average every BatchNorm's running mean and variance over the ranks, in place.

    DDP (TorchRec's wrapper does not broadcast buffers) leaves each rank with running statistics of
    its own batches, so ranks would evaluate different models and a checkpoint (rank 0's copy) would
    not be the model that was validated. Averaged at the end of every epoch, the ranks agree again;
    one process is unchanged.
    """
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return
    buffers = list(batchnorm_statistics(model).values())
    if not buffers:
        return
    flat = torch.cat([buffer.flatten() for buffer in buffers])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    for buffer, averaged in zip(buffers, flat.split([b.numel() for b in buffers])):
        buffer.copy_(averaged.view_as(buffer))
