"""KuaiRand-Pure (paper 001): two interaction logs joined with a user and a video feature table.

Raw files as published in ``KuaiRand-Pure/data/``: the logs ``log_standard_4_08_to_4_21_pure.csv``
and ``log_standard_4_22_to_5_08_pure.csv`` (one line = one sample, streamed block by block) and the
small side tables ``user_features_pure.csv`` and ``video_features_basic_pure.csv`` (read whole).
Tasks (7): is_click, is_like, is_follow, is_comment, is_forward, is_hate, long_view. Split 8:1:1 at
random (paper 001: 1,038,456 samples).

Paper 001 counts 41 features but does not list them. Our reading, set by the tuples below, gives
37 sparse + 5 dense = 42:

- log: ``user_id``, ``video_id``, ``tab`` and ``hour`` (= ``hourmin // 100``), categorical;
- user table: ``user_active_degree``, ``is_lowactive_period``, ``is_live_streamer``,
  ``is_video_author``, the four ``*_range`` buckets and ``onehot_feat0..17``, categorical (raw text);
- video table: ``author_id``, ``video_type``, ``upload_type``, ``visible_status``, ``music_id``,
  ``music_type``, categorical (raw text), and ``tag``, multi-hot (its comma-separated ids);
- dense: ``log1p`` of ``follow_user_num``, ``fans_user_num``, ``friend_user_num``, ``register_days``
  and of ``video_duration`` in seconds (missing -> 0).

Columns that leak the labels or the future (``play_time_ms``, ``time_ms``, stay times, ...) are
not used. An empty side-table cell is a missing value (OOV id 0). A log row whose user or video is
absent from its side table is kept with missing side features and counted in manifest.json
(``rows_without_user_features``, ``rows_without_video_features``).
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from torchrec_automtl.datasets.prepare.converter import Converter, Layout, StageContext, Staged
from torchrec_automtl.datasets.prepare.csv_rows import read_csv_rows, stage_tables
from torchrec_automtl.datasets.prepare.side_tables import SideTable
from torchrec_automtl.datasets.prepare.values import first_repeated, parse_integers, parse_numbers
from torchrec_automtl.datasets.validation import DataError

LOG_FILES = ("log_standard_4_08_to_4_21_pure.csv", "log_standard_4_22_to_5_08_pure.csv")
USER_FILE = "user_features_pure.csv"
VIDEO_FILE = "video_features_basic_pure.csv"
ONEHOT = tuple(f"onehot_feat{index}" for index in range(18))
LOG_HEADER = ("user_id", "video_id", "date", "hourmin", "time_ms", "is_click", "is_like", "is_follow", "is_comment",
              "is_forward", "is_hate", "long_view", "play_time_ms", "duration_ms", "profile_stay_time",
              "comment_stay_time", "is_profile_enter", "is_rand", "tab")
USER_HEADER = ("user_id", "user_active_degree", "is_lowactive_period", "is_live_streamer", "is_video_author",
               "follow_user_num", "follow_user_num_range", "fans_user_num", "fans_user_num_range", "friend_user_num",
               "friend_user_num_range", "register_days", "register_days_range", *ONEHOT)
VIDEO_HEADER = ("video_id", "author_id", "video_type", "upload_dt", "upload_type", "visible_status", "video_duration",
                "server_width", "server_height", "music_id", "music_type", "tag")
TASKS = ("is_click", "is_like", "is_follow", "is_comment", "is_forward", "is_hate", "long_view")

LOG_IDS = ("user_id", "video_id", "tab", "hourmin")  # hourmin becomes ``hour``
LOG_FEATURES = ("user_id", "video_id", "tab", "hour")
USER_CATEGORICAL = ("user_active_degree", "is_lowactive_period", "is_live_streamer", "is_video_author",
                    "follow_user_num_range", "fans_user_num_range", "friend_user_num_range", "register_days_range",
                    *ONEHOT)
VIDEO_CATEGORICAL = ("author_id", "video_type", "upload_type", "visible_status", "music_id", "music_type")
VIDEO_MULTI_HOT = ("tag",)
USER_DENSE = {"follow_user_num": 1.0, "fans_user_num": 1.0, "friend_user_num": 1.0, "register_days": 1.0}
VIDEO_DENSE = {"video_duration": 1000.0}  # dense column -> divisor before log1p (milliseconds -> seconds)

SPARSE = (*LOG_FEATURES, *USER_CATEGORICAL, *VIDEO_CATEGORICAL, *VIDEO_MULTI_HOT)
DENSE = (*USER_DENSE, *VIDEO_DENSE)
FIRST_DATA_LINE = 2  # side-table row 0 is on line 2, after the header


def _require(path: Path, ok: np.ndarray, text: pa.Array, column: str, expected: str) -> None:
    """Raise DataError at the first side-table row that is not ``ok``, naming its line and value."""
    if not ok.all():
        row = int(np.argmax(~ok))
        raise DataError(f"{path}: line {row + FIRST_DATA_LINE}: column '{column}': "
                        f"{text[row].as_py()!r} is not {expected}")


def read_side_csv(path: Path, header: Sequence[str]) -> pa.Table:
    """All columns of a quoted side table as strings (an empty cell is null); the header must match."""
    try:
        table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(
            column_types={name: pa.string() for name in header}, null_values=[""], strings_can_be_null=True))
    except pa.ArrowInvalid as error:
        raise DataError(f"{path}: {error}") from None
    if table.column_names != list(header):
        raise DataError(f"{path}: line 1: header {table.column_names} does not match the published format {list(header)}")
    return table


def unique_keys(path: Path, text: pa.Array, key: str) -> pa.Array:
    """int64 ``key`` ids of a side table; non-integer or repeated keys are a DataError."""
    keys, ok = parse_integers(text)
    _require(path, ok, text, key, "an integer id")
    repeated = first_repeated(keys)
    if repeated is not None:
        raise DataError(f"{path}: {key} {repeated[0]} appears on more than one line")
    return keys


def log1p_numbers(path: Path, text: pa.Array, column: str, divisor: float) -> pa.Array:
    """float32 ``log1p(value / divisor)``; a missing value is 0, a negative or non-numeric one a DataError."""
    values, ok = parse_numbers(text)
    missing = pc.is_null(text).to_numpy(zero_copy_only=False)
    numbers = values.to_numpy(zero_copy_only=False)
    _require(path, missing | (ok & (numbers >= 0)), text, column, "a non-negative number")
    return pa.array(np.log1p(numbers / divisor).astype(np.float32))


def id_lists(path: Path, text: pa.Array, column: str) -> pa.Array:
    """list<int64> of the comma-separated integer ids in ``text`` (an empty list where it is missing)."""
    lists = pc.split_pattern(text, ",")
    parts = pc.utf8_trim_whitespace(pc.list_flatten(lists))
    ids, ok = parse_integers(parts)
    if not ok.all():
        rows = pc.list_parent_indices(lists).to_numpy()
        _require(path, np.bincount(rows[~ok], minlength=len(text)) == 0, text, column, "a list of integer ids")
    return pa.ListArray.from_arrays(lists.offsets, ids)


def load_side_table(path: Path, header: Sequence[str], key: str, categorical: Sequence[str],
                    multi_hot: Sequence[str], dense: Mapping[str, float]) -> SideTable:
    """A side table's ``categorical`` text, ``multi_hot`` id lists and log1p ``dense`` columns by ``key``."""
    table = read_side_csv(path, header)
    column = {name: table[name].combine_chunks() for name in header}
    features = {name: column[name] for name in categorical}
    features.update({name: id_lists(path, column[name], name) for name in multi_hot})
    features.update({name: log1p_numbers(path, column[name], name, divisor) for name, divisor in dense.items()})
    return SideTable(unique_keys(path, column[key], key), pa.table(features), tuple(dense))


