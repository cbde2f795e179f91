"""Compare models fairly: ``python experiments/compare.py [overrides]`` (or ``python -m torchrec_automtl.experiments.compare``).

Every model in ``models`` is trained with every seed in ``seeds`` on one dataset with the same
trainer settings; checkpoints are selected on validation only and the test split is evaluated once
per run. ``automtl`` runs the whole search + fine-tune (``search_space``, ``search``); ``automtl_v1``
paper 000's method (``v1_search_space``, ``v1_search``); ``random`` trains a uniformly sampled DESAN
architecture from scratch (seeded by the run's seed). ``out_dir`` receives one run directory per
(model, seed) and ``results.csv``, ``results.md`` (mean +- std per model, paired t-tests of each
searched model against the best hand-designed baseline, and of AutoMTL against random architectures)
and ``results.png``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import hydra
import numpy as np
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from matplotlib.figure import Figure
from omegaconf import DictConfig
from scipy.stats import ttest_rel

from torchrec_automtl.common.atomic_files import atomic_write_csv, atomic_write_text
from torchrec_automtl.datasets.schema import Schema
from torchrec_automtl.nas.derived import AutoMTLConfig
from torchrec_automtl.nas.random_architecture import sample_architecture
from torchrec_automtl.nas.search_and_finetune import run_search
from torchrec_automtl.nas.search_config import NasConfig, SearchConfig
from torchrec_automtl.nas.search_space import SearchSpaceConfig
from torchrec_automtl.nas.v1.space import V1SearchConfig, V1SearchSpaceConfig
from torchrec_automtl.experiments.compare_runs import oracle_share, oracle_test_auc
from torchrec_automtl.pipelines.config import ConfigError, DatasetConfig, TrainConfig, TrainerConfig, check_top_level, typed_group, typed_model
from torchrec_automtl.pipelines.hydra_launch import quiet_hydra_on_other_ranks, report_input_errors
from torchrec_automtl.pipelines.result import RunResult
from torchrec_automtl.pipelines.trainer import check_run_dir, run_training

CONF = Path(__file__).resolve().parents[1] / "conf"
SEARCHED, SEARCHED_V1, RANDOM = "automtl", "automtl_v1", "random"
NOT_HAND_DESIGNED = (SEARCHED, SEARCHED_V1, RANDOM)


@dataclass
class CompareConfig:
    """Models x seeds on one dataset (``conf/compare.yaml``)."""

    dataset: DatasetConfig
    trainer: TrainerConfig
    search_space: SearchSpaceConfig
    search: SearchConfig
    v1_search_space: V1SearchSpaceConfig
    v1_search: V1SearchConfig
    models: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    out_dir: str = "runs/compare"
    overwrite: bool = False


def parse_compare_config(cfg: DictConfig) -> CompareConfig:
    check_top_level(cfg, CompareConfig)
    config = CompareConfig(
        dataset=typed_group(cfg.dataset, DatasetConfig, "dataset"),
        trainer=typed_group(cfg.trainer, TrainerConfig, "trainer"),
        search_space=typed_group(cfg.search_space, SearchSpaceConfig, "search_space"),
        search=typed_group(cfg.search, SearchConfig, "search"),
        v1_search_space=typed_group(cfg.v1_search_space, V1SearchSpaceConfig, "v1_search_space"),
        v1_search=typed_group(cfg.v1_search, V1SearchConfig, "v1_search"),
        models=list(cfg.models), seeds=[int(s) for s in cfg.seeds], out_dir=str(cfg.out_dir), overwrite=bool(cfg.overwrite),
    )
    for name in config.models:
        if name not in NOT_HAND_DESIGNED:
            model_config(name, config.search_space)
    if not config.models or not config.seeds:
        raise ConfigError("compare needs at least one model and one seed")
    return config


def model_config(name: str, space: SearchSpaceConfig):
    """The ``conf/model/<name>.yaml`` config of a baseline, with the search space's embedding settings."""
    if not (CONF / "model" / f"{name}.yaml").is_file():
        raise ConfigError(f"unknown model '{name}' in models; known: {sorted(p.stem for p in (CONF / 'model').glob('*.yaml'))}")
    overrides = [f"model={name}", f"model.embedding_dim={space.embedding_dim}", f"model.multi_hot_pooling={space.multi_hot_pooling}"]
    if GlobalHydra.instance().is_initialized():  # inside the compare app: compose from its config dir
        return typed_model(compose(config_name="train", overrides=overrides).model)
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return typed_model(compose(config_name="train", overrides=overrides).model)


