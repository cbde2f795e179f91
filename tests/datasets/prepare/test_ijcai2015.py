"""IJCAI-2015 conversion on tiny ``data_format1`` files: surviving (user, item) pairs, their
favourite/purchase labels, first-line item features (an empty brand stays missing), the user
profile join, independence from ``--buckets``, manifest counts, bad lines and file errors."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from torchrec_automtl.datasets.prepare.ijcai2015 import LOG, USER_HEADER
from torchrec_automtl.datasets.validation import DataError
from tests.datasets.prepare.helpers import convert, write_lines
from tests.datasets.prepare.test_interactions import decoded_samples, hand_written, seed_keeping_in_train

FIELDS = ("user_id", "item_id", "cat_id", "seller_id", "brand_id", "age_range", "gender")
TASKS = ("favourite", "purchase")
# (user, item, cat, seller, brand, action_type); line k of the log is LINES[k - 2] (line 1 is the header).
# Thresholds 2 and 2: users 1, 2, 4 buy 2 distinct items; user 3 buys item 10 twice, user 5 one item.
# Items 10 (buyers 1, 2, 3), 11 (1, 2), 12 (4, 5) are kept; item 13 (buyer 4 only) is dropped.
LINES = [
    (1, 10, 100, 500, "", 0), (1, 10, 100, 500, 700, 2), (1, 11, 101, 501, 701, 2), (1, 12, 102, 502, 702, 3),
    (2, 10, 100, 500, 700, 2), (2, 11, 101, 501, 701, 1), (2, 11, 101, 501, 701, 2), (2, 13, 103, 503, 703, 3),
    (3, 10, 100, 500, 700, 2), (3, 10, 100, 500, 700, 2),
    (4, 12, 102, 502, 702, 2), (4, 13, 103, 503, 703, 2), (5, 12, 102, 502, 702, 2),
]
FILLER = [(100 + u, 200 + i, 9, 9, 9, 2) for u in range(40) for i in range(5)]  # 200 kept pairs for every split
USERS = ["1,3,0", "2,,1", "3,4,0", "5,6,1", *(f"{100 + u},5,1" for u in range(40))]  # user 4 has no profile
KEPT_PAIRS = {  # (user, item, cat, seller, brand of the first line, age_range, gender): (favourite, purchase), first line
    (1, 10, 100, 500, None, 3, 0): ((0, 1), 2), (1, 11, 101, 501, 701, 3, 0): ((0, 1), 4),
    (1, 12, 102, 502, 702, 3, 0): ((1, 0), 5), (2, 10, 100, 500, 700, None, 1): ((0, 1), 6),
    (2, 11, 101, 501, 701, None, 1): ((0, 1), 7), (4, 12, 102, 502, 702, None, None): ((0, 1), 12),
}
THRESHOLDS = ("--min-user-purchases", "2", "--min-item-buyers", "2")


def write_raw(folder: Path, extra: tuple[str, ...] = (), users: list[str] = USERS) -> Path:
    lines = [f"{u},{i},{c},{s},{b},1111,{a}" for u, i, c, s, b, a in LINES + FILLER]
    write_lines(folder / LOG.file, [",".join(LOG.header), *lines, *extra])
    write_lines(folder / "user_info_format1.csv", [",".join(USER_HEADER), *users])
    return folder


@pytest.mark.parametrize("buckets", ["1", "3"])
def test_pairs_labels_item_features_and_user_profiles(tmp_path: Path, buckets: str) -> None:
    seed = seed_keeping_in_train([line for _, line in KEPT_PAIRS.values()])
    manifest = convert("ijcai2015", write_raw(tmp_path / "raw"), tmp_path / "out", *THRESHOLDS,
                       "--buckets", buckets, "--seed", str(seed))
    samples = decoded_samples(tmp_path / "out", FIELDS, TASKS)
    assert hand_written(samples) == Counter((*pair, *labels) for pair, (labels, _) in KEPT_PAIRS.items())
    assert samples.total() == len(KEPT_PAIRS) + len(FILLER)
    assert manifest["interactions"] == {
        "log_lines": 213, "pairs": 210, "samples_before_filter": 210, "samples_after_filter": 206,
        "users_kept": 43, "items_kept": 8, "users_before_filter": 45, "items_before_filter": 9,
        "samples_without_user_features": 1, "user_rows": len(USERS)}


def test_result_does_not_depend_on_buckets(tmp_path: Path) -> None:
    raw = write_raw(tmp_path / "raw")
    for buckets in ("1", "3"):
        convert("ijcai2015", raw, tmp_path / buckets, *THRESHOLDS, "--buckets", buckets, "--block-bytes", "300")
    assert decoded_samples(tmp_path / "1", FIELDS, TASKS) == decoded_samples(tmp_path / "3", FIELDS, TASKS)


def test_event_samples_label_only_the_lines_own_action(tmp_path: Path) -> None:
    manifest = convert("ijcai2015", write_raw(tmp_path / "raw"), tmp_path / "out", *THRESHOLDS, "--samples", "event")
    labels = Counter()
    for sample, n in decoded_samples(tmp_path / "out", FIELDS, TASKS).items():
        labels[sample[-2:]] += n
    # kept lines: users 1, 2, 4 on items 10-12 (8 lines: 1 click, 1 cart, 1 favourite, 5 purchases) and 200 filler purchases
    assert labels == {(0, 0): 2, (1, 0): 1, (0, 1): 205}
    assert manifest["interactions"]["samples_after_filter"] == 208


def test_bad_action_type_stops_with_file_and_line_or_is_counted(tmp_path: Path) -> None:
    raw = write_raw(tmp_path / "raw", ("1,10,100,500,700,1111,4", "1,10,100,500,700,1111"))
    with pytest.raises(DataError, match=r"user_log_format1.csv: line 216: wrong column count"):
        convert("ijcai2015", raw, tmp_path / "out", *THRESHOLDS)
    with pytest.raises(DataError, match=r"user_log_format1.csv: line 215: 'action_type' not one of .*'4'"):
        convert("ijcai2015", write_raw(tmp_path / "raw2", ("1,10,100,500,700,1111,4",)), tmp_path / "out", *THRESHOLDS)
    manifest = convert("ijcai2015", raw, tmp_path / "out", *THRESHOLDS, "--skip-bad-lines")
    assert manifest["bad_lines"]["user_log_format1.csv"] == {
        "'action_type' not one of ['0', '1', '2', '3']": {"lines": 1, "first_line": 215},
        "wrong column count (expected 7)": {"lines": 1, "first_line": 216}}
    assert manifest["interactions"]["log_lines"] == 213


def test_user_profile_errors_and_missing_files_are_named(tmp_path: Path) -> None:
    raw = write_raw(tmp_path / "raw", users=[*USERS, "2,4,0"])
    with pytest.raises(DataError, match=r"user_info_format1.csv: user_id 2 appears on more than one line \(lines \[3, 46\]\)"):
        convert("ijcai2015", raw, tmp_path / "out", *THRESHOLDS)
    raw = write_raw(tmp_path / "raw", users=[*USERS, ",4,0"])
    with pytest.raises(DataError, match=r"user_info_format1.csv: line 46: empty 'user_id'"):
        convert("ijcai2015", raw, tmp_path / "out", *THRESHOLDS)
    manifest = convert("ijcai2015", raw, tmp_path / "out", *THRESHOLDS, "--skip-bad-lines")
    assert manifest["bad_lines"]["user_info_format1.csv"] == {"empty 'user_id'": {"lines": 1, "first_line": 46}}
    (raw / "user_info_format1.csv").unlink()
    with pytest.raises(DataError, match=r"expected raw file .*user_info_format1.csv"):
        convert("ijcai2015", raw, tmp_path / "out", *THRESHOLDS)
