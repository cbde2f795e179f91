"""The ablation runner: one table of variants x seeds, finished cells read back, stale cells refused."""

import csv
import json
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir

from torchrec_automtl.experiments.ablation import run_ablation
from torchrec_automtl.pipelines.config import ConfigError
from torchrec_automtl.pipelines.result import RESULT_FORMAT
from tests.distributed.spawn import run_on_ranks
from tests.experiments.test_compare import TINY

CONF = Path(__file__).resolve().parents[2] / "conf"


def _cfg(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="ablation", overrides=overrides)


def _ablation(rank: int, cfg) -> list[dict]:
    return run_ablation(cfg)


def test_every_shipped_variant_composes_into_a_valid_search_config(tmp_path):
    from torchrec_automtl.experiments.ablation import variant_config

    cfg = _cfg([])
    for variant in cfg.variants:
        config = variant_config(cfg, variant, 0, tmp_path / variant)
        overrides = list(cfg.variants[variant])
        assert config.method == ("v1" if "method=v1" in overrides else "desan")
        for override in overrides:
            key, value = override.split("=", 1)
            if key != "method":
                group, name = key.split(".", 1)
                assert getattr(getattr(config, group), name) == yaml.safe_load(value), override


def test_a_bad_override_is_named_with_its_variant(tmp_path):
    with pytest.raises(ConfigError, match="variants.typo.*epochz"):
        run_ablation(_cfg([f"out_dir={tmp_path}", "+variants.typo=['search.epochz=3']"]))
    with pytest.raises(ConfigError, match="variants.elsewhere.*must start with"):
        run_ablation(_cfg([f"out_dir={tmp_path}", "+variants.elsewhere=['seed=3']"]))
    with pytest.raises(ConfigError, match="variants.v0.*method must be one of"):
        run_ablation(_cfg([f"out_dir={tmp_path}", "+variants.v0=['method=v0']"]))
    with pytest.raises(ConfigError, match="variants.mixed.*search_space.feature_selection"):  # a DESAN key under method=v1
        run_ablation(_cfg([f"out_dir={tmp_path}", "+variants.mixed=['method=v1','search_space.feature_selection=false']"]))


@pytest.mark.slow
def test_ablation_table_and_resume(tiny_aliccp, tmp_path):
    out = tmp_path / "ablation"
    variants = "{desan: [], wo_fs: ['search_space.feature_selection=false'], v1_wo_aux: ['method=v1', 'search.jsd_weight=0.0']}"
    cfg = _cfg([f"dataset.path={tiny_aliccp}", f"out_dir={out}", "seeds=[0]", "~variants", f"+variants={variants}"] + TINY)
    run_on_ranks(_ablation, 1, tmp_path / "o1", cfg)
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [r["variant"] for r in rows] == ["desan", "wo_fs", "v1_wo_aux"]
    assert {"avg_auc", "avg_logloss", "dense_parameters", "operations", "skip_or_linear_share", "search_s", "finetune_s"} <= set(rows[0])
    assert sum(int(part.split(":")[1]) for part in rows[0]["operations"].split()) > 0
    assert "| wo_fs | 1 |" in (out / "results.md").read_text()
    v1_cell = json.loads((out / "v1_wo_aux" / "seed0" / "ablation_cell.json").read_text())["config"]
    assert v1_cell["method"] == "v1" and v1_cell["search"]["jsd_weight"] == 0.0 and v1_cell["search_space"]["name"] == "v1_small"
    assert set(rows[2]["operations"].replace(":", " ").split()[::2]) <= {"gating", "skip"}  # the v1 space's ops (TINY)

    finished = (out / "wo_fs" / "seed0" / "metrics.json").stat().st_mtime_ns
    run_on_ranks(_ablation, 1, tmp_path / "o2", cfg)  # everything finished: read back, nothing rerun
    assert (out / "wo_fs" / "seed0" / "metrics.json").stat().st_mtime_ns == finished

    # A cell finished by an older version (another metrics format) runs again instead of being misread.
    desan = out / "desan" / "seed0" / "metrics.json"
    old = json.loads(desan.read_text())
    old.pop("format")
    desan.write_text(json.dumps(old))
    run_on_ranks(_ablation, 1, tmp_path / "o3", cfg)
    assert json.loads(desan.read_text())["format"] == RESULT_FORMAT
    assert (out / "wo_fs" / "seed0" / "metrics.json").stat().st_mtime_ns == finished

    changed = _cfg([f"dataset.path={tiny_aliccp}", f"out_dir={out}", "seeds=[0]", "~variants", f"+variants={variants}", "search.arch_lr=0.5"] + TINY)
    with pytest.raises(ConfigError, match="another config or dataset"):
        run_ablation(changed)
