"""Bad raw lines: stop at the first one with its file and line number, or count them and go on;
and the data lines read per raw file, so that manifest.json accounts for every line."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Callable

import numpy as np

from torchrec_automtl.datasets.validation import DataError

SKIP_HINT = "pass --skip-bad-lines to drop such lines (they are counted in manifest.json)"


class BadLines:
    """The policy for malformed input lines, the tally kept under ``--skip-bad-lines``, and the
    count of data lines read per raw file (a header line is not a data line).

    Every raw line is either read into a row or skipped here, so for each file
    ``lines_read = rows passed on + lines skipped``; manifest.json holds both sides.
    """

    def __init__(self, skip: bool) -> None:
        self.skip = skip
        self.counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.first_examples: dict[str, dict[str, int]] = defaultdict(dict)
        self.lines_read: dict[str, int] = defaultdict(int)

    def count_read(self, path: Path, lines: int) -> None:
        """``lines`` more data lines of ``path`` were read."""
        self.lines_read[path.name] += lines

    def report(self, path: Path, line_numbers: np.ndarray, bad: np.ndarray, reason: str,
               culprit: Callable[[int], str] | None = None) -> None:
        """Lines ``line_numbers[bad]`` of ``path`` are bad for ``reason``; raise unless skipping.

        ``culprit(i)`` describes row ``i`` (e.g. the offending value) for the error message.
        """
        bad = np.asarray(bad, dtype=bool)
        if not bad.any():
            return
        first = int(np.argmax(bad))
        if not self.skip:
            detail = f" ({culprit(first)})" if culprit is not None else ""
            raise DataError(f"{path}: line {int(line_numbers[first])}: {reason}{detail}; {SKIP_HINT}")
        self.counts[path.name][reason] += int(bad.sum())
        self.first_examples[path.name].setdefault(reason, int(line_numbers[first]))

    def report_one(self, path: Path, line_number: int, reason: str, detail: str = "") -> None:
        """A single bad line (found outside a vectorized check)."""
        self.report(path, np.array([line_number]), np.array([True]), reason, (lambda _: detail) if detail else None)

    def summary(self) -> dict[str, dict[str, dict[str, int]]]:
        """``{file: {reason: {"lines": n, "first_line": k}}}`` for manifest.json."""
        return {
            name: {reason: {"lines": count, "first_line": self.first_examples[name][reason]}
                   for reason, count in sorted(reasons.items())}
            for name, reasons in sorted(self.counts.items())
        }
