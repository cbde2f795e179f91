"""Candidate operations of a mixture-of-operations block, batched over the experts of one MoE layer.

Every op maps ``[num_experts, B, width] -> [num_experts, B, width]`` with separate weights per
expert, so one layer's experts run as a few batched matmuls instead of a Python loop per expert.
``forward(x, experts)`` runs the op for the listed experts only (``x`` ``[len(experts), B, width]``):
once a block is decided its expert no longer pays for the ops it did not choose.
Names follow paper 001: ``skip``, ``linear``, ``mlp-N`` (Linear width->N, ReLU, Linear N->width),
plus ``conv1d`` for the paper's "+Conv1D" variant. With ``mlp_batchnorm`` the MLP op is the official
implementation's Linear -> BatchNorm -> ReLU -> Linear. Paper 000's expert ops add ``conv1d-K``
(kernel K; ``conv1d`` is ``conv1d-3``) and ``gating``, its bit-level gating layer.
"""

from __future__ import annotations

import math
import re
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn


class BatchedLinear(nn.Module):
    """``num_experts`` independent linear maps: ``[n, B, in] -> [n, B, out]``."""

    def __init__(self, num_experts: int, in_features: int, out_features: int) -> None:
        super().__init__()
        bound = 1 / math.sqrt(in_features)  # nn.Linear's default initialisation, per expert
        self.weight = nn.Parameter(torch.empty(num_experts, in_features, out_features).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(num_experts, 1, out_features).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor, experts: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` ``[n, B, in]``, or ``[len(experts), B, in]`` for the experts indexed by ``experts``."""
        if experts is None:
            return torch.baddbmm(self.bias, x, self.weight)
        return torch.baddbmm(self.bias[experts], x, self.weight[experts])

    def forward_masked(self, shared: torch.Tensor, mask: torch.Tensor, tail: torch.Tensor | None = None) -> torch.Tensor:
        """Every expert's map of its own masked copy of one input: ``[n, B, out]``.

        Expert i reads ``cat(shared * mask[i], tail[i])``: ``shared`` ``[B, F]`` is common to all,
        ``mask`` ``[n, 1 or B, F]`` and ``tail`` ``[n, B, F2]`` (or None) are per expert. A mask shared by
        the batch is folded into the weights, so the masked ``[n, B, F]`` copies are never built: one
        ``[B, F] x [F, n * out]`` matmul instead of n masked copies and a batched matmul.
        """
        n, features, out = self.weight.shape[0], shared.shape[1], self.weight.shape[2]
        head = self.weight[:, :features]
        if mask.shape[1] == 1:
            folded = (head * mask.transpose(1, 2)).transpose(0, 1).reshape(features, n * out)
            result = (shared @ folded).view(-1, n, out).transpose(0, 1) + self.bias
        else:
            result = torch.baddbmm(self.bias, shared.unsqueeze(0) * mask, head)
        if tail is not None:
            result = torch.baddbmm(result, tail, self.weight[:, features:])
        return result

    def expert(self, index: int) -> nn.Linear:
        """Expert ``index``'s map as a plain ``nn.Linear`` holding a copy of its weights."""
        linear = nn.Linear(self.weight.shape[1], self.weight.shape[2])
        with torch.no_grad():
            linear.weight.copy_(self.weight[index].T)
            linear.bias.copy_(self.bias[index, 0])
        return linear


class Skip(nn.Module):
    """The identity: a skip connection that lets the search choose a shallower expert."""

    def __init__(self, num_experts: int, width: int) -> None:
        super().__init__()

    def forward(self, x: torch.Tensor, experts: torch.Tensor | None = None) -> torch.Tensor:
        return x

    def expert(self, index: int) -> nn.Module:
        return nn.Identity()


class Linear(nn.Module):
    """One linear map ``width -> width`` per expert."""

    def __init__(self, num_experts: int, width: int) -> None:
        super().__init__()
        self.linear = BatchedLinear(num_experts, width, width)

    def forward(self, x: torch.Tensor, experts: torch.Tensor | None = None) -> torch.Tensor:
        return self.linear(x, experts)

    def expert(self, index: int) -> nn.Module:
        return self.linear.expert(index)


class BatchedBatchNorm(nn.Module):
    """BatchNorm over the batch dim of ``[n, B, features]``, with separate statistics per expert and feature."""

    def __init__(self, num_experts: int, features: int) -> None:
        super().__init__()
        self.features = features
        self.norm = nn.BatchNorm1d(num_experts * features)

    def forward(self, x: torch.Tensor, experts: torch.Tensor | None = None) -> torch.Tensor:
        n, batch, features = x.shape
        flat = x.transpose(0, 1).reshape(batch, n * features)
        normed = self.norm(flat) if experts is None else self._normalize_channels(flat, self._channels(experts))
        return normed.reshape(batch, n, features).transpose(0, 1)

    def _channels(self, experts: torch.Tensor) -> torch.Tensor:
        """The BatchNorm channels of ``experts``, expert by expert."""
        offsets = torch.arange(self.features, device=experts.device)
        return (experts[:, None] * self.features + offsets).flatten()

    def _normalize_channels(self, flat: torch.Tensor, channels: torch.Tensor) -> torch.Tensor:
        """``nn.BatchNorm1d``'s forward restricted to ``channels``: the others' statistics stay as they are."""
        norm = self.norm
        if not norm.training:
            return F.batch_norm(flat, norm.running_mean[channels], norm.running_var[channels],
                                norm.weight[channels], norm.bias[channels], False, 0.0, norm.eps)
        norm.num_batches_tracked.add_(1)
        momentum = norm.momentum if norm.momentum is not None else 1.0 / float(norm.num_batches_tracked)
        mean, var = norm.running_mean[channels], norm.running_var[channels]  # copies, updated by batch_norm
        normed = F.batch_norm(flat, mean, var, norm.weight[channels], norm.bias[channels], True, momentum, norm.eps)
        with torch.no_grad():
            norm.running_mean[channels] = mean
            norm.running_var[channels] = var
        return normed

    def expert(self, index: int) -> nn.BatchNorm1d:
        """Expert ``index``'s slice as a plain ``nn.BatchNorm1d`` (weights and running statistics copied)."""
        norm = nn.BatchNorm1d(self.features, eps=self.norm.eps, momentum=self.norm.momentum)
        rows = slice(index * self.features, (index + 1) * self.features)
        with torch.no_grad():
            for name in ("weight", "bias", "running_mean", "running_var"):
                getattr(norm, name).copy_(getattr(self.norm, name)[rows])
            norm.num_batches_tracked.copy_(self.norm.num_batches_tracked)
        return norm


class MLP(nn.Module):
    """``Linear(width, hidden) [-> BatchNorm] -> ReLU -> Linear(hidden, width)`` per expert (paper 001's MLP-N)."""

    def __init__(self, num_experts: int, width: int, hidden: int, batchnorm: bool = False) -> None:
        super().__init__()
        self.up = BatchedLinear(num_experts, width, hidden)
        self.norm = BatchedBatchNorm(num_experts, hidden) if batchnorm else None
        self.down = BatchedLinear(num_experts, hidden, width)

    def forward(self, x: torch.Tensor, experts: torch.Tensor | None = None) -> torch.Tensor:
        hidden = self.up(x, experts)
        if self.norm is not None:
            hidden = self.norm(hidden, experts)
        return self.down(torch.relu(hidden), experts)

    def expert(self, index: int) -> nn.Module:
        norm = [self.norm.expert(index)] if self.norm is not None else []
        return nn.Sequential(self.up.expert(index), *norm, nn.ReLU(), self.down.expert(index))


class Conv1D(nn.Module):
    """A 1-D convolution (odd ``kernel``, same padding) along the width of each expert's vector, then ReLU."""

    def __init__(self, num_experts: int, width: int, kernel: int = 3) -> None:
        super().__init__()
        self.kernel = kernel
        self.conv = nn.Conv1d(num_experts, num_experts, kernel, padding=kernel // 2, groups=num_experts)

    def forward(self, x: torch.Tensor, experts: torch.Tensor | None = None) -> torch.Tensor:
        conv = self.conv
        weight, bias = (conv.weight, conv.bias) if experts is None else (conv.weight[experts], conv.bias[experts])
        out = F.conv1d(x.transpose(0, 1), weight, bias, padding=conv.padding, groups=x.shape[0])  # experts as conv groups
        return torch.relu(out).transpose(0, 1)

    def expert(self, index: int) -> nn.Module:
        conv = nn.Conv1d(1, 1, self.kernel, padding=self.kernel // 2)
        with torch.no_grad():
            conv.weight.copy_(self.conv.weight[index : index + 1])
            conv.bias.copy_(self.conv.bias[index : index + 1])
        return _SingleChannelConv(conv)


class _SingleChannelConv(nn.Module):
    """One expert's Conv1D op on ``[B, width]``."""

    def __init__(self, conv: nn.Conv1d) -> None:
        super().__init__()
        self.conv = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x.unsqueeze(1))).squeeze(1)


class BitGating(nn.Module):
    """Paper 000's bit-level gating layer (GateNet's bit-wise gate): ``x * sigmoid(W x + b)`` per expert."""

    def __init__(self, num_experts: int, width: int) -> None:
        super().__init__()
        self.gate = BatchedLinear(num_experts, width, width)

    def forward(self, x: torch.Tensor, experts: torch.Tensor | None = None) -> torch.Tensor:
        return x * torch.sigmoid(self.gate(x, experts))

    def expert(self, index: int) -> nn.Module:
        return _SingleBitGating(self.gate.expert(index))


class _SingleBitGating(nn.Module):
    """One expert's bit-level gating on ``[B, width]``."""

    def __init__(self, gate: nn.Linear) -> None:
        super().__init__()
        self.gate = gate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.gate(x))


OperationBuilder = Callable[[int, int], nn.Module]
_FIXED_OPERATIONS: dict[str, OperationBuilder] = {"skip": Skip, "linear": Linear, "conv1d": Conv1D, "gating": BitGating}
_SIZED_NAME = re.compile(r"(mlp|conv1d)-(\d+)")


def build_operation(name: str, num_experts: int, width: int, mlp_batchnorm: bool = False) -> nn.Module:
    """The batched op called ``name`` (``skip``, ``linear``, ``gating``, ``conv1d[-<odd kernel>]`` or
    ``mlp-<hidden>``, with BatchNorm if ``mlp_batchnorm``)."""
    if name in _FIXED_OPERATIONS:
        return _FIXED_OPERATIONS[name](num_experts, width)
    match = _SIZED_NAME.fullmatch(name)
    if match and match.group(1) == "mlp" and int(match.group(2)) > 0:
        return MLP(num_experts, width, int(match.group(2)), mlp_batchnorm)
    if match and match.group(1) == "conv1d" and int(match.group(2)) % 2 == 1:
        return Conv1D(num_experts, width, int(match.group(2)))
    raise ValueError(f"unknown operation '{name}'; known: {sorted(_FIXED_OPERATIONS)}, mlp-<hidden size> and conv1d-<odd kernel>")
