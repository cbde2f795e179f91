"""Checks that Parquet data matches its schema; every error names the file and the column."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from torchrec_automtl.common.errors import InputError
from torchrec_automtl.datasets.schema import Schema


class DataError(InputError):
    """Input data that does not fit the schema (the message names the file and the column)."""


def check_file_columns(path: Path, arrow_schema: pa.Schema, schema: Schema) -> None:
    """Raise DataError if ``path`` lacks a schema column or stores one with the wrong type."""
    present = set(arrow_schema.names)
    missing = [name for name in schema.columns if name not in present]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing} required by schema.json (file has {arrow_schema.names})")
    for feature in schema.sparse:
        column_type = arrow_schema.field(feature.name).type
        if feature.multi_hot:
            ok = (pa.types.is_list(column_type) or pa.types.is_large_list(column_type)) and pa.types.is_integer(
                column_type.value_type
            )
            expected = "list<integer> (multi-hot)"
        else:
            ok = pa.types.is_integer(column_type)
            expected = "integer (single-hot)"
        if not ok:
            raise DataError(f"{path}: column '{feature.name}' has type {column_type}, schema.json expects {expected}")
    for name in schema.dense_names + schema.task_names:
        column_type = arrow_schema.field(name).type
        if not (pa.types.is_floating(column_type) or pa.types.is_integer(column_type)):
            raise DataError(f"{path}: column '{name}' has type {column_type}, schema.json expects a number")


def check_table_values(table: pa.Table, schema: Schema, path: Path, first_row: int) -> None:
    """Raise DataError on nulls, ids outside ``[0, cardinality)``, non-finite floats or non-0/1 binary labels.

    ``first_row`` is the file row number of ``table``'s first row, used in the message.
    """
    for name in schema.columns:
        column = table.column(name)
        if column.null_count:
            _raise_at(path, name, first_row, pc.is_null(column), "null value")
    for feature in schema.sparse:
        column = table.column(feature.name)
        ids = pc.list_flatten(column) if feature.multi_hot else column
        if len(ids) == 0:
            continue
        bounds = pc.min_max(ids)
        low, high = bounds["min"].as_py(), bounds["max"].as_py()
        if low < 0 or high >= feature.cardinality:
            bad_id = low if low < 0 else high
            row_has_bad = _rows_with_id_out_of_range(column, feature.cardinality, feature.multi_hot)
            _raise_at(path, feature.name, first_row, row_has_bad,
                      f"id {bad_id} outside [0, {feature.cardinality}) (cardinality from schema.json)")
    for name in schema.dense_names + schema.task_names:
        column = table.column(name)
        if pa.types.is_floating(column.type):
            finite = pc.is_finite(column)
            if not pc.all(finite).as_py():
                _raise_at(path, name, first_row, pc.invert(finite), "NaN or infinite value")
    for task in schema.tasks:
        if task.type == "binary":
            column = table.column(task.name)
            is_binary = pc.or_(pc.equal(column, 0), pc.equal(column, 1))
            if not pc.all(is_binary).as_py():
                _raise_at(path, task.name, first_row, pc.invert(is_binary), "binary label outside {0, 1}")


def _rows_with_id_out_of_range(column: pa.ChunkedArray, cardinality: int, multi_hot: bool) -> np.ndarray:
    if not multi_hot:
        values = column.to_numpy()
        return (values < 0) | (values >= cardinality)
    array = column.combine_chunks()
    values = pc.list_flatten(array).to_numpy()
    lengths = pc.list_value_length(array).to_numpy()
    bad_values = (values < 0) | (values >= cardinality)
    row_of_value = np.repeat(np.arange(len(lengths)), lengths)
    return np.bincount(row_of_value[bad_values], minlength=len(lengths)) > 0


def _raise_at(path: Path, column: str, first_row: int, bad_rows, what: str) -> None:
    bad = np.asarray(bad_rows.to_numpy(zero_copy_only=False) if hasattr(bad_rows, "to_numpy") else bad_rows)
    row = first_row + int(np.argmax(bad))
    raise DataError(f"{path}: column '{column}', row {row}: {what}")