def run_one(config: CompareConfig, name: str, seed: int) -> dict:
    """Train (or search) ``name`` with ``seed``; returns its result."""
    run_dir = Path(config.out_dir) / name / f"seed{seed}"
    if name in (SEARCHED, SEARCHED_V1):
        v1 = name == SEARCHED_V1
        nas = NasConfig(config.dataset, config.v1_search_space if v1 else config.search_space, config.v1_search if v1 else config.search,
                        config.trainer, seed, str(run_dir), config.overwrite, method="v1" if v1 else "desan")
        return run_search(nas, run_dir).result
    if name == RANDOM:
        architecture = sample_architecture(config.search_space, Schema.load(config.dataset.path), seed)
        path = architecture.save(Path(config.out_dir) / name / f"architecture-seed{seed}.json")
        model = AutoMTLConfig(name="automtl", embedding_dim=config.search_space.embedding_dim,
                              multi_hot_pooling=config.search_space.multi_hot_pooling, architecture=str(path))
    else:
        model = model_config(name, config.search_space)
    return run_training(TrainConfig(config.dataset, model, config.trainer, seed, str(run_dir), config.overwrite), run_dir)


def result_row(name: str, seed: int, result: RunResult) -> dict:
    """One results.csv row: test metrics per task and averaged, dense parameters, samples/s, wall time."""
    row = {"model": name, "seed": seed}
    for task, values in result.test.items():
        if isinstance(values, dict):  # per-task metrics; the rest are averages and the row count
            row.update({f"{task}_{metric}": value for metric, value in values.items()})
    row.update({key: value for key, value in result.test.items() if key.startswith("avg_")})
    oracle = oracle_test_auc(result.dataset)
    if "avg_auc" in row and oracle is not None:
        row["oracle_share"] = oracle_share(row["avg_auc"], oracle)
    row["dense_parameters"] = result.num_parameters["dense"]
    if result.search is not None:  # AutoMTL: the supernet's training speed during the search
        speeds = result.search.samples_per_s
    else:
        speeds = [epoch["samples_per_s"] for epoch in result.epochs if epoch["trained"]]
    row["train_samples_per_s"] = float(np.mean(speeds))
    row["wall_time_s"] = result.wall_time_s
    return row


def summarize(rows: list[dict], models: list[str]) -> tuple[str, str]:
    """``(results.md text, primary metric)``: mean +- std per model and a paired t-test of AutoMTL vs the best baseline."""
    primary = "avg_auc" if "avg_auc" in rows[0] else "avg_mse"
    higher_is_better = primary == "avg_auc"
    metric_columns = [k for k in rows[0] if k not in ("model", "seed")]
    lines = ["| model | " + " | ".join(metric_columns) + " |", "|---|" + "---|" * len(metric_columns)]
    by_model = {m: [r for r in rows if r["model"] == m] for m in models}
    for model, runs in by_model.items():
        cells = mean_std_cells(runs, metric_columns)
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    hand_designed = [m for m in models if m not in NOT_HAND_DESIGNED]
    if hand_designed:
        score = {m: np.mean([r[primary] for r in by_model[m]]) for m in hand_designed}
        best = max(score, key=score.get) if higher_is_better else min(score, key=score.get)
        for searched in (SEARCHED, SEARCHED_V1):
            if searched in by_model:
                lines += ["", _paired_test(by_model, searched, best, primary, f"the best hand-designed baseline ({best})")]
    if SEARCHED in by_model and RANDOM in by_model:
        lines += ["", _paired_test(by_model, SEARCHED, RANDOM, primary, "random architectures of the same space")]
    return "\n".join(lines) + "\n", primary


