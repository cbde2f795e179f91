"""QB-Video conversion, and the behaviour every converter shares (splits, vocabularies, bad lines,
refusal to overwrite, cleanup after an interruption), checked on tiny raw files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import torchrec_automtl.datasets.prepare.run as run_module
from torchrec_automtl.datasets.prepare.qbvideo import HEADER
from torchrec_automtl.datasets.prepare.splits import ANY_SPLIT, assign_splits
from torchrec_automtl.datasets.prepare.vocabulary import VocabularySet
from torchrec_automtl.datasets.schema import Schema
from torchrec_automtl.datasets.validation import DataError
from tests.datasets.prepare.helpers import convert, read_all, rows_as_dicts, write_lines

# user, item, click, follow, like, share, category, watching_times, gender, age
ROWS = [
    (10, 500, 1, 0, 1, 0, 3, 2, 1, 4),
    (10, 501, 0, 0, 0, 0, 3, 0, 1, 4),
    (11, 500, 1, 1, 0, 1, 4, 5, 2, 3),
    (12, 502, 0, 0, 0, 0, 3, 0, 1, 2),
    (10, 500, 1, 0, 0, 0, 3, 1, 1, 4),
]
MANY = [(u % 7, 100 + u % 13, u % 2, 0, u % 3 == 0, 0, u % 5, 0, u % 2, u % 6) for u in range(300)]


def write_raw(folder: Path, rows, extra_lines: tuple[str, ...] = ()) -> Path:
    lines = [",".join(HEADER)] + [",".join(str(int(v)) for v in row) for row in rows] + list(extra_lines)
    write_lines(folder / "QB-video.csv", lines)
    return folder


def test_ids_labels_and_splits_are_exact(tmp_path: Path) -> None:
    raw = write_raw(tmp_path / "raw", ROWS + MANY)
    manifest = convert("qbvideo", raw, tmp_path / "out", "--min-count", "1")
    rows = rows_as_dicts(tmp_path / "out")
    assert len(rows) == len(ROWS) + len(MANY)
    expected_split = assign_splits(np.arange(2, 2 + len(ROWS) + len(MANY)), np.full(len(ROWS) + len(MANY), ANY_SPLIT), 0, 0.1, 0.1)
    names = ("train", "valid", "test")
    assert manifest["rows"] == {name: int((expected_split == i).sum()) for i, name in enumerate(names)}
    # Output rows keep the file order within a split; ids are ranked by training frequency (1 = most frequent).
    vocab_rank = {}
    train_raw = [row for row, split in zip(ROWS + MANY, expected_split) if split == 0]
    for column in (0, 1):
        values, counts = np.unique([row[column] for row in train_raw], return_counts=True)
        order = sorted(zip(-counts, values))
        vocab_rank[column] = {int(value): rank + 1 for rank, (_, value) in enumerate(order)}
    for split_index, name in enumerate(names):
        expected = [row for row, split in zip(ROWS + MANY, expected_split) if split == split_index]
        got = [row for row in rows if row["split"] == name]
        assert [r["click"] for r in got] == [float(row[2]) for row in expected]
        assert [r["like"] for r in got] == [float(row[4]) for row in expected]
        assert [r["user_id"] for r in got] == [vocab_rank[0].get(row[0], 0) for row in expected]
        assert [r["item_id"] for r in got] == [vocab_rank[1].get(row[1], 0) for row in expected]
    schema = Schema.load(tmp_path / "out")
    assert schema.task_names == ["click", "follow", "like", "share"]
    assert schema.group_column == "user_id"
    assert manifest["vocabulary_sizes"]["user_id"] == len(vocab_rank[0]) + 1
    assert manifest["label_rates"]["train"]["click"] == pytest.approx(np.mean([row[2] for row in train_raw]), abs=1e-6)


def test_split_depends_on_seed_only_not_on_block_size(tmp_path: Path) -> None:
    raw = write_raw(tmp_path / "raw", MANY)
    convert("qbvideo", raw, tmp_path / "a", "--seed", "3")
    convert("qbvideo", raw, tmp_path / "b", "--seed", "3", "--block-bytes", "64")
    convert("qbvideo", raw, tmp_path / "c", "--seed", "4")
    a, b, c = (read_all(tmp_path / name) for name in "abc")
    assert all(a[s].equals(b[s]) for s in a)
    assert a["test"].num_rows != c["test"].num_rows or not a["test"].equals(c["test"])


def test_malformed_lines_stop_with_file_and_line_or_are_counted(tmp_path: Path) -> None:
    bad = ("10,500,1,0,1,0,3,2,1", "10,500,x,0,1,0,3,2,1,4", "10,500,2,0,1,0,3,2,1,4", "ab,500,1,0,1,0,3,2,1,4")
    raw = write_raw(tmp_path / "raw", MANY, bad)
    with pytest.raises(DataError, match=r"QB-video.csv: line 302: wrong column count"):
        convert("qbvideo", raw, tmp_path / "out")
    manifest = convert("qbvideo", raw, tmp_path / "out", "--skip-bad-lines")
    counts = manifest["bad_lines"]["QB-video.csv"]
    assert counts["wrong column count (expected 10)"] == {"lines": 1, "first_line": 302}
    assert counts["non-numeric label 'click'"] == {"lines": 1, "first_line": 303}
    assert counts["label 'click' outside {0, 1}"] == {"lines": 1, "first_line": 304}
    assert counts["non-integer id in column 'user_id'"] == {"lines": 1, "first_line": 305}
    assert sum(manifest["rows"].values()) == len(MANY)


def test_missing_file_and_wrong_header_are_named(tmp_path: Path) -> None:
    (tmp_path / "raw").mkdir()
    with pytest.raises(DataError, match=r"expected raw file .*QB-video.csv"):
        convert("qbvideo", tmp_path / "raw", tmp_path / "out")
    write_lines(tmp_path / "raw" / "QB-video.csv", ["user,item"])
    with pytest.raises(DataError, match=r"QB-video.csv: line 1: header"):
        convert("qbvideo", tmp_path / "raw", tmp_path / "out")


def test_refuses_to_overwrite_and_cleans_up_after_an_interruption(tmp_path: Path, monkeypatch) -> None:
    raw = write_raw(tmp_path / "raw", MANY)
    out = tmp_path / "out"
    convert("qbvideo", raw, out)
    before = read_all(out)
    with pytest.raises(FileExistsError, match="--overwrite"):
        convert("qbvideo", raw, out)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(run_module, "write_splits", interrupted)
    with pytest.raises(KeyboardInterrupt):
        convert("qbvideo", raw, out, "--overwrite")
    with pytest.raises(KeyboardInterrupt):
        convert("qbvideo", raw, tmp_path / "fresh")
    assert not (tmp_path / "fresh").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "raw"]  # no temp folder left behind
    assert all(before[s].equals(read_all(out)[s]) for s in before)


def test_vocabulary_reuse_maps_new_data_with_the_old_ids(tmp_path: Path) -> None:
    first = convert("qbvideo", write_raw(tmp_path / "raw1", MANY), tmp_path / "first")
    new_rows = [(3, 105, 1, 0, 0, 0, 2, 0, 1, 1), (999, 105, 0, 0, 0, 0, 2, 0, 1, 1)] * 20
    second = convert("qbvideo", write_raw(tmp_path / "raw2", new_rows), tmp_path / "second", "--vocab", str(tmp_path / "first"))
    assert second["vocabulary_sizes"] == first["vocabulary_sizes"]
    old_ids = {field: pq.read_table(tmp_path / "first" / "vocab" / f"{field}.parquet")["value"].to_pylist()
               for field in ("user_id", "item_id")}
    got = rows_as_dicts(tmp_path / "second")
    assert {r["user_id"] for r in got if r["click"] == 1.0} == {old_ids["user_id"].index(3) + 1}
    assert {r["user_id"] for r in got if r["click"] == 0.0} == {0}  # user 999 was never seen: OOV
    assert {r["item_id"] for r in got} == {old_ids["item_id"].index(105) + 1}
    with pytest.raises(DataError, match="vocabularies of dataset 'qbvideo'"):
        VocabularySet.load(tmp_path / "first", "aliccp")


def test_invalid_utf8_is_named_with_its_line_in_any_block(tmp_path: Path) -> None:
    raw = write_raw(tmp_path / "raw", MANY)
    lines = (raw / "QB-video.csv").read_bytes().split(b"\n")
    lines[150] = b"10,500,1,0,1,0,3,2,1,\xff4"  # line 151, many blocks after the first
    (raw / "QB-video.csv").write_bytes(b"\n".join(lines))
    for flags in ((), ("--block-bytes", "64"), ("--skip-bad-lines",)):
        with pytest.raises(DataError, match=r"QB-video.csv: line 151: not valid UTF-8 text"):
            convert("qbvideo", raw, tmp_path / "out", *flags)


def test_an_empty_split_is_named(tmp_path: Path) -> None:
    raw = write_raw(tmp_path / "raw", ROWS)
    with pytest.raises(DataError, match=r"split\(s\) \['valid'\] received no rows"):
        convert("qbvideo", raw, tmp_path / "out", "--valid-fraction", "0.001", "--test-fraction", "0.5")
    write_lines(raw / "QB-video.csv", [",".join(HEADER)])  # a header and nothing else
    with pytest.raises(DataError, match=r"split\(s\) \['train', 'valid', 'test'\] received no rows"):
        convert("qbvideo", raw, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("damage, message", [
    (lambda vocab: (vocab / "vocab.json").unlink(), r"vocabulary index \(--vocab\) not found: .*vocab.json"),
    (lambda vocab: (vocab / "vocab.json").write_text("{"), r"vocab.json: not valid JSON"),
    (lambda vocab: (vocab / "vocab.json").write_text('{"dataset": "qbvideo"}'), r"vocab.json: malformed vocabulary index \(KeyError\('layout'\)\)"),
    (lambda vocab: (vocab / "item_id.parquet").unlink(), r"vocabulary of field 'item_id' not found: .*item_id.parquet"),
    (lambda vocab: (vocab / "item_id.parquet").write_bytes(b"PAR1 torn"), r"item_id.parquet: not a readable vocabulary file"),
    (lambda vocab: pq.write_table(pa.table({"id": [1]}), vocab / "item_id.parquet"),
     r"item_id.parquet: expected columns \['value', 'count'\], found \['id'\]"),
])
def test_vocabulary_load_errors_name_the_file(tmp_path: Path, damage, message: str) -> None:
    raw = write_raw(tmp_path / "raw", MANY)
    convert("qbvideo", raw, tmp_path / "first")
    damage(tmp_path / "first" / "vocab")
    with pytest.raises(DataError, match=message):
        convert("qbvideo", raw, tmp_path / "second", "--vocab", str(tmp_path / "first" / "vocab"))
    assert not (tmp_path / "second").exists()
