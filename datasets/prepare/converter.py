"""What every dataset converter provides, and what it hands to the shared finishing steps."""

from __future__ import annotations

import argparse
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from torchrec_automtl.datasets.prepare.bad_lines import BadLines
from torchrec_automtl.datasets.prepare.lines import BLOCK_BYTES


@dataclass(frozen=True)
class Layout:
    """The columns of a converter's staged rows that become the dataset's features and tasks.

    Sparse columns hold raw ids (integers or strings; a list column may become multi-hot),
    dense columns float32 values, tasks 0/1 labels. ``group_column`` is the user field (GAUC).
    """

    sparse: tuple[str, ...]
    dense: tuple[str, ...]
    tasks: tuple[str, ...]
    group_column: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"sparse": list(self.sparse), "dense": list(self.dense), "tasks": list(self.tasks),
                "group_column": self.group_column}


@dataclass
class Staged:
    """Staged Parquet files (raw ids, ``_row`` key, ``_split``) plus facts for manifest.json."""

    files: list[Path]
    layout: Layout
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class StageContext:
    """Where and how a converter stages its rows."""

    raw: Path
    staging: Path
    bad_lines: BadLines
    progress: bool = True
    block_bytes: int = BLOCK_BYTES


class Converter(ABC):
    """One public dataset: its raw files, options and parsing into staged rows.

    Subclasses set ``name``, ``summary`` and the default split fractions, declare their options
    in ``add_arguments`` and read them in ``__init__`` from the parsed namespace.
    """

    name: ClassVar[str]
    summary: ClassVar[str]
    default_valid_fraction: ClassVar[float] = 0.1
    default_test_fraction: ClassVar[float] = 0.1

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Dataset-specific command-line options (none by default)."""

    @abstractmethod
    def __init__(self, args: argparse.Namespace) -> None: ...

    @abstractmethod
    def raw_files(self) -> list[str]:
        """The published file names this converter reads from ``--raw``."""

    @abstractmethod
    def stage(self, context: StageContext) -> Staged:
        """Parse the raw files into staged rows under ``context.staging``."""

    def options(self) -> dict[str, Any]:
        """The dataset-specific options used, for manifest.json."""
        return {}
