"""Seeded synthetic datasets with planted structure, written as Parquet + schema.json.

``python -m datasets.synthetic aliccp_like --rows N --out DIR`` writes an AliCCP-shaped dataset:
the 23 published AliCCP sparse fields (cardinalities scaled down, six of them multi-hot), four
dense features and two binary tasks, ``click`` and ``conversion``, where a conversion only
happens after a click. The labels are drawn from planted logistic models:

* ``click`` depends on fields 121, 206, 216, 301, 210 (multi-hot) and ``dense_0``;
* ``conversion`` (given a click) depends on fields 206 (shared with click), 125, 508,
  853 (multi-hot) and ``dense_1``;
* every other field and dense feature is pure noise.

Each driving field has a random effect per id (normal, std ``EFFECT_STD`` for click,
``CONVERSION_EFFECT_STD`` for conversion); a multi-hot field
contributes the sum of its ids' effects divided by sqrt(bag size), so every driver moves a row's
logit by about the same amount whether it is single- or multi-hot. Intercepts are calibrated so the click rate is about
``CLICK_RATE`` and the conversion rate among clicks about ``CONVERSION_RATE``. Which field is which
is written into ``schema.json`` under ``metadata.planted`` for later tests to check against.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from common.atomic_files import atomic_directory
from datasets.schema import SPLITS, DenseFeature, Schema, SparseFeature, TaskSpec


@dataclass(frozen=True)
class FieldSpec:
    """An AliCCP field of the synthetic data: cardinality and the largest multi-hot bag size."""

    name: str
    cardinality: int
    max_ids: int = 1  # 1 = single-hot; >1 = multi-hot with 0..max_ids ids per row

    @property
    def multi_hot(self) -> bool:
        return self.max_ids > 1


# The 23 published AliCCP fields; cardinalities scaled down from the real vocabularies.
ALICCP_FIELDS = (
    FieldSpec("101", 5000), FieldSpec("121", 100), FieldSpec("122", 15), FieldSpec("124", 3),
    FieldSpec("125", 8), FieldSpec("126", 4), FieldSpec("127", 4), FieldSpec("128", 3),
    FieldSpec("129", 5), FieldSpec("205", 20000), FieldSpec("206", 300), FieldSpec("207", 5000),
    FieldSpec("210", 500, max_ids=5), FieldSpec("216", 1000), FieldSpec("508", 500),
    FieldSpec("509", 5000), FieldSpec("702", 2000), FieldSpec("853", 300, max_ids=4),
    FieldSpec("301", 4), FieldSpec("109_14", 1000, max_ids=6), FieldSpec("110_14", 5000, max_ids=6),
    FieldSpec("127_14", 5000, max_ids=6), FieldSpec("150_14", 5000, max_ids=6),
)
DENSE_FEATURES = ("dense_0", "dense_1", "dense_2", "dense_3")
CLICK_FIELDS = ("121", "206", "216", "301", "210")
CONVERSION_FIELDS = ("206", "125", "508", "853")
CLICK_DENSE, CONVERSION_DENSE = ("dense_0",), ("dense_1",)
DENSE_WEIGHT = 0.5
EFFECT_STD = 0.6
# Conversions are rare (about 0.7% of rows), so their drivers get larger effects to stay learnable.
CONVERSION_EFFECT_STD = 1.0
CLICK_RATE, CONVERSION_RATE = 0.06, 0.12
ID_SKEW = 3.0  # id = floor(cardinality * u**ID_SKEW): small ids are frequent, as in real logs


def _draw_ids(rng: np.random.Generator, field: FieldSpec, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Ids and per-row bag lengths of ``field`` for ``rows`` rows."""
    lengths = np.ones(rows, dtype=np.int64) if not field.multi_hot else rng.integers(0, field.max_ids + 1, rows)
    ids = np.floor(field.cardinality * rng.random(int(lengths.sum())) ** ID_SKEW).astype(np.int64)
    return ids, lengths


