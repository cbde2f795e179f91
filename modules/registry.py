"""Name -> dense-arch builder registry: ``model=<name>`` picks an entry, its config class validates the keys."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Generic, TypeVar

from torch import nn

from torchrec_automtl.datasets.schema import Schema
from torchrec_automtl.modules.embeddings import MULTI_HOT_POOLINGS


@dataclass
class ModelConfig:
    """Fields every model config has; each model subclasses it with its own hyper-parameters."""

    name: str = "???"
    embedding_dim: int = 16
    multi_hot_pooling: str = "mean"  # or "sum"

    def __post_init__(self) -> None:
        if self.embedding_dim < 1:
            raise ValueError(f"model.embedding_dim must be >= 1, got {self.embedding_dim}")
        if self.multi_hot_pooling not in MULTI_HOT_POOLINGS:
            raise ValueError(f"model.multi_hot_pooling must be one of {sorted(MULTI_HOT_POOLINGS)}, got '{self.multi_hot_pooling}'")


ConfigT = TypeVar("ConfigT", bound=ModelConfig)
DenseArchBuilder = Callable[[ConfigT, Schema], nn.Module]


@dataclass(frozen=True)
class ModelEntry(Generic[ConfigT]):
    """A registered dense arch: its config dataclass and the builder ``(config, schema) -> nn.Module``."""

    config_class: type[ConfigT]
    build: DenseArchBuilder


_MODELS: dict[str, ModelEntry] = {}


def register_model(name: str, config_class: type[ConfigT]) -> Callable[[DenseArchBuilder], DenseArchBuilder]:
    """Decorator registering a dense-arch builder under ``name``; a second registration is an error."""

    def decorate(build: DenseArchBuilder) -> DenseArchBuilder:
        if name in _MODELS:
            raise ValueError(f"model '{name}' is already registered")
        _MODELS[name] = ModelEntry(config_class, build)
        return build

    return decorate


def model_entry(name: str) -> ModelEntry:
    """The entry registered as ``name``; the error lists the known names."""
    if name not in _MODELS:
        raise KeyError(f"unknown model '{name}'; known models: {sorted(_MODELS)}")
    return _MODELS[name]

