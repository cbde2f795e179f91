"""User-item behaviour logs (IJCAI-2015, UserBehavior-2017) -> samples, with purchase-based filters.

A log line is ``(user, item, item features..., behaviour, ...)``; the papers train on samples
built from it but leave open how, so this is our documented choice (``--samples``):

- ``pair`` (default): one sample per (user, item) pair seen in the log. A task's label is 1 if
  the pair has that behaviour at least once; item features are the values on the pair's first
  log line, and the sample's row key (hence its split) is that line's key.
- ``event``: one sample per log line; only the line's own behaviour is labelled 1.

Filtering (paper 000, "common preprocessing") is applied once, on the original log, before the
samples are built: a sample is kept if its user purchased at least ``--min-user-purchases``
distinct items and its item was purchased by at least ``--min-item-buyers`` distinct users.
The filter is not iterated to a fixpoint: dropping an item can leave a kept user below the
threshold, and such a user stays.

Memory stays bounded by the count tables, never by the log:

1. the log is streamed into ``--buckets`` staged files partitioned by a hash of the user, so
   all of a user's lines (and every (user, item) pair) fall in one bucket, in file order;
2. one bucket at a time is aggregated into pairs with Arrow. A user's distinct purchased items
   are complete inside its bucket; an item's buyers are spread over buckets, but each purchase
   pair is in exactly one bucket, so summing per-item counts over buckets is exact;
3. the unfiltered samples are streamed once more and filtered by both thresholds.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from torchrec_automtl.datasets.prepare.converter import Converter, Layout, StageContext, Staged
from torchrec_automtl.datasets.prepare.csv_rows import FILE_INDEX_SHIFT, progress_bar, read_csv_rows, row_keys
from torchrec_automtl.datasets.prepare.lines import read_line_blocks, split_columns
from torchrec_automtl.datasets.prepare.splits import ANY_SPLIT, splitmix64
from torchrec_automtl.datasets.prepare.staging import ROW_KEY, STAGED_SPLIT, BucketedFiles, StagedFile, read_batches
from torchrec_automtl.datasets.prepare.values import first_repeated, require_integer_ids
from torchrec_automtl.datasets.prepare.side_tables import SideTable
from torchrec_automtl.datasets.prepare.vocabulary import FrequencyCounter, SortedKeys
from torchrec_automtl.datasets.validation import DataError

USER, ITEM = "user_id", "item_id"
SAMPLE_KINDS = ("pair", "event")
_BEHAVIOUR, _PURCHASED, _USER_PURCHASES = "_behaviour", "_purchased", "_user_purchases"
_FIRST = pc.ScalarAggregateOptions(skip_nulls=False)  # the first line's value, even when it is missing


@dataclass(frozen=True)
class BehaviourLog:
    """The published format of one behaviour log.

    ``behaviours`` are the valid raw codes of column ``behaviour``; ``tasks`` maps each task name
    to the code it labels; ``purchase`` is the code of a purchase (the filters count these).
    """

    file: str
    header: tuple[str, ...]
    has_header: bool
    item_features: tuple[str, ...]
    behaviour: str
    behaviours: tuple[str, ...]
    tasks: dict[str, str]
    purchase: str

    def code_of(self, raw: str) -> int:
        return self.behaviours.index(raw)


@dataclass(frozen=True)
class Sampling:
    """How samples are built (``--samples``) and filtered, and how many buckets bound the memory."""

    samples: str
    min_user_purchases: int
    min_item_buyers: int
    buckets: int

    def __post_init__(self) -> None:
        if self.samples not in SAMPLE_KINDS:
            raise ValueError(f"--samples must be one of {list(SAMPLE_KINDS)}, not {self.samples!r}")
        if self.min_user_purchases < 0 or self.min_item_buyers < 0 or self.buckets < 1:
            raise ValueError("--min-user-purchases and --min-item-buyers must be >= 0, --buckets >= 1")

    def to_dict(self) -> dict[str, Any]:
        return {"samples": self.samples, "min_user_purchases": self.min_user_purchases,
                "min_item_buyers": self.min_item_buyers, "buckets": self.buckets}


def counts_of(keys: pa.Array, counts: pa.Table) -> np.ndarray:
    """The ``count`` of each of ``keys`` in a ``(value, count)`` table, 0 where absent."""
    position = SortedKeys(counts["value"].combine_chunks()).positions(keys)
    return np.append(counts["count"].to_numpy(), 0)[position]  # position -1 (absent) picks the appended 0


class UserTable:
    """Small per-user features (loaded whole), joined to samples by user id; missing users get nulls."""

    def __init__(self, path: Path, table: pa.Table, features: tuple[str, ...]) -> None:
        _require_unique_users(path, table)
        self.features = features
        self._side = SideTable(table[USER].combine_chunks(), table.select(list(features)))
        self.missing = 0

    @property
    def rows(self) -> int:
        """How many users the table holds (one valid line each)."""
        return self._side.rows

    @classmethod
    def read(cls, context: StageContext, path: Path, header: tuple[str, ...], file_index: int) -> "UserTable":
        """Read ``path`` (integer columns ``header``, the first being ``user_id``); an empty user id is a bad line."""
        tables = [table.filter(_valid_users(context, path, table))
                  for table in read_csv_rows(context, path, header, ids=header, file_index=file_index)]
        empty = pa.table({ROW_KEY: pa.array([], pa.uint64()), **{name: pa.array([], pa.int64()) for name in header}})
        table = pa.concat_tables(tables) if tables else empty
        return cls(path, table, tuple(name for name in header if name != USER))

    def join(self, samples: pa.Table) -> pa.Table:
        """``samples`` with the user feature columns appended (null for users absent from the table)."""
        found, missing = self._side.join(samples[USER].combine_chunks())
        self.missing += missing
        for name in self.features:
            samples = samples.append_column(name, found[name])
        return samples


def _valid_users(context: StageContext, path: Path, table: pa.Table) -> pa.Array:
    valid = pc.is_valid(table[USER])
    lines = _line_numbers(table[ROW_KEY])
    context.bad_lines.report(path, lines, ~valid.to_numpy(zero_copy_only=False), f"empty '{USER}'")
    return valid


def _line_numbers(row_keys_column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """The line numbers inside row keys (``csv_rows.row_keys``)."""
    return row_keys_column.to_numpy() & np.uint64((1 << FILE_INDEX_SHIFT) - 1)


def _require_unique_users(path: Path, table: pa.Table) -> None:
    repeated = first_repeated(table[USER])
    if repeated is not None:
        user, _ = repeated
        lines = _line_numbers(table.filter(pc.equal(table[USER], user))[ROW_KEY]).tolist()
        raise DataError(f"{path}: user_id {user} appears on more than one line (lines {lines}); expected one line per user")


def read_log(context: StageContext, log: BehaviourLog) -> Iterator[pa.Table]:
    """Valid lines of the log: ``_row``, user, item, item features (int64) and the behaviour code (int8).

    Wrong column counts, non-integer ids, an empty user or item, and unknown behaviours are bad lines.
    """
    path = context.raw / log.file
    ids = [USER, ITEM, *log.item_features]
    with progress_bar(context, f"read {path.name}") as bar:
        for first_line, lines in read_line_blocks(path, log.header if log.has_header else None, context.block_bytes):
            rows = split_columns(path, first_line, lines, log.header, context.bad_lines)
            require_integer_ids(rows, ids, context.bad_lines)
            for name in (USER, ITEM):
                rows.require(pc.is_valid(rows.columns[name]).to_numpy(zero_copy_only=False), context.bad_lines, f"empty '{name}'")
            text = rows.columns[log.behaviour]
            rows.columns[_BEHAVIOUR] = pc.cast(pc.index_in(text, value_set=pa.array(log.behaviours)), pa.int8())
            rows.require(pc.is_valid(rows.columns[_BEHAVIOUR]).to_numpy(zero_copy_only=False), context.bad_lines,
                         f"'{log.behaviour}' not one of {list(log.behaviours)}", lambda i: f"value {text[i].as_py()!r}")
            bar.update(len(lines))
            columns = {ROW_KEY: row_keys(0, rows.line_numbers)}
            columns.update({name: rows.columns[name] for name in (*ids, _BEHAVIOUR)})
            yield pa.table(columns)


def bucket_log(context: StageContext, log: BehaviourLog, buckets: int) -> tuple[list[Path], int]:
    """Pass 1: stage the log's lines into ``buckets`` files by a hash of the user; also return the line count."""
    files = BucketedFiles(context.staging / "log", "bucket", buckets)
    lines = 0
    for table in read_log(context, log):
        users = table[USER].to_numpy().astype(np.uint64)
        files.write(table, (splitmix64(users) % np.uint64(buckets)).astype(np.int64))
        lines += table.num_rows
    return [path for path in files.close() if path is not None], lines


