"""Paper 000's feature-interaction ops (Table 1): ``[B, F, E]`` field embeddings -> ``[B, width]``.

Each op computes its interaction signal and ends in a linear projection to ``width`` (the issue's
"one configurable width"); where paper 000 leaves the form open we take the cited model's own:

* ``skip``: the flattened fields, projected.
* ``mlp-H``: Linear(F*E, H) -> ReLU, projected.
* ``inner-product`` (IPNN): the flattened fields and every pair's inner product <e_i, e_j>, projected
  (PNN's linear and product signals, summed by the projection).
* ``outer-product`` (OPNN): the flattened fields and the outer product f f^T of the field sum
  f = sum_i e_i (PNN's superposition form; the outer product of every pair would cost F^2 E^2 per row).
* ``cross-L`` (Deep & Cross, the paper's reference [33]): L cross layers
  ``x_{l+1} = x_0 (w_l . x_l) + b_l + x_l`` over the flattened fields, projected.
* ``attention-H`` (AutoInt): one multi-head self-attention layer over the fields with H heads
  (E must divide by H), a residual projection and ReLU, flattened and projected.
"""

from __future__ import annotations

import re

import torch
from torch import nn


class Projected(nn.Module):
    """An interaction signal ``[B, features]`` followed by the projection to ``width``."""

    def __init__(self, signal: nn.Module, features: int, width: int) -> None:
        super().__init__()
        self.signal = signal
        self.projection = nn.Linear(features, width)

    def forward(self, fields: torch.Tensor) -> torch.Tensor:
        return self.projection(self.signal(fields))


class Flatten(nn.Module):
    def forward(self, fields: torch.Tensor) -> torch.Tensor:
        return fields.flatten(1)


class HiddenLayer(nn.Module):
    """``relu(Linear(F*E, hidden))`` of the flattened fields."""

    def __init__(self, in_features: int, hidden: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, hidden)

    def forward(self, fields: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.linear(fields.flatten(1)))


class InnerProducts(nn.Module):
    """The flattened fields and the inner product of every field pair i < j."""

    def __init__(self, num_fields: int) -> None:
        super().__init__()
        rows, columns = torch.triu_indices(num_fields, num_fields, offset=1)
        self.register_buffer("rows", rows, persistent=False)
        self.register_buffer("columns", columns, persistent=False)

    def forward(self, fields: torch.Tensor) -> torch.Tensor:
        gram = torch.bmm(fields, fields.transpose(1, 2))  # [B, F, F]
        return torch.cat([fields.flatten(1), gram[:, self.rows, self.columns]], dim=1)


class PooledOuterProduct(nn.Module):
    """The flattened fields and the outer product of the field sum (PNN's superposition OPNN)."""

    def forward(self, fields: torch.Tensor) -> torch.Tensor:
        pooled = fields.sum(dim=1)  # [B, E]
        return torch.cat([fields.flatten(1), (pooled.unsqueeze(2) * pooled.unsqueeze(1)).flatten(1)], dim=1)


class CrossNetwork(nn.Module):
    """Deep & Cross's cross layers on the flattened fields: ``x_{l+1} = x_0 (w_l . x_l) + b_l + x_l``."""

    def __init__(self, in_features: int, num_layers: int) -> None:
        super().__init__()
        self.weights = nn.Parameter(torch.randn(num_layers, in_features) / in_features ** 0.5)
        self.biases = nn.Parameter(torch.zeros(num_layers, in_features))

    def forward(self, fields: torch.Tensor) -> torch.Tensor:
        x0 = x = fields.flatten(1)
        for weight, bias in zip(self.weights, self.biases):
            x = x0 * (x @ weight).unsqueeze(1) + bias + x
        return x


class SelfAttention(nn.Module):
    """AutoInt's interacting layer: multi-head self-attention over the fields, a residual projection, ReLU."""

    def __init__(self, embedding_dim: int, heads: int) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(embedding_dim, heads, batch_first=True)
        self.residual = nn.Linear(embedding_dim, embedding_dim, bias=False)

    def forward(self, fields: torch.Tensor) -> torch.Tensor:
        attended, _ = self.attention(fields, fields, fields, need_weights=False)
        return torch.relu(attended + self.residual(fields)).flatten(1)


_SIZED = re.compile(r"(mlp|cross|attention)-(\d+)")


def build_interaction(name: str, num_fields: int, embedding_dim: int, width: int) -> Projected:
    """The interaction op ``name`` over ``num_fields`` fields of ``embedding_dim``, projected to ``width``."""
    flat = num_fields * embedding_dim
    match = _SIZED.fullmatch(name)
    size = int(match.group(2)) if match else 0
    if name == "skip":
        return Projected(Flatten(), flat, width)
    if name == "inner-product":
        return Projected(InnerProducts(num_fields), flat + num_fields * (num_fields - 1) // 2, width)
    if name == "outer-product":
        return Projected(PooledOuterProduct(), flat + embedding_dim * embedding_dim, width)
    if match and size > 0 and match.group(1) == "mlp":
        return Projected(HiddenLayer(flat, size), size, width)
    if match and size > 0 and match.group(1) == "cross":
        return Projected(CrossNetwork(flat, size), flat, width)
    if match and size > 0 and match.group(1) == "attention":
        if embedding_dim % size:
            raise ValueError(f"interaction '{name}': embedding_dim={embedding_dim} does not divide into {size} heads")
        return Projected(SelfAttention(embedding_dim, size), flat, width)
    raise ValueError(f"unknown interaction '{name}'; known: skip, inner-product, outer-product, mlp-<hidden>, "
                     "cross-<layers>, attention-<heads>")
