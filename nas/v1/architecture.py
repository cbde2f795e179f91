"""``architecture.json`` of a paper-000 (``method=v1``) search: readable op names, the searched inputs.

Layout (version 1)::

    {"version": 1, "method": "v1", "schema_fingerprint": "...", "tasks": [...], "task_types": [...],
     "sparse_features": [...], "dense_features": [...], "embedding_dim": 16, "width": 64,
     "tower_hidden": [128, 64], "mlp_batchnorm": false,
     "interaction": "cross-2",
     "experts": [{"name": "expert1", "operations": ["gating", "mlp-64", "skip"]}, ...],
     "task_experts": {"click": ["expert2", "expert5", "expert7"], ...}}   # top-c, or all without selection

Experts no task selected are listed but dropped when the derived model is built.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from torchrec_automtl.common.atomic_files import atomic_write_json
from torchrec_automtl.datasets.schema import Schema
from torchrec_automtl.nas.architecture import ArchitectureError, SearchedOnSchema
from torchrec_automtl.nas.v1.supernet import V1Supernet

V1_ARCHITECTURE_VERSION = 1


def v1_expert_name(expert: int) -> str:
    return f"expert{expert + 1}"


@dataclass
class V1ExpertSpec:
    name: str
    operations: list[str]


@dataclass
class V1Architecture(SearchedOnSchema):
    """A discretized paper-000 network: the interaction op, each expert's ops, each task's experts."""

    schema_fingerprint: str
    tasks: list[str]
    task_types: list[str]
    sparse_features: list[str]
    dense_features: list[str]
    embedding_dim: int
    width: int
    tower_hidden: list[int]
    mlp_batchnorm: bool
    interaction: str
    experts: list[V1ExpertSpec]
    task_experts: dict[str, list[str]]
    method: str = "v1"
    version: int = V1_ARCHITECTURE_VERSION

    @classmethod
    def from_supernet(cls, supernet: V1Supernet, schema: Schema) -> "V1Architecture":
        """Read the decisions of a discretized supernet searched on ``schema``."""
        if not bool(supernet.discretized):
            raise ArchitectureError("the v1 supernet is not discretized yet")
        if schema.task_names != supernet.task_names:
            raise ArchitectureError(f"the supernet's tasks {supernet.task_names} are not the schema's {schema.task_names}")
        config = supernet.config
        operations = config.expert_operations
        experts = [V1ExpertSpec(v1_expert_name(j), [operations[m] for m in row]) for j, row in enumerate(supernet.block_choice.tolist())]
        task_experts = {task: [v1_expert_name(j) for j, kept in enumerate(row) if kept]
                        for task, row in zip(supernet.task_names, supernet.expert_kept.tolist())}
        return cls(schema.fingerprint(), list(supernet.task_names), [t.type for t in schema.tasks], list(supernet.sparse_names),
                   list(supernet.dense_names), config.embedding_dim, config.width, list(config.tower_hidden), config.mlp_batchnorm,
                   config.searched_interactions[int(supernet.interaction_choice)], experts, task_experts)

    def used_experts(self) -> list[int]:
        """Indices of the experts some task reads, in order."""
        used = set().union(*self.task_experts.values())
        return [j for j, expert in enumerate(self.experts) if expert.name in used]

    def operation_histogram(self, used_only: bool = True) -> dict[str, int]:
        """How many expert blocks use each op, over the experts some task reads when ``used_only``."""
        indices = self.used_experts() if used_only else range(len(self.experts))
        counts: dict[str, int] = {}
        for j in indices:
            for name in self.experts[j].operations:
                counts[name] = counts.get(name, 0) + 1
        return dict(sorted(counts.items()))

    def to_dict(self) -> dict[str, Any]:
        payload = asdict(self)
        return {"version": payload.pop("version"), "method": payload.pop("method"), **payload}

    def save(self, path: str | Path) -> Path:
        atomic_write_json(path, self.to_dict())
        return Path(path)

    @classmethod
    def from_dict(cls, payload: dict[str, Any], source: str = "architecture") -> "V1Architecture":
        if payload.get("method") != "v1" or payload.get("version") != V1_ARCHITECTURE_VERSION:
            raise ArchitectureError(f"{source}: expected a method=v1 architecture of version {V1_ARCHITECTURE_VERSION}, got "
                                    f"method={payload.get('method')!r} version={payload.get('version')!r}")
        try:
            values = dict(payload)
            values["experts"] = [V1ExpertSpec(**e) for e in payload["experts"]]
            architecture = cls(**values)
        except (KeyError, TypeError) as error:
            raise ArchitectureError(f"{source}: malformed architecture ({error})") from None
        names = {e.name for e in architecture.experts}
        for task in architecture.tasks:
            chosen = architecture.task_experts.get(task)
            if not chosen or set(chosen) - names:
                raise ArchitectureError(f"{source}: task_experts[{task!r}] must name some of the experts {sorted(names)}, got {chosen}")
        return architecture