def with_flags(events: pa.Table, log: BehaviourLog) -> pa.Table:
    """``events`` plus one boolean column per task and ``_purchased``, from each line's behaviour."""
    flags = {task: log.code_of(code) for task, code in log.tasks.items()}
    flags[_PURCHASED] = log.code_of(log.purchase)
    for name, code in flags.items():
        events = events.append_column(name, pc.equal(events[_BEHAVIOUR], pa.scalar(code, pa.int8())))
    return events


def pairs_of(events: pa.Table, log: BehaviourLog) -> pa.Table:
    """One row per (user, item) of flagged ``events`` (one bucket, in file order): the first line's
    row key and item features, and each flag set if any of the pair's lines has it."""
    aggregations = [(ROW_KEY, "min", None), *((name, "first", _FIRST) for name in log.item_features),
                    *((name, "any", None) for name in (*log.tasks, _PURCHASED))]
    grouped = events.group_by([USER, ITEM], use_threads=False).aggregate(
        [(name, function, options) if options else (name, function) for name, function, options in aggregations])
    columns = {USER: grouped[USER], ITEM: grouped[ITEM]}
    columns.update({name: grouped[f"{name}_{function}"] for name, function, _ in aggregations})
    return pa.table({ROW_KEY: columns.pop(ROW_KEY), **columns})


