"""Shared helpers of the converter tests: run a conversion, read its output back."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from torchrec_automtl.datasets.prepare.cli import build_parser, options_from_args
from torchrec_automtl.datasets.prepare.registry import CONVERTERS
from torchrec_automtl.datasets.prepare.run import prepare


def convert(dataset: str, raw: Path, out: Path, *flags: str) -> dict:
    """Run ``python -m torchrec_automtl.datasets.prepare dataset --raw raw --out out *flags`` in-process; return the manifest."""
    args = build_parser().parse_args([dataset, "--raw", str(raw), "--out", str(out), "--no-progress", *flags])
    return prepare(CONVERTERS[dataset](args), options_from_args(args))


def read_split(out: Path, split: str) -> pa.Table:
    return pa.concat_tables(pq.read_table(path) for path in sorted((out / split).glob("*.parquet")))


def read_all(out: Path) -> dict[str, pa.Table]:
    return {split: read_split(out, split) for split in ("train", "valid", "test")}


def rows_as_dicts(out: Path) -> list[dict]:
    """Every output row (all splits) as a dict with an extra ``split`` key."""
    rows = []
    for split, table in read_all(out).items():
        rows.extend({**row, "split": split} for row in table.to_pylist())
    return rows


def write_lines(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))
    return path


def data_lines(path: Path, has_header: bool = True) -> int:
    """The data lines of a raw file, counted from its bytes (independently of the converters)."""
    return path.read_bytes().count(b"\n") - int(has_header)


def skipped(manifest: dict, name: str) -> int:
    """Lines of raw file ``name`` that the manifest counts as skipped, over all reasons."""
    return sum(tally["lines"] for tally in manifest["bad_lines"].get(name, {}).values())


def spread_bad_lines(path: Path, bad: str, copies: int = 3, has_header: bool = True) -> list[int]:
    """Insert ``copies`` of the line ``bad`` at evenly spread places of ``path`` (the first after the
    first data line, the last before the final line); return their 1-based line numbers."""
    lines = path.read_text().splitlines()
    first = int(has_header) + 1
    places = [first + round(k * (len(lines) - first) / copies) for k in range(copies)]
    for offset, place in enumerate(places):
        lines.insert(place + offset, bad)
    write_lines(path, lines)
    return [place + offset + 1 for offset, place in enumerate(places)]