def _paired_test(by_model: dict[str, list[dict]], searched: str, other: str, primary: str, label: str) -> str:
    """One sentence: the searched model vs ``other`` on ``primary``, a paired t-test over the seeds both ran."""
    name = "AutoMTL v1" if searched == SEARCHED_V1 else "AutoMTL"
    ours = {r["seed"]: r[primary] for r in by_model[searched]}
    theirs = {r["seed"]: r[primary] for r in by_model[other]}
    seeds = sorted(set(ours) & set(theirs))
    a, b = [ours[s] for s in seeds], [theirs[s] for s in seeds]
    if len(seeds) < 2:
        return f"One seed only: no t-test ({name} {a[0]:.4f} vs {label} {b[0]:.4f})."
    test = ttest_rel(a, b)
    return (f"Paired t-test on {primary} over seeds {seeds}, {name} vs {label}: mean difference "
            f"{np.mean(a) - np.mean(b):+.4f}, t = {test.statistic:.3f}, p = {test.pvalue:.4f}.")


def mean_std_cells(runs: list[dict], columns: list[str]) -> list[str]:
    """``mean +- std`` over ``runs`` of each column (parameter counts: the mean as an integer)."""
    return [f"{np.mean([r[c] for r in runs]):.4f} +- {np.std([r[c] for r in runs]):.4f}" if "param" not in c
            else f"{int(np.mean([r[c] for r in runs])):,}" for c in columns]


def write_results(out_dir: Path, rows: list[dict], models: list[str]) -> None:
    atomic_write_csv(out_dir / "results.csv", rows)
    table, primary = summarize(rows, models)
    atomic_write_text(out_dir / "results.md", f"# Comparison ({len({r['seed'] for r in rows})} seeds, test split)\n\n" + table)
    figure = Figure(figsize=(1.2 + 0.8 * len(models), 4))
    axis = figure.subplots()
    means = [np.mean([r[primary] for r in rows if r["model"] == m]) for m in models]
    stds = [np.std([r[primary] for r in rows if r["model"] == m]) for m in models]
    axis.bar(models, means, yerr=stds, capsize=4, color=["tab:orange" if m in (SEARCHED, SEARCHED_V1) else "tab:blue" for m in models])
    axis.set_ylim(min(means) - 3 * max(max(stds), 1e-3), max(means) + 3 * max(max(stds), 1e-3))
    axis.set_ylabel(f"test {primary} (mean +- std over seeds)")
    axis.tick_params(axis="x", rotation=45)
    tmp = out_dir / ".results.tmp.png"
    figure.savefig(tmp, dpi=120, bbox_inches="tight")
    tmp.replace(out_dir / "results.png")


def run_comparison(config: CompareConfig) -> list[dict]:
    """Every model x seed, then the result files; returns the rows. A run dir that already holds
    results stops the comparison before any training (unless ``overwrite``), not after the runs before it."""
    for name in config.models:
        for seed in config.seeds:
            check_run_dir(Path(config.out_dir) / name / f"seed{seed}", config.overwrite)
    rows = [result_row(name, seed, run_one(config, name, seed)) for name in config.models for seed in config.seeds]
    if int(os.environ.get("RANK", 0)) == 0:  # every run has closed its process group by now
        write_results(Path(config.out_dir), rows, config.models)
        print((Path(config.out_dir) / "results.md").read_text(), flush=True)
    return rows


@hydra.main(config_path="../conf", config_name="compare", version_base="1.3")
@report_input_errors
def main(cfg: DictConfig) -> None:
    run_comparison(parse_compare_config(cfg))


if __name__ == "__main__":
    quiet_hydra_on_other_ranks()
    main()
