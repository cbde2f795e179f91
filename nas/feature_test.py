"""A permutation test of the searched input features on the validation split (``search.feature_test``).

The betas of feature selection are one per (consumer, feature) and learn from a few hundred
straight-through gradients each, so on small data they separate weakly: on the held-out proxy
(``small_vocab``, 56k training rows) the searched experts and gates keep 20-90% of the 20 planted
noise inputs, and retraining the same architectures with the noise inputs removed gains 0.003-0.023
of test average AUC (docs/results.md). This test asks each feature one question on rows that neither
a weight step nor an architecture step has seen: does the discretized supernet do worse on them when
the feature is shuffled across the rows? Shuffling keeps the feature's distribution and breaks its
link to the labels (permutation importance, Breiman 2001); a feature the network only memorized
costs nothing to shuffle on unseen rows. Per task t, with ``d_i`` the row's loss after shuffling
minus before, ``z = mean(d) / (std(d) / sqrt(n))``; a feature passes when some task's ``z`` exceeds
the threshold ``search.feature_test_z``. A feature that fails is dropped for every consumer (the
consumers' own betas still decide among the features that pass).

Why the validation split and not the architecture slice: the betas were fitted on the architecture
slice, so the noise features that survived them are the ones that happened to look useful there
(measured on the proxy: noise z up to 2.0-3.0 there against 1.6-2.5 on validation, and the models
retrained after the validation test scored higher, docs/results.md). Choosing which features the
derived model reads is model selection, which is what the validation split is for.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Callable, Iterable, NamedTuple

import torch
import torch.distributed as dist
from torch import nn

from torchrec_automtl.datasets.batch import Batch
from torchrec_automtl.modules.multitask import per_row_losses
from torchrec_automtl.pipelines.trainer import Trainer

Forward = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class HeldOutBatch:
    """The dense arch's inputs for one batch of held-out rows: pooled embeddings ``[B, S, E]``,
    dense features ``[B, D]``, labels ``[B, T]`` and the mask of real rows ``[B]``."""

    embeddings: torch.Tensor
    dense: torch.Tensor
    labels: torch.Tensor
    mask: torch.Tensor


class PermutationScores(NamedTuple):
    """``z`` ``[features, tasks]`` (or ``[features]``: the best task's) and the real rows it rests on."""

    z: torch.Tensor
    rows: int


def held_out_batch(multitask: nn.Module, batch: Batch) -> HeldOutBatch:
    """The dense arch's inputs for ``batch`` (on its device) under ``multitask`` (a ``MultiTaskModel``)."""
    return HeldOutBatch(multitask.pooled_embeddings(batch), batch.dense_features, batch.labels, batch.mask)


def _shuffled(batch: HeldOutBatch, feature: int, order: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch's inputs with input ``feature`` (sparse fields first, then dense features) permuted by ``order``."""
    sparse = batch.embeddings.shape[1]
    embeddings, dense = batch.embeddings, batch.dense
    if feature < sparse:
        embeddings = embeddings.clone()
        embeddings[:, feature] = batch.embeddings[order, feature]
    else:
        dense = dense.clone()
        dense[:, feature - sparse] = batch.dense[order, feature - sparse]
    return embeddings, dense


def _real_row_permutation(mask: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A row order ``[B]`` that shuffles the real rows among themselves and leaves padding rows in place."""
    real = mask.nonzero().flatten()
    order = torch.arange(mask.shape[0], device=mask.device)
    order[real] = real[torch.randperm(real.numel(), generator=generator).to(mask.device)]
    return order


@torch.no_grad()
def permutation_z_scores(forward: Forward, batches: Iterable[HeldOutBatch], features: list[int], is_binary: torch.Tensor,
                         seed: int, permutations: int = 1) -> PermutationScores:
    """``z`` ``[len(features), T]``: how many standard errors shuffling each feature raises each task's mean loss.

    Every batch is scored once as it is and ``permutations`` times per feature with that feature
    shuffled (seeded permutations of the batch's real rows); a row's difference is the mean over
    them, so more permutations take the shuffle's own noise out of the standard error. Under
    ``torch.distributed`` the sums are reduced over the ranks, so every rank returns the same
    scores. A feature whose shuffling changes no loss gets ``z = 0``.
    """
    generator = torch.Generator().manual_seed(seed)
    sums = sums_of_squares = count = None
    for batch in batches:
        base = per_row_losses(forward(batch.embeddings, batch.dense), batch.labels, is_binary)
        differences = []
        for feature in features:
            # exactly 0 where shuffling changes no output (padding rows stay in place, unread features)
            differences.append(sum(per_row_losses(forward(*_shuffled(batch, feature, _real_row_permutation(batch.mask, generator))),
                                              batch.labels, is_binary) - base for _ in range(permutations)) / permutations)
        d = torch.stack(differences).double()  # [F, B, T]; float64 sums: the differences are small
        batch_sums, batch_squares, batch_count = d.sum(1), (d * d).sum(1), batch.mask.sum().double()
        if sums is None:
            sums, sums_of_squares, count = batch_sums, batch_squares, batch_count
        else:
            sums, sums_of_squares, count = sums + batch_sums, sums_of_squares + batch_squares, count + batch_count
    if sums is None:
        raise ValueError("the permutation test of the features needs at least one batch of held-out rows")
    totals = torch.cat([sums.flatten(), sums_of_squares.flatten(), count.reshape(1)])
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(totals)
    size = sums.numel()
    n = totals[-1].clamp_min(2.0)
    mean = totals[:size].view_as(sums) / n
    variance = (totals[size:2 * size].view_as(sums) / n - mean * mean).clamp_min(0.0) * n / (n - 1)
    standard_error = (variance / n).sqrt()
    z = torch.where(standard_error > 0, mean / standard_error.clamp_min(1e-30), torch.zeros_like(mean))
    return PermutationScores(z, int(totals[-1]))


def validation_z_scores(trainer: Trainer, supernet: nn.Module, features: list[int], seed: int, epoch: int,
                        permutations: int = 1, max_rows: int = 0) -> PermutationScores:
    """Each feature's best task ``z`` ``[len(features)]`` on ``trainer``'s validation split, for the
    dense arch ``supernet`` of ``trainer.model``, with its BatchNorm statistics settled first as before
    a validation (``Trainer.settle_batchnorm``).

    ``max_rows`` > 0 reads only the first validation batches of every rank's share, enough for that
    many rows in all (at least one batch per rank), so the test's cost stays bounded on large data.
    """
    model, device = trainer.model, trainer.ctx.device
    reader = trainer.readers["valid"]
    batches_per_rank = len(reader) if max_rows <= 0 else min(len(reader), -(-max_rows // (reader.batch_size * trainer.ctx.world_size)))
    trainer.settle_batchnorm(epoch)
    multitask = model.module.model
    is_binary = torch.tensor([task.type == "binary" for task in trainer.tasks], device=device)
    model.eval()
    try:
        batches = (held_out_batch(multitask, batch.to(device, non_blocking=True))
                   for batch in itertools.islice(reader.epoch(), batches_per_rank))
        scores = permutation_z_scores(supernet, batches, features, is_binary, seed, permutations)
        return PermutationScores(scores.z.max(dim=1).values, scores.rows)
    finally:
        model.train()
