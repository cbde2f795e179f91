"""Human-readable names for supernet items, snapshots of alpha/beta, and the JSON-lines search log."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from torchrec_automtl.common.atomic_files import atomic_write_text
from torchrec_automtl.nas.discretization import Decision
from torchrec_automtl.nas.search_space import expert_name
from torchrec_automtl.nas.supernet import DesanSupernet


def lower_expert_name(supernet: DesanSupernet, gate_row: int, expert: int) -> str:
    """Name of lower-layer expert ``expert`` as seen by gate row ``gate_row``."""
    n, layers = supernet.config.num_experts, supernet.config.num_layers
    lower_layer = gate_row // n if gate_row < n * (layers - 1) else layers - 1
    return expert_name(lower_layer, expert)


def describe(decision: Decision, supernet: DesanSupernet) -> dict:
    """A decision as names: ``{"item": "layer1.expert2.block3", "choice": "mlp-64", "confidence": ...}``."""
    inputs = supernet.sparse_names + supernet.dense_names
    if decision.kind == "block":
        layer, expert, block = decision.index
        item, choice = f"{expert_name(layer, expert)}.block{block + 1}", supernet.config.candidate_operations[decision.value]
    elif decision.kind == "feature":
        consumer, feature = decision.index
        item, choice = f"{supernet.consumer_names[consumer]} <- {inputs[feature]}", "keep" if decision.value else "drop"
    else:
        gate, expert = decision.index
        item, choice = f"{supernet.gate_names[gate]} <- {lower_expert_name(supernet, gate, expert)}", "keep" if decision.value else "drop"
    return {"kind": decision.kind, "item": item, "choice": choice, "confidence": round(decision.confidence, 6)}


def snapshot(supernet: DesanSupernet) -> dict:
    """alpha as softmax weights per block and beta as keep probabilities, keyed by names."""
    with torch.no_grad():
        operations = supernet.config.candidate_operations
        weights = supernet.block_weights().tolist()
        inputs = supernet.sparse_names + supernet.dense_names
        features = torch.sigmoid(supernet.feature_beta).tolist()
        connections = torch.sigmoid(supernet.connection_beta).tolist()
    return {
        "alpha": {
            f"{expert_name(layer, j)}.block{k + 1}": dict(zip(operations, (round(w, 5) for w in block), strict=True))
            for layer, experts in enumerate(weights) for j, blocks in enumerate(experts) for k, block in enumerate(blocks)
        },
        "feature_beta": {
            name: dict(zip(inputs, (round(p, 5) for p in row), strict=True))
            for name, row in zip(supernet.consumer_names, features, strict=True)
        },
        "connection_beta": {
            name: {lower_expert_name(supernet, g, i): round(p, 5) for i, p in enumerate(row)}
            for g, (name, row) in enumerate(zip(supernet.gate_names, connections, strict=True))
        },
    }


def rewrite_log(path: Path, records: list[dict]) -> None:
    """Replace the log with ``records`` (a resumed search drops what was logged after its saved state)."""
    atomic_write_text(path, "".join(json.dumps(record) + "\n" for record in records))


def append_record(path: Path, record: dict) -> None:
    """Append one JSON line (the log grows epoch by epoch; a crash loses at most the current line)."""
    with open(path, "a") as handle:
        handle.write(json.dumps(record) + "\n")

