"""Paper 001's ablations (Table 4) as one table: ``python -m torchrec_automtl.experiments.ablation [overrides]`` (``make ablation``).

Each variant of ``conf/ablation.yaml`` is a list of overrides of the search config (``search.*``,
``search_space.*``); ``method=v1`` makes a variant paper 000's method, whose groups start from
``v1_search_space`` / ``v1_search`` (paper 000's Table 3 variants). Every variant x seed runs the
whole search + fine-tune on one dataset with the same trainer. ``out_dir`` receives one run directory per cell (``<variant>/seed<k>/``), and
``results.csv`` / ``results.md``: test avg AUC and logloss, dense parameters of the derived model,
the op histogram of its blocks (experts that reach a task), search and fine-tune seconds.

A cell whose run directory already holds ``metrics.json`` from the same config and dataset
(``ablation_cell.json``: the resolved search config and a hash of ``schema.json``) is read back,
not rerun, so an interrupted ablation continues where it stopped; a cell finished with another
config or dataset is refused unless ``overwrite=true``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from torchrec_automtl.common.atomic_files import atomic_write_csv, atomic_write_json, atomic_write_text, read_json
from torchrec_automtl.nas.architecture import Architecture
from torchrec_automtl.experiments.compare import mean_std_cells
from torchrec_automtl.nas.search_and_finetune import run_search
from torchrec_automtl.nas.derived import load_architecture
from torchrec_automtl.nas.search_config import METHODS, NasConfig, parse_nas_config
from torchrec_automtl.nas.v1.architecture import V1Architecture
from torchrec_automtl.pipelines.config import ConfigError, check_top_level
from torchrec_automtl.pipelines.hydra_launch import quiet_hydra_on_other_ranks, report_input_errors
from torchrec_automtl.pipelines.result import RESULT_FILE, ResultError, RunResult

CELL_FILE = "ablation_cell.json"
SEARCH_GROUPS = ("dataset", "search_space", "search", "trainer")


@dataclass
class AblationConfig:
    """Variants x seeds of the search on one dataset (``conf/ablation.yaml``); the groups are the search's."""

    dataset: dict
    search_space: dict
    search: dict
    trainer: dict
    v1_search_space: dict  # the search_space and search groups of method=v1 variants
    v1_search: dict
    variants: dict[str, list[str]] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    out_dir: str = "runs/ablation"
    overwrite: bool = False


def variant_config(cfg: DictConfig, variant: str, seed: int, run_dir: Path) -> NasConfig:
    """The search config of one cell: the shared groups (``method=v1``: its own search_space and search)
    with the variant's overrides applied (unknown keys are named)."""
    overrides = [str(o) for o in cfg.variants[variant]]
    methods = [o.split("=", 1)[1] for o in overrides if o.startswith("method=")]
    method = methods[-1] if methods else "desan"
    if method not in METHODS:
        raise ConfigError(f"variants.{variant}: method must be one of {sorted(METHODS)}, got '{method}'")
    overrides = [o for o in overrides if not o.startswith("method=")]
    source = {group: f"v1_{group}" if method == "v1" and group in ("search_space", "search") else group for group in SEARCH_GROUPS}
    base = OmegaConf.create({group: OmegaConf.to_container(cfg[source[group]], resolve=True) for group in SEARCH_GROUPS})
    try:
        merged = OmegaConf.merge(base, OmegaConf.from_dotlist(overrides))
    except Exception as error:  # a malformed override; OmegaConf raises several types
        raise ConfigError(f"variants.{variant}: bad override in {overrides}: {error}") from None
    unknown = [o for o in overrides if o.split("=", 1)[0].split(".", 1)[0] not in SEARCH_GROUPS]
    if unknown:
        raise ConfigError(f"variants.{variant}: overrides {unknown} must start with one of {SEARCH_GROUPS} (or be method=...)")
    merged.seed, merged.run_dir, merged.overwrite, merged.resume, merged.method = seed, str(run_dir), bool(cfg.overwrite), False, method
    try:
        return parse_nas_config(merged)
    except (ConfigError, ValueError) as error:
        raise ConfigError(f"variants.{variant}: {error}") from None


