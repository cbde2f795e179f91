"""Precise BatchNorm statistics before a model is scored (Wu & Johnson, "Rethinking 'Batch' in BatchNorm", 2021).

A BatchNorm layer evaluates with running statistics, an exponential average (momentum 0.1) of the
batches it trained on while its inputs kept changing: after a few hundred fast-moving steps they
describe neither the current weights nor the data, and the validation score swings from epoch to
epoch with them. Re-estimating them with the weights frozen, as the plain average over a number of
training batches, scores the model that training produced. Models without BatchNorm are untouched.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from torchrec_automtl.datasets.batch import Batch


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """Every BatchNorm layer of ``model`` that keeps running statistics."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


@torch.no_grad()
def recompute_batchnorm_statistics(model: nn.Module, batches: Iterable[Batch], device: torch.device) -> int:
    """Replace every BatchNorm's running mean and variance by their average over ``batches`` (forward
    passes in training mode, weights unchanged); returns the number of batches used (0 without BatchNorm).

    ``model`` is called as ``model(batch)``; under DistributedModelParallel every rank must pass the
    same number of batches.
    """
    layers = batchnorm_layers(model)
    if not layers:
        return 0
    momenta = [layer.momentum for layer in layers]
    saved = [(layer.running_mean.clone(), layer.running_var.clone(), layer.num_batches_tracked.clone()) for layer in layers]
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None  # cumulative average over the batches below
    was_training = model.training
    model.train()
    used = 0
    try:
        for batch in batches:
            model(batch.to(device, non_blocking=True))
            used += 1
    finally:
        for layer, momentum, statistics in zip(layers, momenta, saved):
            layer.momentum = momentum
            if used == 0:  # no batch came: keep the running statistics as they were
                for buffer, value in zip((layer.running_mean, layer.running_var, layer.num_batches_tracked), statistics):
                    buffer.copy_(value)
        model.train(was_training)
    return used
