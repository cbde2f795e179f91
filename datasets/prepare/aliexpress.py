"""AliExpress (paper 000): one country's ``train.csv`` and ``test.csv`` from the published release.

``--raw`` is one country folder (``AliExpress_NL``, ``AliExpress_ES``, ``AliExpress_FR`` or
``AliExpress_US``). Both files start with a header of 82 columns: a row id (``search_id``, dropped),
16 categorical columns (int64 ids), 63 numerical columns (float32, kept as published: the release
is already normalized), then the labels ``click`` and ``conversion``. Feature names come from the
header. Tasks: ``click`` and ``purchase`` (the ``conversion`` column). The official test file is
the test split; 20% of the official training file is held out for validation.

Paper 000 drops "users and items which appear less than 20 times"; the release does not say which
categorical columns are the user and the item, so the filter is opt-in: ``--min-occurrences N
--user-column NAME --item-column NAME`` keeps the rows (of both files) whose user and item each
occur at least N times in the training file; a row with a missing user or item is dropped.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.compute as pc

from torchrec_automtl.datasets.prepare.converter import Converter, Layout, StageContext, Staged
from torchrec_automtl.datasets.prepare.csv_rows import read_csv_rows, stage_tables
from torchrec_automtl.datasets.prepare.lines import read_header
from torchrec_automtl.datasets.prepare.splits import OFFICIAL_TEST, OFFICIAL_TRAIN
from torchrec_automtl.datasets.prepare.staging import read_batches, staged_rows
from torchrec_automtl.datasets.prepare.vocabulary import FrequencyCounter
from torchrec_automtl.datasets.validation import DataError

TRAIN_FILE, TEST_FILE = "train.csv", "test.csv"
FILES = ((TRAIN_FILE, OFFICIAL_TRAIN), (TEST_FILE, OFFICIAL_TEST))  # file index = position
CATEGORICAL, NUMERICAL = 16, 63
LABELS = ("click", "conversion")
TASKS = ("click", "purchase")
COLUMNS = 1 + CATEGORICAL + NUMERICAL + len(LABELS)


@dataclass(frozen=True)
class Header:
    """The column names of the published files: row id, categorical, numerical, labels."""

    names: tuple[str, ...]

    @classmethod
    def read(cls, path: Path) -> "Header":
        """The first line of ``path``, checked against the published layout."""
        names = read_header(path)
        if len(names) != COLUMNS or names[-len(LABELS):] != LABELS:
            raise DataError(f"{path}: line 1: header has {len(names)} columns ending in {list(names[-len(LABELS):])}; "
                            f"expected {COLUMNS} columns (a row id, {CATEGORICAL} categorical, {NUMERICAL} numerical, "
                            f"then the labels {list(LABELS)})")
        if len(set(names[:-len(LABELS)] + TASKS)) != COLUMNS:
            raise DataError(f"{path}: line 1: header names must be distinct and not {list(TASKS)}, found {list(names)}")
        return cls(names)

    @property
    def sparse(self) -> tuple[str, ...]:
        return self.names[1:1 + CATEGORICAL]

    @property
    def dense(self) -> tuple[str, ...]:
        return self.names[1 + CATEGORICAL:-len(LABELS)]


@dataclass(frozen=True)
class FrequencyFilter:
    """Keep rows whose user and item ids each occur at least ``min_occurrences`` times in the training file."""

    user_column: str
    item_column: str
    min_occurrences: int

    @property
    def columns(self) -> tuple[str, str]:
        return self.user_column, self.item_column

    def check(self, header: Header, path: Path) -> None:
        """Both columns must be categorical columns of ``header`` (read from ``path``)."""
        for option, name in (("--user-column", self.user_column), ("--item-column", self.item_column)):
            if name not in header.sparse:
                raise DataError(f"{option} '{name}' is not a categorical column of {path}; "
                                f"its categorical columns are {list(header.sparse)}")

    def apply(self, files: list[Path], counters: dict[str, FrequencyCounter]) -> tuple[list[Path], dict[str, Any]]:
        """Filtered copies of the staged ``files`` (which are deleted), and the rows before and after."""
        kept = {name: self._frequent(counter) for name, counter in counters.items()}
        filtered, before, after = [], {}, {}
        for path in files:
            tables = (table.filter(self._keep(table, kept)) for table in read_batches([path]))
            written = stage_tables(path.with_name(f"filtered-{path.name}"), tables)
            before[path.stem], after[path.stem] = staged_rows([path]), staged_rows(written)
            path.unlink()
            filtered += written
        return filtered, {"rows_before": before, "rows_after": after}

    def _frequent(self, counter: FrequencyCounter) -> pa.Array:
        counts = counter.counts(pa.int64())
        return counts.filter(pc.greater_equal(counts["count"], self.min_occurrences))["value"].combine_chunks()

    def _keep(self, table: pa.Table, kept: dict[str, pa.Array]) -> pa.Array:
        user, item = (pc.is_in(table[name], value_set=kept[name]) for name in self.columns)  # null -> False
        return pc.and_(user, item)


class AliExpress(Converter):
    name = "aliexpress"
    summary = "AliExpress (one country): click, purchase; official train/test, 20% of train for validation"
    default_valid_fraction = 0.2
    default_test_fraction = 0.0

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--country", default=None,
                            help="country recorded in manifest.json (default: the --raw folder's name)")
        parser.add_argument("--min-occurrences", type=int, default=0,
                            help="keep rows whose user and item each occur >= N times in train.csv (default 0: off)")
        parser.add_argument("--user-column", default=None, help="categorical column holding the user (frequency filter)")
        parser.add_argument("--item-column", default=None, help="categorical column holding the item (frequency filter)")

    def __init__(self, args: argparse.Namespace) -> None:
        self.country: str = args.country if args.country is not None else args.raw.resolve().name
        self.filter = _frequency_filter(args.min_occurrences, args.user_column, args.item_column)

    def raw_files(self) -> list[str]:
        return [name for name, _ in FILES]

    def options(self) -> dict[str, Any]:
        chosen = self.filter
        return {"country": self.country, "min_occurrences": chosen.min_occurrences if chosen else 0,
                "user_column": chosen.user_column if chosen else None,
                "item_column": chosen.item_column if chosen else None}

    def stage(self, context: StageContext) -> Staged:
        header = Header.read(context.raw / TRAIN_FILE)
        layout = Layout(header.sparse, header.dense, TASKS)
        if self.filter is None:
            return Staged(self._stage_files(context, header, {}), layout)
        self.filter.check(header, context.raw / TRAIN_FILE)
        counters = {name: FrequencyCounter() for name in self.filter.columns}
        files, counts = self.filter.apply(self._stage_files(context, header, counters), counters)
        return Staged(files, layout, {"frequency_filter": counts})

    def _stage_files(self, context: StageContext, header: Header, counters: dict[str, FrequencyCounter]) -> list[Path]:
        """Stage both files; ``counters`` (by column) count ids over the training file."""
        files = []
        for file_index, (name, staged_split) in enumerate(FILES):
            tables = _task_named(read_csv_rows(context, context.raw / name, header.names, ids=header.sparse,
                                               numbers=header.dense, labels=LABELS, file_index=file_index,
                                               staged_split=staged_split))
            if staged_split == OFFICIAL_TRAIN:
                tables = _counted(tables, counters)
            files += stage_tables(context.staging / f"{Path(name).stem}.parquet", tables)
        return files


def _frequency_filter(min_occurrences: int, user_column: str | None, item_column: str | None) -> FrequencyFilter | None:
    """The filter the options ask for, or None when ``--min-occurrences`` is 0."""
    if min_occurrences < 0:
        raise ValueError(f"--min-occurrences must be >= 0, got {min_occurrences}")
    if min_occurrences == 0:
        if user_column is not None or item_column is not None:
            raise ValueError("--user-column and --item-column only take effect with --min-occurrences N > 0")
        return None
    if user_column is None or item_column is None:
        raise ValueError("--min-occurrences needs both --user-column and --item-column "
                         "(the release does not say which categorical columns are the user and the item)")
    return FrequencyFilter(user_column, item_column, min_occurrences)


def _task_named(tables: Iterator[pa.Table]) -> Iterator[pa.Table]:
    """``tables`` with the label columns renamed to the task names (``conversion`` -> ``purchase``)."""
    for table in tables:
        yield table.rename_columns(dict(zip(LABELS, TASKS)))


def _counted(tables: Iterator[pa.Table], counters: dict[str, FrequencyCounter]) -> Iterator[pa.Table]:
    """``tables`` unchanged, each column named in ``counters`` counted on the way."""
    for table in tables:
        for name, counter in counters.items():
            counter.update(table[name].combine_chunks())
        yield table
