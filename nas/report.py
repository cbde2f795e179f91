"""Plots and the readable summary of a search run (PNG + Markdown)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from torchrec_automtl.nas.architecture import Architecture  # noqa: E402
from torchrec_automtl.nas.discretization import KINDS  # noqa: E402
from torchrec_automtl.nas.v1.architecture import V1Architecture  # noqa: E402


def _save(figure: plt.Figure, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp.png")
    figure.savefig(tmp, dpi=120, bbox_inches="tight")
    plt.close(figure)
    tmp.replace(path)


def plot_decision_timeline(records: Sequence[dict], path: Path) -> None:
    """Decisions per epoch, stacked by kind, with the number of undecided items on a second axis."""
    epochs = [r["epoch"] for r in records]
    figure, axis = plt.subplots(figsize=(8, 4))
    bottom = np.zeros(len(records))
    for kind in KINDS:
        counts = np.array([sum(d["kind"].startswith(kind) for d in r["decisions"]) for r in records], dtype=float)
        axis.bar(epochs, counts, bottom=bottom, label=f"{kind} decisions")
        bottom += counts
    axis.set_xlabel("search epoch")
    axis.set_ylabel("items decided at the epoch's start")
    undecided = axis.twinx()
    undecided.plot(epochs, [r["undecided"] for r in records], color="black", marker="o", label="undecided after")
    undecided.set_ylabel("undecided items")
    for r in records:
        if r["stage"] != "discretize":
            axis.axvspan(r["epoch"] - 0.5, r["epoch"] + 0.5, color="grey", alpha=0.15)
    axis.legend(loc="upper left")
    axis.set_title("PD-DARTS decision timeline (grey: warm-up)")
    _save(figure, path)


def plot_auc_curves(search_records: Sequence[dict], finetune_epochs: Sequence[dict], tasks: Sequence[str], path: Path) -> None:
    """Validation AUC (MSE for regression) per task over the scored search epochs, then the fine-tuning epochs."""
    figure, axis = plt.subplots(figsize=(8, 4))
    search_records = [r for r in search_records if "valid" in r]  # without search.validate_epochs: the end only
    history = search_records + list(finetune_epochs)
    x = np.arange(len(history))
    for task in tasks:
        metric = "auc" if "auc" in history[0]["valid"][task] else "mse"
        axis.plot(x, [h["valid"][task][metric] for h in history], marker="o", label=f"{task} valid {metric}")
    axis.axvline(len(search_records) - 0.5, color="black", linestyle="--", label="search | fine-tune")
    axis.set_xlabel("epoch (search, then fine-tune)")
    axis.legend()
    axis.set_title("Validation metrics")
    _save(figure, path)


def plot_gate_heatmap(weights: np.ndarray, tasks: Sequence[str], experts: Sequence[str], path: Path) -> None:
    """Heat map of each task's average gate weight per last-layer expert."""
    figure, axis = plt.subplots(figsize=(1.2 + 0.9 * len(experts), 0.8 + 0.6 * len(tasks)))
    image = axis.imshow(weights, cmap="viridis", vmin=0, vmax=max(float(weights.max()), 1e-6), aspect="auto")
    axis.set_xticks(range(len(experts)), experts, rotation=45, ha="right")
    axis.set_yticks(range(len(tasks)), tasks)
    for (t, e), value in np.ndenumerate(weights):
        axis.text(e, t, f"{value:.2f}", ha="center", va="center", color="white" if value < weights.max() / 2 else "black")
    figure.colorbar(image, ax=axis, label="mean gate weight (validation)")
    axis.set_title("Task gate weights of the derived model")
    _save(figure, path)


def _test_metric_lines(tasks: Sequence[str], test: dict) -> list[str]:
    lines = ["# AutoMTL search summary", "", "## Test metrics of the derived model", "",
             "| task | AUC | logloss | MSE |", "|---|---|---|---|"]
    for task in tasks:
        m = test[task]
        lines.append(f"| {task} | {m.get('auc', float('nan')):.4f} | {m.get('logloss', float('nan')):.4f} | {m.get('mse', float('nan')):.4f} |")
    return lines


def _gate_weight_lines(tasks: Sequence[str], experts: Sequence[str], gate_weights: np.ndarray) -> list[str]:
    lines = ["", "## Average task gate weight per expert (validation data)", "",
             "| task | " + " | ".join(experts) + " |", "|---|" + "---|" * len(experts)]
    for t, task in enumerate(tasks):
        lines.append(f"| {task} | " + " | ".join(f"{w:.3f}" for w in gate_weights[t]) + " |")
    return lines


def summary_markdown(architecture: Architecture, gate_weights: np.ndarray, used: Sequence[Sequence[int]], test: dict) -> str:
    """The run summary: test metrics, each used expert's ops and features, each gate's inputs and experts."""
    lines = _test_metric_lines(architecture.tasks, test)
    histogram = ", ".join(f"{name} x{count}" for name, count in architecture.operation_histogram().items())
    linear = architecture.linear_parts()
    lines += ["", f"Blocks of the used experts: {histogram}.",
              "Linear parts: " + ("; ".join(linear) if linear else "none (every layer and every task's path holds a nonlinear op)") + "."]
    lines += ["", "## Experts (used by the derived model)", "", "| expert | operations | features |", "|---|---|---|"]
    for layer, indices in enumerate(used):
        for j in indices:
            spec = architecture.layers[layer][j]
            features = ", ".join(spec.features) if layer == 0 else "(gated mixture of the layer below)"
            lines.append(f"| {spec.name} | {' -> '.join(spec.operations)} | {features} |")
    used_names = {architecture.layers[layer][j].name for layer, indices in enumerate(used) for j in indices}
    lines += ["", "## Gates", "", "| gate | experts | features |", "|---|---|---|"]
    for gate in architecture.gates:
        owner = gate.name.removesuffix(".gate")
        if gate.name.startswith("task.") or owner in used_names:
            lines.append(f"| {gate.name} | {', '.join(gate.experts)} | {', '.join(gate.features)} |")
    inputs = architecture.sparse_features + architecture.dense_features
    lines += ["", "## Features each task reads (through its gate, experts and their gates)", "",
              "| task | features | not read |", "|---|---|---|"]
    for task in architecture.tasks:
        read = architecture.features_feeding(task)
        lines.append(f"| {task} | {', '.join(f for f in inputs if f in read)} | {', '.join(f for f in inputs if f not in read)} |")
    lines += _gate_weight_lines(architecture.tasks, [e.name for e in architecture.layers[-1]], gate_weights)
    return "\n".join(lines) + "\n"


def v1_summary_markdown(architecture: V1Architecture, gate_weights: np.ndarray, test: dict) -> str:
    """The summary of a paper-000 run: test metrics, the interaction op, each expert's ops and tasks, gate weights."""
    lines = _test_metric_lines(architecture.tasks, test)
    histogram = ", ".join(f"{name} x{count}" for name, count in architecture.operation_histogram().items())
    lines += ["", f"Feature interaction: {architecture.interaction}. Blocks of the used experts: {histogram}.",
              "", "## Experts", "", "| expert | operations | selected by |", "|---|---|---|"]
    for expert in architecture.experts:
        tasks = [task for task in architecture.tasks if expert.name in architecture.task_experts[task]]
        lines.append(f"| {expert.name} | {' -> '.join(expert.operations)} | {', '.join(tasks) or '(none: dropped)'} |")
    lines += _gate_weight_lines(architecture.tasks, [e.name for e in architecture.experts], gate_weights)
    return "\n".join(lines) + "\n"
