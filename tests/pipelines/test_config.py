import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from torchrec_automtl.datasets.schema import Schema
from torchrec_automtl.modules.multitask import build_multitask_model
import torchrec_automtl.nas.derived  # noqa: F401  (registers model=automtl, as nas/train.py does)
from torchrec_automtl.nas.architecture import Architecture
from torchrec_automtl.nas.discretization import apply_decisions, is_discretized, next_decisions
from torchrec_automtl.nas.search_config import parse_nas_config
from torchrec_automtl.nas.search_space import SearchSpaceConfig
from torchrec_automtl.nas.supernet import DesanSupernet
from torchrec_automtl.nas.v1.supernet import V1Supernet
from torchrec_automtl.pipelines.config import ConfigError, parse_train_config

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "conf"
GROUPS = sorted(p.name for p in CONF.iterdir() if p.is_dir())
ENTRY_GROUPS = {"train": ("dataset", "model", "trainer"), "search": ("dataset", "method", "search_space", "search", "trainer")}
CHOICES = [
    (entry, group, yaml.stem)
    for entry, groups in ENTRY_GROUPS.items()
    for group in groups
    for yaml in sorted((CONF / group).glob("*.yaml"))
]


def _compose(overrides: list[str], config_name: str = "train"):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name=config_name, overrides=overrides)


@pytest.fixture(scope="module")
def tiny_architecture(tiny_aliccp, tmp_path_factory) -> Path:
    """An architecture.json searched (here: randomly discretized) on the tiny dataset's schema."""
    schema = Schema.load(tiny_aliccp)
    torch.manual_seed(0)
    net = DesanSupernet(SearchSpaceConfig(num_experts=2, operations=["skip", "mlp-16"]), schema.sparse_names,
                        schema.dense_names, schema.task_names)
    while not is_discretized(net):
        apply_decisions(net, next_decisions(net, 50))
    return Architecture.from_supernet(net, schema).save(tmp_path_factory.mktemp("arch") / "architecture.json")


@pytest.mark.parametrize("entry, group, choice", CHOICES, ids=[f"{e}:{g}={c}" for e, g, c in CHOICES])
def test_every_config_composes_and_instantiates(entry, group, choice, tiny_aliccp, tiny_architecture):
    overrides = [f"{group}={choice}", f"dataset.path={tiny_aliccp}"]
    schema = Schema.load(tiny_aliccp)
    if entry == "search":
        if group in ("search_space", "search") and choice.startswith("v1"):
            overrides.append("method=v1")  # paper 000's presets belong to its method
        config = parse_nas_config(_compose(overrides, "search"))
        supernet = V1Supernet if config.method == "v1" else DesanSupernet
        model = supernet(config.search_space, schema.sparse_names, schema.dense_names, schema.task_names)
    else:
        if choice == "automtl":
            overrides.append(f"model.architecture={tiny_architecture}")
        config = parse_train_config(_compose(overrides))
        model = build_multitask_model(config.model, schema, device=torch.device("meta"))
    assert group == "method" and config.method == choice or getattr(config, group).__class__.__name__.endswith("Config")
    assert sum(p.numel() for p in model.parameters()) > 0


def test_every_config_group_is_used_by_an_entry():
    assert set(GROUPS) == {group for groups in ENTRY_GROUPS.values() for group in groups}


def test_architecture_of_another_schema_is_refused(tiny_architecture, tmp_path):
    from torchrec_automtl.datasets.synthetic import write_aliccp_like

    other = tmp_path / "other"
    write_aliccp_like(other, rows=300, progress=False)
    schema = Schema.load(other)
    payload = Architecture.load(tiny_architecture).to_dict()
    payload["schema_fingerprint"] = "0" * 16
    payload["tasks"] = ["click", "purchase"]
    path = tmp_path / "architecture.json"
    Architecture.from_dict(payload).save(path)
    config = parse_train_config(_compose([f"dataset.path={other}", "model=automtl", f"model.architecture={path}"]))
    with pytest.raises(ValueError, match=r"tasks: searched on \['click', 'purchase'\]"):
        build_multitask_model(config.model, schema, device=torch.device("meta"))


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


def test_task_weights_can_be_given_on_the_command_line():
    config = parse_train_config(_compose(["trainer.task_weights={conversion: 2.5}"]))
    assert config.trainer.task_weights == {"conversion": 2.5}


def test_composed_config_is_struct():
    cfg = _compose([])
    assert OmegaConf.is_struct(cfg)


@pytest.mark.parametrize("entry, override", [("torchrec_automtl.pipelines.train", "trainer.epochz=3"), ("torchrec_automtl.pipelines.train", "+trainer.epochz=3"),
                                             ("torchrec_automtl.nas.search", "+search.epochz=3")])
def test_cli_rejects_unknown_key(entry, override, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", entry, override, f"run_dir={tmp_path / 'run'}"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode != 0 and "epochz" in result.stderr and "Traceback" not in result.stderr
    if override.startswith("+"):  # past Hydra's own override check: our one line naming the key, exit code 2
        assert result.returncode == 2 and result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_the_debug_switch_keeps_the_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "torchrec_automtl.pipelines.train", "+trainer.epochz=3", f"run_dir={tmp_path / 'run'}"],
        cwd=REPO, capture_output=True, text=True, timeout=300, env={**os.environ, "AUTOMTL_DEBUG": "1"},
    )
    assert result.returncode != 0 and "ConfigError" in result.stderr and "epochz" in result.stderr


@pytest.mark.slow
def test_the_searched_model_trains_from_nas_train_and_pipelines_train_points_there(tiny_aliccp, tiny_architecture, tmp_path):
    overrides = [f"dataset.path={tiny_aliccp}", "model=automtl", f"model.architecture={tiny_architecture}", "trainer=smoke"]
    refused = subprocess.run([sys.executable, "-m", "torchrec_automtl.pipelines.train", *overrides, f"run_dir={tmp_path / 'plain'}"],
                             cwd=REPO, capture_output=True, text=True, timeout=300)
    assert refused.returncode != 0 and "python -m torchrec_automtl.nas.train" in refused.stderr
    trained = subprocess.run([sys.executable, "-m", "torchrec_automtl.nas.train", *overrides, f"run_dir={tmp_path / 'run'}"],
                             cwd=REPO, capture_output=True, text=True, timeout=300)
    assert trained.returncode == 0, trained.stderr[-2000:]
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["model"] == "automtl"