def _bag_effect(effects: np.ndarray, ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Per-row ``sum(effects[ids]) / sqrt(bag size)`` (0 for an empty bag): the std of ``effects`` for any size."""
    row = np.repeat(np.arange(len(lengths)), lengths)
    total = np.bincount(row, weights=effects[ids], minlength=len(lengths))
    return total / np.sqrt(np.maximum(lengths, 1))


def _calibrated_intercept(logits: np.ndarray, rate: float) -> float:
    """The intercept b with mean(sigmoid(b + logits)) == rate (bisection)."""
    low, high = -30.0, 30.0
    for _ in range(80):
        mid = (low + high) / 2
        if np.mean(1 / (1 + np.exp(-(mid + logits)))) < rate:
            low = mid
        else:
            high = mid
    return (low + high) / 2


class AliccpLikeGenerator:
    """Draws AliCCP-shaped rows from the planted click/conversion model fixed by ``seed``."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        rng = np.random.default_rng([seed, 0])
        self.fields = {f.name: f for f in ALICCP_FIELDS}
        self.click_effects = {n: rng.normal(0, EFFECT_STD, self.fields[n].cardinality) for n in CLICK_FIELDS}
        self.conversion_effects = {n: rng.normal(0, CONVERSION_EFFECT_STD, self.fields[n].cardinality) for n in CONVERSION_FIELDS}
        self.click_intercept, self.conversion_intercept = 0.0, 0.0
        calibration = self._draw(np.random.default_rng([seed, 1]), 200_000, labels=False)
        self.click_intercept = _calibrated_intercept(calibration["click_logit"], CLICK_RATE)
        self.conversion_intercept = _calibrated_intercept(calibration["conversion_logit"], CONVERSION_RATE)

    def schema(self, metadata: dict) -> Schema:
        noise_sparse = [f.name for f in ALICCP_FIELDS if f.name not in CLICK_FIELDS + CONVERSION_FIELDS]
        noise_dense = [d for d in DENSE_FEATURES if d not in CLICK_DENSE + CONVERSION_DENSE]
        planted = {
            "click": {"sparse": list(CLICK_FIELDS), "dense": list(CLICK_DENSE)},
            "conversion": {"sparse": list(CONVERSION_FIELDS), "dense": list(CONVERSION_DENSE)},
            "noise": {"sparse": noise_sparse, "dense": noise_dense},
        }
        return Schema(
            sparse=tuple(SparseFeature(f.name, f.cardinality, f.multi_hot) for f in ALICCP_FIELDS),
            dense=tuple(DenseFeature(d) for d in DENSE_FEATURES),
            tasks=(TaskSpec("click", "binary"), TaskSpec("conversion", "binary")),
            group_column="101",
            metadata={"generator": "aliccp_like", "seed": self.seed, "planted": planted, **metadata},
        )

    def table(self, rng: np.random.Generator, rows: int) -> pa.Table:
        """``rows`` rows with labels, as an Arrow table in schema column order."""
        draw = self._draw(rng, rows, labels=True)
        columns = {}
        for field in ALICCP_FIELDS:
            ids, lengths = draw[field.name]
            if field.multi_hot:
                offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
                columns[field.name] = pa.ListArray.from_arrays(pa.array(offsets), pa.array(ids))
            else:
                columns[field.name] = pa.array(ids)
        for j, name in enumerate(DENSE_FEATURES):
            columns[name] = pa.array(draw["dense"][:, j])
        columns["click"] = pa.array(draw["click"])
        columns["conversion"] = pa.array(draw["conversion"])
        return pa.table(columns)

    def _draw(self, rng: np.random.Generator, rows: int, labels: bool) -> dict:
        draw: dict = {name: _draw_ids(rng, field, rows) for name, field in self.fields.items()}
        dense = rng.standard_normal((rows, len(DENSE_FEATURES))).astype(np.float32)
        draw["dense"] = dense
        click_logit = self.click_intercept + DENSE_WEIGHT * dense[:, DENSE_FEATURES.index("dense_0")]
        for name, effects in self.click_effects.items():
            click_logit = click_logit + _bag_effect(effects, *draw[name])
        conversion_logit = self.conversion_intercept + DENSE_WEIGHT * dense[:, DENSE_FEATURES.index("dense_1")]
        for name, effects in self.conversion_effects.items():
            conversion_logit = conversion_logit + _bag_effect(effects, *draw[name])
        draw["click_logit"], draw["conversion_logit"] = click_logit, conversion_logit
        if labels:
            click = rng.random(rows) < 1 / (1 + np.exp(-click_logit))
            converted = rng.random(rows) < 1 / (1 + np.exp(-conversion_logit))
            draw["click"] = click.astype(np.float32)
            draw["conversion"] = (click & converted).astype(np.float32)
        return draw


class SyntheticGenerator(Protocol):
    """What ``write_synthetic`` needs from a generator: seeded tables and the schema describing them."""

    def table(self, rng: np.random.Generator, rows: int) -> pa.Table: ...

    def schema(self, metadata: dict) -> Schema: ...


def write_synthetic(
    generator: SyntheticGenerator,
    out: str | Path,
    rows: int,
    seed: int = 0,
    valid_fraction: float = 0.1,
    test_fraction: float = 0.1,
    rows_per_file: int = 1_000_000,
    row_group_rows: int = 65_536,
    overwrite: bool = False,
    progress: bool = True,
) -> Schema:
    """Write ``rows`` rows of ``generator`` split into train/valid/test under ``out`` (atomically); return the schema."""
    if rows < 3:
        raise ValueError(f"--rows must be at least 3 (one per split), got {rows}")
    if not (0 < valid_fraction < 1 and 0 < test_fraction < 1 and valid_fraction + test_fraction < 1):
        raise ValueError("valid and test fractions must be in (0, 1) and sum to less than 1")
    split_rows = {"valid": max(1, int(rows * valid_fraction)), "test": max(1, int(rows * test_fraction))}
    split_rows["train"] = rows - split_rows["valid"] - split_rows["test"]
    with atomic_directory(out, overwrite=overwrite) as folder, tqdm(
        total=rows, unit="rows", unit_scale=True, desc=type(generator).__name__, disable=not progress
    ) as bar:
        for split_index, split in enumerate(SPLITS):
            (folder / split).mkdir()
            remaining, file_index = split_rows[split], 0
            while remaining:
                file_rows = min(remaining, rows_per_file)
                _write_file(generator, folder / split / f"part-{file_index:05d}.parquet", file_rows,
                            [seed, 2 + split_index, file_index], row_group_rows, bar)
                remaining -= file_rows
                file_index += 1
        schema = generator.schema({"rows": split_rows})
        schema.save(folder)
    return schema


def write_aliccp_like(out: str | Path, rows: int, seed: int = 0, **options) -> Schema:
    """The AliCCP-like dataset of ``seed`` (see ``write_synthetic`` for the options)."""
    return write_synthetic(AliccpLikeGenerator(seed), out, rows, seed, **options)


def _write_file(generator: SyntheticGenerator, path: Path, rows: int, seed: list[int], row_group_rows: int, bar: tqdm) -> None:
    writer = None
    for chunk_index, start in enumerate(range(0, rows, row_group_rows)):
        table = generator.table(np.random.default_rng(seed + [chunk_index]), min(row_group_rows, rows - start))
        if writer is None:
            writer = pq.ParquetWriter(path, table.schema)
        writer.write_table(table, row_group_size=row_group_rows)
        bar.update(table.num_rows)
    writer.close()


def main(argv: list[str] | None = None) -> None:
    from datasets.mmoe_synthetic import MMoEGenerator

    parser = argparse.ArgumentParser(prog="python -m datasets.synthetic", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="generator", required=True)
    aliccp = commands.add_parser("aliccp_like", help="AliCCP-shaped click/conversion data with planted drivers")
    mmoe = commands.add_parser("mmoe", help="the MMoE paper's two regression tasks with controlled correlation")
    mmoe.add_argument("--correlation", type=float, required=True, help="P = cos(w1, w2), in [-1, 1]")
    mmoe.add_argument("--sparse-buckets", type=int, default=0,
                      help="also bucketize every input into this many equal-probability buckets as sparse fields")
    for command in (aliccp, mmoe):
        command.add_argument("--rows", type=int, required=True, help="total rows over train/valid/test")
        command.add_argument("--out", required=True, help="output folder (must not exist unless --overwrite)")
        command.add_argument("--seed", type=int, default=0)
        command.add_argument("--valid-fraction", type=float, default=0.1)
        command.add_argument("--test-fraction", type=float, default=0.1)
        command.add_argument("--rows-per-file", type=int, default=1_000_000)
        command.add_argument("--row-group-rows", type=int, default=65_536)
        command.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    args = parser.parse_args(argv)
    try:
        generator = (AliccpLikeGenerator(args.seed) if args.generator == "aliccp_like"
                     else MMoEGenerator(args.correlation, args.seed, sparse_buckets=args.sparse_buckets))
        schema = write_synthetic(generator, args.out, args.rows, args.seed, args.valid_fraction, args.test_fraction,
                                 args.rows_per_file, args.row_group_rows, args.overwrite)
    except (FileExistsError, ValueError) as error:
        parser.exit(2, f"error: {error}\n")
    print(f"wrote {args.out}: {schema.metadata['rows']} rows, tasks {schema.task_names}")


if __name__ == "__main__":
    main()
