"""AliCCP (Ali-CCP, Taobao; paper 001): click and conversion, official train/test, 20% of train as validation.

Raw files as published: ``sample_skeleton_{train,test}.csv`` with lines
``sample_id,click,buy,md5,feature_num,feature_list`` and ``common_features_{train,test}.csv`` with
lines ``md5,feature_num,feature_list``; a feature list is ``field\\x02id\\x03value`` entries joined
by ``\\x01``. A sample's features are its skeleton entries plus the common (user) entries of its
``md5``. Tasks: ``click`` and ``conversion`` (the ``buy`` column).

Choices (paper 001 names the dataset, 85M samples and "31 features", nothing more):

* Sparse fields: the 23 published ones (``--sparse-fields``). A field whose rows hold several ids
  becomes multi-hot (mean-pooled by default in the models); an absent field maps to the OOV id.
* Dense features: ``<field>_value`` = the sum of a row's ``\\x03value`` numbers of that field
  (0 when absent), for every selected field whose values are not all 1 in the data
  (``--dense-fields auto``), or for a given list. The paper's 31 columns are usually read as the
  23 fields plus 8 such values.
* The join is bounded in memory: common-feature rows and skeleton rows are partitioned into
  ``--buckets`` files by the common row's position, and one bucket's common rows at a time are
  held while its skeleton rows stream past. Only the md5 keys of one common file are held whole
  (32 bytes per user, about 23 MB for AliCCP's train file).
* A skeleton md5 missing from the common features is counted in manifest.json
  (``missing_common_features``, with the first line and md5); ``--missing-common keep`` (default)
  keeps such rows without user features, ``drop`` drops them, ``error`` stops at the first.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from torchrec_automtl.datasets.prepare.converter import Converter, Layout, StageContext, Staged
from torchrec_automtl.datasets.prepare.csv_rows import progress_bar, row_keys
from torchrec_automtl.datasets.prepare.feature_lists import FieldSet, parse_feature_lists, value_column
from torchrec_automtl.datasets.prepare.lines import LineRows, read_line_blocks, split_columns
from torchrec_automtl.datasets.prepare.splits import OFFICIAL_TEST, OFFICIAL_TRAIN
from torchrec_automtl.datasets.prepare.staging import ROW_KEY, STAGED_SPLIT, BucketedFiles, StagedFile, read_batches
from torchrec_automtl.datasets.prepare.values import first_repeated, require_labels
from torchrec_automtl.datasets.validation import DataError

PUBLISHED_FIELDS = ("101", "121", "122", "124", "125", "126", "127", "128", "129", "205", "206", "207", "210",
                    "216", "508", "509", "702", "853", "301", "109_14", "110_14", "127_14", "150_14")
SKELETON_COLUMNS = ("sample_id", "click", "buy", "md5", "feature_num", "feature_list")
COMMON_COLUMNS = ("md5", "feature_num", "feature_list")
TASKS = ("click", "conversion")
BUCKET_TARGET_BYTES = 256 << 20  # raw common-feature text per join bucket when --buckets 0
POSITION = "_common"  # staged: the row's position in its common-features file (null when missing)


@dataclass(frozen=True)
class _SplitFiles:
    name: str
    skeleton: str
    common: str
    staged_split: int


SPLIT_FILES = (
    _SplitFiles("train", "sample_skeleton_train.csv", "common_features_train.csv", OFFICIAL_TRAIN),
    _SplitFiles("test", "sample_skeleton_test.csv", "common_features_test.csv", OFFICIAL_TEST),
)


def _names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


class AliCCP(Converter):
    name = "aliccp"
    summary = "Ali-CCP: click, conversion; official test, 20% of train as validation; common features joined on md5"
    default_valid_fraction = 0.2
    default_test_fraction = 0.0

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--sparse-fields", default=",".join(PUBLISHED_FIELDS),
                            help="comma-separated fields kept as sparse features (default: the 23 published fields)")
        parser.add_argument("--dense-fields", default="auto",
                            help="'auto' (fields whose values are not all 1), 'none', or comma-separated fields whose "
                                 "value sums become dense features")
        parser.add_argument("--missing-common", choices=("keep", "drop", "error"), default="keep",
                            help="skeleton rows whose md5 has no common features: keep without them, drop, or stop")
        parser.add_argument("--buckets", type=int, default=0,
                            help="join partitions (0: one per 256 MB of common-feature text)")

    def __init__(self, args: argparse.Namespace) -> None:
        selected = _names(args.sparse_fields)
        self.fields = FieldSet(selected, frozenset(PUBLISHED_FIELDS) | frozenset(selected))
        self.dense_fields = None if args.dense_fields == "auto" else () if args.dense_fields == "none" else _names(args.dense_fields)
        unknown = sorted(set(self.dense_fields or ()) - set(selected))
        if unknown:
            raise ValueError(f"--dense-fields {unknown} are not among --sparse-fields")
        if args.buckets < 0:
            raise ValueError("--buckets must be >= 0")
        self.missing_common = args.missing_common
        self.buckets = args.buckets

    def raw_files(self) -> list[str]:
        return [name for split in SPLIT_FILES for name in (split.skeleton, split.common)]

    def options(self) -> dict[str, Any]:
        return {"sparse_fields": list(self.fields.selected),
                "dense_fields": "auto" if self.dense_fields is None else list(self.dense_fields),
                "missing_common": self.missing_common, "buckets": self.buckets}

    def stage(self, context: StageContext) -> Staged:
        files, not_one, info = [], set(), {"missing_common_features": {}, "common_feature_rows": {}}
        for file_index, split in enumerate(SPLIT_FILES):
            join = _Join(context, self.fields, split, file_index, self._bucket_count(context.raw / split.common))
            not_one |= join.stage_common()
            not_one |= join.stage_skeleton(self.missing_common)
            files.extend(join.join())
            info["common_feature_rows"][split.common] = join.common_rows
            info["missing_common_features"][split.skeleton] = join.missing
        dense = self.dense_fields if self.dense_fields is not None else tuple(f for f in self.fields.selected if f in not_one)
        layout = Layout(self.fields.selected, tuple(value_column(f) for f in dense), TASKS, group_column="101")
        return Staged(files, layout, info)

    def _bucket_count(self, common: Path) -> int:
        return self.buckets or max(1, math.ceil(common.stat().st_size / BUCKET_TARGET_BYTES))


class _Join:
    """Stages one official split: its common features and skeleton, bucketed by common row, then joined."""

    def __init__(self, context: StageContext, fields: FieldSet, split: _SplitFiles, file_index: int, buckets: int) -> None:
        self.context, self.fields, self.split, self.file_index, self.buckets = context, fields, split, file_index, buckets
        folder = context.staging / f"join-{split.name}"
        self.common_files = BucketedFiles(folder, "common", buckets)
        self.skeleton_files = BucketedFiles(folder, "skeleton", buckets)
        self.output = StagedFile(context.staging / f"{split.name}.parquet")
        self.common_paths: list[Path | None] = []
        self.skeleton_paths: list[Path | None] = []
        self.md5: pa.Array = pa.array([], pa.string())
        self.common_rows = 0
        self.missing: dict[str, Any] = {"rows": 0}

    def _parsed(self, file: str, columns: tuple[str, ...], not_one: set[str]) -> Iterator[LineRows]:
        path = self.context.raw / file
        with progress_bar(self.context, f"read {file}") as bar:
            for first_line, lines in read_line_blocks(path, None, self.context.block_bytes):
                rows = split_columns(path, first_line, lines, columns, self.context.bad_lines)
                not_one |= parse_feature_lists(rows, "feature_list", "feature_num", self.fields, self.context.bad_lines)
                bar.update(len(lines))
                yield rows

    def stage_common(self) -> set[str]:
        """Bucket the common-feature rows; keep their md5 keys (position = row number among valid rows)."""
        not_one: set[str] = set()
        keys = []
        for rows in self._parsed(self.split.common, COMMON_COLUMNS, not_one):
            position = np.arange(self.common_rows, self.common_rows + len(rows), dtype=np.int64)
            keys.append(rows.columns.pop("md5"))
            table = pa.table({POSITION: position, **rows.columns})
            self.common_files.write(table, position % self.buckets)
            self.common_rows += len(rows)
        self.common_paths = self.common_files.close()
        self.md5 = pa.concat_arrays(keys) if keys else self.md5
        self._check_unique_md5()
        return not_one

    def _check_unique_md5(self) -> None:
        repeated = first_repeated(self.md5)
        if repeated is not None:
            md5, count = repeated
            raise DataError(f"{self.context.raw / self.split.common}: md5 {md5!r} appears on "
                            f"{count} lines; each md5 must have one row of common features")

    def stage_skeleton(self, missing_common: str) -> set[str]:
        """Bucket the skeleton rows by the position of their md5 among the common rows."""
        not_one: set[str] = set()
        for rows in self._parsed(self.split.skeleton, SKELETON_COLUMNS, not_one):
            require_labels(rows, ["click", "buy"], self.context.bad_lines)
            position = pc.index_in(rows.columns["md5"], value_set=self.md5)
            self._report_missing(rows, position, missing_common)
            if missing_common == "drop":
                found = pc.is_valid(position)
                rows.keep(found.to_numpy(zero_copy_only=False))
                position = position.filter(found)
            table = pa.table({
                ROW_KEY: row_keys(self.file_index, rows.line_numbers),
                STAGED_SPLIT: pa.array(np.full(len(rows), self.split.staged_split, dtype=np.int8)),
                POSITION: pc.cast(position, pa.int64()),
                "click": rows.columns["click"], "conversion": rows.columns["buy"],
                **{name: column for name, column in rows.columns.items() if name in self._feature_columns()},
            })
            bucket = pc.fill_null(position, 0).to_numpy(zero_copy_only=False) % self.buckets
            self.skeleton_files.write(table, bucket)
        self.skeleton_paths = self.skeleton_files.close()
        return not_one

    def _feature_columns(self) -> set[str]:
        return set(self.fields.selected) | {value_column(f) for f in self.fields.selected}

    def _report_missing(self, rows: LineRows, position: pa.Array, missing_common: str) -> None:
        missing = pc.is_null(position).to_numpy(zero_copy_only=False)
        if not missing.any():
            return
        first = int(np.argmax(missing))
        line, md5 = int(rows.line_numbers[first]), rows.columns["md5"][first].as_py()
        path = self.context.raw / self.split.skeleton
        if missing_common == "error":
            raise DataError(f"{path}: line {line}: md5 {md5!r} has no row in {self.split.common}; "
                            "pass --missing-common keep or drop to convert such rows anyway")
        if self.missing["rows"] == 0:
            self.missing.update(first_line=line, first_md5=md5, action=missing_common)
        self.missing["rows"] += int(missing.sum())

    def join(self) -> list[Path]:
        """Join each bucket's skeleton rows with its common rows; the staged output in bucket order."""
        with progress_bar(self.context, f"join {self.split.name}") as bar:
            for common_path, skeleton_path in zip(self.common_paths, self.skeleton_paths):
                if skeleton_path is None:
                    continue
                common = _CommonBucket(common_path, self.fields.selected)
                for table in read_batches([skeleton_path]):
                    self.output.write(common.joined(table))
                    bar.update(table.num_rows)
        written = self.output.close()
        return [written] if written is not None else []


