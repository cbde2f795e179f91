import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from datasets.schema import Schema
from modules.multitask import build_multitask_model
from pipelines.config import ConfigError, parse_train_config

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "conf"
GROUPS = sorted(p.name for p in CONF.iterdir() if p.is_dir())
CHOICES = [(group, yaml.stem) for group in GROUPS for yaml in sorted((CONF / group).glob("*.yaml"))]


def _compose(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


@pytest.mark.parametrize("group, choice", CHOICES, ids=[f"{g}={c}" for g, c in CHOICES])
def test_every_config_composes_and_instantiates(group, choice, tiny_aliccp):
    cfg = _compose([f"{group}={choice}", f"dataset.path={tiny_aliccp}"])
    config = parse_train_config(cfg)
    assert getattr(config, group).__class__.__name__.endswith("Config")
    model = build_multitask_model(config.model, Schema.load(tiny_aliccp), device=torch.device("meta"))
    assert sum(p.numel() for p in model.parameters()) > 0


def test_all_groups_are_covered():
    assert {"dataset", "model", "trainer"} <= set(GROUPS)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["+trainer.epochz=3"], r"trainer\.epochz"),
        (["+model.num_expertz=3"], r"model\.num_expertz"),
        (["+colour=red"], "colour"),
        (["trainer.batch_size=0"], "batch_size must be >= 1"),
        (["trainer.embedding_optimizer=lion"], "embedding_optimizer"),
        (["model.name=transformer"], "unknown model 'transformer'"),
        (["trainer.epochs=many"], "epochs"),
    ],
)
def test_bad_config_is_rejected_with_the_key_named(overrides, message):
    with pytest.raises(ConfigError, match=message):
        parse_train_config(_compose(overrides))


def test_composed_config_is_struct():
    cfg = _compose([])
    assert OmegaConf.is_struct(cfg)


@pytest.mark.parametrize("override", ["trainer.epochz=3", "+trainer.epochz=3"])
def test_cli_rejects_unknown_key(override, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "pipelines.train", override, f"run_dir={tmp_path / 'run'}"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode != 0
    assert "epochz" in result.stderr
    assert not (tmp_path / "run" / "metrics.json").exists()
