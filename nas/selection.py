"""Probabilistic selection of features and expert connections (paper 001, eqs. 3-4) and the FM interaction."""

from __future__ import annotations

import torch


def selection_mask(beta: torch.Tensor, decided: torch.Tensor, kept: torch.Tensor, sample: bool, rows: int = 1,
                   all_ones: bool = False) -> torch.Tensor:
    """Keep-masks ``[R, rows, F]`` for the items behind ``beta`` ``[R, F]`` (R consumers or gates).

    Decided items use their decision (0/1). Undecided items are, when ``sample``, kept with
    probability sigmoid(beta) (eq. 3), drawn independently for each of ``rows`` rows, and the
    gradient reaches beta by the straight-through estimator of eq. 4:
    d(mask)/d(beta) = sigmoid(beta) (1 - sigmoid(beta)). With ``all_ones`` (the official
    implementation) undecided items are always kept, in training and evaluation, with the same
    straight-through gradient. Otherwise, without ``sample`` (evaluation) an undecided item is kept
    when sigmoid(beta) >= 0.5, the discretization threshold, and ``rows`` is 1.
    """
    probability = torch.sigmoid(beta).unsqueeze(1)  # [R, 1, F]
    straight_through = probability - probability.detach()  # exactly 0, with the gradient of probability
    if all_ones:
        undecided = 1.0 + straight_through
    elif sample:
        undecided = torch.bernoulli(probability.detach().expand(-1, rows, -1)) + straight_through
    else:
        undecided = (probability >= 0.5).to(beta.dtype)
    return torch.where(decided.unsqueeze(1), kept.unsqueeze(1).to(beta.dtype), undecided)


def bi_interaction(embeddings: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """FM second-order interaction of the selected fields, as a vector (the bi-interaction pooling).

    ``embeddings`` ``[B, S, E]``, ``mask`` ``[C, B or 1, S]`` (per consumer) -> ``[C, B, E]`` with
    ``0.5 * ((sum_i m_i e_i)^2 - sum_i m_i e_i^2)``: summing its entries gives FM's pairwise term
    ``sum_{i<j} <e_i, e_j>`` over the selected fields. We keep the E-dim vector rather than its sum so
    the expert or gate can weigh the interaction per dimension.
    """
    if mask.shape[1] == 1:
        return shared_mask_interaction(embeddings, mask[:, 0])
    return _interaction("cbs,bse->cbe", mask, embeddings)


def shared_mask_interaction(embeddings: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``bi_interaction`` for a mask ``[C, S]`` shared by the batch: each sum is one [C, S] x [S, B * E]
    matmul. Free of shape-dependent branches, so a traced model (torch.fx) can call it."""
    return _interaction("cs,bse->cbe", mask, embeddings)


def _interaction(equation: str, mask: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
    summed = torch.einsum(equation, mask, embeddings)
    squared = torch.einsum(equation, mask, embeddings * embeddings)
    return 0.5 * (summed * summed - squared)
