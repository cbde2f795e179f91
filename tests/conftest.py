"""Shared fixtures: tiny datasets written to temp folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from torchrec_automtl.datasets.schema import DenseFeature, Schema, SparseFeature, TaskSpec
from torchrec_automtl.datasets.synthetic import write_aliccp_like


@pytest.fixture(scope="session")
def tiny_aliccp(tmp_path_factory) -> Path:
    """3,000 synthetic AliCCP-like rows, small row groups and two files per split."""
    out = tmp_path_factory.mktemp("data") / "tiny_aliccp"
    write_aliccp_like(out, rows=3000, seed=0, rows_per_file=1500, row_group_rows=400, progress=False)
    return out


def write_indexed_dataset(folder: Path, rows_per_split: dict[str, int], rows_per_file: int = 97, row_group_rows: int = 31) -> Schema:
    """A dataset whose single-hot field ``row_id`` numbers the rows of each split (0..n-1).

    Also holds a multi-hot field ``tags`` (row i has ids i % 7 .. i % 7 + i % 3), a group column
    ``user`` (row i belongs to user i % 11), one dense feature and two binary tasks, so a reader's
    output can be checked row by row against the files.
    """
    largest = max(rows_per_split.values())
    schema = Schema(
        sparse=(SparseFeature("row_id", largest), SparseFeature("tags", 16, multi_hot=True), SparseFeature("user", 11)),
        dense=(DenseFeature("x"),),
        tasks=(TaskSpec("a"), TaskSpec("b")),
        group_column="user",
    )
    for split, rows in rows_per_split.items():
        (folder / split).mkdir(parents=True)
        for file_index, start in enumerate(range(0, rows, rows_per_file)):
            ids = np.arange(start, min(rows, start + rows_per_file))
            table = pa.table({
                "row_id": pa.array(ids),
                "tags": pa.array([list(range(i % 7, i % 7 + i % 3)) for i in ids], type=pa.list_(pa.int64())),
                "user": pa.array(ids % 11),
                "x": pa.array((ids / 10).astype(np.float32)),
                "a": pa.array((ids % 2).astype(np.float32)),
                "b": pa.array((ids % 3 == 0).astype(np.float32)),
            })
            pq.write_table(table, folder / split / f"part-{file_index:03d}.parquet", row_group_size=row_group_rows)
    schema.save(folder)
    return schema
