"""``architecture.json``: the searched multi-task architecture, human-readable and versioned.

Layout (version 2; version 1 lacked ``task_types``)::

    {"version": 2, "method": "desan", "schema_fingerprint": "...", "tasks": [...], "task_types": ["binary", ...],
     "sparse_features": [...], "dense_features": [...],        # the inputs the search saw
     "embedding_dim": 16, "block_width": 64, "tower_hidden": [128, 64], "gate_normalization": "selected",
     "mlp_batchnorm": false,                                    # optional, false when absent
     "layers": [[{"name": "layer1.expert1", "operations": ["mlp-256", "skip", "linear"],
                  "features": ["121", "206", "dense_0"]}, ...], ...],   # features: layer 1 only
     "gates": [{"name": "layer2.expert1.gate", "features": [...], "experts": ["layer1.expert2", ...]},
               {"name": "task.click.gate", "features": [...], "experts": [...]}]}

Every expert of every layer is listed; experts that feed no gate (directly or through upper experts)
are dropped when the derived model is built.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from torchrec_automtl.common.atomic_files import atomic_write_json, read_json
from torchrec_automtl.common.errors import InputError
from torchrec_automtl.datasets.schema import Schema
from torchrec_automtl.nas.discretization import is_discretized
from torchrec_automtl.nas.search_space import expert_name, task_gate_name
from torchrec_automtl.nas.supernet import DesanSupernet

ARCHITECTURE_VERSION = 2
LINEAR_OPERATIONS = {"skip", "linear"}


class ArchitectureError(InputError):
    """An architecture file that is malformed or does not fit the data."""


@dataclass
class ExpertSpec:
    name: str
    operations: list[str]
    features: list[str] = field(default_factory=list)


@dataclass
class GateSpec:
    name: str
    features: list[str]
    experts: list[str]


class SearchedOnSchema:
    """For an architecture that records the inputs and tasks it was searched on (``schema_fingerprint``,
    ``sparse_features``, ``dense_features``, ``tasks``): the check that data fits it."""

    schema_fingerprint: str
    sparse_features: list[str]
    dense_features: list[str]
    tasks: list[str]

    def check_schema(self, schema: Schema, source: str = "architecture") -> None:
        """Raise ArchitectureError, naming what differs, unless ``schema`` is the one searched on."""
        if schema.fingerprint() == self.schema_fingerprint:
            return
        differences = []
        for what, mine, theirs in (("sparse features", self.sparse_features, schema.sparse_names),
                                   ("dense features", self.dense_features, schema.dense_names),
                                   ("tasks", self.tasks, schema.task_names)):
            if mine != theirs:
                missing, extra = sorted(set(mine) - set(theirs)), sorted(set(theirs) - set(mine))
                differences.append(f"{what}: searched on {mine}, data has {theirs} (missing {missing}, extra {extra})")
        if not differences:
            differences.append("same names, but cardinalities or task types differ")
        raise ArchitectureError(
            f"{source} was searched on a different schema (fingerprint {self.schema_fingerprint}, data {schema.fingerprint()}): "
            + "; ".join(differences)
        )


@dataclass
class Architecture(SearchedOnSchema):
    """A discretized DESAN network: per-expert ops and features, per-gate features and experts."""

    schema_fingerprint: str
    tasks: list[str]
    task_types: list[str]  # per task: binary (logits -> sigmoid) or regression (the value itself)
    sparse_features: list[str]
    dense_features: list[str]
    embedding_dim: int
    block_width: int
    tower_hidden: list[int]
    gate_normalization: str
    layers: list[list[ExpertSpec]]
    gates: list[GateSpec]
    mlp_batchnorm: bool = False  # MLP ops are Linear -> BatchNorm -> ReLU -> Linear
    method: str = "desan"  # absent in files written before paper 000's method joined
    version: int = ARCHITECTURE_VERSION

    @classmethod
    def from_supernet(cls, supernet: DesanSupernet, schema: Schema) -> "Architecture":
        """Read the decisions of a fully discretized supernet searched on ``schema``."""
        if not is_discretized(supernet):
            raise ArchitectureError("the supernet still has undecided blocks, features or connections")
        if schema.task_names != supernet.task_names:
            raise ArchitectureError(f"the supernet's tasks {supernet.task_names} are not the schema's {schema.task_names}")
        config, n = supernet.config, supernet.config.num_experts
        inputs = supernet.sparse_names + supernet.dense_names
        operations = config.candidate_operations
        choice = supernet.block_choice.tolist()
        features = [[inputs[i] for i, kept in enumerate(row) if kept] for row in supernet.feature_kept.tolist()]
        layers = [
            [
                ExpertSpec(expert_name(layer, j), [operations[m] for m in choice[layer][j]], features[j] if layer == 0 else [])
                for j in range(n)
            ]
            for layer in range(config.num_layers)
        ]
        gates = []
        for g, name in enumerate(supernet.gate_names):
            lower_layer = g // n if g < n * (config.num_layers - 1) else config.num_layers - 1
            experts = [expert_name(lower_layer, i) for i, kept in enumerate(supernet.connection_kept[g].tolist()) if kept]
            gates.append(GateSpec(name, features[n + g], experts))
        return cls(schema.fingerprint(), list(supernet.task_names), [t.type for t in schema.tasks],
                   list(supernet.sparse_names), list(supernet.dense_names),
                   config.embedding_dim, config.block_width, list(config.tower_hidden), config.gate_normalization, layers, gates,
                   config.mlp_batchnorm)

    def features_feeding(self, task: str) -> set[str]:
        """Every input feature that reaches ``task``: read by its gate, or by any expert or gate below it."""
        gates = {g.name: g for g in self.gates}
        task_gate = task_gate_name(task)
        features = set(gates[task_gate].features)
        for layer, j in self._experts_below([task_gate]):
            expert = self.layers[layer][j]
            features |= set(expert.features) if layer == 0 else set(gates[f"{expert.name}.gate"].features)
        return features

    def operation_histogram(self, used_only: bool = True) -> dict[str, int]:
        """How many blocks use each op (``{"mlp-256": 5, "skip": 3}``), over the experts that reach a task when ``used_only``."""
        used = self.used_experts() if used_only else [set(range(len(experts))) for experts in self.layers]
        counts: dict[str, int] = {}
        for layer, experts in enumerate(self.layers):
            for j, expert in enumerate(experts):
                if j in used[layer]:
                    for name in expert.operations:
                        counts[name] = counts.get(name, 0) + 1
        return dict(sorted(counts.items()))

    def linear_parts(self) -> list[str]:
        """Where the network is linear in its expert inputs: each layer whose used experts hold only skip/linear
        blocks, and each task none of whose experts (at any depth) holds a nonlinear op; empty when neither."""
        used = self.used_experts()
        nonlinear = [{j for j, e in enumerate(experts) if j in used[layer] and set(e.operations) - LINEAR_OPERATIONS}
                     for layer, experts in enumerate(self.layers)]
        parts = [f"layer {layer + 1}: every used expert is skip/linear" for layer in range(len(self.layers)) if not nonlinear[layer]]
        for task in self.tasks:
            if not any(j in nonlinear[layer] for layer, j in self._experts_below([task_gate_name(task)])):
                parts.append(f"task {task}: no expert on its path holds a nonlinear op")
        return parts

    def used_experts(self) -> list[set[int]]:
        """Per layer, the indices of the experts that reach a task through kept connections."""
        used: list[set[int]] = [set() for _ in self.layers]
        for layer, j in self._experts_below([task_gate_name(t) for t in self.tasks]):
            used[layer].add(j)
        return used

    def _experts_below(self, gate_names: list[str]) -> set[tuple[int, int]]:
        """``(layer, expert)`` of every expert that feeds the named gates, directly or through upper experts."""
        gates = {g.name: g for g in self.gates}
        index = {e.name: (layer, j) for layer, experts in enumerate(self.layers) for j, e in enumerate(experts)}
        frontier = [name for gate in gate_names for name in gates[gate].experts]
        reached: set[tuple[int, int]] = set()
        while frontier:
            layer, j = index[frontier.pop()]
            if (layer, j) not in reached:
                reached.add((layer, j))
                if layer > 0:
                    frontier.extend(gates[f"{self.layers[layer][j].name}.gate"].experts)
        return reached

    def to_dict(self) -> dict[str, Any]:
        payload = asdict(self)
        return {"version": payload.pop("version"), **payload}

    def save(self, path: str | Path) -> Path:
        atomic_write_json(path, self.to_dict())
        return Path(path)

    @classmethod
    def from_dict(cls, payload: dict[str, Any], source: str = "architecture") -> "Architecture":
        if payload.get("version") != ARCHITECTURE_VERSION:
            older = " (version 1 files lack task_types: search again, or add them)" if payload.get("version") == 1 else ""
            raise ArchitectureError(
                f"{source}: unsupported version {payload.get('version')!r}, expected {ARCHITECTURE_VERSION}{older}")
        if payload.get("method", "desan") != "desan":
            raise ArchitectureError(f"{source}: a method={payload['method']} architecture, not a DESAN (method=desan) one")
        try:
            values = dict(payload)
            values["layers"] = [[ExpertSpec(**e) for e in layer] for layer in payload["layers"]]
            values["gates"] = [GateSpec(**g) for g in payload["gates"]]
            return cls(**values)
        except (KeyError, TypeError) as error:
            raise ArchitectureError(f"{source}: malformed architecture ({error})") from None

    @classmethod
    def load(cls, path: str | Path) -> "Architecture":
        path = Path(path)
        return cls.from_dict(read_json(path, ArchitectureError, "architecture file"), source=str(path))
