"""Typed configs of the training entry: one dataclass per Hydra group, validated on load.

Hydra composes ``conf/``; ``parse_train_config`` turns the result into typed dataclasses, so an
unknown key (``+trainer.epochz=3``) or a wrong type stops with a message naming the key.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Optional, TypeVar

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

import torchrec_automtl.modules  # noqa: F401  (registers the hand-designed models; model=automtl registers from nas, see nas/train.py)
from torchrec_automtl.common.errors import InputError  # noqa: I100  (after the registering import above)
from torchrec_automtl.modules.registry import ModelConfig, model_entry
from torchrec_automtl.pipelines.optimizers import DENSE_OPTIMIZERS, LR_SCHEDULES

EMBEDDING_OPTIMIZERS = ("rowwise_adagrad", "adagrad", "sgd", "adam")
SHARDING_TYPES = ("auto", "table_wise", "row_wise", "column_wise", "data_parallel")


class ConfigError(InputError):
    """A config key that is unknown, missing or has a bad value."""


@dataclass
class DatasetConfig:
    """``dataset=<name>``: a prepared folder with schema.json and train/valid/test Parquet."""

    name: str = "???"
    path: str = "???"


@dataclass
class TrainerConfig:
    """``trainer=<name>``: optimization, batching, evaluation and early stopping."""

    epochs: int = 10
    batch_size: int = 2048  # per rank
    eval_batch_size: int = 8192  # per rank
    dense_optimizer: str = "adam"  # adam (paper 001's official default) or sgd (paper 000)
    dense_lr: float = 1e-3  # paper 001's official default for Adam
    dense_weight_decay: float = 0.0
    dense_momentum: float = 0.9  # sgd only
    lr_schedule: str = "constant"  # or cosine: dense_lr -> min_lr over `epochs` epochs, per step
    min_lr: float = 0.0  # the end of the cosine schedule
    embedding_optimizer: str = "rowwise_adagrad"  # fused into the backward pass by TorchRec
    embedding_lr: float = 0.05
    task_weights: Optional[dict[str, float]] = None  # e.g. {conversion: 2.0}; unnamed tasks weigh 1.0
    patience: int = 3  # epochs without improvement of `monitor` before stopping
    monitor: str = "auto"  # auto: avg_auc, or avg_mse when every task is a regression
    shuffle_buffer: int = 65536  # rows; 0 reads training data in file order
    max_steps_per_epoch: int = 0  # 0: the whole training split every epoch
    precise_batchnorm_batches: int = 8  # BatchNorm statistics re-estimated on N training batches before each validation (0: running averages)
    state_every_steps: int = 0  # also save the resumable state every N training steps (0: at epoch ends only)
    sharding_type: str = "auto"  # auto lets the TorchRec planner choose per table
    device: str = "auto"  # auto: cuda when available, else cpu
    gauc: bool = False  # also report GAUC grouped by schema.json's group_column
    progress: bool = True

    def __post_init__(self) -> None:
        positive = {"epochs": self.epochs, "batch_size": self.batch_size, "eval_batch_size": self.eval_batch_size}
        for key, value in positive.items():
            if value < 1:
                raise ValueError(f"trainer.{key} must be >= 1, got {value}")
        if self.dense_optimizer not in DENSE_OPTIMIZERS:
            raise ValueError(f"trainer.dense_optimizer must be one of {DENSE_OPTIMIZERS}, got '{self.dense_optimizer}'")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"trainer.lr_schedule must be one of {LR_SCHEDULES}, got '{self.lr_schedule}'")
        if not 0.0 <= self.min_lr <= self.dense_lr:
            raise ValueError(f"trainer.min_lr must lie in [0, dense_lr={self.dense_lr}], got {self.min_lr}")
        if self.embedding_optimizer not in EMBEDDING_OPTIMIZERS:
            raise ValueError(f"trainer.embedding_optimizer must be one of {EMBEDDING_OPTIMIZERS}, got '{self.embedding_optimizer}'")
        if self.sharding_type not in SHARDING_TYPES:
            raise ValueError(f"trainer.sharding_type must be one of {SHARDING_TYPES}, got '{self.sharding_type}'")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"trainer.device must be auto, cpu or cuda, got '{self.device}'")
        if (self.patience < 1 or self.shuffle_buffer < 0 or self.max_steps_per_epoch < 0 or self.state_every_steps < 0
                or self.precise_batchnorm_batches < 0):
            raise ValueError("trainer.patience must be >= 1; shuffle_buffer, max_steps_per_epoch, state_every_steps and "
                             "precise_batchnorm_batches >= 0")


@dataclass
class TrainConfig:
    """The whole training run (``python -m torchrec_automtl.pipelines.train``)."""

    dataset: DatasetConfig
    model: ModelConfig
    trainer: TrainerConfig
    seed: int = 0
    run_dir: str = "runs/train"
    overwrite: bool = False  # replace results already in run_dir
    resume: bool = False  # continue the killed run in run_dir from its state/ (written after every epoch)


T = TypeVar("T")


def typed_group(node: Any, cls: type[T], group: str) -> T:
    """Validate ``node`` against dataclass ``cls``; errors name the ``group.key`` at fault."""
    if not isinstance(node, DictConfig):
        raise ConfigError(f"config group '{group}' must be a mapping, got {node!r}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(node.keys()) - known)
    if unknown:
        raise ConfigError(f"unknown config key(s) {[f'{group}.{k}' for k in unknown]}; valid keys of '{group}': {sorted(known)}")
    try:
        merged = OmegaConf.merge(OmegaConf.structured(cls), node)
        missing = sorted(OmegaConf.missing_keys(merged))
        if missing:
            raise ConfigError(f"missing value for {[f'{group}.{k}' for k in missing]}")
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as error:
        raise ConfigError(f"config group '{group}': {error}") from None
    except ValueError as error:
        if isinstance(error, ConfigError):
            raise
        raise ConfigError(str(error)) from None


def typed_model(node: Any) -> ModelConfig:
    """Validate the ``model`` group against the config class registered for ``model.name``."""
    if not isinstance(node, DictConfig) or "name" not in node:
        raise ConfigError("config group 'model' must set model.name")
    try:
        entry = model_entry(node.name)
    except KeyError as error:
        hint = "; model=automtl is registered by the nas entry points (`python -m torchrec_automtl.nas.train`, `python -m torchrec_automtl.nas.predict`)" if node.name == "automtl" else ""
        raise ConfigError(f"model.name: {error.args[0]}{hint}") from None
    return typed_group(node, entry.config_class, "model")


def check_top_level(cfg: DictConfig, cls: type) -> None:
    unknown = sorted(set(cfg.keys()) - {f.name for f in fields(cls)})
    if unknown:
        raise ConfigError(f"unknown top-level config key(s) {unknown}; valid keys: {sorted(f.name for f in fields(cls))}")


def parse_train_config(cfg: DictConfig) -> TrainConfig:
    """The typed ``TrainConfig`` of a composed Hydra config."""
    check_top_level(cfg, TrainConfig)
    return TrainConfig(
        dataset=typed_group(cfg.dataset, DatasetConfig, "dataset"),
        model=typed_model(cfg.model),
        trainer=typed_group(cfg.trainer, TrainerConfig, "trainer"),
        seed=int(cfg.seed),
        run_dir=str(cfg.run_dir),
        overwrite=bool(cfg.overwrite),
        resume=bool(cfg.resume),
    )
