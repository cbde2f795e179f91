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
