"""Every raw line is accounted for: manifest.json's ``lines_read`` equals the lines counted from each
raw file's bytes, and lines read = rows passed on + lines skipped, for every raw file of every
converter, with bad lines spread over many small blocks (``--block-bytes``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from torchrec_automtl.datasets.prepare.aliccp import SPLIT_FILES
from tests.datasets.prepare import test_aliccp, test_aliexpress, test_ijcai2015, test_kuairand, test_qbvideo, test_userbehavior
from tests.datasets.prepare.helpers import convert, data_lines, skipped, spread_bad_lines

BAD = "1,2"  # a wrong column count for every converter's files
BLOCK_BYTES = "96"  # a block holds a line or two: the bad lines fall in different blocks


def rows_written(manifest: dict) -> int:
    return sum(manifest["rows"].values())


def kept(manifest: dict, *names: str) -> int:
    """Lines read minus lines skipped, over ``names``."""
    return sum(manifest["lines_read"][name] - skipped(manifest, name) for name in names)


def one_row_per_line(*names: str) -> Callable[[dict], None]:
    """The identity of converters whose kept lines of ``names`` are exactly the rows written."""
    def check(manifest: dict) -> None:
        assert kept(manifest, *names) == rows_written(manifest)
    return check


def check_aliccp(manifest: dict) -> None:
    dropped = manifest["missing_common_features"]["sample_skeleton_train.csv"]["rows"]
    assert kept(manifest, "sample_skeleton_train.csv") == manifest["rows"]["train"] + manifest["rows"]["valid"] + dropped
    assert kept(manifest, "sample_skeleton_test.csv") == manifest["rows"]["test"]
    for common in ("common_features_train.csv", "common_features_test.csv"):
        assert kept(manifest, common) == manifest["common_feature_rows"][common]


def check_interactions(manifest: dict, log: str, users: str | None = None) -> None:
    assert kept(manifest, log) == manifest["interactions"]["log_lines"]
    if users is not None:
        assert kept(manifest, users) == manifest["interactions"]["user_rows"]


@dataclass(frozen=True)
class Case:
    """A converter's tiny raw data, the files to spread bad lines in, and its accounting identity."""

    dataset: str
    write_raw: Callable[[Path], Path]
    spread: dict[str, bool]  # file -> has a header
    headers: dict[str, bool]  # every raw file -> has a header
    identity: Callable[[dict], None]
    flags: tuple[str, ...] = ()


KUAIRAND_LOGS = dict.fromkeys(test_kuairand.LOG_FILES, True)
ALICCP_FILES = dict.fromkeys((name for split in SPLIT_FILES for name in (split.skeleton, split.common)), False)
IJCAI_LOG, IJCAI_USERS = test_ijcai2015.LOG.file, "user_info_format1.csv"
CASES = [
    Case("qbvideo", lambda raw: test_qbvideo.write_raw(raw, test_qbvideo.MANY), {"QB-video.csv": True},
         {"QB-video.csv": True}, one_row_per_line("QB-video.csv")),
    Case("aliexpress", lambda raw: test_aliexpress.write_raw(raw, test_aliexpress.TRAIN * 3, test_aliexpress.TEST),
         {"train.csv": True, "test.csv": True}, {"train.csv": True, "test.csv": True},
         one_row_per_line("train.csv", "test.csv")),
    Case("kuairand", test_kuairand.write_raw, KUAIRAND_LOGS,
         {**KUAIRAND_LOGS, test_kuairand.USER_FILE: True, test_kuairand.VIDEO_FILE: True},
         one_row_per_line(*KUAIRAND_LOGS)),
    Case("aliccp", test_aliccp.write_raw, ALICCP_FILES, ALICCP_FILES, check_aliccp, ("--missing-common", "drop")),
    Case("userbehavior", test_userbehavior.write_raw, {"UserBehavior.csv": False}, {"UserBehavior.csv": False},
         lambda m: check_interactions(m, "UserBehavior.csv"), test_userbehavior.THRESHOLDS),
    Case("ijcai2015", test_ijcai2015.write_raw, {IJCAI_LOG: True, IJCAI_USERS: True}, {IJCAI_LOG: True, IJCAI_USERS: True},
         lambda m: check_interactions(m, IJCAI_LOG, IJCAI_USERS), test_ijcai2015.THRESHOLDS),
]


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.dataset)
def test_lines_read_equal_rows_plus_skipped_for_every_raw_file(tmp_path: Path, case: Case) -> None:
    raw = case.write_raw(tmp_path / "raw")
    planted = {name: spread_bad_lines(raw / name, BAD, has_header=header) for name, header in case.spread.items()}
    manifest = convert(case.dataset, raw, tmp_path / "out", "--skip-bad-lines", "--block-bytes", BLOCK_BYTES, *case.flags)
    assert manifest["lines_read"] == {name: data_lines(raw / name, header) for name, header in case.headers.items()}
    for name, lines in planted.items():
        [tally] = manifest["bad_lines"][name].values()
        assert tally == {"lines": len(lines), "first_line": lines[0]}
    case.identity(manifest)
