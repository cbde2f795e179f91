"""The steps every conversion shares after staging: vocabularies, split assignment, final Parquet.

1. ``build_vocabularies`` counts every sparse field's raw ids over the training split (test and
   validation ids unseen in training map to OOV, as they would online) and finds which list
   fields really are multi-hot; or ``--vocab`` reuses earlier vocabularies.
2. ``write_splits`` maps ids, assigns each row its split from ``(seed, row key)`` and writes
   ``train/ valid/ test/ part-NNNNN.parquet`` in the schema's column order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tqdm import tqdm

from torchrec_automtl.datasets.prepare.converter import Layout, Staged
from torchrec_automtl.datasets.prepare.splits import TRAIN, assign_splits
from torchrec_automtl.datasets.prepare.staging import ROW_KEY, STAGED_SPLIT, StagedFile, read_batches, staged_rows
from torchrec_automtl.datasets.prepare.vocabulary import FrequencyCounter, Vocabulary, VocabularySet
from torchrec_automtl.datasets.schema import SPLITS, DenseFeature, Schema, SparseFeature, TaskSpec
from torchrec_automtl.datasets.validation import DataError


@dataclass(frozen=True)
class SplitPlan:
    """How rows are split: ``seed`` and the fractions of ``splits.assign_splits``."""

    seed: int
    valid_fraction: float
    test_fraction: float

    def __post_init__(self) -> None:
        if not (0 < self.valid_fraction < 1 and 0 <= self.test_fraction < 1 and self.valid_fraction + self.test_fraction < 1):
            raise ValueError("--valid-fraction must be in (0, 1), --test-fraction in [0, 1), and their sum below 1")

    def splits_of(self, table: pa.Table) -> np.ndarray:
        keys = table[ROW_KEY].to_numpy()
        staged = table[STAGED_SPLIT].to_numpy()
        return assign_splits(keys, staged, self.seed, self.valid_fraction, self.test_fraction)


def _ids_of(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    return pc.list_flatten(column) if pa.types.is_list(column.type) else column


def build_vocabularies(dataset: str, staged: Staged, plan: SplitPlan, min_count: int, progress: bool) -> VocabularySet:
    """Vocabularies of every sparse field, counted over the training rows of ``staged``."""
    layout = staged.layout
    counters = {name: FrequencyCounter() for name in layout.sparse}
    longest = dict.fromkeys(layout.sparse, 0)
    value_types: dict[str, pa.DataType] = {}
    with tqdm(total=staged_rows(staged.files), unit="rows", unit_scale=True, desc="vocabularies", disable=not progress) as bar:
        for table in read_batches(staged.files, [ROW_KEY, STAGED_SPLIT, *layout.sparse]):
            is_train = pa.array(plan.splits_of(table) == TRAIN)
            for name in layout.sparse:
                column = table[name].combine_chunks()
                if pa.types.is_list(column.type):
                    lengths = pc.fill_null(pc.list_value_length(column), 0)
                    longest[name] = max(longest[name], pc.max(lengths).as_py() or 0)
                values = _ids_of(column.filter(is_train))
                value_types[name] = values.type
                counters[name].update(values)
            bar.update(table.num_rows)
    fields = {name: Vocabulary.build(name, counters[name].counts(value_types.get(name, pa.int64())), min_count)
              for name in layout.sparse}
    multi_hot = [name for name in layout.sparse if longest[name] > 1]
    return VocabularySet(dataset, layout.to_dict(), multi_hot, min_count, fields)


def check_reusable(vocabularies: VocabularySet, staged: Staged, source: Path) -> Layout:
    """The layout of ``vocabularies``, after checking ``staged`` provides all of its columns."""
    layout = Layout(tuple(vocabularies.layout["sparse"]), tuple(vocabularies.layout["dense"]),
                    tuple(vocabularies.layout["tasks"]), vocabularies.layout.get("group_column"))
    available = set(staged.layout.sparse + staged.layout.dense + staged.layout.tasks)
    missing = [name for name in layout.sparse + layout.dense + layout.tasks if name not in available]
    if missing:
        raise DataError(f"--vocab {source}: this data has no column(s) {missing} that the vocabularies were built with")
    return layout


def schema_of(layout: Layout, vocabularies: VocabularySet, metadata: dict[str, Any]) -> Schema:
    return Schema(
        sparse=tuple(SparseFeature(name, vocabularies.fields[name].cardinality, name in vocabularies.multi_hot)
                     for name in layout.sparse),
        dense=tuple(DenseFeature(name) for name in layout.dense),
        tasks=tuple(TaskSpec(name, "binary") for name in layout.tasks),
        group_column=layout.group_column,
        metadata=metadata,
    )


class SplitWriter:
    """``folder/part-NNNNN.parquet`` files of at most ``rows_per_file`` rows each."""

    def __init__(self, folder: Path, rows_per_file: int) -> None:
        folder.mkdir(parents=True)
        self.folder, self.rows_per_file = folder, rows_per_file
        self.rows, self._part, self._file = 0, 0, None

    def write(self, table: pa.Table) -> None:
        while table.num_rows:
            if self._file is None:
                self._file = StagedFile(self.folder / f"part-{self._part:05d}.parquet", final=True)
            room = self.rows_per_file - self._file.rows
            self._file.write(table.slice(0, room))
            self.rows += min(room, table.num_rows)
            table = table.slice(room)
            if self._file.rows == self.rows_per_file:
                self.close()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file, self._part = None, self._part + 1


def write_splits(staged: Staged, layout: Layout, vocabularies: VocabularySet, plan: SplitPlan, out: Path,
                 rows_per_file: int, progress: bool) -> dict[str, Any]:
    """Write the final Parquet splits under ``out``; return row counts and label rates per split."""
    writers = [SplitWriter(out / split, rows_per_file) for split in SPLITS]
    positives = np.zeros((len(SPLITS), len(layout.tasks)))
    with tqdm(total=staged_rows(staged.files), unit="rows", unit_scale=True, desc="write splits", disable=not progress) as bar:
        for table in read_batches(staged.files, [ROW_KEY, STAGED_SPLIT, *layout.sparse, *layout.dense, *layout.tasks]):
            split = plan.splits_of(table)
            final = _final_table(table, layout, vocabularies)
            for index, writer in enumerate(writers):
                rows = np.flatnonzero(split == index)
                if len(rows):
                    part = final.take(pa.array(rows))
                    writer.write(part)
                    positives[index] += [pc.sum(part[task]).as_py() for task in layout.tasks]
            bar.update(table.num_rows)
    for writer in writers:
        writer.close()
    empty = [split for split, writer in zip(SPLITS, writers) if writer.rows == 0]
    if empty:
        raise DataError(f"split(s) {empty} received no rows; convert more data or raise --valid-fraction/--test-fraction")
    rows = {split: writer.rows for split, writer in zip(SPLITS, writers)}
    rates = {split: {task: round(float(positives[i, j]) / rows[split], 6) for j, task in enumerate(layout.tasks)}
             for i, split in enumerate(SPLITS)}
    return {"rows": rows, "label_rates": rates}


def _final_table(table: pa.Table, layout: Layout, vocabularies: VocabularySet) -> pa.Table:
    columns: dict[str, pa.Array] = {}
    for name in layout.sparse:
        columns[name] = _mapped(table[name].combine_chunks(), vocabularies.fields[name], name in vocabularies.multi_hot)
    for name in layout.dense:
        columns[name] = pc.cast(table[name], pa.float32())
    for name in layout.tasks:
        columns[name] = pc.cast(table[name], pa.float32())
    return pa.table(columns)


def _mapped(column: pa.Array, vocabulary: Vocabulary, multi_hot: bool) -> pa.Array:
    if not pa.types.is_list(column.type):
        return pa.array(vocabulary.lookup(column))
    lengths = pc.fill_null(pc.list_value_length(column), 0).to_numpy(zero_copy_only=False)
    ids = vocabulary.lookup(pc.list_flatten(column))
    if multi_hot:
        offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
        np.cumsum(lengths, out=offsets[1:])
        return pa.ListArray.from_arrays(pa.array(offsets), pa.array(ids))
    if lengths.max(initial=0) > 1:
        raise DataError(f"field '{vocabulary.field}' has rows with {lengths.max()} ids but its vocabulary "
                        "(--vocab) says it is single-hot; convert without --vocab to rebuild the vocabularies")
    single = np.zeros(len(lengths), dtype=np.int64)
    single[lengths == 1] = ids
    return pa.array(single)
