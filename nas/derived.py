"""The derived multi-task network: a plain dense arch built from ``architecture.json``.

It holds only what the architecture uses (experts that feed no gate are pruned, each block keeps
one op), so it trains like any other dense arch, e.g. ``model=automtl`` in ``nas.train``, and
plugs into other TorchRec training code as an ordinary ``nn.Module``:
``forward(embeddings [B, S, E], dense [B, D]) -> logits [B, T]``.
``derive_from_supernet`` builds it with the supernet's weights, for fine-tuning without retraining.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from torchrec_automtl.common.atomic_files import read_json
from torchrec_automtl.datasets.schema import Schema
from torchrec_automtl.modules.mlp import TaskTowers
from torchrec_automtl.modules.registry import ModelConfig, register_model
from torchrec_automtl.nas.architecture import Architecture, ArchitectureError
from torchrec_automtl.nas.operations import build_operation
from torchrec_automtl.nas.search_space import task_gate_name
from torchrec_automtl.nas.selection import shared_mask_interaction
from torchrec_automtl.nas.supernet import DesanSupernet
from torchrec_automtl.nas.v1.architecture import V1Architecture
from torchrec_automtl.nas.v1.derived import V1DerivedArch


class SelectedInput(nn.Module):
    """A consumer's input: its kept embeddings, kept dense features and their FM vector (as in the supernet)."""

    def __init__(self, sparse_index: list[int], dense_index: list[int]) -> None:
        super().__init__()
        self.register_buffer("sparse_index", torch.tensor(sparse_index, dtype=torch.long), persistent=False)
        self.register_buffer("dense_index", torch.tensor(dense_index, dtype=torch.long), persistent=False)
        self.register_buffer("fm_mask", torch.ones(1, len(sparse_index)), persistent=False)  # FM over every kept field
        self.reads_sparse = bool(sparse_index)  # a plain bool: the forward has no tensor-dependent branch (fx-traceable)

    def forward(self, embeddings: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        parts = []
        if self.reads_sparse:
            kept = embeddings.index_select(1, self.sparse_index)  # [B, s, E]
            # In this order: autograd sums the gradients reaching ``kept`` in the order its uses were made.
            parts += [kept.flatten(1), dense.index_select(1, self.dense_index),
                      shared_mask_interaction(kept, self.fm_mask.to(kept.dtype))[0]]
        else:
            parts.append(dense.index_select(1, self.dense_index))
        return torch.cat(parts, dim=1)

    def columns(self, num_sparse: int, num_dense: int, embedding_dim: int) -> list[int]:
        """Indices of this input's columns in the supernet's full consumer input."""
        sparse = [s * embedding_dim + e for s in self.sparse_index.tolist() for e in range(embedding_dim)]
        dense = [num_sparse * embedding_dim + d for d in self.dense_index.tolist()]
        fm = [num_sparse * embedding_dim + num_dense + e for e in range(embedding_dim)] if sparse else []
        return sparse + dense + fm


class DerivedGate(nn.Module):
    """Softmax gate over the kept lower-layer experts (``selected``), or over all of them (``all``, eq. 1)."""

    def __init__(self, selected_input: SelectedInput, in_features: int, experts: list[int], num_lower: int, normalization: str) -> None:
        super().__init__()
        self.input = selected_input
        self.experts = experts
        self.normalize_over_all = normalization == "all"
        self.linear = nn.Linear(in_features, num_lower if self.normalize_over_all else len(experts))

    def mixing_weights(self, embeddings: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        """Weights ``[B, k]`` of the gate's kept experts (in ``self.experts`` order)."""
        weights = self.linear(self.input(embeddings, dense)).softmax(dim=-1)  # [B, n or k]
        return weights[:, self.experts] if self.normalize_over_all else weights

    def forward(self, embeddings: torch.Tensor, dense: torch.Tensor, lower: dict[int, torch.Tensor]) -> torch.Tensor:
        weights = self.mixing_weights(embeddings, dense)
        stacked = torch.stack([lower[i] for i in self.experts], dim=1)  # [B, k, width]
        return torch.bmm(weights.unsqueeze(1), stacked).squeeze(1)


class DerivedExpert(nn.Module):
    """One expert: (layer 1) a projection of its selected input, then its chosen op per block."""

    def __init__(self, operations: list[nn.Module], projection: nn.Linear | None = None, selected_input: SelectedInput | None = None) -> None:
        super().__init__()
        self.input = selected_input
        self.projection = projection
        self.blocks = nn.Sequential(*operations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.projection is not None:
            x = self.projection(x)
        return self.blocks(x)


class DerivedMultiTaskArch(nn.Module):
    """The derived network of an ``Architecture``: ``(embeddings [B, S, E], dense [B, D]) -> logits [B, T]``."""

    def __init__(self, architecture: Architecture) -> None:
        super().__init__()
        self.architecture = architecture
        arch = architecture
        S, D, E, width = len(arch.sparse_features), len(arch.dense_features), arch.embedding_dim, arch.block_width
        self.used = [sorted(u) for u in arch.used_experts()]  # per layer, sorted expert indices
        gates = {g.name: g for g in arch.gates}
        self.experts = nn.ModuleList()  # one ModuleDict per layer, keyed by expert index
        self.gates = nn.ModuleList()
        for layer, used in enumerate(self.used):
            experts, layer_gates = nn.ModuleDict(), nn.ModuleDict()
            for j in used:
                spec = arch.layers[layer][j]
                operations = [_single_op(name, width, arch.mlp_batchnorm) for name in spec.operations]
                if layer == 0:
                    selected = _selected_input(arch, spec.features, spec.name)
                    in_features = len(selected.columns(S, D, E))
                    experts[str(j)] = DerivedExpert(operations, nn.Linear(in_features, width), selected)
                else:
                    experts[str(j)] = DerivedExpert(operations)
                    layer_gates[str(j)] = _gate(arch, gates[f"{spec.name}.gate"], layer - 1)
            self.experts.append(experts)
            self.gates.append(layer_gates)
        self.task_gates = nn.ModuleList(_gate(arch, gates[task_gate_name(t)], len(arch.layers) - 1) for t in arch.tasks)
        self.towers = TaskTowers(width, len(arch.tasks), arch.tower_hidden)

    def forward(self, embeddings: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        hidden: dict[int, torch.Tensor] = {}
        for j, expert in self.experts[0].items():
            hidden[int(j)] = expert(expert.input(embeddings, dense))
        for layer in range(1, len(self.experts)):
            hidden = {
                int(j): expert(self.gates[layer][j](embeddings, dense, hidden)) for j, expert in self.experts[layer].items()
            }
        task_inputs = torch.stack([gate(embeddings, dense, hidden) for gate in self.task_gates], dim=1)  # [B, T, width]
        return self.towers(task_inputs)

    def task_gate_weights(self, embeddings: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        """Each task's mixing weights over all last-layer experts ``[B, T, n]`` (0 for experts it does not use)."""
        n = len(self.architecture.layers[-1])
        out = embeddings.new_zeros(embeddings.shape[0], len(self.task_gates), n)
        for t, gate in enumerate(self.task_gates):
            out[:, t, gate.experts] = gate.mixing_weights(embeddings, dense)
        return out


def _selected_input(arch: Architecture, features: list[str], owner: str) -> SelectedInput:
    unknown = sorted(set(features) - set(arch.sparse_features) - set(arch.dense_features))
    if unknown:
        raise ArchitectureError(f"{owner} uses features {unknown} that the architecture's inputs do not list")
    return SelectedInput([i for i, f in enumerate(arch.sparse_features) if f in features],
                         [i for i, f in enumerate(arch.dense_features) if f in features])


def _gate(arch: Architecture, spec, lower_layer: int) -> DerivedGate:
    selected = _selected_input(arch, spec.features, spec.name)
    lower = {e.name: j for j, e in enumerate(arch.layers[lower_layer])}
    missing = [name for name in spec.experts if name not in lower]
    if missing or not spec.experts:
        raise ArchitectureError(f"{spec.name} must mix experts of layer {lower_layer + 1}; got {spec.experts}")
    in_features = len(selected.columns(len(arch.sparse_features), len(arch.dense_features), arch.embedding_dim))
    return DerivedGate(selected, in_features, [lower[name] for name in spec.experts], len(lower), arch.gate_normalization)


def _single_op(name: str, width: int, mlp_batchnorm: bool) -> nn.Module:
    return build_operation(name, 1, width, mlp_batchnorm).expert(0)


def derive_from_supernet(supernet: DesanSupernet, schema: Schema) -> DerivedMultiTaskArch:
    """The derived network of a fully discretized supernet, carrying over the supernet's weights.

    In evaluation mode it computes the same function as the supernet (the unused columns of
    projections and gates only ever saw zeroed inputs), so fine-tuning starts where search ended.
    """
    derived = DerivedMultiTaskArch(Architecture.from_supernet(supernet, schema))
    n, num_layers = supernet.config.num_experts, supernet.config.num_layers
    sizes = (len(supernet.sparse_names), len(supernet.dense_names), supernet.config.embedding_dim)
    with torch.no_grad():
        for layer, experts in enumerate(derived.experts):
            for key, expert in experts.items():
                j = int(key)
                if layer == 0:
                    _copy_linear(expert.projection, supernet.layers[0].projection.expert(j), expert.input.columns(*sizes))
                else:
                    _copy_gate(derived.gates[layer][key], supernet, (layer - 1) * n + j, sizes)
                for k, operation in enumerate(expert.blocks):
                    chosen = int(supernet.block_choice[layer, j, k])
                    operation.load_state_dict(supernet.layers[layer].blocks[k].operations[chosen].expert(j).state_dict())
        for t, gate in enumerate(derived.task_gates):
            _copy_gate(gate, supernet, n * (num_layers - 1) + t, sizes)
        derived.towers.load_state_dict(supernet.towers.state_dict())
    return derived


def _copy_linear(target: nn.Linear, source: nn.Linear, columns: list[int], rows: list[int] | None = None) -> None:
    weight, bias = source.weight, source.bias
    if rows is not None:
        weight, bias = weight[rows], bias[rows]
    target.weight.copy_(weight[:, columns])
    target.bias.copy_(bias)


def _copy_gate(gate: DerivedGate, supernet: DesanSupernet, row: int, sizes: tuple[int, int, int]) -> None:
    rows = None if gate.normalize_over_all else gate.experts
    _copy_linear(gate.linear, supernet.gates.expert(row), gate.input.columns(*sizes), rows)


@dataclass
class AutoMTLConfig(ModelConfig):
    """``model=automtl``: the derived network of an architecture.json, trained by ``nas.train``."""

    architecture: str = "???"


def load_architecture(path: str | Path) -> Architecture | V1Architecture:
    """The architecture in ``path``: a paper-000 one when it says ``"method": "v1"``, else a DESAN one."""
    payload = read_json(Path(path), ArchitectureError, "architecture file")
    v1 = isinstance(payload, dict) and payload.get("method") == "v1"
    return (V1Architecture if v1 else Architecture).from_dict(payload, source=str(path))


@register_model("automtl", AutoMTLConfig)
def build_automtl(config: AutoMTLConfig, schema: Schema) -> DerivedMultiTaskArch | V1DerivedArch:
    """The derived network of ``config.architecture`` (DESAN or paper 000's, as the file says)."""
    architecture = load_architecture(config.architecture)
    architecture.check_schema(schema, source=config.architecture)
    if architecture.embedding_dim != config.embedding_dim:
        raise ArchitectureError(
            f"{config.architecture} was searched with embedding_dim={architecture.embedding_dim}, "
            f"but model.embedding_dim={config.embedding_dim}"
        )
    return V1DerivedArch(architecture) if isinstance(architecture, V1Architecture) else DerivedMultiTaskArch(architecture)
