"""The searched multi-task head as an ordinary module for other TorchRec training code.

    head = SearchedHead.from_run("runs/make-search")     # architecture + fine-tuned dense weights
    logits = head(ebc(features), dense)                  # KeyedTensor of pooled embeddings, [B, D] -> [B, T]

It needs no project ``Schema``: the pooled embeddings are picked by feature name from the
``KeyedTensor`` an ``EmbeddingBagCollection`` returns, and only ``required_features`` need be there
(fields the searched network never reads may be absent). ``dense`` holds ``dense_features``, in order.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchrec.sparse.jagged_tensor import KeyedTensor

from torchrec_automtl.nas.architecture import Architecture, ArchitectureError
from torchrec_automtl.nas.derived import DerivedMultiTaskArch, load_architecture
from torchrec_automtl.nas.v1.architecture import V1Architecture
from torchrec_automtl.nas.v1.derived import V1DerivedArch
from torchrec_automtl.pipelines.checkpoint import load_state

# Where a search run keeps the fine-tuned model, and the dense arch's key prefix inside that checkpoint.
FINETUNED_CHECKPOINT = Path("finetune") / "checkpoint"
DENSE_ARCH_PREFIX = "model.dense_arch."


class SearchedHead(nn.Module):
    """``forward(pooled: KeyedTensor, dense [B, D]) -> logits [B, T]`` of a searched architecture
    (DESAN's, or paper 000's ``method=v1``, whose interaction module reads every field)."""

    def __init__(self, architecture: Architecture | V1Architecture) -> None:
        super().__init__()
        self.architecture = architecture
        if isinstance(architecture, V1Architecture):
            self.network: nn.Module = V1DerivedArch(architecture)
            read = set(architecture.sparse_features)
        else:
            self.network = DerivedMultiTaskArch(architecture)
            read = set().union(*(architecture.features_feeding(task) for task in architecture.tasks))
        self.required_features = [name for name in architecture.sparse_features if name in read]
        self.dense_features = list(architecture.dense_features)
        self.tasks = list(architecture.tasks)
        self.task_types = list(architecture.task_types)

    @classmethod
    def from_run(cls, run_dir: str | Path) -> "SearchedHead":
        """The head of a finished search run: ``architecture.json`` and the fine-tuned dense weights."""
        run_dir = Path(run_dir)
        head = cls(load_architecture(run_dir / "architecture.json"))
        checkpoint = run_dir / FINETUNED_CHECKPOINT
        if not checkpoint.is_dir():
            raise ArchitectureError(f"{checkpoint} not found: is {run_dir} a finished search run?")
        state = {DENSE_ARCH_PREFIX + name: value for name, value in head.network.state_dict().items()}
        load_state(state, checkpoint)
        head.network.load_state_dict({name[len(DENSE_ARCH_PREFIX):]: value for name, value in state.items()})
        return head

    def forward(self, pooled: KeyedTensor, dense: torch.Tensor) -> torch.Tensor:
        pooled = require_features(pooled, self.required_features)
        zeros = dense.new_zeros(dense.shape[0], self.architecture.embedding_dim)
        read = set(self.required_features)
        embeddings = torch.stack([pooled[name] if name in read else zeros for name in self.architecture.sparse_features], dim=1)
        return self.network(embeddings, dense)


@torch.fx.wrap  # one opaque call in a traced graph (TorchRec's pipelines and inference trace models), run on real values
def require_features(pooled: KeyedTensor, names: list[str]) -> KeyedTensor:
    """``pooled``, once it is checked to hold every feature in ``names`` (a KeyError names the missing ones)."""
    missing = [name for name in names if name not in pooled.keys()]
    if missing:
        raise KeyError(f"pooled embeddings lack the searched head's features {missing}")
    return pooled
