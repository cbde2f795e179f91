import csv
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from scipy.stats import ttest_rel

from torchrec_automtl.experiments.compare import CompareConfig, parse_compare_config, run_comparison
from torchrec_automtl.pipelines.config import ConfigError
from tests.distributed.spawn import run_on_ranks

CONF = Path(__file__).resolve().parents[2] / "conf"
TINY = ["trainer=smoke", "trainer.epochs=1", "trainer.max_steps_per_epoch=3", "search=default", "search.epochs=3",
        "search.architecture_fraction=0.25",
        "search_space.num_experts=2", "search_space.operations=[skip,mlp-16]",
        "v1_search.epochs=2", "v1_search.architecture_fraction=0.25", "v1_search_space.num_experts=2",
        "v1_search_space.top_experts=1", "v1_search_space.interaction_operations=[skip,cross-1]",
        "v1_search_space.expert_operations=[gating,skip]"]


def _config(overrides: list[str]) -> CompareConfig:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return parse_compare_config(compose(config_name="compare", overrides=overrides))


def _compare(rank: int, config: CompareConfig) -> list[dict]:
    return run_comparison(config)


@pytest.mark.slow
def test_compare_writes_one_row_per_model_and_seed_and_a_summary(tiny_aliccp, tmp_path):
    models = ["mmoe", "shared_bottom", "random", "automtl", "automtl_v1"]
    config = _config([f"dataset.path={tiny_aliccp}", f"models=[{','.join(models)}]", "seeds=[0,1]",
                      f"out_dir={tmp_path / 'cmp'}"] + TINY)
    run_on_ranks(_compare, 1, tmp_path / "out", config)
    out = tmp_path / "cmp"
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [(r["model"], r["seed"]) for r in rows] == [(m, str(s)) for m in models for s in (0, 1)]
    assert {"click_auc", "conversion_auc", "avg_auc", "dense_parameters", "train_samples_per_s", "wall_time_s"} <= set(rows[0])
    assert all(0.0 <= float(r["avg_auc"]) <= 1.0 for r in rows)
    table = (out / "results.md").read_text()
    assert [line.split("|")[1].strip() for line in table.splitlines() if line.startswith("| ")][1:] == models
    by_model = {m: [float(r["avg_auc"]) for r in rows if r["model"] == m] for m in models}
    best = max(["mmoe", "shared_bottom"], key=lambda m: np.mean(by_model[m]))  # random is not hand-designed
    for searched, other, label in (("automtl", best, f"AutoMTL vs the best hand-designed baseline ({best})"),
                                   ("automtl", "random", "AutoMTL vs random architectures"),
                                   ("automtl_v1", best, f"AutoMTL v1 vs the best hand-designed baseline ({best})")):
        expected = ttest_rel(by_model[searched], by_model[other]).statistic
        line = next(line for line in table.splitlines() if label in line)
        assert f"t = {expected:.3f}," in line, line
    assert (out / "results.png").stat().st_size > 1000
    assert (out / "automtl" / "seed1" / "architecture.json").is_file()
    assert '"method": "v1"' in (out / "automtl_v1" / "seed1" / "architecture.json").read_text()


def test_unknown_model_is_refused():
    with pytest.raises(ConfigError, match="unknown model 'transformer'"):
        _config(["models=[mmoe,transformer]"])


def test_a_finished_run_dir_stops_the_comparison_before_any_training(tmp_path):
    """The last cell already has results: nothing runs (the first cell would have trained for minutes)."""
    finished = tmp_path / "cmp" / "shared_bottom" / "seed1"
    finished.mkdir(parents=True)
    (finished / "metrics.json").write_text("{}")
    config = _config(["dataset.path=unused", "models=[mmoe,shared_bottom]", "seeds=[0,1]", f"out_dir={tmp_path / 'cmp'}"] + TINY)
    with pytest.raises(FileExistsError, match="shared_bottom/seed1 already holds results"):
        run_comparison(config)
    assert not (tmp_path / "cmp" / "mmoe").exists()
