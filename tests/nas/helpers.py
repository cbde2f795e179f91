"""A small supernet for the NAS tests, and the schema it searches on."""

from torchrec_automtl.datasets.schema import DenseFeature, Schema, SparseFeature, TaskSpec
from torchrec_automtl.nas.search_space import SearchSpaceConfig
from torchrec_automtl.nas.supernet import DesanSupernet

SPARSE = ["user", "item", "tags"]
DENSE = ["price", "age"]
TASKS = ["click", "buy"]
SCHEMA = Schema(
    sparse=tuple(SparseFeature(name, 10) for name in SPARSE),
    dense=tuple(DenseFeature(name) for name in DENSE),
    tasks=(TaskSpec("click"), TaskSpec("buy", "regression")),
)


def small_config(**overrides) -> SearchSpaceConfig:
    values = dict(embedding_dim=4, num_layers=2, num_experts=3, num_blocks=2, block_width=8,
                  operations=["skip", "linear", "mlp-4", "mlp-16"], tower_hidden=[8])
    values.update(overrides)
    return SearchSpaceConfig(**values)


def small_supernet(**overrides) -> DesanSupernet:
    return DesanSupernet(small_config(**overrides), SPARSE, DENSE, TASKS)
