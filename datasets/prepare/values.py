"""Vectorized conversion of raw text columns into ids, numbers and 0/1 labels, with bad rows flagged.

Each parser returns the converted Arrow array and a boolean numpy mask of the rows whose text
was valid, so callers drop or report exactly those lines (``LineRows.require``).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from torchrec_automtl.datasets.prepare.bad_lines import BadLines
from torchrec_automtl.datasets.prepare.lines import LineRows

INTEGER = r"^-?[0-9]{1,18}$"
FINITE_NUMBER = r"^[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$"


def _matches(text: pa.Array, pattern: str) -> np.ndarray:
    return pc.fill_null(pc.match_substring_regex(text, pattern), False).to_numpy(zero_copy_only=False)


def parse_integers(text: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """int64 values of ``text``; the mask is False where the text is not an integer."""
    ok = _matches(text, INTEGER)
    values = pc.cast(pc.if_else(pa.array(ok), text, "0"), pa.int64())
    return values, ok


def parse_numbers(text: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """float32 values of ``text``; the mask is False for non-numbers, NaN and infinities."""
    ok = _matches(text, FINITE_NUMBER)
    values = pc.cast(pc.cast(pc.if_else(pa.array(ok), text, "0"), pa.float64()), pa.float32())
    finite = pc.is_finite(values).to_numpy(zero_copy_only=False)  # e.g. 1e400 overflows to inf
    return values, ok & finite


def parse_categorical_integers(text: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """int64 ids where ``text`` is an integer, null where it is empty (a missing value, mapped to OOV)."""
    empty = pc.equal(text, "").to_numpy(zero_copy_only=False)
    values, ok = parse_integers(text)
    return pc.if_else(pa.array(empty), pa.scalar(None, pa.int64()), values), ok | empty


def require_integer_ids(rows: LineRows, names: list[str], bad_lines: BadLines) -> None:
    """Replace text columns ``names`` of ``rows`` by int64 ids (empty -> null); other text is a bad line."""
    for name in names:
        text = rows.columns[name]
        rows.columns[name], ok = parse_categorical_integers(text)
        rows.require(ok, bad_lines, f"non-integer id in column '{name}'", _quote(text))


def require_numbers(rows: LineRows, names: list[str], bad_lines: BadLines) -> None:
    """Replace text columns ``names`` by float32; non-numeric, NaN or infinite text is a bad line."""
    for name in names:
        text = rows.columns[name]
        rows.columns[name], ok = parse_numbers(text)
        rows.require(ok, bad_lines, f"non-numeric value in column '{name}'", _quote(text))


def require_labels(rows: LineRows, names: list[str], bad_lines: BadLines) -> None:
    """Replace text columns ``names`` by 0/1 float32 labels; anything but a number equal to 0 or 1 is a bad line."""
    for name in names:
        text = rows.columns[name]
        rows.columns[name], ok = parse_numbers(text)
        rows.require(ok, bad_lines, f"non-numeric label '{name}'", _quote(text))
        values = rows.columns[name].to_numpy(zero_copy_only=False)
        rows.require((values == 0) | (values == 1), bad_lines, f"label '{name}' outside {{0, 1}}",
                     lambda i: f"value {values[i]:g}")


def _quote(text: pa.Array) -> Callable[[int], str]:
    return lambda i: f"value {text[i].as_py()!r}"


def first_repeated(keys: pa.Array | pa.ChunkedArray) -> tuple[Any, int] | None:
    """The first key that occurs more than once and its count, or None when all keys are distinct."""
    counts = pc.value_counts(keys)
    repeated = counts.filter(pc.greater(counts.field("counts"), 1))
    if len(repeated) == 0:
        return None
    return repeated.field("values")[0].as_py(), repeated.field("counts")[0].as_py()