def joined_blocks(blocks: Iterator[pa.Table], users: SideTable, videos: SideTable, missing: Counter) -> Iterator[pa.Table]:
    """Log blocks with ``hour`` and the side features joined in; adds the unmatched rows to ``missing``."""
    for block in blocks:
        user_features, users_missing = users.join(block["user_id"].combine_chunks())
        video_features, videos_missing = videos.join(block["video_id"].combine_chunks())
        missing["rows_without_user_features"] += users_missing
        missing["rows_without_video_features"] += videos_missing
        columns = {name: block[name] for name in block.column_names if name != "hourmin"}
        columns["hour"] = pc.divide(block["hourmin"], 100)
        columns.update({name: user_features[name] for name in user_features.column_names})
        columns.update({name: video_features[name] for name in video_features.column_names})
        yield pa.table(columns)


class KuaiRandPure(Converter):
    name = "kuairand"
    summary = "KuaiRand-Pure: 7 tasks (click, like, follow, comment, forward, hate, long view); random 8:1:1 split"

    def __init__(self, args: argparse.Namespace) -> None:
        pass

    def raw_files(self) -> list[str]:
        return [*LOG_FILES, USER_FILE, VIDEO_FILE]

    def stage(self, context: StageContext) -> Staged:
        users = load_side_table(context.raw / USER_FILE, USER_HEADER, "user_id", USER_CATEGORICAL, (), USER_DENSE)
        videos = load_side_table(context.raw / VIDEO_FILE, VIDEO_HEADER, "video_id", VIDEO_CATEGORICAL,
                                 VIDEO_MULTI_HOT, VIDEO_DENSE)
        # The quoted side tables are read whole by Arrow's CSV reader, one record per line (a line end
        # inside quotes is a parse error), so their records are their data lines.
        context.bad_lines.count_read(context.raw / USER_FILE, users.rows)
        context.bad_lines.count_read(context.raw / VIDEO_FILE, videos.rows)
        blocks = (table for index, name in enumerate(LOG_FILES)
                  for table in read_csv_rows(context, context.raw / name, LOG_HEADER, ids=LOG_IDS, labels=TASKS,
                                             file_index=index))
        missing = Counter({"rows_without_user_features": 0, "rows_without_video_features": 0})
        files = stage_tables(context.staging / "rows.parquet", joined_blocks(blocks, users, videos, missing))
        return Staged(files, Layout(SPARSE, DENSE, TASKS, group_column="user_id"), dict(missing))
