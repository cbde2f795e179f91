import numpy as np
import pyarrow.parquet as pq
import pytest

from torchrec_automtl.datasets.mmoe_synthetic import MMoEGenerator
from torchrec_automtl.datasets.parquet_reader import split_files
from torchrec_automtl.datasets.schema import Schema
from torchrec_automtl.datasets.synthetic import main as synthetic_main
from torchrec_automtl.datasets.synthetic import write_synthetic


@pytest.mark.parametrize("correlation", [0.0, 0.5, 0.9, -0.3])
def test_task_weight_cosine_is_the_requested_correlation(correlation):
    weights = MMoEGenerator(correlation, seed=1).weights
    cosine = weights[0] @ weights[1] / np.linalg.norm(weights, axis=1).prod()
    assert cosine == pytest.approx(correlation, abs=1e-9)
    np.testing.assert_allclose(np.linalg.norm(weights, axis=1), 1.0)


def test_label_correlation_moves_with_p():
    pearson = {p: MMoEGenerator(p, seed=0).label_pearson for p in (0.0, 0.5, 0.9)}
    assert abs(pearson[0.0]) < 0.05
    assert pearson[0.9] > pearson[0.5] > pearson[0.0] + 0.05
    assert pearson[0.9] > 0.5


def test_cli_writes_regression_data_with_optional_buckets(tmp_path):
    synthetic_main(["mmoe", "--correlation", "0.5", "--rows", "500", "--sparse-buckets", "4", "--out", str(tmp_path / "m")])
    schema = Schema.load(tmp_path / "m")
    assert [t.type for t in schema.tasks] == ["regression", "regression"]
    assert len(schema.dense) == 100 and len(schema.sparse) == 100
    assert schema.metadata["correlation"] == 0.5 and schema.metadata["cosine_w1_w2"] == pytest.approx(0.5)
    table = pq.read_table(split_files(tmp_path / "m", "train"))
    x, bucket = table.column("x3").to_numpy(), table.column("b3").to_numpy()
    assert set(np.unique(bucket)) <= {0, 1, 2, 3}
    assert np.all(np.diff(bucket[np.argsort(x)]) >= 0)  # buckets follow the value order


def test_same_seed_same_rows(tmp_path):
    for name in ("a", "b"):
        write_synthetic(MMoEGenerator(0.9, seed=2), tmp_path / name, rows=300, seed=2, progress=False)
    assert pq.read_table(split_files(tmp_path / "a", "test")).equals(pq.read_table(split_files(tmp_path / "b", "test")))
