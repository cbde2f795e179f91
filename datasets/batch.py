"""The batch type every model and pipeline in this project consumes."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor
from torchrec.streamable import Pipelineable


@dataclass
class Batch(Pipelineable):
    """One batch, shaped like ``torchrec.datasets.utils.Batch`` plus a padding mask and group ids.

    Attributes:
        dense_features: ``[B, num_dense]`` float32.
        sparse_features: KJT with one key per sparse field, in schema order.
        labels: ``[B, num_tasks]`` float32.
        mask: ``[B]`` bool; False marks padding rows that evaluation adds so ranks stay in step.
        group_ids: ``[B]`` int64 user ids for GAUC, or ``-1`` where the schema has no group column.
    """

    dense_features: torch.Tensor
    sparse_features: KeyedJaggedTensor
    labels: torch.Tensor
    mask: torch.Tensor
    group_ids: torch.Tensor

    def to(self, device: torch.device, non_blocking: bool = False) -> "Batch":
        return Batch(
            dense_features=self.dense_features.to(device=device, non_blocking=non_blocking),
            sparse_features=self.sparse_features.to(device=device, non_blocking=non_blocking),
            labels=self.labels.to(device=device, non_blocking=non_blocking),
            mask=self.mask.to(device=device, non_blocking=non_blocking),
            group_ids=self.group_ids.to(device=device, non_blocking=non_blocking),
        )

    def record_stream(self, stream: torch.Stream) -> None:
        self.dense_features.record_stream(stream)
        self.sparse_features.record_stream(stream)
        self.labels.record_stream(stream)
        self.mask.record_stream(stream)
        self.group_ids.record_stream(stream)

    def pin_memory(self) -> "Batch":
        return Batch(
            dense_features=self.dense_features.pin_memory(),
            sparse_features=self.sparse_features.pin_memory(),
            labels=self.labels.pin_memory(),
            mask=self.mask.pin_memory(),
            group_ids=self.group_ids.pin_memory(),
        )

    @property
    def batch_size(self) -> int:
        return self.labels.shape[0]
