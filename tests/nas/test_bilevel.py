"""Bi-level search: architecture steps on a held-out slice of the training rows never train the embedding tables."""

import pytest
import torch
from hydra import compose, initialize_config_dir

from torchrec_automtl.nas.pd_darts import ArchitectureSearch
from torchrec_automtl.nas.search_config import parse_nas_config
from torchrec_automtl.nas.v1.search import V1Search
from torchrec_automtl.pipelines.process_group import destroy_distributed
from tests.distributed.spawn import run_on_ranks
from tests.nas.test_search import REPO, TINY, TINY_V1


def _tables(search: ArchitectureSearch | V1Search) -> dict[str, torch.Tensor]:
    """This rank's shards of the embedding tables (table-wise sharding: whole tables or nothing)."""
    return {k: torch.cat([shard.tensor.detach().clone() for shard in v.local_shards()])
            for k, v in search.trainer.model.state_dict().items() if "sparse_arch" in k and v.local_shards()}


def _parameters(parameters) -> list[torch.Tensor]:
    return [p.detach().clone() for p in parameters]


def _equal(first: list[torch.Tensor], second) -> bool:
    return all(torch.equal(a, b) for a, b in zip(first, second, strict=True))


def _steps(rank: int, overrides: list[str], run_dir: str) -> dict:
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        config = parse_nas_config(compose(config_name="search", overrides=overrides))
    search = (V1Search if config.method == "v1" else ArchitectureSearch)(config, run_dir)
    try:
        search.setup()
        search.trainer.model.train()
        search.architecture_optimizer.active = True
        supernet = search.supernet
        # Paper 000's beta steps with the weights, on training batches; DESAN's with alpha.
        others = supernet.weight_parameters() + (supernet.selection_parameters() if config.method == "v1" else [])
        before, architecture, weights = _tables(search), _parameters(supernet.architecture_parameters()), _parameters(others)
        search.trainer.pipeline.architecture_step()
        after_architecture = _tables(search)
        architecture_moved = not _equal(architecture, supernet.architecture_parameters())
        weights_kept = _equal(weights, others)
        result = {
            "tables_kept": all(torch.equal(before[k], after_architecture[k]) for k in before),
            "architecture_moved": architecture_moved,
            "weights_kept": weights_kept,
            "rows": search.trainer.readers["train"].split.num_rows,
            "architecture_batch_rows": next(search.trainer.pipeline.architecture_batches).labels.shape[0],
        }
        # A weight step alone (the architecture optimizer paused) moves the weights and never alpha.
        search.architecture_optimizer.active = False
        architecture, weights = _parameters(supernet.architecture_parameters()), _parameters(others)
        gradients = _parameters(p.grad for p in supernet.architecture_parameters())
        search.trainer.pipeline.progress(iter(search.trainer.readers["train"].epoch(0)))
        result.update(tables_trained=any(not torch.equal(after_architecture[k], v) for k, v in _tables(search).items()),
                      weight_step_kept_architecture=_equal(architecture, supernet.architecture_parameters()),
                      # the weight step neither computes nor adds a gradient of alpha/beta, and leaves them trainable
                      weight_step_kept_gradients=_equal(gradients, (p.grad for p in supernet.architecture_parameters())),
                      architecture_trainable=all(p.requires_grad for p in supernet.architecture_parameters()),
                      weight_step_moved=[not torch.equal(a, b) for a, b in zip(weights, others)],
                      architecture=_parameters(supernet.architecture_parameters()))
        return result
    finally:
        destroy_distributed()


@pytest.mark.distributed
@pytest.mark.parametrize("tiny", [TINY, TINY_V1], ids=["desan", "v1"])
def test_architecture_steps_leave_the_tables_and_weights_alone_and_keep_two_ranks_in_step(tiny_aliccp, tmp_path, tiny):
    overrides = [f"dataset.path={tiny_aliccp}", "trainer.sharding_type=table_wise"] + tiny + ["search.architecture_batch_size=48"]
    results = run_on_ranks(_steps, 2, tmp_path / "out", overrides, str(tmp_path / "run"))
    for result in results:
        assert result["tables_kept"] and result["weights_kept"] and result["architecture_moved"]
        assert result["tables_trained"]  # a weight step on a training batch does update them
        assert result["weight_step_kept_architecture"] and all(result["weight_step_moved"])
        assert result["weight_step_kept_gradients"] and result["architecture_trainable"]
    # Each rank steps alpha on its own architecture batch, with the gradients averaged: in step.
    for first, second in zip(results[0]["architecture"], results[1]["architecture"]):
        torch.testing.assert_close(first, second, rtol=0, atol=0)
    assert results[0]["rows"] == 2400 - 600  # 3,000 rows: 2,400 train, a quarter held out
    assert [r["architecture_batch_rows"] for r in results] == [48, 48]  # per rank, not the training batch


@pytest.mark.parametrize("objective", ["sum", "balanced"])
def test_architecture_step_follows_the_architecture_objective(tiny_aliccp, tmp_path, objective):
    """alpha/beta's gradient is sum_t w_t grad L_t (``sum``) or sum_t w_t grad L_t / L_t (``balanced``), on the held-out batch."""
    overrides = [f"dataset.path={tiny_aliccp}", f"search.architecture_objective={objective}"] + TINY
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        config = parse_nas_config(compose(config_name="search", overrides=overrides))
    search = ArchitectureSearch(config, tmp_path / "run")
    try:
        search.setup()
        pipeline, train_module = search.trainer.pipeline, search.trainer.model.module
        search.trainer.model.train()
        search.architecture_optimizer.active = True
        with torch.no_grad():  # a rare task's prior (logit -4): its loss is far below the other task's, as after training
            search.supernet.towers.towers[1][-1].bias.fill_(-4.0)
        batch = next(pipeline.architecture_batches)
        pipeline.architecture_batches = iter([batch])
        parameters = list(search.supernet.architecture_parameters())
        train_module.model.freeze_embeddings = True
        losses = train_module.task_losses(train_module.model(batch), batch.labels, batch.mask)
        train_module.model.freeze_embeddings = False
        per_task = [torch.autograd.grad(loss, parameters, retain_graph=True, materialize_grads=True) for loss in losses]
        weights = train_module.task_weights / (losses.detach() if objective == "balanced" else 1.0)
        assert losses[0] > 3 * losses[1]  # so the two objectives weigh the tasks differently
        pipeline.architecture_step()
        for index, parameter in enumerate(parameters):
            expected = sum(w * gradients[index] for w, gradients in zip(weights, per_task))
            torch.testing.assert_close(parameter.grad, expected, rtol=1e-4, atol=1e-7)
        assert train_module.objective == "sum"  # weight steps train on the plain weighted loss again
    finally:
        destroy_distributed()
