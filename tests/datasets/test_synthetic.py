import numpy as np
import pyarrow.parquet as pq
import pytest

from datasets.parquet_reader import split_files
from datasets.schema import Schema
from datasets.synthetic import main as synthetic_main
from datasets.synthetic import write_aliccp_like


def _read(folder, split):
    return pq.read_table(split_files(folder, split))


def test_same_seed_gives_identical_data(tmp_path):
    write_aliccp_like(tmp_path / "a", rows=600, seed=3, row_group_rows=128, progress=False)
    write_aliccp_like(tmp_path / "b", rows=600, seed=3, row_group_rows=128, progress=False)
    write_aliccp_like(tmp_path / "c", rows=600, seed=4, row_group_rows=128, progress=False)
    for split in ("train", "valid", "test"):
        assert _read(tmp_path / "a", split).equals(_read(tmp_path / "b", split))
    assert not _read(tmp_path / "a", "train").equals(_read(tmp_path / "c", "train"))


def test_label_rates_and_conversion_only_after_click(tmp_path):
    write_aliccp_like(tmp_path / "d", rows=60000, seed=0, progress=False)
    table = _read(tmp_path / "d", "train")
    click = table.column("click").to_numpy()
    conversion = table.column("conversion").to_numpy()
    assert 0.04 <= click.mean() <= 0.10
    assert 0.05 <= conversion[click == 1].mean() <= 0.20
    assert not np.any((conversion == 1) & (click == 0))


def test_schema_records_the_planted_structure(tiny_aliccp):
    schema = Schema.load(tiny_aliccp)
    planted = schema.metadata["planted"]
    drivers = set(planted["click"]["sparse"]) | set(planted["conversion"]["sparse"])
    assert set(planted["click"]["sparse"]) != set(planted["conversion"]["sparse"])
    assert set(planted["click"]["sparse"]) & set(planted["conversion"]["sparse"])  # partly shared
    assert drivers.isdisjoint(planted["noise"]["sparse"])
    assert drivers | set(planted["noise"]["sparse"]) == set(schema.sparse_names)
    assert len(schema.sparse) == 23 and sum(f.multi_hot for f in schema.sparse) >= 2
    assert schema.task_names == ["click", "conversion"]


def test_cli_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "e"
    synthetic_main(["aliccp_like", "--rows", "300", "--out", str(out)])
    before = _read(out, "train")
    with pytest.raises(SystemExit) as stopped:
        synthetic_main(["aliccp_like", "--rows", "300", "--seed", "9", "--out", str(out)])
    assert stopped.value.code == 2
    assert "--overwrite" in capsys.readouterr().err
    assert _read(out, "train").equals(before)
