"""Raw text files read in large blocks of lines, each line kept with its 1-based line number.

The big published logs (AliCCP skeletons, UserBehavior, IJCAI-2015, ...) are plain
comma-separated text without quoting. They are read in blocks of ``block_bytes`` cut at a line
end, turned into an Arrow string array without copying, and split into columns with Arrow
kernels, so parsing runs at C speed while every row still knows the line it came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from torchrec_automtl.datasets.prepare.bad_lines import BadLines
from torchrec_automtl.datasets.validation import DataError

BLOCK_BYTES = 16 << 20


@dataclass
class LineRows:
    """Rows parsed from one block of ``path``: named Arrow columns plus each row's line number.

    ``require`` drops the rows that fail a check (or stops the run, see ``BadLines``), so the
    columns and line numbers always stay aligned.
    """

    path: Path
    line_numbers: np.ndarray
    columns: dict[str, pa.Array] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.line_numbers)

    def require(self, ok: np.ndarray, bad_lines: BadLines, reason: str, culprit: Callable[[int], str] | None = None) -> None:
        """Keep only rows where ``ok``; the others are bad lines for ``reason``."""
        ok = np.asarray(ok, dtype=bool)
        if ok.all():
            return
        bad_lines.report(self.path, self.line_numbers, ~ok, reason, culprit)
        self.keep(ok)

    def keep(self, mask: np.ndarray) -> None:
        """Keep only the rows where ``mask`` is True."""
        keep = pa.array(mask)
        self.line_numbers = self.line_numbers[mask]
        self.columns = {name: column.filter(keep) for name, column in self.columns.items()}


def read_line_blocks(path: Path, header: Sequence[str] | None = None, block_bytes: int = BLOCK_BYTES) -> Iterator[tuple[int, pa.StringArray]]:
    """Yield ``(first_line_number, lines)`` blocks of ``path`` (line ends stripped).

    With ``header`` the first line must be exactly those comma-separated names (a byte-order mark
    and surrounding spaces are tolerated); it is checked and not yielded.
    """
    line_number = 1
    with open(path, "rb") as handle:
        if header is not None:
            found = list(_header_of(handle))
            if found != list(header):
                raise DataError(f"{path}: line 1: header {found} does not match the published format {list(header)}")
            line_number = 2
        carry = b""
        while True:
            chunk = handle.read(block_bytes)
            data = carry + chunk
            if not chunk:
                if data:
                    yield line_number, _lines_of(path, line_number, data + b"\n")
                return
            end = data.rfind(b"\n")
            if end < 0:
                carry = data
                continue
            carry = data[end + 1:]
            lines = _lines_of(path, line_number, data[: end + 1])
            yield line_number, lines
            line_number += len(lines)


def read_header(path: Path) -> tuple[str, ...]:
    """The comma-separated names on the first line of ``path`` (BOM and surrounding spaces dropped)."""
    with open(path, "rb") as handle:
        return _header_of(handle)


def _header_of(handle: BinaryIO) -> tuple[str, ...]:
    first = handle.readline().decode("utf-8-sig", errors="replace").strip()
    return tuple(name.strip() for name in first.split(","))


def _lines_of(path: Path, first_line: int, data: bytes) -> pa.StringArray:
    """``data`` (whole lines, each ending in ``\\n``) as a string array without the line ends."""
    buffer = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero(buffer == 10)
    offsets = np.empty(len(ends) + 1, dtype=np.int32)
    offsets[0] = 0
    offsets[1:] = ends + 1
    lines = pa.StringArray.from_buffers(len(ends), pa.py_buffer(offsets), pa.py_buffer(data))
    try:
        lines.validate(full=True)
    except pa.ArrowInvalid:
        raise DataError(f"{path}: line {first_line + _first_non_utf8(data)}: not valid UTF-8 text") from None
    return pc.utf8_rtrim(lines, characters="\r\n")


def _first_non_utf8(data: bytes) -> int:
    for index, line in enumerate(data.split(b"\n")):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            return index
    return 0


def split_columns(path: Path, first_line: int, lines: pa.StringArray, names: Sequence[str], bad_lines: BadLines) -> LineRows:
    """Split comma-separated ``lines`` into the columns ``names``; lines with another column count are bad.

    Every raw line parsed by a converter passes here once, so this is where lines read are counted.
    """
    bad_lines.count_read(path, len(lines))
    parts = pc.split_pattern(lines, ",")
    counts = pc.list_value_length(parts).to_numpy()
    rows = LineRows(path, first_line + np.arange(len(lines), dtype=np.int64), {"_parts": parts})
    expected = len(names)
    rows.require(counts == expected, bad_lines, f"wrong column count (expected {expected})",
                 lambda i: f"found {counts[i]} columns, expected {expected}: {list(names)}")
    parts = rows.columns.pop("_parts")
    flat = pc.list_flatten(parts)
    for index, name in enumerate(names):
        rows.columns[name] = flat.take(pa.array(np.arange(index, len(flat), expected)))
    return rows