class _CommonBucket:
    """One bucket's common-feature rows, in memory, looked up by position."""

    def __init__(self, path: Path | None, fields: tuple[str, ...]) -> None:
        self.fields = fields
        table = pa.concat_tables(read_batches([path])) if path is not None else None
        if table is None or table.num_rows == 0:
            self.positions, self.table = np.array([], dtype=np.int64), None
            return
        self.positions = table[POSITION].to_numpy()
        order = np.argsort(self.positions)
        self.positions, self.table = self.positions[order], table.take(pa.array(order))

    def joined(self, skeleton: pa.Table) -> pa.Table:
        """``skeleton`` with each field's common ids appended and common values added."""
        position = skeleton[POSITION].combine_chunks()
        found = pc.is_valid(position).to_numpy(zero_copy_only=False)
        keys = pc.fill_null(position, -1).to_numpy(zero_copy_only=False)
        index = np.minimum(np.searchsorted(self.positions, keys), max(len(self.positions) - 1, 0))
        columns = {name: skeleton[name] for name in skeleton.column_names if name != POSITION}
        if self.table is None:
            return pa.table(columns)
        common = self.table.take(pa.array(np.where(found, index, 0)))
        absent = pa.array(~found)
        for name in self.fields:
            extra = pc.if_else(absent, pa.scalar([], pa.list_(pa.int64())), common[name].combine_chunks())
            columns[name] = concat_lists(skeleton[name].combine_chunks(), extra)
            extra_value = pc.if_else(absent, pa.scalar(0.0, pa.float32()), common[value_column(name)].combine_chunks())
            columns[value_column(name)] = pc.add(skeleton[value_column(name)].combine_chunks(), extra_value)
        return pa.table(columns)


def concat_lists(first: pa.ListArray, second: pa.ListArray) -> pa.ListArray:
    """Row-wise concatenation of two list arrays of equal length (``first``'s items first)."""
    first_lengths = pc.fill_null(pc.list_value_length(first), 0).to_numpy(zero_copy_only=False)
    second_lengths = pc.fill_null(pc.list_value_length(second), 0).to_numpy(zero_copy_only=False)
    if not second_lengths.any():
        return first
    if not first_lengths.any():
        return second
    offsets = np.zeros(len(first_lengths) + 1, dtype=np.int64)
    np.cumsum(first_lengths + second_lengths, out=offsets[1:])
    values = np.empty(offsets[-1], dtype=np.int64)
    for lengths, array, shift in ((first_lengths, first, 0), (second_lengths, second, first_lengths)):
        flat = pc.list_flatten(array).to_numpy()
        starts = np.repeat(offsets[:-1] + shift, lengths)
        within = np.arange(len(flat)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        values[starts + within] = flat
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(values))
