"""AliCCP-style feature lists: ``field\\x02id\\x03value`` entries joined by ``\\x01``, parsed with
Arrow kernels into one ``list<int64>`` id column and one float32 value-sum column per field."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from torchrec_automtl.datasets.prepare.bad_lines import BadLines
from torchrec_automtl.datasets.prepare.lines import LineRows
from torchrec_automtl.datasets.prepare.values import parse_integers, parse_numbers

ENTRY_SEPARATOR, FIELD_SEPARATOR, VALUE_SEPARATOR = "\x01", "\x02", "\x03"


def value_column(field: str) -> str:
    """The staged column holding the sum of ``field``'s ``\\x03value`` numbers in a row."""
    return f"{field}_value"


@dataclass(frozen=True)
class FieldSet:
    """Fields to keep (in output order) and every field name allowed to appear (others are bad lines)."""

    selected: tuple[str, ...]
    known: frozenset[str]

    def __post_init__(self) -> None:
        if not self.selected:
            raise ValueError("--sparse-fields selects no field")


@dataclass
class _Entries:
    """The flattened entries of a block's feature lists, with the row each came from."""

    row: np.ndarray
    per_row: np.ndarray
    text: pa.Array
    field: pa.Array
    ids: np.ndarray
    values: np.ndarray
    problems: list[tuple[str, np.ndarray]]  # (reason, bad entry mask), in reporting order


def _padded(lists: pa.Array) -> pa.Array:
    """``lists`` with every list at least two long (missing parts as ""), so elements 0 and 1 exist."""
    short = pc.less(pc.list_value_length(lists), 2)
    if not pc.any(short).as_py():
        return lists
    return pc.if_else(short, pa.scalar(["", ""], lists.type), lists)


def _parse_entries(lists: pa.Array, known: pa.Array) -> _Entries:
    entries = pc.split_pattern(lists, ENTRY_SEPARATOR)
    text = pc.list_flatten(entries)
    field_rest = pc.split_pattern(text, FIELD_SEPARATOR, max_splits=1)
    id_value = pc.split_pattern(pc.list_element(_padded(field_rest), 1), VALUE_SEPARATOR, max_splits=1)
    formed = (pc.list_value_length(field_rest).to_numpy(zero_copy_only=False) == 2) & (
        pc.list_value_length(id_value).to_numpy(zero_copy_only=False) == 2)
    field = pc.list_element(_padded(field_rest), 0)
    ids, id_ok = parse_integers(pc.list_element(_padded(id_value), 0))
    values, value_ok = parse_numbers(pc.list_element(_padded(id_value), 1))
    is_known = pc.is_in(field, value_set=known).to_numpy(zero_copy_only=False)
    return _Entries(
        row=pc.list_parent_indices(entries).to_numpy(zero_copy_only=False),
        per_row=pc.list_value_length(entries).to_numpy(zero_copy_only=False),
        text=text, field=field, ids=ids.to_numpy(), values=values.to_numpy(),
        problems=[
            ("malformed feature entry (expected field\\x02id\\x03value)", ~formed),
            ("unknown field", formed & ~is_known),
            ("non-integer feature id", formed & is_known & ~id_ok),
            ("non-numeric feature value", formed & is_known & id_ok & ~value_ok),
        ],
    )


def _require_well_formed(rows: LineRows, entries: _Entries, feature_num: np.ndarray, bad_lines: BadLines) -> bool:
    """Drop rows with a bad entry or a wrong entry count; True when every row was fine."""
    n = len(rows)
    problem = np.full(n, -1, dtype=np.int64)
    culprit = np.full(n, -1, dtype=np.int64)  # index of the row's first offending entry
    checks = [("feature_num does not match the number of entries", entries.per_row != feature_num, None)]
    checks += [(reason, None, bad) for reason, bad in entries.problems]
    for index in reversed(range(len(checks))):  # the earliest check in the list wins
        _, bad_rows, bad_entries = checks[index]
        if bad_entries is None:
            culprit = np.where(bad_rows, -1, culprit)
        else:
            first_entry = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
            positions = np.flatnonzero(bad_entries)
            np.minimum.at(first_entry, entries.row[positions], positions)
            bad_rows = first_entry < np.iinfo(np.int64).max
            culprit = np.where(bad_rows, first_entry, culprit)
        problem[bad_rows] = index
    if (problem < 0).all():
        return True
    rows.columns["_problem"], rows.columns["_culprit"] = pa.array(problem), pa.array(culprit)
    for index, (reason, _, _) in enumerate(checks):
        current = rows.columns["_problem"].to_numpy()
        shown = rows.columns["_culprit"].to_numpy()
        rows.require(current != index, bad_lines, reason,
                     lambda i: f"entry {entries.text[int(shown[i])].as_py()!r}" if shown[i] >= 0
                     else f"feature_num {rows.columns['_feature_num'][i].as_py()}")
    del rows.columns["_problem"], rows.columns["_culprit"]
    return False


def parse_feature_lists(rows: LineRows, list_column: str, count_column: str, fields: FieldSet, bad_lines: BadLines) -> set[str]:
    """Replace ``rows.columns[list_column]`` (and ``count_column``) by ``<field>`` id lists and
    ``<field>_value`` value sums for the selected fields; return the fields whose values are not all 1.

    A row is bad when ``feature_num`` is not an integer or differs from its number of entries, or an
    entry is not ``field\\x02id\\x03value``, names an unknown field, or has a non-integer id or a
    non-numeric value.
    """
    feature_num, ok = parse_integers(rows.columns[count_column])
    rows.columns["_feature_num"] = feature_num
    rows.require(ok, bad_lines, f"non-integer {count_column}", lambda i: f"value {rows.columns[count_column][i].as_py()!r}")
    known = pa.array(sorted(fields.known))
    entries = _parse_entries(rows.columns[list_column], known)
    if not _require_well_formed(rows, entries, rows.columns["_feature_num"].to_numpy(), bad_lines):
        entries = _parse_entries(rows.columns[list_column], known)
    for name in (list_column, count_column, "_feature_num"):
        del rows.columns[name]
    return _pivot(rows, entries, fields.selected)


def _pivot(rows: LineRows, entries: _Entries, selected: tuple[str, ...]) -> set[str]:
    """Per-field list columns from the flat entries (entry order kept within a row)."""
    field_index = pc.fill_null(pc.index_in(entries.field, value_set=pa.array(list(selected))), -1).to_numpy()
    order = np.lexsort((entries.row, field_index))
    bounds = np.searchsorted(field_index[order], np.arange(len(selected) + 1))
    not_one: set[str] = set()
    for index, name in enumerate(selected):
        picked = order[bounds[index]:bounds[index + 1]]
        row = entries.row[picked]
        lengths = np.bincount(row, minlength=len(rows))
        offsets = np.zeros(len(rows) + 1, dtype=np.int32)
        np.cumsum(lengths, out=offsets[1:])
        rows.columns[name] = pa.ListArray.from_arrays(pa.array(offsets), pa.array(entries.ids[picked]))
        values = entries.values[picked]
        rows.columns[value_column(name)] = pa.array(np.bincount(row, weights=values, minlength=len(rows)).astype(np.float32))
        if (values != 1).any():
            not_one.add(name)
    return not_one
