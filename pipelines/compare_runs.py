"""Side-by-side test metrics of finished runs: ``python -m pipelines.compare_runs RUN_DIR [RUN_DIR ...]``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def load_metrics(run_dir: Path) -> dict:
    path = Path(run_dir) / "metrics.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: is {run_dir} a finished run?")
    metrics = json.loads(path.read_text())
    if not metrics.get("test"):
        raise ValueError(f"{path} has no test metrics: the run did not finish")
    return metrics


def comparison_table(run_dirs: list[Path]) -> str:
    """Markdown table: one row per run, test AUC (MSE for regression) per task, average, parameters, wall time."""
    runs = [(Path(d), load_metrics(d)) for d in run_dirs]
    tasks = [k for k, v in runs[0][1]["test"].items() if isinstance(v, dict)]
    header = ["run", "model"] + [f"{t} test {'auc' if 'auc' in runs[0][1]['test'][t] else 'mse'}" for t in tasks]
    header += ["avg auc", "dense params", "wall time (s)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for run_dir, metrics in runs:
        test = metrics["test"]
        scores = [f"{test[t].get('auc', test[t].get('mse')):.4f}" for t in tasks]
        parameters = metrics["num_parameters"]
        dense = parameters.get("derived", parameters)["dense"]
        average = f"{test['avg_auc']:.4f}" if "avg_auc" in test else "-"
        lines.append("| " + " | ".join([run_dir.name, metrics["model"]] + scores + [average, f"{dense:,}", f"{metrics['wall_time_s']:.0f}"]) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run_dirs", nargs="+", type=Path)
    args = parser.parse_args(argv)
    try:
        print(comparison_table(args.run_dirs))
    except (FileNotFoundError, ValueError) as error:
        parser.exit(2, f"error: {error}\n")


if __name__ == "__main__":
    main()
