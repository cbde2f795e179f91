"""Plug a searched AutoMTL head into your own TorchRec training script.

    python examples/train_with_searched_head.py runs/make-search --steps 200
    torchrun --nproc_per_node 2 examples/train_with_searched_head.py runs/make-search

Your model keeps its own embedding tables, as in TorchRec's golden training: an
``EmbeddingBagCollection`` built on the meta device and sharded by ``DistributedModelParallel``, with
its optimizer fused into the backward pass, and ``TrainPipelineSparseDist`` overlapping the sparse
input distribution with the dense work. The searched head (``nas.head.SearchedHead``, loaded from a
search run directory) is an ordinary ``nn.Module`` on top: it picks the pooled embeddings it needs by
feature name from the ``KeyedTensor`` the collection returns, takes the dense features, and returns
one logit per task. Nothing else of this project is needed.

The data here is random, with labels planted in the first feature's ids so that the loss falls;
replace ``planted_batches`` with your data loader (any iterator of ``torchrec.datasets.utils.Batch``
with ``labels`` of shape ``[B, tasks]``).
"""

from __future__ import annotations

import argparse
import os
from typing import Iterator, Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torchrec.datasets.utils import Batch
from torchrec.distributed.model_parallel import DistributedModelParallel
from torchrec.distributed.train_pipeline import TrainPipelineSparseDist
from torchrec.modules.embedding_configs import EmbeddingBagConfig
from torchrec.modules.embedding_modules import EmbeddingBagCollection
from torchrec.optim import RowWiseAdagrad
from torchrec.optim.apply_optimizer_in_backward import apply_optimizer_in_backward
from torchrec.optim.keyed import CombinedOptimizer, KeyedOptimizerWrapper
from torchrec.optim.optimizers import in_backward_optimizer_filter
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from torchrec_automtl.nas.head import SearchedHead


class RecommenderWithSearchedHead(nn.Module):
    """``forward(sparse KJT, dense [B, D]) -> logits [B, T]``: your tables, then the searched head."""

    def __init__(self, tables: EmbeddingBagCollection, head: SearchedHead) -> None:
        super().__init__()
        self.tables = tables
        self.head = head

    def forward(self, sparse: KeyedJaggedTensor, dense: torch.Tensor) -> torch.Tensor:
        return self.head(self.tables(sparse), dense)


class MultiTaskTrainModule(nn.Module):
    """The train module ``TrainPipelineSparseDist`` drives: ``batch -> (loss, (loss, logits, labels))``;
    the loss sums each task's BCE (binary tasks) or MSE (regression tasks)."""

    def __init__(self, model: RecommenderWithSearchedHead, task_types: Sequence[str]) -> None:
        super().__init__()
        self.model = model
        self.task_types = list(task_types)

    def forward(self, batch: Batch) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        logits = self.model(batch.sparse_features, batch.dense_features)
        losses = [F.binary_cross_entropy_with_logits(logits[:, t], batch.labels[:, t]) if kind == "binary"
                  else F.mse_loss(logits[:, t], batch.labels[:, t]) for t, kind in enumerate(self.task_types)]
        loss = torch.stack(losses).sum()
        return loss, (loss.detach(), logits.detach(), batch.labels)


def embedding_tables(head: SearchedHead, num_embeddings: int, device: torch.device) -> EmbeddingBagCollection:
    """One table per feature the head reads, of the head's embedding size."""
    return EmbeddingBagCollection(
        tables=[EmbeddingBagConfig(name=f"t_{name}", embedding_dim=head.architecture.embedding_dim,
                                   num_embeddings=num_embeddings, feature_names=[name]) for name in head.required_features],
        device=device,
    )


def planted_batches(head: SearchedHead, batch_size: int, num_embeddings: int, steps: int, seed: int) -> Iterator[Batch]:
    """``steps`` random batches; every task's label is the parity of the first feature's id."""
    generator = torch.Generator().manual_seed(seed)
    features = head.required_features
    for _ in range(steps):
        ids = torch.randint(0, num_embeddings, (len(features), batch_size), generator=generator)
        sparse = KeyedJaggedTensor.from_lengths_sync(keys=features, values=ids.flatten(),
                                                     lengths=torch.ones(len(features) * batch_size, dtype=torch.int32))
        target = (ids[0] % 2).float()
        labels = torch.stack([target if kind == "binary" else 2 * target - 1 for kind in head.task_types], dim=1)
        dense = torch.randn(batch_size, len(head.dense_features), generator=generator)
        yield Batch(dense_features=dense, sparse_features=sparse, labels=labels)


def init_process_group() -> torch.device:
    """Join torchrun's process group, or start a one-process one; nccl on GPUs, gloo on CPUs."""
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if torch.cuda.is_available() else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29511")
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                            rank=int(os.environ.get("RANK", 0)), world_size=int(os.environ.get("WORLD_SIZE", 1)))
    return device


def train(run_dir: str, steps: int, batch_size: int, num_embeddings: int, lr: float = 1e-2) -> list[float]:
    """Train your tables and the searched head of ``run_dir`` for ``steps``; returns the loss of every step."""
    device = init_process_group()
    try:
        head = SearchedHead.from_run(run_dir)
        module = MultiTaskTrainModule(
            RecommenderWithSearchedHead(embedding_tables(head, num_embeddings, torch.device("meta")), head), head.task_types)
        apply_optimizer_in_backward(RowWiseAdagrad, module.model.tables.parameters(), {"lr": 0.05})
        model = DistributedModelParallel(module, device=device)
        dense = KeyedOptimizerWrapper(dict(in_backward_optimizer_filter(model.named_parameters())),
                                      lambda params: torch.optim.Adam(params, lr=lr))
        pipeline = TrainPipelineSparseDist(model, CombinedOptimizer([model.fused_optimizer, dense]), device)
        batches = planted_batches(head, batch_size, num_embeddings, steps, seed=dist.get_rank())
        losses = []
        while True:
            try:
                loss, _, _ = pipeline.progress(batches)
            except StopIteration:
                return losses
            losses.append(float(loss))
    finally:
        dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="a finished search run (architecture.json, finetune/checkpoint/)")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--num-embeddings", type=int, default=1000)
    args = parser.parse_args()
    losses = train(args.run_dir, args.steps, args.batch_size, args.num_embeddings)
    if int(os.environ.get("RANK", 0)) == 0:
        tenth = max(1, len(losses) // 10)
        print(f"{len(losses)} steps: mean loss {sum(losses[:tenth]) / tenth:.4f} over the first tenth, "
              f"{sum(losses[-tenth:]) / tenth:.4f} over the last")


if __name__ == "__main__":
    main()