@dataclass
class Tally:
    """What the passes count, for manifest.json; the item buyer counts drive the item filter."""

    log_lines: int = 0
    pairs: int = 0
    samples: int = 0
    users: int = 0
    items: FrequencyCounter = field(default_factory=FrequencyCounter)
    item_buyers: FrequencyCounter = field(default_factory=FrequencyCounter)


def aggregate_buckets(context: StageContext, log: BehaviourLog, sampling: Sampling, buckets: list[Path],
                      tally: Tally) -> list[Path]:
    """Pass 2: each bucket -> its samples (per ``sampling.samples``) with the user's distinct purchased
    items in ``_user_purchases``; per-item buyer counts accumulate in ``tally``. Buckets are deleted once read."""
    staged = StagedFile(context.staging / "samples-unfiltered.parquet")
    with progress_bar(context, "aggregate pairs") as bar:
        for path in buckets:
            events = with_flags(pq.read_table(path), log)
            path.unlink()
            pairs = pairs_of(events, log)
            buyers = pairs.filter(pairs[_PURCHASED])
            user_purchases = pc.value_counts(buyers[USER])
            purchases = pa.table({"value": user_purchases.field("values"), "count": user_purchases.field("counts")})
            samples = pairs if sampling.samples == "pair" else events
            staged.write(samples.append_column(_USER_PURCHASES, pa.array(counts_of(samples[USER].combine_chunks(), purchases))))
            tally.pairs += pairs.num_rows
            tally.samples += samples.num_rows
            tally.users += pc.count_distinct(pairs[USER]).as_py()
            tally.items.update(pairs[ITEM].combine_chunks())
            tally.item_buyers.update(buyers[ITEM].combine_chunks())
            bar.update(events.num_rows)
    written = staged.close()
    return [written] if written is not None else []


