"""Staging of plain comma-separated logs: one raw line -> one staged row of ids, numbers and labels."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pyarrow as pa
from tqdm import tqdm

from torchrec_automtl.datasets.prepare.converter import StageContext
from torchrec_automtl.datasets.prepare.lines import read_line_blocks, split_columns
from torchrec_automtl.datasets.prepare.splits import ANY_SPLIT
from torchrec_automtl.datasets.prepare.staging import ROW_KEY, STAGED_SPLIT, StagedFile
from torchrec_automtl.datasets.prepare.values import require_integer_ids, require_labels, require_numbers

FILE_INDEX_SHIFT = 40  # row key = file index << 40 | line number: unique over up to 2**40 lines per file


def row_keys(file_index: int, line_numbers: np.ndarray) -> pa.Array:
    """Stable, unique row keys (the split hash input) from a file's index and its line numbers."""
    return pa.array((np.uint64(file_index) << np.uint64(FILE_INDEX_SHIFT)) | line_numbers.astype(np.uint64))


def progress_bar(context: StageContext, description: str) -> tqdm:
    return tqdm(unit="rows", unit_scale=True, desc=description, disable=not context.progress)


def read_csv_rows(context: StageContext, path: Path, header: Sequence[str], ids: Sequence[str] = (),
                  numbers: Sequence[str] = (), labels: Sequence[str] = (), file_index: int = 0,
                  staged_split: int = ANY_SPLIT, has_header: bool = True) -> Iterator[pa.Table]:
    """Tables of the valid rows of ``path``: integer ``ids`` (empty text is a missing id),
    float32 ``numbers`` and 0/1 ``labels``, plus ``_row`` and ``_split``; other columns are dropped.

    ``header`` names the columns; it must match the file's first line unless ``has_header`` is False.
    """
    with progress_bar(context, f"read {path.name}") as bar:
        for first_line, lines in read_line_blocks(path, header if has_header else None, context.block_bytes):
            rows = split_columns(path, first_line, lines, header, context.bad_lines)
            require_integer_ids(rows, list(ids), context.bad_lines)
            require_numbers(rows, list(numbers), context.bad_lines)
            require_labels(rows, list(labels), context.bad_lines)
            columns = {ROW_KEY: row_keys(file_index, rows.line_numbers),
                       STAGED_SPLIT: pa.array(np.full(len(rows), staged_split, dtype=np.int8))}
            columns.update({name: rows.columns[name] for name in (*ids, *numbers, *labels)})
            bar.update(len(lines))
            yield pa.table(columns)


def stage_tables(path: Path, tables: Iterator[pa.Table]) -> list[Path]:
    """Write ``tables`` into one staged file; the list is empty when there were no rows."""
    staged = StagedFile(path)
    for table in tables:
        staged.write(table)
    written = staged.close()
    return [written] if written is not None else []
