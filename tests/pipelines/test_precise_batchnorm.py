"""Precise BatchNorm statistics: re-estimated with frozen weights before each validation."""

import itertools

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from torchrec_automtl.datasets.schema import Schema
from torchrec_automtl.modules.mmoe import MMoEConfig
from torchrec_automtl.pipelines.config import ConfigError, DatasetConfig, TrainConfig, TrainerConfig, typed_group
from torchrec_automtl.pipelines.precise_batchnorm import recompute_batchnorm_statistics
from torchrec_automtl.pipelines.sharding import batchnorm_layers
from torchrec_automtl.pipelines.trainer import Trainer
from tests.distributed.spawn import run_on_ranks


def _batches(count: int, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    # Batches with different means and spreads, so the running average of momentum 0.1 differs from their plain average.
    return [torch.randn(32, 3, generator=generator) * (1 + i) + 3 * i for i in range(count)]


def test_statistics_become_the_plain_average_over_the_batches_and_the_layer_is_restored():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)).eval()
    batches = _batches(4)
    used = recompute_batchnorm_statistics(model, batches, torch.device("cpu"))
    with torch.no_grad():
        hidden = [model[0](b) for b in batches]
    expected_mean = torch.stack([h.mean(0) for h in hidden]).mean(0)
    expected_var = torch.stack([h.var(0, unbiased=True) for h in hidden]).mean(0)
    norm = model[1]
    assert used == 4
    torch.testing.assert_close(norm.running_mean, expected_mean)
    torch.testing.assert_close(norm.running_var, expected_var)
    assert norm.momentum == 0.1 and not model.training  # the layer's own momentum and the caller's mode are back


def test_without_batchnorm_or_without_batches_nothing_changes():
    assert recompute_batchnorm_statistics(nn.Linear(3, 2), _batches(2), torch.device("cpu")) == 0
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    model(_batches(1)[0])  # running statistics away from their reset values
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert recompute_batchnorm_statistics(model, [], torch.device("cpu")) == 0
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, before[key])


def test_the_option_rejects_a_negative_count():
    with pytest.raises(ConfigError, match="precise_batchnorm_batches"):
        typed_group(OmegaConf.create({"precise_batchnorm_batches": -1}), TrainerConfig, "trainer")


class _NormalizedHead(nn.Module):
    """A dense arch with a BatchNorm layer: flattened embeddings and dense features -> Linear -> BN -> ReLU -> logits."""

    def __init__(self, schema: Schema, embedding_dim: int) -> None:
        super().__init__()
        width = len(schema.sparse_names) * embedding_dim + len(schema.dense_names)
        self.net = nn.Sequential(nn.Linear(width, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, len(schema.tasks)))

    def forward(self, embeddings: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([embeddings.flatten(1), dense], dim=1))


def _fit_and_recompute(rank: int, dataset: str, run_dir: str, batches: int, evaluate_start: bool = False, epochs: int = 2) -> dict:
    """Fit (``epochs`` training epochs, after scoring the starting weights with ``evaluate_start``);
    return the BatchNorm statistics after fit, and those re-estimated afterwards from the last scored
    epoch's first ``max(batches, 3)`` training batches."""
    options = TrainerConfig(epochs=2, batch_size=64, eval_batch_size=256, max_steps_per_epoch=6, progress=False, dense_lr=0.05,
                            precise_batchnorm_batches=batches)
    config = TrainConfig(dataset=DatasetConfig(name="tiny", path=dataset), trainer=options, run_dir=run_dir,
                         model=MMoEConfig(name="mmoe", embedding_dim=4, num_experts=2, expert_hidden=[8], tower_hidden=[8]))
    trainer = Trainer.for_model(config, run_dir, build_dense_arch=lambda schema: _NormalizedHead(schema, 4))
    try:
        trainer.setup()
        trainer.fit(evaluate_start=evaluate_start, epochs=epochs)
        [norm] = batchnorm_layers(trainer.model).values()
        after_fit = (norm.running_mean.clone(), norm.running_var.clone())
        last_epoch = trainer.history[-1]["epoch"]
        again = itertools.islice(trainer.readers["train"].epoch(last_epoch), max(batches, 3))
        recompute_batchnorm_statistics(trainer.model, again, trainer.ctx.device)
        return {"after_fit": after_fit, "recomputed": (norm.running_mean.clone(), norm.running_var.clone())}
    finally:
        trainer.close()


@pytest.mark.distributed
def test_the_trainer_validates_with_statistics_of_its_final_weights(tiny_aliccp, tmp_path):
    [precise] = run_on_ranks(_fit_and_recompute, 1, tmp_path / "precise", str(tiny_aliccp), str(tmp_path / "run-precise"), 3)
    for got, expected in zip(precise["after_fit"], precise["recomputed"]):
        torch.testing.assert_close(got, expected)
    # Without the option the statistics are the running averages, which the same re-estimate moves.
    [running] = run_on_ranks(_fit_and_recompute, 1, tmp_path / "running", str(tiny_aliccp), str(tmp_path / "run-running"), 0)
    assert not torch.allclose(running["after_fit"][1], running["recomputed"][1], rtol=1e-3)


@pytest.mark.distributed
def test_starting_weights_scored_first_get_precise_statistics_too(tiny_aliccp, tmp_path):
    """A warm-started fine-tuning scores its inherited weights as epoch 0, before any training step."""
    [start] = run_on_ranks(_fit_and_recompute, 1, tmp_path / "start", str(tiny_aliccp), str(tmp_path / "run"), 3, True, 0)
    for got, expected in zip(start["after_fit"], start["recomputed"]):
        torch.testing.assert_close(got, expected)
