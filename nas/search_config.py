"""Typed config of the search entry (``nas/search.py``): groups dataset, search_space, search, trainer."""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig

from nas.search_space import SearchSpaceConfig
from pipelines.config import DatasetConfig, TrainerConfig, check_top_level, typed_group


@dataclass
class SearchConfig:
    """PD-DARTS schedule (paper 001, Algorithm 1), defaults from the official implementation.

    The official run uses 15 epochs in all with 2 warm-up epochs; we split those into
    ``warmup_weights_epochs`` (N1, w only) = 1 and ``warmup_joint_epochs`` (N2, w, alpha, beta) = 1.
    ``decisions_per_epoch``: items discretized at the start of each later epoch; 0 spreads all
    decisions evenly so the supernet is a regular network by the end of epoch ``epochs`` (the official
    implementation discretizes 10 blocks per epoch, but our single confidence scale also ranks
    features and expert connections, which are far more numerous). Fine-tuning (N3 =
    ``finetune_epochs``) stops early with ``trainer.patience``.
    """

    epochs: int = 15
    warmup_weights_epochs: int = 1
    warmup_joint_epochs: int = 1
    decisions_per_epoch: int = 0
    arch_lr: float = 1e-3  # Adam on alpha and beta (official default)
    arch_weight_decay: float = 0.0
    finetune_epochs: int = 10

    def __post_init__(self) -> None:
        for key in ("epochs", "finetune_epochs"):
            if getattr(self, key) < 1:
                raise ValueError(f"search.{key} must be >= 1, got {getattr(self, key)}")
        for key in ("warmup_weights_epochs", "warmup_joint_epochs", "decisions_per_epoch"):
            if getattr(self, key) < 0:
                raise ValueError(f"search.{key} must be >= 0, got {getattr(self, key)}")
        if self.decisions_per_epoch == 0 and self.epochs <= self.warmup_weights_epochs + self.warmup_joint_epochs:
            raise ValueError(
                f"search.epochs={self.epochs} leaves no epoch for discretization after "
                f"{self.warmup_weights_epochs}+{self.warmup_joint_epochs} warm-up epochs"
            )


@dataclass
class NasConfig:
    """The whole search run: search, then fine-tune the derived model, then test it."""

    dataset: DatasetConfig
    search_space: SearchSpaceConfig
    search: SearchConfig
    trainer: TrainerConfig
    seed: int = 0
    run_dir: str = "runs/search"
    overwrite: bool = False


def parse_nas_config(cfg: DictConfig) -> NasConfig:
    """The typed ``NasConfig`` of a composed Hydra config; unknown keys and bad values are named."""
    check_top_level(cfg, NasConfig)
    return NasConfig(
        dataset=typed_group(cfg.dataset, DatasetConfig, "dataset"),
        search_space=typed_group(cfg.search_space, SearchSpaceConfig, "search_space"),
        search=typed_group(cfg.search, SearchConfig, "search"),
        trainer=typed_group(cfg.trainer, TrainerConfig, "trainer"),
        seed=int(cfg.seed),
        run_dir=str(cfg.run_dir),
        overwrite=bool(cfg.overwrite),
    )
