"""AliExpress conversion on a tiny country folder: official splits, ids, dense values, labels,
the opt-in user/item frequency filter, bad lines and header checks."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from torchrec_automtl.datasets.prepare.csv_rows import row_keys
from torchrec_automtl.datasets.prepare.splits import OFFICIAL_TRAIN, assign_splits
from torchrec_automtl.datasets.schema import Schema
from torchrec_automtl.datasets.validation import DataError
from tests.datasets.prepare.helpers import convert, rows_as_dicts, write_lines

CATEGORICAL = [f"categorical_{k}" for k in range(1, 17)]
NUMERICAL = [f"numerical_{k}" for k in range(1, 64)]
HEADER = ["search_id", *CATEGORICAL, *NUMERICAL, "click", "conversion"]
USER, ITEM = "categorical_1", "categorical_2"


def raw_row(i: int, user: int | None, item: int, click: int, conversion: int) -> dict:
    """One raw row: row ``i`` is recognisable by ``numerical_1 == i``; every column has its own values."""
    row = {"search_id": 9000 + i, USER: user, ITEM: item, "click": click, "conversion": conversion}
    row.update({name: 100 * k + (i * k) % 3 for k, name in enumerate(CATEGORICAL[2:], start=3)})
    row.update({name: i + k / 4 for k, name in enumerate(NUMERICAL)})
    return row


def line_of(row: dict) -> str:
    return ",".join("" if row[name] is None else str(row[name]) for name in HEADER)


def write_raw(folder: Path, train: list[dict], test: list[dict], train_extra: tuple[str, ...] = (),
              test_extra: tuple[str, ...] = ()) -> Path:
    write_lines(folder / "train.csv", [",".join(HEADER)] + [line_of(r) for r in train] + list(train_extra))
    write_lines(folder / "test.csv", [",".join(HEADER)] + [line_of(r) for r in test] + list(test_extra))
    return folder


def ranks(values: list) -> dict:
    """Expected vocabulary: id 1 for the most frequent training value, ties by value; missing not counted."""
    counts = Counter(value for value in values if value is not None)
    return {value: rank + 1 for rank, (value, _) in enumerate(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))}


TRAIN = [raw_row(i, 1 + i % 4, 50 + i % 3, i % 2, int(i % 4 == 1)) for i in range(12)]
TEST = [raw_row(100, 2, 50, 1, 1), raw_row(101, None, 51, 0, 0), raw_row(102, 9, 77, 1, 0)]


def test_official_splits_ids_dense_values_and_labels_are_exact(tmp_path: Path) -> None:
    raw = write_raw(tmp_path / "AliExpress_NL", TRAIN, TEST)
    manifest = convert("aliexpress", raw, tmp_path / "out", "--valid-fraction", "0.5")
    split = assign_splits(row_keys(0, np.arange(2, 2 + len(TRAIN))).to_numpy(), np.full(len(TRAIN), OFFICIAL_TRAIN), 0, 0.5, 0.0)
    expected = {"train": [r for r, s in zip(TRAIN, split) if s == 0], "valid": [r for r, s in zip(TRAIN, split) if s == 1],
                "test": TEST}
    assert expected["train"] and expected["valid"]
    assert manifest["rows"] == {name: len(rows) for name, rows in expected.items()}
    vocab = {name: ranks([r[name] for r in expected["train"]]) for name in CATEGORICAL}
    rows = rows_as_dicts(tmp_path / "out")
    for name, want in expected.items():
        got = [r for r in rows if r["split"] == name]
        assert [r["numerical_1"] for r in got] == [float(w["numerical_1"]) for w in want]  # file order, right split
        for column in CATEGORICAL:
            assert [r[column] for r in got] == [vocab[column].get(w[column], 0) for w in want], column
        for column in NUMERICAL:
            assert [r[column] for r in got] == [np.float32(w[column]) for w in want], column
        assert [r["click"] for r in got] == [float(w["click"]) for w in want]
        assert [r["purchase"] for r in got] == [float(w["conversion"]) for w in want]
    for column in CATEGORICAL:
        values = pq.read_table(tmp_path / "out" / "vocab" / f"{column}.parquet")["value"].to_pylist()
        assert values == sorted(vocab[column], key=vocab[column].get), column
    schema = Schema.load(tmp_path / "out")
    assert [f.name for f in schema.sparse] == CATEGORICAL
    assert [f.name for f in schema.dense] == NUMERICAL
    assert schema.task_names == ["click", "purchase"]
    assert schema.group_column is None
    assert manifest["options"]["country"] == "AliExpress_NL"
    assert manifest["options"]["valid_fraction"] == 0.5 and manifest["options"]["test_fraction"] == 0.0
    assert "frequency_filter" not in manifest


def test_defaults_and_country_option(tmp_path: Path) -> None:
    raw = write_raw(tmp_path / "AliExpress_ES", TRAIN * 3, TEST)
    manifest = convert("aliexpress", raw, tmp_path / "out", "--country", "Spain")
    assert manifest["options"]["country"] == "Spain"
    assert manifest["options"]["valid_fraction"] == 0.2 and manifest["options"]["test_fraction"] == 0.0
    assert manifest["rows"]["test"] == len(TEST)


# (i, user, item): user counts in train 1:4, 2:3, 3:1; item counts 7:5, 8:2, 9:1.
FILTER_TRAIN = [(0, 1, 7), (1, 1, 7), (2, 1, 8), (3, 2, 8), (4, 2, 9), (5, 3, 7), (6, 1, 7), (7, 2, 7)]
# user 3 occurs 3 times counting test rows, but only once in train; user 4 is unseen; 105 has no user.
FILTER_TEST = [(100, 1, 9), (101, 2, 7), (102, 3, 8), (103, 3, 7), (104, 3, 7), (105, None, 7), (106, 4, 8), (107, 1, 8)]


def test_frequency_filter_keeps_rows_whose_user_and_item_are_frequent_in_train(tmp_path: Path) -> None:
    raw = write_raw(tmp_path / "raw", [raw_row(i, u, v, 1, 0) for i, u, v in FILTER_TRAIN],
                    [raw_row(i, u, v, 1, 0) for i, u, v in FILTER_TEST])
    manifest = convert("aliexpress", raw, tmp_path / "out", "--valid-fraction", "0.5", "--min-occurrences", "2",
                       "--user-column", USER, "--item-column", ITEM)
    rows = rows_as_dicts(tmp_path / "out")
    assert sorted(r["numerical_1"] for r in rows if r["split"] != "test") == [0, 1, 2, 3, 6, 7]
    assert [r["numerical_1"] for r in rows if r["split"] == "test"] == [101, 107]
    assert manifest["frequency_filter"] == {"rows_before": {"train": 8, "test": 8}, "rows_after": {"train": 6, "test": 2}}
    assert manifest["options"]["min_occurrences"] == 2
    assert manifest["options"]["user_column"] == USER and manifest["options"]["item_column"] == ITEM
    assert sum(manifest["rows"].values()) == 8


def test_frequency_filter_options_are_checked(tmp_path: Path) -> None:
    raw = write_raw(tmp_path / "raw", TRAIN, TEST)
    with pytest.raises(ValueError, match="--min-occurrences needs both --user-column and --item-column"):
        convert("aliexpress", raw, tmp_path / "out", "--min-occurrences", "2", "--user-column", USER)
    with pytest.raises(ValueError, match="only take effect with --min-occurrences"):
        convert("aliexpress", raw, tmp_path / "out", "--item-column", ITEM)
    with pytest.raises(DataError, match=r"--item-column 'numerical_1' is not a categorical column .*train.csv.*'categorical_16'\]"):
        convert("aliexpress", raw, tmp_path / "out", "--min-occurrences", "2", "--user-column", USER, "--item-column", "numerical_1")
    with pytest.raises(DataError, match=r"--user-column 'user' is not a categorical column"):
        convert("aliexpress", raw, tmp_path / "out", "--min-occurrences", "2", "--user-column", "user", "--item-column", ITEM)


def test_malformed_lines_stop_with_file_and_line_or_are_counted(tmp_path: Path) -> None:
    good = line_of(raw_row(50, 1, 50, 1, 0))
    bad_train = (good.rsplit(",", 1)[0], good.replace(",50.25,", ",x,"), good.replace("9050,1,50,", "9050,1,a,"),
                 good[:-1] + "2")
    raw = write_raw(tmp_path / "raw", TRAIN * 3, TEST, bad_train, (good.rsplit(",", 1)[0],))
    first_bad = 2 + 3 * len(TRAIN)
    with pytest.raises(DataError, match=rf"train.csv: line {first_bad}: wrong column count"):
        convert("aliexpress", raw, tmp_path / "out")
    manifest = convert("aliexpress", raw, tmp_path / "out", "--skip-bad-lines")
    counts = manifest["bad_lines"]["train.csv"]
    assert counts["wrong column count (expected 82)"] == {"lines": 1, "first_line": first_bad}
    assert counts["non-numeric value in column 'numerical_2'"] == {"lines": 1, "first_line": first_bad + 1}
    assert counts["non-integer id in column 'categorical_2'"] == {"lines": 1, "first_line": first_bad + 2}
    assert counts["label 'conversion' outside {0, 1}"] == {"lines": 1, "first_line": first_bad + 3}
    assert manifest["bad_lines"]["test.csv"] == {"wrong column count (expected 82)": {"lines": 1, "first_line": 2 + len(TEST)}}
    assert manifest["rows"]["test"] == len(TEST)
    assert sum(manifest["rows"].values()) == 3 * len(TRAIN) + len(TEST)


def test_wrong_header_and_missing_file_are_named(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    write_lines(raw / "train.csv", [",".join(HEADER)])
    with pytest.raises(DataError, match=r"expected raw file .*test.csv"):
        convert("aliexpress", raw, tmp_path / "out")
    write_raw(raw, TRAIN, TEST)
    write_lines(raw / "train.csv", [",".join(HEADER[:-2] + ["click", "purchase"])] + [line_of(r) for r in TRAIN])
    with pytest.raises(DataError, match=r"train.csv: line 1: header has 82 columns ending in \['click', 'purchase'\]"):
        convert("aliexpress", raw, tmp_path / "out")
    write_lines(raw / "train.csv", [",".join(HEADER[1:])] + [line_of(r) for r in TRAIN])
    with pytest.raises(DataError, match=r"train.csv: line 1: header has 81 columns"):
        convert("aliexpress", raw, tmp_path / "out")
    write_lines(raw / "train.csv", [",".join(HEADER[:2] + HEADER[1:-3] + HEADER[-2:])])
    with pytest.raises(DataError, match=r"train.csv: line 1: header names must be distinct"):
        convert("aliexpress", raw, tmp_path / "out")
    write_raw(raw, TRAIN, TEST)
    write_lines(raw / "test.csv", [",".join(["id", *HEADER[1:]])] + [line_of(r) for r in TEST])
    with pytest.raises(DataError, match=r"test.csv: line 1: header"):
        convert("aliexpress", raw, tmp_path / "out")
    assert not (tmp_path / "out").exists()
