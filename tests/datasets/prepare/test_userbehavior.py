"""UserBehavior-2017 conversion on a tiny header-less log: which (user, item) pairs survive the
purchase filters, their labels and first-line categories, ``--samples event``, independence from
``--buckets``, manifest counts and bad lines."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from torchrec_automtl.datasets.prepare.cli import build_parser
from torchrec_automtl.datasets.validation import DataError
from tests.datasets.prepare.helpers import convert, write_lines
from tests.datasets.prepare.test_interactions import decoded_samples, hand_written, seed_keeping_in_train

FIELDS, TASKS = ("user_id", "item_id", "category_id"), ("click", "buy", "cart", "favourite")
# (user, item, category, behaviour); line k of the file is LINES[k - 1]. Thresholds 2 and 2:
# users 1, 2, 4 buy 2 distinct items; user 3 buys item 10 twice (1 item) and user 5 one item: dropped.
# Items 10 (buyers 1, 2, 3), 11 (1, 2), 12 (4, 5) are kept; item 13 (buyer 4 only) is dropped.
LINES = [
    (1, 10, 100, "pv"), (1, 10, 105, "buy"), (1, 11, 101, "buy"), (1, 12, 102, "fav"),
    (2, 10, 100, "buy"), (2, 11, 101, "cart"), (2, 11, 101, "buy"), (2, 13, 103, "pv"),
    (3, 10, 100, "buy"), (3, 10, 100, "buy"),
    (4, 12, 102, "buy"), (4, 13, 103, "buy"), (5, 12, 102, "buy"),
]
# 40 filler users each buying items 200..204 once: 200 kept pairs so every split gets rows.
FILLER = [(100 + u, 200 + i, 9, "buy") for u in range(40) for i in range(5)]
KEPT_PAIRS = {  # (user, item, category of the first line): click, buy, cart, favourite; first line number
    (1, 10, 100): ((1, 1, 0, 0), 1), (1, 11, 101): ((0, 1, 0, 0), 3), (1, 12, 102): ((0, 0, 0, 1), 4),
    (2, 10, 100): ((0, 1, 0, 0), 5), (2, 11, 101): ((0, 1, 1, 0), 6), (4, 12, 102): ((0, 1, 0, 0), 11),
}
ONE_HOT = {"pv": (1, 0, 0, 0), "buy": (0, 1, 0, 0), "cart": (0, 0, 1, 0), "fav": (0, 0, 0, 1)}
THRESHOLDS = ("--min-user-purchases", "2", "--min-item-buyers", "2")


def write_raw(folder: Path, extra: tuple[str, ...] = ()) -> Path:
    lines = [f"{u},{i},{c},{b},{1511544070 + n}" for n, (u, i, c, b) in enumerate(LINES + FILLER)]
    write_lines(folder / "UserBehavior.csv", [*lines, *extra])
    return folder


@pytest.mark.parametrize("buckets", ["1", "3"])
def test_pairs_surviving_the_filters_with_any_behaviour_labels(tmp_path: Path, buckets: str) -> None:
    seed = seed_keeping_in_train([line for _, line in KEPT_PAIRS.values()])
    manifest = convert("userbehavior", write_raw(tmp_path / "raw"), tmp_path / "out", *THRESHOLDS,
                       "--buckets", buckets, "--seed", str(seed))
    samples = decoded_samples(tmp_path / "out", FIELDS, TASKS)
    assert hand_written(samples) == Counter((*pair, *labels) for pair, (labels, _) in KEPT_PAIRS.items())
    assert samples.total() == len(KEPT_PAIRS) + len(FILLER)
    assert manifest["interactions"] == {
        "log_lines": 213, "pairs": 210, "samples_before_filter": 210, "samples_after_filter": 206,
        "users_kept": 43, "items_kept": 8, "users_before_filter": 45, "items_before_filter": 9}
    assert manifest["options"]["buckets"] == int(buckets)
    assert sum(manifest["rows"].values()) == 206


def test_result_does_not_depend_on_buckets(tmp_path: Path) -> None:
    raw = write_raw(tmp_path / "raw")
    for buckets in ("1", "3"):
        convert("userbehavior", raw, tmp_path / buckets, *THRESHOLDS, "--buckets", buckets, "--block-bytes", "256")
    assert decoded_samples(tmp_path / "1", FIELDS, TASKS) == decoded_samples(tmp_path / "3", FIELDS, TASKS)


def test_event_samples_are_the_kept_lines_with_their_own_behaviour(tmp_path: Path) -> None:
    kept = [(n + 1, line) for n, line in enumerate(LINES) if line[0] in (1, 2, 4) and line[1] in (10, 11, 12)]
    seed = seed_keeping_in_train([number for number, _ in kept])
    manifest = convert("userbehavior", write_raw(tmp_path / "raw"), tmp_path / "out", *THRESHOLDS,
                       "--samples", "event", "--seed", str(seed))
    samples = decoded_samples(tmp_path / "out", FIELDS, TASKS)
    assert hand_written(samples) == Counter((u, i, c, *ONE_HOT[b]) for _, (u, i, c, b) in kept)
    assert (manifest["interactions"]["samples_before_filter"], manifest["interactions"]["samples_after_filter"]) == (213, 208)
    assert manifest["options"]["samples"] == "event"


def test_defaults_follow_paper_000() -> None:
    args = build_parser().parse_args(["userbehavior", "--raw", "raw", "--out", "out"])
    assert (args.samples, args.min_user_purchases, args.min_item_buyers, args.buckets) == ("pair", 10, 10, 64)


def test_bad_lines_stop_with_file_and_line_or_are_counted(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"UserBehavior.csv: line 214: 'behavior_type' not one of .*'click'"):
        convert("userbehavior", write_raw(tmp_path / "a", ("1,10,100,click,1",)), tmp_path / "out", *THRESHOLDS)
    with pytest.raises(DataError, match=r"UserBehavior.csv: line 215: wrong column count"):
        convert("userbehavior", write_raw(tmp_path / "b", ("1,10,100,pv,1", "1,10,100,pv")), tmp_path / "out", *THRESHOLDS)
    raw = write_raw(tmp_path / "c", ("1,10,100,click,1", "1,10,100,pv", "x,10,100,pv,1", ",10,100,pv,1"))
    manifest = convert("userbehavior", raw, tmp_path / "out", *THRESHOLDS, "--skip-bad-lines")
    assert manifest["bad_lines"]["UserBehavior.csv"] == {
        "'behavior_type' not one of ['pv', 'buy', 'cart', 'fav']": {"lines": 1, "first_line": 214},
        "wrong column count (expected 5)": {"lines": 1, "first_line": 215},
        "non-integer id in column 'user_id'": {"lines": 1, "first_line": 216},
        "empty 'user_id'": {"lines": 1, "first_line": 217}}
    assert manifest["interactions"]["log_lines"] == 213


def test_filters_that_keep_nothing_are_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"none of the 210 samples passes --min-user-purchases 6 and --min-item-buyers 2"):
        convert("userbehavior", write_raw(tmp_path / "raw"), tmp_path / "out", "--min-user-purchases", "6", "--min-item-buyers", "2")


def test_missing_raw_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "raw").mkdir()
    with pytest.raises(DataError, match=r"expected raw file .*UserBehavior.csv"):
        convert("userbehavior", tmp_path / "raw", tmp_path / "out")