def run_cell(cfg: DictConfig, variant: str, seed: int) -> RunResult:
    """Search + fine-tune one cell, or read it back when it already finished with the same overrides; returns its result.

    A finished cell whose metrics.json has an older format is run again.
    """
    run_dir = Path(cfg.out_dir) / variant / f"seed{seed}"
    config = variant_config(cfg, variant, seed, run_dir)
    cell = cell_record(config)
    if (run_dir / RESULT_FILE).is_file() and not cfg.overwrite:
        recorded = read_json(run_dir / CELL_FILE, ConfigError, "ablation cell") if (run_dir / CELL_FILE).is_file() else None
        if recorded != cell:
            raise ConfigError(f"{run_dir} holds a finished run of another config or dataset (see {CELL_FILE} there); "
                              "pass overwrite=true or another out_dir")
        try:
            return RunResult.read(run_dir)
        except ResultError as error:
            print(f"{error}: running the cell again", flush=True)
            config = dataclasses.replace(config, overwrite=True)
    result = run_search(config, run_dir).result
    if int(os.environ.get("RANK", 0)) == 0:
        atomic_write_json(run_dir / CELL_FILE, cell)
    return result


def cell_record(config: NasConfig) -> dict:
    """What a finished cell must match to be reused: the whole search config and the dataset's schema.json (hashed)."""
    values = asdict(config)
    values.pop("overwrite")
    schema = Path(config.dataset.path) / "schema.json"
    return {"config": values, "schema_sha1": hashlib.sha1(schema.read_bytes()).hexdigest() if schema.is_file() else None}


def ablation_row(variant: str, seed: int, result: RunResult, architecture: Architecture | V1Architecture) -> dict:
    """One results.csv row: test metrics, derived dense parameters, op histogram, timings."""
    test = result.test
    row: dict = {"variant": variant, "seed": seed}
    row.update({key: test[key] for key in ("avg_auc", "avg_logloss", "avg_mse") if key in test})
    row["dense_parameters"] = result.num_parameters["dense"]
    histogram = architecture.operation_histogram()
    row["operations"] = " ".join(f"{name}:{count}" for name, count in histogram.items())
    row["skip_or_linear_share"] = (histogram.get("skip", 0) + histogram.get("linear", 0)) / max(1, sum(histogram.values()))
    row["search_s"] = result.search.seconds
    row["finetune_s"] = result.train_seconds
    return row


def summary_table(rows: list[dict], variants: list[str]) -> str:
    """Markdown: mean +- std per variant over the seeds of every numeric column, and each seed's op histogram."""
    numeric = [k for k, v in rows[0].items() if k not in ("variant", "seed") and isinstance(v, (int, float))]
    lines = ["| variant | seeds | " + " | ".join(numeric) + " | operations (per seed) |",
             "|---|---|" + "---|" * (len(numeric) + 1)]
    for variant in variants:
        runs = [r for r in rows if r["variant"] == variant]
        cells = mean_std_cells(runs, numeric)
        operations = "; ".join(r["operations"] for r in runs)
        lines.append(f"| {variant} | {len(runs)} | " + " | ".join(cells) + f" | {operations} |")
    return "\n".join(lines) + "\n"


def write_results(out_dir: Path, rows: list[dict], variants: list[str]) -> None:
    atomic_write_csv(out_dir / "results.csv", rows)
    seeds = sorted({r["seed"] for r in rows})
    atomic_write_text(out_dir / "results.md", f"# Ablations (seeds {seeds}, test split)\n\n" + summary_table(rows, variants))


def run_ablation(cfg: DictConfig) -> list[dict]:
    """Every variant x seed (finished cells are read back), then results.csv / results.md; returns the rows."""
    check_top_level(cfg, AblationConfig)
    if not cfg.variants or not cfg.seeds:
        raise ConfigError("ablation needs at least one variant and one seed")
    for variant in cfg.variants:  # fail on a bad variant before hours of runs, not after
        variant_config(cfg, variant, int(cfg.seeds[0]), Path(cfg.out_dir) / variant)
    rows = []
    for variant in cfg.variants:
        for seed in cfg.seeds:
            result = run_cell(cfg, variant, int(seed))
            architecture = load_architecture(Path(cfg.out_dir) / variant / f"seed{seed}" / "architecture.json")
            rows.append(ablation_row(variant, int(seed), result, architecture))
    if int(os.environ.get("RANK", 0)) == 0:
        write_results(Path(cfg.out_dir), rows, list(cfg.variants))
        print((Path(cfg.out_dir) / "results.md").read_text(), flush=True)
    return rows


@hydra.main(config_path="../conf", config_name="ablation", version_base="1.3")
@report_input_errors
def main(cfg: DictConfig) -> None:
    run_ablation(cfg)


if __name__ == "__main__":
    quiet_hydra_on_other_ranks()
    main()
