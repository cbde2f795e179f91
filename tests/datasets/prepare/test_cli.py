"""``python -m torchrec_automtl.datasets.prepare``: help for every converter, clear errors with exit status 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from torchrec_automtl.datasets.prepare.cli import main
from torchrec_automtl.datasets.prepare.registry import CONVERTERS


@pytest.mark.parametrize("argv", [["--help"], *([name, "--help"] for name in CONVERTERS)])
def test_help_of_every_converter(argv: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 0
    assert "--raw" in capsys.readouterr().out or argv == ["--help"]


def test_errors_exit_with_status_2_and_a_message(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["userbehavior", "--raw", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out"), "--no-progress"])
    assert exit_info.value.code == 2
    assert "--raw" in capsys.readouterr().err and not (tmp_path / "out").exists()
    with pytest.raises(SystemExit) as exit_info:
        main(["qbvideo", "--raw", str(tmp_path), "--out", str(tmp_path / "out"), "--block-bytes", str(1 << 31)])
    assert exit_info.value.code == 2 and "--block-bytes" in capsys.readouterr().err
    assert set(CONVERTERS) == {"aliccp", "aliexpress", "kuairand", "qbvideo", "ijcai2015", "userbehavior"}


def test_skipped_lines_are_reported(tmp_path: Path, capsys) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    lines = ["user_id,item_id,click,follow,like,share,video_category,watching_times,gender,age"]
    lines += [f"{u},{u % 5},{u % 2},0,0,0,1,0,1,2" for u in range(60)] + ["1,2,3"]
    (raw / "QB-video.csv").write_text("\n".join(lines) + "\n")
    main(["qbvideo", "--raw", str(raw), "--out", str(tmp_path / "out"), "--skip-bad-lines", "--no-progress"])
    assert "skipped 1 bad lines" in capsys.readouterr().out
