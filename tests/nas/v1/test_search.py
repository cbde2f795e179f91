"""``method=v1`` end to end: the CLI's artefacts, the schedule in the search log, determinism, retraining."""

import json
import subprocess
import sys

import pytest

from torchrec_automtl.datasets.schema import Schema
from torchrec_automtl.nas.derived import load_architecture
from torchrec_automtl.nas.v1.architecture import V1Architecture
from tests.nas.test_search import REPO, TINY_V1, run_cli_twice


@pytest.mark.slow
def test_v1_search_cli_writes_a_complete_run_and_the_same_seed_gives_the_same_architecture(tiny_aliccp, tmp_path):
    first = run_cli_twice(tiny_aliccp, tmp_path, TINY_V1 + ["search.validate_epochs=true"])
    run = tmp_path / "a"
    architecture = load_architecture(run / "architecture.json")
    assert isinstance(architecture, V1Architecture) and architecture.method == "v1"
    assert architecture.schema_fingerprint == Schema.load(tiny_aliccp).fingerprint()
    assert architecture.interaction in {"skip", "inner-product", "cross-1"}
    assert all(len(chosen) == 2 for chosen in architecture.task_experts.values())  # top_experts=2 of 3

    log = [json.loads(line) for line in (run / "search_log.jsonl").read_text().splitlines()]
    assert [r["stage"] for r in log] == ["warmup_selection", "search", "search", "final"]
    assert all("avg_auc" in r["valid"] for r in log)  # every epoch scored (search.validate_epochs=true)
    # The JSD weight and the DARTS- skip decay linearly from 1 to 0 over the 3 epochs.
    assert [r["jsd_weight"] for r in log[:3]] == [1.0, 0.5, 0.0] and [r["auxiliary_skip"] for r in log[:3]] == [1.0, 0.5, 0.0]
    # beta is frozen in the warm-up (uniform selection), then moves; alpha moves from the first epoch.
    uniform = round(1 / 3, 5)
    assert {p for row in log[0]["expert_selection"].values() for p in row.values()} == {uniform}
    assert log[1]["expert_selection"] != log[0]["expert_selection"]
    assert set(log[0]["alpha_interaction"].values()) != {uniform}
    assert log[-1]["task_experts"] == architecture.task_experts

    metrics = json.loads((run / "metrics.json").read_text())
    finetune = json.loads((run / "finetune" / "metrics.json").read_text())
    assert metrics["search"]["finetune"] == "retrain" and finetune["epochs"][0]["trained"]  # retrained from fresh weights
    assert metrics["test"] == finetune["test"] and set(metrics["test"]) >= {"click", "conversion", "avg_auc"}
    # The retraining gates read only each task's selected experts.
    for task, weights in metrics["search"]["task_gate_weights"].items():
        chosen = {int(name.removeprefix("expert")) - 1 for name in architecture.task_experts[task]}
        assert [j for j, w in enumerate(weights) if w > 0] == sorted(chosen)
        assert sum(weights) == pytest.approx(1.0, abs=1e-5)
    for name in ("auc_curves.png", "gate_weights.png", "summary.md"):
        assert (run / name).is_file()
    summary = (run / "summary.md").read_text()
    assert f"Feature interaction: {architecture.interaction}" in summary
    for expert in architecture.experts:
        tasks = ", ".join(t for t in architecture.tasks if expert.name in architecture.task_experts[t]) or "(none: dropped)"
        assert f"| {expert.name} | {' -> '.join(expert.operations)} | {tasks} |" in summary
    assert "click" in first.stdout and "search end: interaction" in first.stdout


def test_v1_settings_are_checked_by_name(tiny_aliccp, tmp_path):
    command = [sys.executable, "nas/search.py", f"dataset.path={tiny_aliccp}", f"run_dir={tmp_path}", "method=v1",
               "search_space=small"]  # a DESAN preset under method=v1
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "search_space.beta_init" in result.stderr and "[method=v1" in result.stderr
