"""The op choice follows the data under the default search (bi-level, BN MLPs, the DARTS- remedy).

Two planted regression datasets share 8 standard-normal dense inputs and differ only in the target:
``ridge`` is a sum of |projections| (no linear part, so skip/linear experts under a linear tower
cannot fit it, while an MLP-64 does), ``linear`` is a linear map plus noise (skip or linear
suffices). The space is one MoE layer of 4 experts x 2 blocks of [skip, linear, mlp-64] with a
linear tower, searched with the defaults of ``conf/search`` and ``search=fast``'s arch learning rate.
Measured over seeds 0-2: ridge 8 of 8 blocks mlp-64 every time; linear 5 of 8 skip/linear (3, 3, 4
skip).
"""

import numpy as np
import pyarrow as pa
import pytest

from torchrec_automtl.datasets.schema import DenseFeature, Schema, TaskSpec
from torchrec_automtl.datasets.synthetic import write_synthetic
from torchrec_automtl.nas.architecture import Architecture
from torchrec_automtl.nas.pd_darts import ArchitectureSearch
from torchrec_automtl.pipelines.process_group import destroy_distributed
from tests.distributed.spawn import run_on_ranks
from tests.nas.test_search import _config

INPUTS = 8
BLOCKS = 8  # 4 experts x 2 blocks


class PlantedDenseTargets:
    """Two regression tasks over ``INPUTS`` dense inputs: ``linear`` (w_t . x) or ``ridge`` (sum_k |d_tk . x|), plus noise."""

    def __init__(self, kind: str, noise: float, seed: int = 0) -> None:
        rng = np.random.default_rng([seed, 11])
        self.kind, self.noise = kind, noise
        self.weights = rng.standard_normal((2, INPUTS)) / np.sqrt(INPUTS)
        self.directions = rng.standard_normal((2, 4, INPUTS)) / np.sqrt(INPUTS)

    def table(self, rng: np.random.Generator, rows: int) -> pa.Table:
        x = rng.standard_normal((rows, INPUTS))
        if self.kind == "linear":
            targets = x @ self.weights.T
        else:  # E|z| = sqrt(2/pi) for a unit normal: centred ridges without any linear component
            targets = (np.abs(np.einsum("tkd,rd->rtk", self.directions, x)) - np.sqrt(2 / np.pi)).sum(axis=2)
        targets = targets + self.noise * rng.standard_normal(targets.shape)
        columns = {f"x{i}": pa.array(x[:, i].astype(np.float32)) for i in range(INPUTS)}
        columns.update({f"y{t}": pa.array(targets[:, t].astype(np.float32)) for t in range(2)})
        return pa.table(columns)

    def schema(self, metadata: dict) -> Schema:
        return Schema(sparse=(), dense=tuple(DenseFeature(f"x{i}") for i in range(INPUTS)),
                      tasks=(TaskSpec("y0", "regression"), TaskSpec("y1", "regression")), metadata=metadata)


def _searched(rank: int, config, run_dir: str) -> dict:
    search = ArchitectureSearch(config, run_dir)
    try:
        search.setup()
        return search.search().to_dict()
    finally:
        destroy_distributed()


def _search_on(kind: str, noise: float, tmp_path) -> dict[str, int]:
    data = tmp_path / kind
    write_synthetic(PlantedDenseTargets(kind, noise), data, rows=25_000, progress=False)
    config = _config([
        f"dataset.path={data}", "search_space=small", "search_space.num_layers=1", "search_space.num_experts=4",
        "search_space.num_blocks=2", "search_space.block_width=16", "search_space.tower_hidden=[]",
        "search_space.operations=[skip,linear,mlp-64]", "search_space.feature_selection=false",
        "search_space.connection_selection=false", "search.epochs=6", "search.arch_lr=0.05",
        "trainer.batch_size=256", "trainer.max_steps_per_epoch=40", "trainer.progress=false",
    ])
    (tmp_path / "run").mkdir(exist_ok=True)
    architecture = Architecture.from_dict(run_on_ranks(_searched, 1, tmp_path / "out", config, str(tmp_path / "run"))[0])
    histogram = architecture.operation_histogram()
    assert sum(histogram.values()) == BLOCKS, histogram  # one layer: every block is used
    return histogram


@pytest.mark.slow
def test_search_keeps_mlp_ops_where_the_target_needs_them(tmp_path):
    histogram = _search_on("ridge", 0.1, tmp_path)
    assert histogram.get("mlp-64", 0) >= BLOCKS - 1, histogram


@pytest.mark.slow
def test_the_same_search_lets_skip_and_linear_win_where_the_target_is_linear(tmp_path):
    histogram = _search_on("linear", 0.3, tmp_path)
    assert histogram.get("skip", 0) + histogram.get("linear", 0) > BLOCKS // 2, histogram
