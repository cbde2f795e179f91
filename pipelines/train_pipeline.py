"""The training pipeline a model gets: TorchRec's TrainPipelineSparseDist, or plain steps (no overlap)."""

from __future__ import annotations

from typing import Iterator

import torch
from torch import nn
from torchrec.distributed.train_pipeline import TrainPipelineSparseDist

from torchrec_automtl.datasets.batch import Batch


class StepPipeline:
    """``TrainPipelineSparseDist``'s interface without overlap: each ``progress`` call trains on the next
    batch (forward, backward, optimizer step), calling the model directly.

    For models without embedding tables (an all-dense dataset: there is no sparse input distribution
    to overlap, and TorchRec's pipeline would fx-trace the whole dense arch), and for recipes that
    call the model between steps (the bi-level search), which TorchRec's rewritten model forbids.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, device: torch.device) -> None:
        self.model, self.optimizer, self.device = model, optimizer, device

    def progress(self, batches: Iterator[Batch]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        batch = next(batches).to(self.device, non_blocking=True)  # StopIteration ends the epoch
        self.optimizer.zero_grad()
        loss, output = self.model(batch)
        loss.backward()
        self.optimizer.step()
        return output

    def detach(self) -> nn.Module:
        return self.model


def build_train_pipeline(model: nn.Module, optimizer: torch.optim.Optimizer, device: torch.device, has_embeddings: bool):
    """TorchRec's sparse-dist pipeline when the model has embedding tables, else ``StepPipeline``."""
    if has_embeddings:
        return TrainPipelineSparseDist(model, optimizer, device)
    return StepPipeline(model, optimizer, device)
