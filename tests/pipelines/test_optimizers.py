"""The configurable dense optimizer and its learning-rate schedule."""

import pytest
import torch
from omegaconf import OmegaConf

from torchrec_automtl.modules.mmoe import MMoEConfig
from torchrec_automtl.pipelines.config import ConfigError, DatasetConfig, TrainConfig, TrainerConfig, typed_group
from torchrec_automtl.pipelines.optimizers import LearningRateSchedule
from torchrec_automtl.pipelines.trainer import Trainer
from tests.distributed.spawn import run_on_ranks


def _optimizer(lr: float) -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=lr)


def test_cosine_schedule_follows_torchs_cosine_annealing():
    lr, min_lr, total = 0.02, 0.001, 17
    ours = LearningRateSchedule(_optimizer(lr), "cosine", lr, min_lr, total)
    reference_optimizer = _optimizer(lr)
    reference = torch.optim.lr_scheduler.CosineAnnealingLR(reference_optimizer, T_max=total, eta_min=min_lr)
    for _ in range(total):
        assert ours.optimizer.param_groups[0]["lr"] == pytest.approx(reference_optimizer.param_groups[0]["lr"], abs=1e-12)
        ours.advance()
        reference_optimizer.step()
        reference.step()
    assert ours.optimizer.param_groups[0]["lr"] == pytest.approx(min_lr)
    ours.advance()  # past the end it stays at min_lr instead of rising again
    assert ours.optimizer.param_groups[0]["lr"] == pytest.approx(min_lr)


def test_a_schedule_started_at_a_saved_step_continues_where_it_stopped():
    walked = LearningRateSchedule(_optimizer(0.1), "cosine", 0.1, 0.0, 10)
    for _ in range(4):
        walked.advance()
    resumed = LearningRateSchedule(_optimizer(0.1), "cosine", 0.1, 0.0, 10, step=4)
    assert resumed.optimizer.param_groups[0]["lr"] == walked.optimizer.param_groups[0]["lr"] < 0.1
    constant = LearningRateSchedule(_optimizer(0.1), "constant", 0.1, 0.0, 10, step=7)
    assert constant.optimizer.param_groups[0]["lr"] == 0.1


@pytest.mark.parametrize("key, value, named", [("dense_optimizer", "adamw", "dense_optimizer"),
                                               ("lr_schedule", "step", "lr_schedule"), ("min_lr", 0.5, "min_lr")])
def test_bad_optimizer_options_name_their_key(key, value, named):
    with pytest.raises(ConfigError, match=f"trainer.{named}"):
        typed_group(OmegaConf.create({key: value}), TrainerConfig, "trainer")


def _train_with_sgd_cosine(rank: int, dataset: str, run_dir: str) -> dict:
    trainer_options = TrainerConfig(epochs=2, batch_size=64, eval_batch_size=256, max_steps_per_epoch=5, progress=False,
                                    dense_optimizer="sgd", dense_lr=0.05, dense_momentum=0.8, lr_schedule="cosine", min_lr=0.005)
    config = TrainConfig(dataset=DatasetConfig(name="tiny", path=dataset),
                         model=MMoEConfig(name="mmoe", embedding_dim=8, num_experts=2, expert_hidden=[8], tower_hidden=[8]),
                         trainer=trainer_options, run_dir=run_dir)
    trainer = Trainer.for_model(config, run_dir)
    try:
        trainer.setup()
        inner = trainer.dense_optimizer._optimizer
        rates = [trainer.dense_optimizer.param_groups[0]["lr"]]
        trainer.fit()
        rates.append(trainer.dense_optimizer.param_groups[0]["lr"])
        momentum = [s["momentum_buffer"] for s in inner.state.values()]
        return {"kind": type(inner).__name__, "momentum": inner.param_groups[0]["momentum"], "rates": rates,
                "steps": trainer.schedule.step, "buffers": len(momentum), "moved": any(bool(b.abs().sum() > 0) for b in momentum)}
    finally:
        trainer.close()


@pytest.mark.distributed
def test_trainer_steps_sgd_along_the_cosine_schedule(tiny_aliccp, tmp_path):
    [result] = run_on_ranks(_train_with_sgd_cosine, 1, tmp_path / "out", str(tiny_aliccp), str(tmp_path / "run"))
    assert result["kind"] == "SGD" and result["momentum"] == 0.8
    assert result["steps"] == 10  # 2 epochs x 5 steps, the schedule's whole span
    assert result["rates"] == [pytest.approx(0.05), pytest.approx(0.005)]
    assert result["buffers"] > 0 and result["moved"]
