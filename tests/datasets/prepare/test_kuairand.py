"""KuaiRand-Pure conversion on tiny raw files in the published format: the log/side-table join,
labels, multi-hot tags, log1p dense values, unmatched keys, bad lines and side-table errors."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from torchrec_automtl.datasets.prepare.csv_rows import row_keys
from torchrec_automtl.datasets.prepare.kuairand import LOG_FILES, LOG_HEADER, TASKS, USER_FILE, USER_HEADER, VIDEO_FILE, VIDEO_HEADER
from torchrec_automtl.datasets.prepare.splits import ANY_SPLIT, assign_splits
from torchrec_automtl.datasets.schema import Schema
from torchrec_automtl.datasets.validation import DataError
from tests.datasets.prepare.helpers import convert, rows_as_dicts, write_lines

ONEHOT = ",".join(str(i % 3) for i in range(18))
USER_LINES = [  # user 9 (in the log) is missing here
    f'1,high_active,0,0,0,5,"(0,10]",120,"(100,1000]",3,"(0,5]",200,"(180,365]",{ONEHOT}',
    f'2,full_active,1,0,1,0,0,0,0,0,0,30,"(0,60]",{ONEHOT}',
    f'3,middle_active,0,1,0,,0,7,"(0,10]",0,0,400,"365+",{"," * 17}',
]
USER_DENSE = {1: (5, 120, 3, 200), 2: (0, 0, 0, 30), 3: (0, 7, 0, 400), 9: (0, 0, 0, 0)}
VIDEO_LINES = [  # video 999 (in the log) is missing here
    '100,7,NORMAL,2022-01-01,ShortImport,public,15000,720,1280,55,0,"12,45"',
    "101,8,AD,2022-01-02,ShortImport,public,,720,1280,,1,45",
    "102,7,NORMAL,2022-01-03,LongImport,private,60000,720,1280,56,0,",
]
VIDEO_TAGS = {100: [12, 45], 101: [45], 102: [], 999: []}
VIDEO_SECONDS = {100: 15.0, 101: 0.0, 102: 60.0, 999: 0.0}
USERS, VIDEOS = (1, 2, 3, 9), (100, 101, 102, 999)
ROWS_PER_LOG = 40


def log_row(i: int) -> dict:
    labels = {task: int((i + j) % (j + 2) == 0) for j, task in enumerate(TASKS)}
    return {"user_id": USERS[i % 4], "video_id": VIDEOS[(i // 2) % 4], "hour": i % 24, "tab": i % 3, **labels}


def log_line(i: int) -> str:
    row = log_row(i)
    values = {"date": 20220408, "hourmin": row["hour"] * 100 + 30, "time_ms": 1649400000000 + i, "play_time_ms": 999,
              "duration_ms": 15000, "profile_stay_time": 0, "comment_stay_time": 0, "is_profile_enter": 0, "is_rand": 0}
    return ",".join(str({**row, **values}[name]) for name in LOG_HEADER)


def write_raw(folder: Path, log_extra: tuple[str, ...] = (), user_lines: list[str] = USER_LINES) -> Path:
    for index, name in enumerate(LOG_FILES):
        lines = [log_line(i) for i in range(index * ROWS_PER_LOG, (index + 1) * ROWS_PER_LOG)]
        write_lines(folder / name, [",".join(LOG_HEADER), *lines, *(log_extra if index == 1 else ())])
    write_lines(folder / USER_FILE, [",".join(USER_HEADER), *user_lines])
    write_lines(folder / VIDEO_FILE, [",".join(VIDEO_HEADER), *VIDEO_LINES])
    return folder


def expected_rows_in_output_order() -> list[dict]:
    """The raw log rows ordered as the output lists them: by split, then by file and line."""
    lines = np.arange(2, 2 + ROWS_PER_LOG)
    keys = np.concatenate([row_keys(index, lines).to_numpy() for index in range(len(LOG_FILES))])
    split = assign_splits(keys, np.full(len(keys), ANY_SPLIT), 0, 0.1, 0.1)
    raw = [log_row(i) for i in range(len(keys))]
    return [{**row, "split": name} for index, name in enumerate(("train", "valid", "test"))
            for row, s in zip(raw, split) if s == index]


def vocab_ids(out: Path, field: str) -> dict:
    """Raw value -> id of ``field`` (row i of its vocabulary file has id i + 1)."""
    values = pq.read_table(out / "vocab" / f"{field}.parquet")["value"].to_pylist()
    return {value: index + 1 for index, value in enumerate(values)}


def test_rows_labels_tags_and_dense_values_are_exact(tmp_path: Path) -> None:
    out = tmp_path / "out"
    manifest = convert("kuairand", write_raw(tmp_path / "raw"), out)
    got, expected = rows_as_dicts(out), expected_rows_in_output_order()
    assert len(got) == sum(manifest["rows"].values()) == 2 * ROWS_PER_LOG
    assert all(manifest["rows"][split] > 0 for split in ("train", "valid", "test"))
    tags, hours, degrees = vocab_ids(out, "tag"), vocab_ids(out, "hour"), vocab_ids(out, "user_active_degree")
    assert set(tags) == {12, 45} and set(degrees) <= {"high_active", "full_active", "middle_active"}
    for row, raw in zip(got, expected):
        assert row["split"] == raw["split"]
        assert {task: row[task] for task in TASKS} == {task: float(raw[task]) for task in TASKS}
        assert row["tag"] == [tags[tag] for tag in VIDEO_TAGS[raw["video_id"]]]
        assert row["hour"] == hours.get(raw["hour"], 0)
        user_dense = [row[name] for name in ("follow_user_num", "fans_user_num", "friend_user_num", "register_days")]
        assert user_dense == pytest.approx([math.log1p(v) for v in USER_DENSE[raw["user_id"]]], rel=1e-6)
        assert row["video_duration"] == pytest.approx(math.log1p(VIDEO_SECONDS[raw["video_id"]]), rel=1e-6)
        missing_user = raw["user_id"] == 9
        assert (row["user_active_degree"] == 0) == missing_user  # all three degrees occur in training
        assert (row["author_id"] == 0) == (raw["video_id"] == 999)
    assert manifest["rows_without_user_features"] == sum(raw["user_id"] == 9 for raw in expected) == 20
    assert manifest["rows_without_video_features"] == sum(raw["video_id"] == 999 for raw in expected) == 20


def test_schema_has_seven_binary_tasks_and_multi_hot_tags(tmp_path: Path) -> None:
    convert("kuairand", write_raw(tmp_path / "raw"), tmp_path / "out")
    schema = Schema.load(tmp_path / "out")
    assert schema.task_names == list(TASKS)
    assert {task.type for task in schema.tasks} == {"binary"}
    assert [f.name for f in schema.sparse if f.multi_hot] == ["tag"]
    assert (len(schema.sparse), len(schema.dense)) == (37, 5)
    assert schema.group_column == "user_id"


def test_malformed_log_line_stops_with_file_and_line_or_is_counted(tmp_path: Path) -> None:
    raw = write_raw(tmp_path / "raw", log_extra=("1,100,20220408,1030",))
    bad_line = 2 + ROWS_PER_LOG
    with pytest.raises(DataError, match=rf"{LOG_FILES[1]}: line {bad_line}: wrong column count"):
        convert("kuairand", raw, tmp_path / "out")
    manifest = convert("kuairand", raw, tmp_path / "out", "--skip-bad-lines")
    counts = manifest["bad_lines"][LOG_FILES[1]]
    assert counts == {f"wrong column count (expected {len(LOG_HEADER)})": {"lines": 1, "first_line": bad_line}}
    assert sum(manifest["rows"].values()) == 2 * ROWS_PER_LOG


def test_missing_raw_file_is_named(tmp_path: Path) -> None:
    raw = write_raw(tmp_path / "raw")
    (raw / VIDEO_FILE).unlink()
    with pytest.raises(DataError, match=rf"expected raw file .*{VIDEO_FILE}"):
        convert("kuairand", raw, tmp_path / "out")


@pytest.mark.parametrize("user_lines, message", [
    ([*USER_LINES, USER_LINES[1]], rf"{USER_FILE}: user_id 2 appears on more than one line"),
    ([*USER_LINES, f"x{USER_LINES[1]}"], rf"{USER_FILE}: line 5: column 'user_id': 'x2' is not an integer id"),
    ([*USER_LINES, USER_LINES[1].replace("30,", "-3,")], rf"{USER_FILE}: line 5: column 'register_days'"),
    ([*USER_LINES, '4,"high_active'], rf"{USER_FILE}: CSV parse error"),
])
def test_side_table_errors_name_the_file(tmp_path: Path, user_lines: list[str], message: str) -> None:
    with pytest.raises(DataError, match=message):
        convert("kuairand", write_raw(tmp_path / "raw", user_lines=user_lines), tmp_path / "out")


@pytest.mark.parametrize("file, header", [
    (LOG_FILES[1], LOG_HEADER), (USER_FILE, USER_HEADER), (VIDEO_FILE, VIDEO_HEADER)])
def test_a_header_that_differs_from_the_published_one_is_named(tmp_path: Path, file: str, header: tuple) -> None:
    raw = write_raw(tmp_path / "raw")
    renamed = ",".join(("uid", *header[1:]))
    (raw / file).write_text((raw / file).read_text().replace(",".join(header), renamed, 1))
    with pytest.raises(DataError, match=rf"{file}: line 1: header \[?\(?'uid', .* does not match the published format"):
        convert("kuairand", raw, tmp_path / "out", "--skip-bad-lines")
