"""Intermediate Parquet files a conversion writes under its temporary output folder.

Converters stage parsed rows (raw ids, numbers, labels) here before vocabularies exist; large
joins and aggregations partition rows into buckets by a key so each bucket fits in memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROW_GROUP_ROWS = 65_536
BUFFER_BYTES = 8 << 20  # a file flushes a row group at ROW_GROUP_ROWS rows or this many bytes
BUCKETS_BUFFER_BYTES = 64 << 20  # shared by all files of a BucketedFiles (at least 1 MiB each)
ROW_KEY, STAGED_SPLIT = "_row", "_split"


class StagedFile:
    """One Parquet file written from a stream of tables, buffered into row groups of at most
    ``ROW_GROUP_ROWS`` rows or ``buffer_bytes`` bytes (so many open files stay cheap).

    Intermediate files are written plain (no compression, no dictionaries: they are read once,
    soon); ``final=True`` files (the dataset's splits) use Parquet's default snappy + dictionaries.
    """

    def __init__(self, path: Path, final: bool = False, buffer_bytes: int = BUFFER_BYTES) -> None:
        self.path = path
        self.buffer_bytes = buffer_bytes
        self._options = {} if final else {"compression": "none", "use_dictionary": False}
        self.rows = 0
        self._writer: pq.ParquetWriter | None = None
        self._buffer: list[pa.Table] = []
        self._buffered_rows = 0
        self._buffered_bytes = 0

    def write(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        self._buffer.append(table)
        self._buffered_rows += table.num_rows
        self._buffered_bytes += table.nbytes
        self.rows += table.num_rows
        if self._buffered_rows >= ROW_GROUP_ROWS or self._buffered_bytes >= self.buffer_bytes:
            self._flush()

    def _flush(self) -> None:
        if not self._buffer:
            return
        table = pa.concat_tables(self._buffer)
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.path, table.schema, **self._options)
        self._writer.write_table(table.cast(self._writer.schema), row_group_size=ROW_GROUP_ROWS)
        self._buffer, self._buffered_rows, self._buffered_bytes = [], 0, 0

    def close(self) -> Path | None:
        """Finish the file; None when nothing was written."""
        self._flush()
        if self._writer is not None:
            self._writer.close()
            return self.path
        return None


class BucketedFiles:
    """``buckets`` staged files; each written row goes to the bucket given for it."""

    def __init__(self, folder: Path, name: str, buckets: int) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        budget = max(1 << 20, BUCKETS_BUFFER_BYTES // buckets)  # memory stays flat however many buckets
        self.files = [StagedFile(folder / f"{name}-{index:04d}.parquet", buffer_bytes=budget) for index in range(buckets)]

    def write(self, table: pa.Table, bucket: np.ndarray) -> None:
        if table.num_rows == 0:
            return
        order = np.argsort(bucket, kind="stable")
        bounds = np.searchsorted(bucket[order], np.arange(len(self.files) + 1))
        for index, (start, stop) in enumerate(zip(bounds[:-1], bounds[1:])):
            if stop > start:  # a copy per bucket: a buffered slice would keep the whole block alive
                self.files[index].write(table.take(pa.array(order[start:stop])))

    def close(self) -> list[Path | None]:
        """The bucket files in bucket order (None for an empty bucket)."""
        return [staged.close() for staged in self.files]


def read_batches(paths: list[Path], columns: list[str] | None = None) -> Iterator[pa.Table]:
    """The row groups of staged files (only ``columns`` when given), in order (each at most
    ``ROW_GROUP_ROWS`` rows or about ``BUFFER_BYTES``; read one at a time, since pre-buffered batch
    iteration holds a file's data)."""
    for path in paths:
        parquet = pq.ParquetFile(path)
        for row_group in range(parquet.num_row_groups):
            yield parquet.read_row_group(row_group, columns=columns)


def staged_rows(paths: list[Path]) -> int:
    return sum(pq.ParquetFile(path).metadata.num_rows for path in paths)
