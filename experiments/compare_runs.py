"""Side-by-side test metrics of finished runs: ``python -m torchrec_automtl.experiments.compare_runs RUN_DIR [RUN_DIR ...]``."""

from __future__ import annotations

import argparse
from pathlib import Path

from torchrec_automtl.datasets.schema import SCHEMA_FILE, Schema
from torchrec_automtl.nas.architecture import Architecture
from torchrec_automtl.pipelines.hydra_launch import report_input_errors
from torchrec_automtl.pipelines.result import RunResult


def oracle_test_auc(dataset_path: str | Path) -> float | None:
    """The average test AUC of the true label probabilities, where the dataset's generator recorded it (synthetic data)."""
    if not (Path(dataset_path) / SCHEMA_FILE).is_file():
        return None
    return Schema.load(dataset_path).metadata.get("oracle_auc", {}).get("test", {}).get("avg")


def oracle_share(avg_auc: float, oracle_auc: float | None) -> float | None:
    """How much of the oracle's AUC gain over 0.5 a model reaches: ``(auc - 0.5) / (oracle - 0.5)``."""
    return None if oracle_auc is None else (avg_auc - 0.5) / (oracle_auc - 0.5)


def comparison_table(run_dirs: list[Path]) -> str:
    """Markdown table: one row per run, test AUC (MSE for regression) per task, average, its share of the
    oracle's gain (synthetic data), the searched op histogram, parameters, wall time."""
    runs = [(Path(d), RunResult.read(d)) for d in run_dirs]
    tasks = [k for k, v in runs[0][1].test.items() if isinstance(v, dict)]  # per-task entries; the rest are averages
    header = ["run", "model"] + [f"{t} test {'auc' if 'auc' in runs[0][1].test[t] else 'mse'}" for t in tasks]
    header += ["avg auc", "share of oracle gain", "dense params", "blocks", "wall time (s)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for run_dir, result in runs:
        test = result.test
        scores = [f"{test[t].get('auc', test[t].get('mse')):.4f}" for t in tasks]
        dense = result.num_parameters["dense"]
        average, share = "-", "-"
        if "avg_auc" in test:
            average = f"{test['avg_auc']:.4f}"
            ratio = oracle_share(test["avg_auc"], oracle_test_auc(result.dataset))
            share = "-" if ratio is None else f"{ratio:.1%}"
        blocks = _operations_text(run_dir)
        lines.append("| " + " | ".join([run_dir.name, result.model] + scores
                                        + [average, share, f"{dense:,}", blocks, f"{result.wall_time_s:.0f}"]) + " |")
    return "\n".join(lines)


def _operations_text(run_dir: Path) -> str:
    """``mlp-256:9 skip:3``: the ops of a searched run's used blocks, ``-`` for other runs."""
    if not (run_dir / "architecture.json").is_file():
        return "-"
    histogram = Architecture.load(run_dir / "architecture.json").operation_histogram()
    return " ".join(f"{name}:{count}" for name, count in histogram.items())


@report_input_errors  # a missing or unfinished run, a metrics.json of another format: one line naming the file
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run_dirs", nargs="+", type=Path)
    print(comparison_table(parser.parse_args(argv).run_dirs))


if __name__ == "__main__":
    main()
