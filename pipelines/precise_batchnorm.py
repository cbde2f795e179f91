"""Precise BatchNorm statistics before a model is scored (Wu & Johnson, "Rethinking 'Batch' in BatchNorm", 2021).

A BatchNorm layer evaluates with running statistics, an exponential average (momentum 0.1) of the
batches it trained on while its inputs kept changing: after a few hundred fast-moving steps they
describe neither the current weights nor the data, and the validation score swings from epoch to
epoch with them. Re-estimating them with the weights frozen, as the plain average over a number of
training batches, scores the model that training produced. Models without BatchNorm are untouched.
"""

from __future__ import annotations

import itertools
from typing import Iterable

import torch
from torch import nn

from torchrec_automtl.datasets.batch import Batch
from torchrec_automtl.pipelines.sharding import batchnorm_layers


@torch.no_grad()
def recompute_batchnorm_statistics(model: nn.Module, batches: Iterable[Batch], device: torch.device) -> int:
    """Replace every BatchNorm's running mean and variance by their average over ``batches`` (forward
    passes in training mode, weights unchanged); returns the number of batches used (0 without
    BatchNorm, or without batches: the statistics then stay as they were).

    ``model`` is called as ``model(batch)``; under DistributedModelParallel every rank must pass the
    same number of batches.
    """
    layers = list(batchnorm_layers(model).values())
    remaining = iter(batches)
    first = next(remaining, None)
    if not layers or first is None:
        return 0
    momenta = [layer.momentum for layer in layers]
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None  # cumulative average over the batches below
    was_training = model.training
    model.train()
    used = 0
    try:
        for batch in itertools.chain([first], remaining):
            model(batch.to(device, non_blocking=True))
            used += 1
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
        model.train(was_training)
    return used
