"""Bi-level search: architecture steps on a held-out slice of the training rows never train the embedding tables."""

import pytest
import torch
from hydra import compose, initialize_config_dir

from torchrec_automtl.nas.pd_darts import ArchitectureSearch
from torchrec_automtl.nas.search_config import parse_nas_config
from torchrec_automtl.pipelines.process_group import destroy_distributed
from tests.distributed.spawn import run_on_ranks
from tests.nas.test_search import REPO, TINY


def _tables(search: ArchitectureSearch) -> dict[str, torch.Tensor]:
    """This rank's shards of the embedding tables (table-wise sharding: whole tables or nothing)."""
    return {k: torch.cat([shard.tensor.detach().clone() for shard in v.local_shards()])
            for k, v in search.trainer.model.state_dict().items() if "sparse_arch" in k and v.local_shards()}


def _steps(rank: int, overrides: list[str], run_dir: str) -> dict:
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        config = parse_nas_config(compose(config_name="search", overrides=overrides))
    search = ArchitectureSearch(config, run_dir)
    try:
        search.setup()
        search.trainer.model.train()
        search.architecture_optimizer.active = True
        before, alpha = _tables(search), search.supernet.alpha.detach().clone()
        weights = [p.detach().clone() for p in search.supernet.weight_parameters()]
        search.trainer.pipeline.architecture_step()
        after_architecture = _tables(search)
        architecture_moved = not torch.equal(alpha, search.supernet.alpha)
        weights_kept = all(torch.equal(w, p) for w, p in zip(weights, search.supernet.weight_parameters()))
        search.trainer.pipeline.progress(iter(search.trainer.readers["train"].epoch(0)))
        return {
            "tables_kept": all(torch.equal(before[k], after_architecture[k]) for k in before),
            "tables_trained": any(not torch.equal(after_architecture[k], v) for k, v in _tables(search).items()),
            "architecture_moved": architecture_moved,
            "weights_kept": weights_kept,
            "architecture": [p.detach().clone() for p in search.supernet.architecture_parameters()],
            "rows": search.trainer.readers["train"].split.num_rows,
            "architecture_batch_rows": next(search.trainer.pipeline.architecture_batches).labels.shape[0],
        }
    finally:
        destroy_distributed()


@pytest.mark.distributed
def test_architecture_steps_leave_the_tables_and_weights_alone_and_keep_two_ranks_in_step(tiny_aliccp, tmp_path):
    overrides = [f"dataset.path={tiny_aliccp}", "search.optimization=bi_level",
                 "trainer.sharding_type=table_wise"] + TINY + ["search.architecture_batch_size=48"]
    results = run_on_ranks(_steps, 2, tmp_path / "out", overrides, str(tmp_path / "run"))
    for result in results:
        assert result["tables_kept"] and result["weights_kept"] and result["architecture_moved"]
        assert result["tables_trained"]  # a weight step on a training batch does update them
    # Each rank steps alpha/beta on its own architecture batch, with the gradients averaged: in step.
    for first, second in zip(results[0]["architecture"], results[1]["architecture"]):
        torch.testing.assert_close(first, second, rtol=0, atol=0)
    assert results[0]["rows"] == 2400 - 600
    assert [r["architecture_batch_rows"] for r in results] == [48, 48]  # per rank, not the training batch  # 3,000 rows: 2,400 train, a quarter held out
