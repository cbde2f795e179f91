"""First-order bi-level optimization (DARTS; paper 001's "Bi.Opt" ablation, paper 000 eqs. 3-4).

The supernet weights w step on training batches; alpha and beta step on *architecture batches*,
drawn from a seeded slice held out of the training split (the validation split stays for early
stopping and model selection). Architecture steps run with the embedding tables frozen: TorchRec's
fused optimizers update the tables inside backward, so a gradient reaching them would train them on
the held-out slice. The slice is read like training data: split across ranks, shuffled, the same
number of steps on every rank.
"""

from __future__ import annotations

import contextlib
import itertools
from typing import Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from torchrec_automtl.datasets.batch import Batch
from torchrec_automtl.datasets.parquet_reader import BatchReader
from torchrec_automtl.modules.multitask import MultiTaskModel
from torchrec_automtl.pipelines.config import ConfigError
from torchrec_automtl.pipelines.train_pipeline import StepPipeline


def hold_out_architecture_rows(train: BatchReader, fraction: float, seed: int,
                               batch_size: int = 0) -> tuple[BatchReader, BatchReader]:
    """``(training reader, architecture reader)``: a contiguous slice of ``fraction`` of the training rows,
    at an offset fixed by ``seed``, goes to the architecture reader (batches of ``batch_size`` rows per
    rank; 0: the training batch size); the rest stays for training."""
    split = train.split
    held = round(fraction * split.num_rows)
    start = int(np.random.default_rng([seed, 7]).integers(0, split.num_rows - held + 1))

    def reader(part, rows: int) -> BatchReader:
        return BatchReader(part, rows, train.rank, train.world_size, training=True,
                           shuffle_buffer=train.shuffle_buffer, seed=train.seed)

    architecture_batch = batch_size or train.batch_size
    weights = reader(split.without_rows(start, start + held), train.batch_size)
    architecture = reader(split.rows(start, start + held), architecture_batch)
    if len(architecture) == 0 or len(weights) == 0:
        raise ConfigError(
            f"search.architecture_fraction={fraction} leaves {held} of {split.num_rows} training rows for architecture "
            f"steps: the training part needs at least one batch of {train.batch_size} rows and the architecture part "
            f"one of {architecture_batch} rows per rank on {train.world_size} rank(s)"
        )
    return weights, architecture


def endless(reader: BatchReader, skip: int = 0) -> Iterator[Batch]:
    """The reader's batches, epoch after epoch, without end, less the first ``skip`` (whole epochs are skipped unread)."""
    first_epoch, skip = divmod(skip, len(reader))
    for epoch in itertools.count(first_epoch):
        yield from itertools.islice(reader.epoch(epoch), skip if epoch == first_epoch else 0, None)


class BiLevelPipeline(StepPipeline):
    """Each ``progress`` call: a weight step on the next training batch, then (while the architecture
    optimizer is active) an alpha/beta step on the next architecture batch with the tables frozen.

    ``optimizer`` steps the weights (dense and fused embedding optimizers); ``architecture_optimizer``
    only alpha and beta. The architecture step differentiates ``objective`` (``modules.multitask.OBJECTIVES``)
    with respect to alpha and beta alone (first-order DARTS): no weight gradient is computed or
    synchronized, and the ranks average the architecture gradients themselves, as DDP would.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, architecture_optimizer, multitask: MultiTaskModel,
                 architecture_reader: BatchReader, device: torch.device, objective: str = "sum") -> None:
        super().__init__(model, optimizer, device)
        self.objective = objective
        self.architecture_optimizer = architecture_optimizer
        self.multitask = multitask
        self.architecture_reader = architecture_reader
        self.architecture_batches = endless(architecture_reader)
        self.architecture_steps = 0  # architecture batches taken, the position a resumed search continues from
        self.architecture_parameters = list(multitask.dense_arch.architecture_parameters())

    def skip_architecture_batches(self, steps: int) -> None:
        """Continue the architecture batches after the first ``steps`` (a resumed search)."""
        self.architecture_batches = endless(self.architecture_reader, skip=steps)
        self.architecture_steps = steps

    def progress(self, batches: Iterator[Batch]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        with without_gradient(self.architecture_parameters):  # the weight step never uses alpha's or beta's gradient
            output = super().progress(batches)
        if self.architecture_optimizer.active:
            self.architecture_step()
        return output

    def architecture_step(self) -> None:
        batch = next(self.architecture_batches).to(self.device, non_blocking=True)
        self.architecture_steps += 1
        train_module = self.model.module
        self.multitask.freeze_embeddings = True
        train_module.objective = self.objective
        try:
            with without_gradient_sync(self.model):
                loss, _ = self.model(batch)
                gradients = torch.autograd.grad(loss, self.architecture_parameters, materialize_grads=True)
        finally:
            self.multitask.freeze_embeddings = False
            train_module.objective = "sum"
        world_size = dist.get_world_size() if dist.is_initialized() else 1
        for parameter, gradient in zip(self.architecture_parameters, gradients):
            if world_size > 1:
                dist.all_reduce(gradient)
                gradient /= world_size
            parameter.grad = gradient
        self.architecture_optimizer.step()


@contextlib.contextmanager
def without_gradient(parameters: list[nn.Parameter]) -> Iterator[None]:
    """``parameters`` take no gradient within the block (a backward pass neither computes nor stores one);
    each gets its own ``requires_grad`` back afterwards."""
    trainable = [parameter.requires_grad for parameter in parameters]
    for parameter in parameters:
        parameter.requires_grad_(False)
    try:
        yield
    finally:
        for parameter, flag in zip(parameters, trainable):
            parameter.requires_grad_(flag)


@contextlib.contextmanager
def without_gradient_sync(model: nn.Module) -> Iterator[None]:
    """Every DDP module inside ``model`` skips its gradient reduction (``no_sync``) within the block."""
    with contextlib.ExitStack() as stack:
        for module in model.modules():
            if isinstance(module, DistributedDataParallel):
                stack.enter_context(module.no_sync())
        yield
