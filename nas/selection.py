"""Probabilistic selection of features and expert connections (paper 001, eqs. 3-4) and the FM interaction."""

from __future__ import annotations

import torch


def selection_mask(beta: torch.Tensor, decided: torch.Tensor, kept: torch.Tensor, sample: bool) -> torch.Tensor:
    """Keep-masks for the items behind ``beta`` (any shape).

    Decided items use their decision (0/1). Undecided items are, when ``sample``, kept with
    probability sigmoid(beta) (eq. 3) and the gradient reaches beta by the straight-through
    estimator of eq. 4: d(mask)/d(beta) = sigmoid(beta) (1 - sigmoid(beta)). Without ``sample``
    (evaluation) an undecided item is kept when sigmoid(beta) >= 0.5, the discretization threshold.
    """
    probability = torch.sigmoid(beta)
    if sample:
        drawn = torch.bernoulli(probability.detach())
        undecided = drawn + probability - probability.detach()
    else:
        undecided = (probability >= 0.5).to(beta.dtype)
    return torch.where(decided, kept.to(beta.dtype), undecided)


def bi_interaction(embeddings: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """FM second-order interaction of the selected fields, as a vector (the bi-interaction pooling).

    ``embeddings`` ``[B, S, E]``, ``mask`` ``[C, S]`` (one row per consumer) -> ``[C, B, E]`` with
    ``0.5 * ((sum_i m_i e_i)^2 - sum_i m_i e_i^2)``: summing its entries gives FM's pairwise term
    ``sum_{i<j} <e_i, e_j>`` over the selected fields. We keep the E-dim vector rather than its sum so
    the expert or gate can weigh the interaction per dimension.
    """
    summed = torch.einsum("cs,bse->cbe", mask, embeddings)
    squared = torch.einsum("cs,bse->cbe", mask, embeddings * embeddings)
    return 0.5 * (summed * summed - squared)
