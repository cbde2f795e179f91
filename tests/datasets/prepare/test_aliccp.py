"""AliCCP conversion on tiny raw files in the published format: multi-hot fields, the md5 join of
common features, value-carrying fields as dense features, missing md5s, malformed lines."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from torchrec_automtl.datasets.prepare.aliccp import concat_lists
from torchrec_automtl.datasets.prepare.splits import OFFICIAL_TRAIN, assign_splits
from torchrec_automtl.datasets.schema import Schema
from torchrec_automtl.datasets.validation import DataError
from tests.datasets.prepare.helpers import convert, read_all, rows_as_dicts, write_lines


def features(*entries: tuple[str, int, float]) -> str:
    return "\x01".join(f"{field}\x02{id_}\x03{value:g}" for field, id_, value in entries)


def skeleton_line(sample: int, click: int, buy: int, md5: str, *entries) -> str:
    return f"{sample},{click},{buy},{md5},{len(entries)},{features(*entries)}"


def common_line(md5: str, *entries) -> str:
    return f"{md5},{len(entries)},{features(*entries)}"


COMMON_TRAIN = [
    common_line("aa", ("101", 1000, 1), ("121", 500, 1), ("109_14", 7000, 0.5)),
    common_line("bb", ("101", 1001, 1), ("109_14", 7000, 1.5), ("109_14", 7001, 2.0), ("121", 501, 1)),
]
# sample id -> (click, buy, md5, skeleton entries); item ids (205) are unique per sample.
TRAIN = {
    1: (1, 0, "aa", [("205", 90001, 1), ("210", 80, 1)]),
    2: (0, 0, "bb", [("205", 90002, 1), ("210", 80, 1), ("210", 81, 1)]),
    3: (1, 1, "aa", [("205", 90003, 1)]),
    4: (0, 0, "zz", [("205", 90004, 1), ("210", 81, 1)]),  # md5 without common features
    **{s: (s % 2, 0, "aa" if s % 3 else "bb", [("205", 90000 + s, 1)]) for s in range(5, 25)},
}
TEST = {101: (1, 0, "cc", [("205", 90001, 1), ("210", 99, 1)]), 102: (0, 0, "cc", [("205", 95000, 1)])}


def write_raw(folder: Path, train: dict = TRAIN, common_train: list[str] = COMMON_TRAIN, extra_skeleton: tuple[str, ...] = ()) -> Path:
    write_lines(folder / "sample_skeleton_train.csv",
                [skeleton_line(s, *row[:3], *row[3]) for s, row in train.items()] + list(extra_skeleton))
    write_lines(folder / "common_features_train.csv", common_train)
    write_lines(folder / "sample_skeleton_test.csv", [skeleton_line(s, *row[:3], *row[3]) for s, row in TEST.items()])
    write_lines(folder / "common_features_test.csv", [common_line("cc", ("101", 1000, 1), ("109_14", 7002, 3.0))])
    return folder


def vocab(out: Path, field: str) -> list:
    return pq.read_table(out / "vocab" / f"{field}.parquet")["value"].to_pylist()


def samples_by_split(valid_fraction: float) -> dict[str, list[int]]:
    """Training-file sample ids per split, in file order (the output order with one join bucket)."""
    keys = np.arange(1, len(TRAIN) + 1)  # row key of file 0 = line number
    split = assign_splits(keys, np.full(len(keys), OFFICIAL_TRAIN), 0, valid_fraction, 0.0)
    return {name: [s for s, k in zip(TRAIN, split) if k == index] for index, name in enumerate(("train", "valid"))}


def test_join_multi_hot_dense_values_and_labels(tmp_path: Path) -> None:
    out = tmp_path / "out"
    manifest = convert("aliccp", write_raw(tmp_path / "raw"), out, "--valid-fraction", "0.3", "--buckets", "1")
    expected = samples_by_split(0.3)
    assert manifest["rows"] == {"train": len(expected["train"]), "valid": len(expected["valid"]), "test": 2}
    tables = read_all(out)
    rows = {s: row for split in ("train", "valid") for s, row in zip(expected[split], tables[split].to_pylist())}
    assert {s: (r["click"], r["conversion"]) for s, r in rows.items()} == {s: (float(t[0]), float(t[1])) for s, t in TRAIN.items()}
    users, history, items, lists = (vocab(out, f) for f in ("101", "109_14", "205", "210"))
    assert rows[2]["101"] == users.index(1001) + 1 and rows[2]["121"] == vocab(out, "121").index(501) + 1
    assert rows[2]["109_14"] == [history.index(7000) + 1, history.index(7001) + 1]
    assert rows[2]["109_14_value"] == pytest.approx(3.5)
    assert rows[2]["210"] == [lists.index(80) + 1, lists.index(81) + 1]
    assert rows[1]["109_14"] == [history.index(7000) + 1] and rows[1]["109_14_value"] == pytest.approx(0.5)
    for s in expected["train"]:
        assert rows[s]["205"] == items.index(TRAIN[s][3][0][1]) + 1
    for s in expected["valid"]:  # an item seen only in validation is out of vocabulary
        assert rows[s]["205"] == 0
    assert rows[4]["101"] == 0 and rows[4]["109_14"] == [] and rows[4]["109_14_value"] == 0.0  # md5 'zz' missing
    assert manifest["missing_common_features"]["sample_skeleton_train.csv"] == {
        "rows": 1, "first_line": 4, "first_md5": "zz", "action": "keep"}
    # Test rows join the test common file; list id 99 and history id 7002 never occur in training: OOV.
    test = tables["test"].to_pylist()
    assert [r["101"] for r in test] == [users.index(1000) + 1] * 2
    assert [r["210"] for r in test] == [[0], []]
    assert [r["109_14"] for r in test] == [[0], [0]] and [r["109_14_value"] for r in test] == [3.0, 3.0]
    schema = Schema.load(out)
    assert schema.dense_names == ["109_14_value"]  # the only field whose values are not all 1
    assert {f.name for f in schema.sparse if f.multi_hot} == {"109_14", "210"}
    assert schema.sparse_names[:3] == ["101", "121", "122"] and len(schema.sparse) == 23
    assert schema.task_names == ["click", "conversion"] and schema.group_column == "101"


def test_bucket_count_does_not_change_the_result(tmp_path: Path) -> None:
    raw = write_raw(tmp_path / "raw")
    convert("aliccp", raw, tmp_path / "one", "--buckets", "1")
    convert("aliccp", raw, tmp_path / "three", "--buckets", "3")
    one, three = read_all(tmp_path / "one"), read_all(tmp_path / "three")
    for split in one:
        assert sorted(map(str, one[split].to_pylist())) == sorted(map(str, three[split].to_pylist()))


def test_missing_md5_can_stop_or_drop(tmp_path: Path) -> None:
    raw = write_raw(tmp_path / "raw")
    with pytest.raises(DataError, match=r"sample_skeleton_train.csv: line 4: md5 'zz' has no row in common_features_train.csv"):
        convert("aliccp", raw, tmp_path / "a", "--missing-common", "error")
    manifest = convert("aliccp", raw, tmp_path / "b", "--missing-common", "drop")
    assert sum(manifest["rows"].values()) == len(TRAIN) + len(TEST) - 1
    assert all(r["101"] != 0 for r in rows_as_dicts(tmp_path / "b"))


@pytest.mark.parametrize("line, reason", [
    (skeleton_line(90, 1, 0, "aa", ("999", 5, 1)), "unknown field"),
    ("91,1,0,aa,2," + features(("205", 5, 1)), "feature_num does not match the number of entries"),
    ("92,1,0,aa,1,205\x02abc\x031", "non-integer feature id"),
    ("93,1,0,aa,1,205\x025", "malformed feature entry"),
    ("94,1,0,aa,1,205\x025\x03x", "non-numeric feature value"),
    ("95,3,0,aa,1," + features(("205", 5, 1)), "label 'click' outside {0, 1}"),
    ("96,1,0,aa", "wrong column count"),
])
def test_malformed_lines(tmp_path: Path, line: str, reason: str) -> None:
    raw = write_raw(tmp_path / "raw", extra_skeleton=(line,))
    bad_line = len(TRAIN) + 1
    with pytest.raises(DataError, match=rf"sample_skeleton_train.csv: line {bad_line}: {reason}"):
        convert("aliccp", raw, tmp_path / "out")
    manifest = convert("aliccp", raw, tmp_path / "out", "--skip-bad-lines")
    [(found_reason, tally)] = manifest["bad_lines"]["sample_skeleton_train.csv"].items()
    assert found_reason.startswith(reason) and tally == {"lines": 1, "first_line": bad_line}
    assert sum(manifest["rows"].values()) == len(TRAIN) + len(TEST)


def test_duplicate_md5_and_field_selection(tmp_path: Path) -> None:
    raw = write_raw(tmp_path / "dup", common_train=COMMON_TRAIN + [common_line("aa", ("101", 5, 1))])
    with pytest.raises(DataError, match=r"common_features_train.csv: md5 'aa' appears on 2 lines"):
        convert("aliccp", raw, tmp_path / "out")
    convert("aliccp", write_raw(tmp_path / "raw"), tmp_path / "few", "--sparse-fields", "101,205,109_14", "--dense-fields", "none")
    schema = Schema.load(tmp_path / "few")
    assert schema.sparse_names == ["101", "205", "109_14"] and schema.dense_names == []
    assert set(read_all(tmp_path / "few")["train"].column_names) == {"101", "205", "109_14", "click", "conversion"}


def test_concat_lists_keeps_row_order() -> None:
    first = pa.array([[1, 2], [], [3], []], pa.list_(pa.int64()))
    second = pa.array([[9], [8, 7], [], []], pa.list_(pa.int64()))
    assert concat_lists(first, second).to_pylist() == [[1, 2, 9], [8, 7], [3], []]


def test_vocabulary_reuse_keeps_ids_and_columns(tmp_path: Path) -> None:
    convert("aliccp", write_raw(tmp_path / "raw"), tmp_path / "first", "--buckets", "1")
    # New data whose history values are all 1: on its own it would get no dense feature.
    new_common = [common_line("aa", ("101", 1001, 1), ("109_14", 7001, 1), ("109_14", 5555, 1))]
    new_train = {s: (1, 0, "aa", [("205", 90002, 1), ("210", 81, 1), ("210", 80, 1)]) for s in range(1, 11)}
    second = convert("aliccp", write_raw(tmp_path / "raw2", train=new_train, common_train=new_common),
                     tmp_path / "second", "--vocab", str(tmp_path / "first" / "vocab"))
    first_schema, second_schema = Schema.load(tmp_path / "first"), Schema.load(tmp_path / "second")
    assert second_schema.fingerprint() == first_schema.fingerprint()  # same columns, cardinalities, multi-hot flags
    assert second["options"]["vocab"].endswith("vocab")
    history, lists = vocab(tmp_path / "first", "109_14"), vocab(tmp_path / "first", "210")
    for row in read_all(tmp_path / "second")["train"].to_pylist():
        assert row["101"] == vocab(tmp_path / "first", "101").index(1001) + 1
        assert row["109_14"] == [history.index(7001) + 1, 0] and row["109_14_value"] == 2.0
        assert row["210"] == [lists.index(81) + 1, lists.index(80) + 1]


def test_bad_common_feature_and_test_lines_are_named_and_their_samples_lose_the_join(tmp_path: Path) -> None:
    """A skipped common-features line is a user without features: its samples count as missing md5s."""
    broken_bb = COMMON_TRAIN[1].replace("bb,4,", "bb,5,", 1)
    raw = write_raw(tmp_path / "raw", common_train=[COMMON_TRAIN[0], broken_bb])
    with (raw / "sample_skeleton_test.csv").open("a") as test_file:
        test_file.write("103,1,0\n")
    with pytest.raises(DataError, match=r"common_features_train.csv: line 2: feature_num does not match"):
        convert("aliccp", raw, tmp_path / "out")
    bb_samples = [s for s, row in TRAIN.items() if row[2] == "bb"]
    manifest = convert("aliccp", raw, tmp_path / "keep", "--skip-bad-lines")
    [tally] = manifest["bad_lines"]["common_features_train.csv"].values()
    assert tally == {"lines": 1, "first_line": 2}
    assert manifest["bad_lines"]["sample_skeleton_test.csv"] == {
        "wrong column count (expected 6)": {"lines": 1, "first_line": len(TEST) + 1}}
    assert manifest["common_feature_rows"]["common_features_train.csv"] == 1
    assert manifest["missing_common_features"]["sample_skeleton_train.csv"] == {
        "rows": len(bb_samples) + 1, "first_line": bb_samples[0], "first_md5": "bb", "action": "keep"}
    assert manifest["rows"]["test"] == len(TEST)
    users = [row["101"] for row in rows_as_dicts(tmp_path / "keep") if row["split"] != "test"]
    assert users.count(0) == len(bb_samples) + 1  # kept without user features (OOV), as md5 'zz'
    dropped = convert("aliccp", raw, tmp_path / "drop", "--skip-bad-lines", "--missing-common", "drop", "--valid-fraction", "0.5")
    assert dropped["rows"]["train"] + dropped["rows"]["valid"] == len(TRAIN) - len(bb_samples) - 1


def test_vocabulary_from_other_columns_is_refused(tmp_path: Path) -> None:
    raw = write_raw(tmp_path / "raw")
    convert("aliccp", raw, tmp_path / "first")
    with pytest.raises(DataError, match=r"--vocab .*vocab: this data has no column\(s\) \['121', .*\] that the vocabularies were built with"):
        convert("aliccp", raw, tmp_path / "second", "--sparse-fields", "101,205", "--vocab", str(tmp_path / "first" / "vocab"))
    assert not (tmp_path / "second").exists()
