"""Ranks end every epoch with the same BatchNorm running statistics: the mean of their own."""

import pytest
import torch
import torch.distributed as dist
from torch import nn

from torchrec_automtl.pipelines.sharding import average_batchnorm_statistics
from tests.distributed.spawn import run_on_ranks


def _average(rank: int) -> dict:
    dist.init_process_group("gloo")
    try:
        model = nn.ModuleList([nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)), nn.Sequential(nn.BatchNorm1d(2))])
        torch.manual_seed(rank)  # every rank sees its own batches
        model[0](torch.randn(16, 3) * (rank + 1))
        model[1](torch.randn(8, 2) + rank)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        average_batchnorm_statistics(model)
        return {"before": before, "after": model.state_dict()}
    finally:
        dist.destroy_process_group()


@pytest.mark.distributed
def test_running_statistics_are_averaged_over_ranks(tmp_path):
    first, second = run_on_ranks(_average, 2, tmp_path)
    for key in ("0.1.running_mean", "0.1.running_var", "1.0.running_mean", "1.0.running_var"):
        assert not torch.equal(first["before"][key], second["before"][key])
        expected = (first["before"][key] + second["before"][key]) / 2
        assert torch.allclose(first["after"][key], expected) and torch.equal(first["after"][key], second["after"][key])
    # Weights are DDP's business, and the count of tracked batches is the same on every rank: both untouched.
    for key in ("0.0.weight", "0.1.weight", "0.1.num_batches_tracked"):
        assert torch.equal(first["after"][key], first["before"][key])
