"""Streaming Parquet -> ``Batch`` reader: rank-aware, shuffled, memory-flat.

Rows of a split are numbered globally across its files (sorted by name). Rank ``r`` of ``W``
reads the contiguous range ``[r*N//W, (r+1)*N//W)``, so the ranks' parts are disjoint and cover
all rows. Every rank takes the same number of steps, so collectives never hang:

* training (``drop_last``): ``min_r(rows_r) // batch_size`` steps; the few rows past that are skipped
  this epoch (a different subset each epoch when shuffling).
* evaluation: ``ceil(max_r(rows_r) / batch_size)`` steps; the last batches are padded with masked
  rows, so every real row is seen exactly once and every batch has ``batch_size`` rows.

Shuffling (training only) permutes the order of the rank's row-group pieces each epoch, then
permutes rows inside a buffer of ``shuffle_buffer`` rows. Memory is bounded by the buffer and one
record batch, never by the file size.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from torchrec_automtl.datasets.batch import Batch
from torchrec_automtl.datasets.schema import Schema
from torchrec_automtl.datasets.validation import DataError, check_file_columns, check_table_values


def split_files(dataset_dir: str | Path, split: str) -> list[Path]:
    """Parquet files of ``split``: ``DIR/<split>/*.parquet`` or a single ``DIR/<split>.parquet``."""
    root = Path(dataset_dir)
    folder, single = root / split, root / f"{split}.parquet"
    if folder.is_dir():
        files = sorted(folder.glob("*.parquet"))
        if not files:
            raise DataError(f"{folder}: no *.parquet files for split '{split}'")
        return files
    if single.is_file():
        return [single]
    raise DataError(f"split '{split}' not found: expected folder {folder} or file {single}")


@dataclass(frozen=True)
class _Piece:
    """Rows ``[start, stop)`` of one row group; ``file_row`` is the file row number of ``start``."""

    file_index: int
    row_group: int
    start: int
    stop: int
    file_row: int


class ParquetSplit:
    """The row-group index of one split's Parquet files, checked against the schema on open.

    ``rows(start, stop)`` and ``without_rows(start, stop)`` give views of part of the split (e.g. a
    slice held out for architecture steps) that read and number rows like a split of their own.
    """

    def __init__(self, files: list[Path], schema: Schema, chunk_rows: int = 65536) -> None:
        self.files = [Path(f) for f in files]
        self.schema = schema
        self.chunk_rows = chunk_rows
        self._pieces: list[_Piece] = []  # whole row groups at first, parts of them in views
        for file_index, path in enumerate(self.files):
            if not path.is_file():
                raise DataError(f"{path}: file not found")
            try:
                metadata = pq.ParquetFile(path).metadata
            except (pa.ArrowInvalid, OSError) as error:  # truncated, empty or not Parquet at all
                raise DataError(f"{path}: not a readable Parquet file ({error})") from None
            check_file_columns(path, metadata.schema.to_arrow_schema(), schema)
            file_row = 0
            for row_group in range(metadata.num_row_groups):
                rows = metadata.row_group(row_group).num_rows
                if rows:
                    self._pieces.append(_Piece(file_index, row_group, 0, rows, file_row))
                file_row += rows

    @classmethod
    def open(cls, dataset_dir: str | Path, split: str, schema: Schema) -> "ParquetSplit":
        return cls(split_files(dataset_dir, split), schema)

    @property
    def num_rows(self) -> int:
        return sum(piece.stop - piece.start for piece in self._pieces)

    def rows(self, start: int, stop: int) -> "ParquetSplit":
        """A view of this split's rows ``[start, stop)``."""
        return self._view(self.pieces(start, stop))

    def without_rows(self, start: int, stop: int) -> "ParquetSplit":
        """A view of this split without its rows ``[start, stop)``."""
        return self._view(self.pieces(0, start) + self.pieces(stop, self.num_rows))

    def _view(self, pieces: list[_Piece]) -> "ParquetSplit":
        view = object.__new__(ParquetSplit)
        view.files, view.schema, view.chunk_rows, view._pieces = self.files, self.schema, self.chunk_rows, pieces
        return view

    def pieces(self, start: int, stop: int) -> list[_Piece]:
        """The row-group pieces covering this split's rows ``[start, stop)``, in file order."""
        pieces, offset = [], 0
        for piece in self._pieces:
            rows = piece.stop - piece.start
            lo, hi = max(start, offset), min(stop, offset + rows)
            if lo < hi:
                skip = lo - offset
                pieces.append(_Piece(piece.file_index, piece.row_group, piece.start + skip, piece.start + hi - offset,
                                     piece.file_row + skip))
            offset += rows
        return pieces

    def read(self, piece: _Piece) -> Iterator[pa.Table]:
        """Validated tables of at most ``chunk_rows`` rows holding exactly the piece's rows."""
        path = self.files[piece.file_index]
        parquet_file = pq.ParquetFile(path)
        row = 0  # row number inside the row group of the next record batch
        for record_batch in parquet_file.iter_batches(
            batch_size=self.chunk_rows, row_groups=[piece.row_group], columns=self.schema.columns
        ):
            lo, hi = max(piece.start, row), min(piece.stop, row + record_batch.num_rows)
            if lo < hi:
                table = pa.Table.from_batches([record_batch.slice(lo - row, hi - lo)])
                check_table_values(table, self.schema, path, piece.file_row + lo - piece.start)
                yield table
            row += record_batch.num_rows
            if row >= piece.stop:
                return


class BatchReader:
    """Streams one rank's part of a split as ``Batch``es; iterate ``epoch(n)`` once per epoch."""

    def __init__(
        self,
        split: ParquetSplit,
        batch_size: int,
        rank: int = 0,
        world_size: int = 1,
        training: bool = False,
        shuffle_buffer: int = 0,
        seed: int = 0,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world of size {world_size}")
        if split.num_rows == 0:
            raise DataError(f"{split.files[0].parent}: split has no rows")
        self.split = split
        self.schema = split.schema
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size
        self.training = training
        self.shuffle_buffer = shuffle_buffer if training else 0
        self.seed = seed
        n = split.num_rows
        bounds = [r * n // world_size for r in range(world_size + 1)]
        self.row_range = (bounds[rank], bounds[rank + 1])
        rank_rows = [bounds[r + 1] - bounds[r] for r in range(world_size)]
        if training:
            self.num_steps = min(rank_rows) // batch_size
        else:
            self.num_steps = -(-max(rank_rows) // batch_size)

    def __len__(self) -> int:
        return self.num_steps

    def epoch(self, epoch: int = 0) -> Iterator[Batch]:
        """Yield exactly ``num_steps`` batches of ``batch_size`` rows for ``epoch``."""
        emitted = 0
        for table, valid_rows in self._batched_tables(epoch):
            if emitted == self.num_steps:
                return
            yield self._to_batch(table, valid_rows)
            emitted += 1
        if self.training:
            return
        padding_row = self._padding_row()
        while emitted < self.num_steps:
            yield self._to_batch(padding_row.take(np.zeros(self.batch_size, dtype=np.int64)), valid_rows=0)
            emitted += 1

    def _batched_tables(self, epoch: int) -> Iterator[tuple[pa.Table, int]]:
        """``(table, valid_rows)`` of ``batch_size`` rows each; in evaluation the last one is padded."""
        rng = np.random.default_rng([self.seed, epoch, self.rank])
        pieces = self.split.pieces(*self.row_range)
        if self.shuffle_buffer:
            pieces = [pieces[i] for i in rng.permutation(len(pieces))]
        buffer: list[pa.Table] = []
        buffered = 0
        fill_to = max(self.shuffle_buffer, self.batch_size)
        for piece in pieces:
            for table in self.split.read(piece):
                buffer.append(table)
                buffered += table.num_rows
                if buffered >= fill_to:
                    merged = self._merge(buffer, rng)
                    full = buffered - buffered % self.batch_size
                    yield from self._slices(merged, full)
                    buffer, buffered = [merged.slice(full)], buffered - full
        if buffered:
            merged = self._merge(buffer, rng)
            full = buffered - buffered % self.batch_size
            yield from self._slices(merged, full)
            if not self.training and full < buffered:
                yield self._pad(merged.slice(full))

    def _merge(self, tables: list[pa.Table], rng: np.random.Generator) -> pa.Table:
        merged = pa.concat_tables(tables)
        if self.shuffle_buffer:
            merged = merged.take(rng.permutation(merged.num_rows))
        return merged.combine_chunks()

    def _slices(self, table: pa.Table, rows: int) -> Iterator[tuple[pa.Table, int]]:
        for start in range(0, rows, self.batch_size):
            yield table.slice(start, self.batch_size), self.batch_size

    def _pad(self, table: pa.Table) -> tuple[pa.Table, int]:
        """``table`` followed by copies of its first row up to ``batch_size`` rows, and its real row count."""
        filler = table.take(np.zeros(self.batch_size - table.num_rows, dtype=np.int64))
        return pa.concat_tables([table, filler]).combine_chunks(), table.num_rows

    def _padding_row(self) -> pa.Table:
        first = self.row_range[0] if self.row_range[0] < self.row_range[1] else 0
        return next(self.split.read(self.split.pieces(first, first + 1)[0]))

    def _to_batch(self, table: pa.Table, valid_rows: int) -> Batch:
        rows = table.num_rows
        values, lengths = [], []
        for feature in self.schema.sparse:
            column = table.column(feature.name)
            if feature.multi_hot:
                array = column.combine_chunks()
                values.append(_int_tensor(pc.list_flatten(array).to_numpy(), np.int64))
                lengths.append(_int_tensor(pc.list_value_length(array).to_numpy(), np.int32))
            else:
                values.append(_int_tensor(column.to_numpy(), np.int64))
                lengths.append(torch.ones(rows, dtype=torch.int32))
        sparse = KeyedJaggedTensor(
            keys=self.schema.sparse_names,
            values=torch.cat(values) if values else torch.empty(0, dtype=torch.int64),
            lengths=torch.cat(lengths) if lengths else torch.empty(0, dtype=torch.int32),
        )
        group = self.schema.group_column
        return Batch(
            dense_features=_float_matrix(table, self.schema.dense_names, rows),
            sparse_features=sparse,
            labels=_float_matrix(table, self.schema.task_names, rows),
            mask=torch.arange(rows) < valid_rows,
            group_ids=(
                _int_tensor(table.column(group).to_numpy(), np.int64)
                if group
                else torch.full((rows,), -1, dtype=torch.int64)
            ),
        )


def _float_matrix(table: pa.Table, names: list[str], rows: int) -> torch.Tensor:
    """Columns ``names`` of ``table`` as a ``[rows, len(names)]`` float32 tensor."""
    if not names:
        return torch.zeros(rows, 0)
    matrix = np.empty((rows, len(names)), dtype=np.float32)
    for j, name in enumerate(names):
        matrix[:, j] = table.column(name).to_numpy()
    return torch.from_numpy(matrix)


def _int_tensor(array: np.ndarray, dtype: type) -> torch.Tensor:
    """``array`` as a tensor of ``dtype``, copying only when Arrow's buffer is read-only or of another type."""
    return torch.from_numpy(np.require(array, dtype=dtype, requirements="W"))
