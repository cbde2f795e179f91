"""The dataset schema: sparse fields, dense features and tasks, stored as ``schema.json``.

A prepared dataset is a folder::

    DIR/schema.json
    DIR/train/*.parquet   DIR/valid/*.parquet   DIR/test/*.parquet

Parquet columns are named after the schema entries: a single-hot sparse field is an integer
column, a multi-hot field a ``list<integer>`` column, dense features and labels are floating
point (labels may also be integer). Ids are already remapped to ``[0, cardinality)``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from torchrec_automtl.common.atomic_files import atomic_write_json, read_json
from torchrec_automtl.common.errors import InputError

SCHEMA_FILE = "schema.json"
SCHEMA_VERSION = 1
SPLITS = ("train", "valid", "test")
TaskType = Literal["binary", "regression"]


class SchemaError(InputError):
    """A schema.json that is missing, malformed or inconsistent."""


@dataclass(frozen=True)
class SparseFeature:
    """A categorical field: one embedding table of ``cardinality`` rows."""

    name: str
    cardinality: int
    multi_hot: bool = False


@dataclass(frozen=True)
class DenseFeature:
    """A float feature fed to the dense arch as it is."""

    name: str


@dataclass(frozen=True)
class TaskSpec:
    """A prediction task: a label column and how it is scored (BCE/AUC or MSE)."""

    name: str
    type: TaskType = "binary"


@dataclass(frozen=True)
class Schema:
    """Features and tasks of a dataset; ``group_column`` names the user id used for GAUC."""

    sparse: tuple[SparseFeature, ...]
    dense: tuple[DenseFeature, ...]
    tasks: tuple[TaskSpec, ...]
    group_column: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not self.tasks:
            raise SchemaError("schema has no tasks")
        if not self.sparse and not self.dense:
            raise SchemaError("schema has neither sparse nor dense features")
        names = [c for c in self.columns]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise SchemaError(f"schema column names must be unique, repeated: {duplicates}")
        for feature in self.sparse:
            if feature.cardinality < 1:
                raise SchemaError(f"sparse feature '{feature.name}': cardinality must be >= 1, got {feature.cardinality}")
        for task in self.tasks:
            if task.type not in ("binary", "regression"):
                raise SchemaError(f"task '{task.name}': type must be 'binary' or 'regression', got '{task.type}'")
        if self.group_column is not None:
            single_hot = {f.name for f in self.sparse if not f.multi_hot}
            if self.group_column not in single_hot:
                raise SchemaError(
                    f"group_column '{self.group_column}' must name a single-hot sparse feature, one of {sorted(single_hot)}"
                )

    @property
    def sparse_names(self) -> list[str]:
        return [f.name for f in self.sparse]

    @property
    def dense_names(self) -> list[str]:
        return [f.name for f in self.dense]

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    @property
    def columns(self) -> list[str]:
        """Every Parquet column the pipeline reads, in schema order."""
        return self.sparse_names + self.dense_names + self.task_names

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": SCHEMA_VERSION,
            "sparse": [asdict(f) for f in self.sparse],
            "dense": [asdict(f) for f in self.dense],
            "tasks": [asdict(t) for t in self.tasks],
            "group_column": self.group_column,
            "metadata": self.metadata,
        }

    def fingerprint(self) -> str:
        """A short hash of everything a trained model depends on (features, cardinalities, tasks)."""
        payload = self.to_dict()
        payload.pop("metadata")
        payload.pop("group_column")
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / SCHEMA_FILE
        atomic_write_json(path, self.to_dict())
        return path

    @classmethod
    def from_dict(cls, payload: dict[str, Any], source: str = "schema") -> "Schema":
        try:
            version = payload.get("version")
            if version != SCHEMA_VERSION:
                raise SchemaError(f"{source}: unsupported schema version {version!r}, expected {SCHEMA_VERSION}")
            unknown = set(payload) - {"version", "sparse", "dense", "tasks", "group_column", "metadata"}
            if unknown:
                raise SchemaError(f"{source}: unknown keys {sorted(unknown)}")
            return cls(
                sparse=tuple(SparseFeature(**f) for f in payload.get("sparse", [])),
                dense=tuple(DenseFeature(**f) for f in payload.get("dense", [])),
                tasks=tuple(TaskSpec(**t) for t in payload["tasks"]),
                group_column=payload.get("group_column"),
                metadata=payload.get("metadata", {}),
            )
        except SchemaError as error:
            if str(error).startswith(source):
                raise
            raise SchemaError(f"{source}: {error}") from None
        except (KeyError, TypeError) as error:
            raise SchemaError(f"{source}: malformed schema ({error})") from None

    @classmethod
    def load(cls, folder: str | Path) -> "Schema":
        """Read ``folder/schema.json`` (``folder`` may also be the file itself)."""
        path = Path(folder)
        if path.is_dir():
            path = path / SCHEMA_FILE
        return cls.from_dict(read_json(path, SchemaError, "schema file"), source=str(path))