def filter_samples(context: StageContext, log: BehaviourLog, sampling: Sampling, unfiltered: list[Path],
                   item_buyers: pa.Table, users: UserTable | None) -> tuple[list[Path], dict[str, int]]:
    """Pass 3: keep the samples whose user and item pass the thresholds; write the final staged rows
    (``_row``, ``_split``, ids, user features, float32 labels). Also return the kept counts."""
    staged = StagedFile(context.staging / "samples.parquet")
    kept_users, kept_items = FrequencyCounter(), FrequencyCounter()
    with progress_bar(context, "filter samples") as bar:
        for table in read_batches(unfiltered):
            bar.update(table.num_rows)
            keep = ((table[_USER_PURCHASES].to_numpy() >= sampling.min_user_purchases)
                    & (counts_of(table[ITEM].combine_chunks(), item_buyers) >= sampling.min_item_buyers))
            table = table.filter(pa.array(keep))
            final = final_columns(table, log)
            staged.write(users.join(final) if users is not None else final)
            kept_users.update(table[USER].combine_chunks())
            kept_items.update(table[ITEM].combine_chunks())
    written = staged.close()
    kept = {"users_kept": len(kept_users.counts(pa.int64())), "items_kept": len(kept_items.counts(pa.int64()))}
    return ([written] if written is not None else []), {"samples_after_filter": staged.rows, **kept}


def final_columns(samples: pa.Table, log: BehaviourLog) -> pa.Table:
    """The staged columns of ``samples``: row key, ``ANY_SPLIT``, ids and 0/1 float32 task labels."""
    columns = {ROW_KEY: samples[ROW_KEY], STAGED_SPLIT: pa.array(np.full(samples.num_rows, ANY_SPLIT, dtype=np.int8))}
    columns.update({name: samples[name] for name in (USER, ITEM, *log.item_features)})
    columns.update({task: pc.cast(samples[task], pa.float32()) for task in log.tasks})
    return pa.table(columns)


def stage_samples(context: StageContext, log: BehaviourLog, sampling: Sampling, users: UserTable | None = None) -> Staged:
    """All three passes: the staged samples of ``log``, their layout and the counts for manifest.json."""
    buckets, log_lines = bucket_log(context, log, sampling.buckets)
    tally = Tally(log_lines=log_lines)
    unfiltered = aggregate_buckets(context, log, sampling, buckets, tally)
    item_buyers = tally.item_buyers.counts(pa.int64())
    files, kept = filter_samples(context, log, sampling, unfiltered, item_buyers, users)
    if not files:
        raise DataError(f"{log.file}: none of the {tally.samples} samples passes --min-user-purchases "
                        f"{sampling.min_user_purchases} and --min-item-buyers {sampling.min_item_buyers}; lower them")
    for path in unfiltered:
        path.unlink()
    info = {"log_lines": log_lines, "pairs": tally.pairs, "samples_before_filter": tally.samples, **kept,
            "users_before_filter": tally.users, "items_before_filter": len(tally.items.counts(pa.int64()))}
    sparse = (USER, ITEM, *log.item_features)
    if users is not None:
        sparse += users.features
        info["samples_without_user_features"] = users.missing
        info["user_rows"] = users.rows
    return Staged(files, Layout(sparse, (), tuple(log.tasks), group_column=USER), {"interactions": info})


class InteractionConverter(Converter):
    """A converter of one behaviour log into samples (see the module docstring); subclasses set
    ``log`` and the paper's default thresholds, and may join user features in ``stage``."""

    log: ClassVar[BehaviourLog]
    default_min_user_purchases: ClassVar[int]
    default_min_item_buyers: ClassVar[int]

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--samples", choices=SAMPLE_KINDS, default="pair",
                            help="one sample per (user, item) pair with any-behaviour labels, or one per log line")
        parser.add_argument("--min-user-purchases", type=int, default=cls.default_min_user_purchases,
                            help="keep users who purchased at least this many distinct items (paper 000)")
        parser.add_argument("--min-item-buyers", type=int, default=cls.default_min_item_buyers,
                            help="keep items purchased by at least this many distinct users (paper 000)")
        parser.add_argument("--buckets", type=int, default=64,
                            help="user-hash partitions of the log; memory per partition is about log size / buckets")

    def __init__(self, args: argparse.Namespace) -> None:
        self.sampling = Sampling(args.samples, args.min_user_purchases, args.min_item_buyers, args.buckets)

    def raw_files(self) -> list[str]:
        return [self.log.file]

    def stage(self, context: StageContext) -> Staged:
        return stage_samples(context, self.log, self.sampling)

    def options(self) -> dict[str, Any]:
        return self.sampling.to_dict()
