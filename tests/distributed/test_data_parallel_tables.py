"""Data-parallel tables get the right gradient, and only fbgemm's benign warning about them is silenced."""

import warnings

import pytest
import torch

from torchrec_automtl.datasets.parquet_reader import BatchReader, ParquetSplit
from torchrec_automtl.datasets.schema import Schema
from torchrec_automtl.modules.mmoe import MMoEConfig
from torchrec_automtl.modules.multitask import MultiTaskTrain, build_multitask_model
from torchrec_automtl.pipelines.process_group import destroy_distributed, init_distributed
from torchrec_automtl.pipelines.sharding import BENIGN_FBGEMM_WARNING, shard_model, silence_benign_fbgemm_warning
from tests.distributed.spawn import run_on_ranks

LR = 0.5


def _local(value) -> torch.Tensor:
    return (value.local_shards()[0].tensor if hasattr(value, "local_shards") else value).detach()


def _gradients(rank: int, dataset: str) -> dict:
    """Table-wise (fused SGD applied in backward) vs data-parallel (gradient kept) from the same weights."""
    ctx = init_distributed("cpu")
    try:
        schema = Schema.load(dataset)
        config = MMoEConfig(name="mmoe", embedding_dim=8, num_experts=2, expert_hidden=[16], tower_hidden=[8])

        def build(sharding_type: str):
            module = MultiTaskTrain(build_multitask_model(config, schema, torch.device("meta")), schema.tasks)
            return shard_model(module, ctx, "sgd", LR, sharding_type)

        table_wise, data_parallel = build("table_wise"), build("data_parallel")
        source, target = table_wise.state_dict(), data_parallel.state_dict()
        with torch.no_grad():
            for key in target:
                _local(target[key]).copy_(_local(source[key]))
        start = {k: _local(v).clone() for k, v in source.items() if "sparse_arch" in k}
        batch = next(iter(BatchReader(ParquetSplit.open(dataset, "train", schema), 256).epoch()))
        for model in (table_wise, data_parallel):
            model.train()
            model(batch)[0].backward()
        updated, parameters = table_wise.state_dict(), dict(data_parallel.named_parameters())
        return {
            "placements": {p.sharding_type for p in data_parallel.plan.plan["model.sparse_arch"].values()},
            "moved": {k: float((_local(updated[k]) - w).abs().max()) for k, w in start.items()},
            "error": {k: float((w - LR * parameters[k].grad - _local(updated[k])).abs().max()) for k, w in start.items()},
        }
    finally:
        destroy_distributed()


@pytest.mark.distributed
def test_a_data_parallel_table_gets_the_table_wise_gradient(tiny_aliccp, tmp_path):
    result = run_on_ranks(_gradients, 1, tmp_path / "out", str(tiny_aliccp))[0]
    assert result["placements"] == {"data_parallel"}
    assert min(result["moved"].values()) > 0  # every table took a real step
    assert max(result["error"].values()) < 1e-6


def test_only_the_benign_fbgemm_warning_is_silenced():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        silence_benign_fbgemm_warning()
        warnings.warn(BENIGN_FBGEMM_WARNING + " to the Autograd key(s)", UserWarning)
        warnings.warn("mse_loss: target size differs from input size", UserWarning)
    assert [str(w.message) for w in caught] == ["mse_loss: target size differs from input size"]
