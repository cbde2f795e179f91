"""The search end to end: CLI artefacts and determinism, planted structure, and 2 gloo ranks in step."""

import dataclasses
import functools
import json
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from hydra import compose, initialize_config_dir

from torchrec_automtl.datasets.parquet_reader import BatchReader, ParquetSplit
from torchrec_automtl.datasets.schema import Schema
from torchrec_automtl.datasets.synthetic import write_aliccp_like
from torchrec_automtl.nas import derived, search_and_finetune
from torchrec_automtl.nas.architecture import Architecture
from torchrec_automtl.nas.pd_darts import ArchitectureSearch
from torchrec_automtl.nas.search_and_finetune import run_search
from torchrec_automtl.nas.search_config import NasConfig, parse_nas_config
from torchrec_automtl.pipelines.predict import score_split
from torchrec_automtl.pipelines.process_group import destroy_distributed
from torchrec_automtl.pipelines.result import RunResult
from tests.distributed.spawn import run_on_ranks

REPO = Path(__file__).resolve().parents[2]
TINY_TRAINER = ["trainer.epochs=1", "trainer.batch_size=256", "trainer.eval_batch_size=1024", "trainer.max_steps_per_epoch=4",
                "trainer.progress=false"]
TINY = ["search_space=small", "search_space.num_experts=2", "search_space.operations=[skip,linear,mlp-16]",
        "search.epochs=4", "search.architecture_fraction=0.25"] + TINY_TRAINER
# alpha moves fast enough in TINY's 16 steps for op pruning to drop ops (weight below 0.9 / 3)
PRUNING = ["search.arch_lr=0.3", "search.operation_pruning=0.9"]
# paper 000's method (method=v1) at the same size
TINY_V1 = ["method=v1", "search_space=v1_small", "search_space.num_experts=3", "search_space.top_experts=2",
           "search_space.interaction_operations=[skip,inner-product,cross-1]", "search_space.expert_operations=[gating,mlp-16,skip]",
           "search.epochs=3", "search.architecture_fraction=0.25"] + TINY_TRAINER


def _config(overrides: list[str]) -> NasConfig:
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return parse_nas_config(compose(config_name="search", overrides=overrides))


def run_cli_twice(data: Path, tmp_path: Path, overrides: list[str]) -> subprocess.CompletedProcess:
    """Two CLI searches with the same seed into ``tmp_path/a`` and ``/b``; checks both succeeded with the
    same architecture.json and returns the first's process."""
    runs = []
    for name in ("a", "b"):
        command = [sys.executable, "nas/search.py", f"dataset.path={data}", f"run_dir={tmp_path / name}"] + overrides
        runs.append(subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600))
        assert runs[-1].returncode == 0, runs[-1].stderr[-3000:]
    assert (tmp_path / "a" / "architecture.json").read_text() == (tmp_path / "b" / "architecture.json").read_text()
    return runs[0]


def test_search_batch_size_sets_the_searchs_own_batch_and_fine_tuning_keeps_the_trainers(tmp_path):
    config = _config(["dataset.path=unused", "trainer.batch_size=256", "search.batch_size=64"])
    assert ArchitectureSearch(config, tmp_path).trainer.options.batch_size == 64
    assert search_and_finetune.finetune_config(config, tmp_path, False).trainer.batch_size == 256
    assert ArchitectureSearch(_config(["dataset.path=unused", "trainer.batch_size=256"]), tmp_path).trainer.options.batch_size == 256


@pytest.mark.slow
def test_search_cli_writes_a_complete_run_and_the_same_seed_gives_the_same_architecture(tiny_aliccp, tmp_path):
    first = run_cli_twice(tiny_aliccp, tmp_path, ["search.finetune=inherit"] + TINY)
    run = tmp_path / "a"
    architecture = Architecture.load(run / "architecture.json")
    assert architecture.schema_fingerprint == Schema.load(tiny_aliccp).fingerprint()

    log = [json.loads(line) for line in (run / "search_log.jsonl").read_text().splitlines()]
    # Blocks are decided progressively; features and connections are thresholded once, after the last epoch.
    assert [r["stage"] for r in log] == ["warmup_weights", "warmup_joint", "discretize", "discretize", "final"]
    assert log[-1]["undecided"] == 0 and all(r["decisions"] for r in log[2:])
    assert {d["kind"] for r in log[2:4] for d in r["decisions"]} == {"block"}
    assert {d["kind"].split()[0] for d in log[-1]["decisions"]} == {"feature", "connection"}
    assert {"alpha", "feature_beta", "connection_beta", "train_loss"} <= set(log[0])
    # Only the discretized supernet is scored (search.validate_epochs=false): the final record.
    assert ["valid" in r for r in log] == [False] * 4 + [True]
    # Warm-up 1 trains only w (alpha and beta stay at their initial values); warm-up 2 moves them.
    initial_keep = round(float(torch.sigmoid(torch.tensor(6.0))), 5)
    assert {p for row in log[0]["feature_beta"].values() for p in row.values()} == {initial_keep}
    assert log[1]["feature_beta"] != log[0]["feature_beta"] and log[1]["alpha"] != log[0]["alpha"]

    metrics = json.loads((run / "metrics.json").read_text())
    # The derived model, warm-started from the supernet, scores exactly what the discretized supernet scored.
    finetune = json.loads((run / "finetune" / "metrics.json").read_text())
    assert not finetune["epochs"][0]["trained"]
    # One format for search and training runs: the same keys; only the search fills its search part.
    assert set(metrics) == set(finetune) and finetune["search"] is None
    assert metrics["test"] == finetune["test"] and metrics["epochs"] == finetune["epochs"]
    assert finetune["epochs"][0]["valid"]["click"]["auc"] == pytest.approx(log[-1]["valid"]["click"]["auc"], abs=1e-9)
    assert metrics["search"]["valid"] == log[-1]["valid"] and metrics["search"]["finetune"] == "inherit"
    assert RunResult.read(run).search.supernet_parameters["dense"] > metrics["num_parameters"]["dense"]
    assert set(metrics["test"]) >= {"click", "conversion", "avg_auc"}
    for name in ("decisions.png", "auc_curves.png", "gate_weights.png"):
        assert (run / name).stat().st_size > 1000
    summary = (run / "summary.md").read_text()
    assert "layer1.expert" in summary and "task.click.gate" in summary
    assert (run / "finetune" / "checkpoint" / "meta.json").is_file()
    assert "click" in first.stdout and "test" in first.stdout


def _planted_search(rank: int, config: NasConfig, run_dir: str) -> dict:
    search = ArchitectureSearch(config, run_dir)
    try:
        search.setup()
        architecture = search.search()
        return {
            "keep": torch.sigmoid(search.supernet.feature_beta.detach()).numpy(),
            "consumers": search.supernet.consumer_names,
            "inputs": search.supernet.sparse_names + search.supernet.dense_names,
            "architecture": architecture.to_dict(),
        }
    finally:
        destroy_distributed()


@pytest.mark.slow
def test_search_ranks_planted_drivers_above_noise_and_keeps_them_for_their_task(tmp_path):
    """make search's schedule on its 300k planted rows (additive, interaction-only and nonlinear drivers).

    Feature selection is under test, not the op choice, so the blocks choose between the cheapest ops
    and two experts per layer (a fifth of the default space's time). Op pruning is off: with two ops,
    pruning one decides the block at the first pruning, before the progressive decisions would."""
    data = tmp_path / "planted"
    write_aliccp_like(data, rows=300_000, seed=0, progress=False)
    config = _config([f"dataset.path={data}", "search_space=small", "search_space.operations=[skip,mlp-16]",
                      "search_space.num_experts=2", "search=fast", "search.operation_pruning=0",
                      "trainer=fast", "trainer.progress=false"])
    (tmp_path / "run").mkdir()
    result = run_on_ranks(_planted_search, 1, tmp_path / "out", config, str(tmp_path / "run"))[0]
    planted = Schema.load(data).metadata["planted"]
    # Mean keep probability of each input over every consumer (layer-1 experts and gates).
    keep = {name: float(result["keep"][:, j].mean()) for j, name in enumerate(result["inputs"])}
    noise = [keep[f] for f in planted["noise"]["sparse"] + planted["noise"]["dense"]]
    drivers = {task: planted[task]["sparse"] + planted[task]["dense"] for task in ("click", "conversion")}
    # Every click driver ranks above every noise field; the rare task's drivers (about 1.5% positives)
    # are a weaker signal: on average they rank above the median noise field.
    assert min(keep[f] for f in drivers["click"]) > max(noise), (keep, planted["noise"])
    assert statistics.mean(keep[f] for f in drivers["conversion"]) > statistics.median(noise), (keep, planted["noise"])
    # The feature test (on by default) keeps every click driver and drops at least as much noise as
    # drivers (a rare-task driver it drops is one whose shuffling did not raise the supernet's
    # validation loss). Every driver it keeps reaches its task in the derived network.
    final = [json.loads(line) for line in (tmp_path / "run" / "search_log.jsonl").read_text().splitlines()][-1]
    dropped = set(final["feature_test"]["dropped"])
    all_drivers = set(drivers["click"]) | set(drivers["conversion"])
    assert not dropped & set(drivers["click"]), final["feature_test"]
    assert len(dropped & set(planted["noise"]["sparse"] + planted["noise"]["dense"])) >= len(dropped & all_drivers), final["feature_test"]
    architecture = Architecture.from_dict(result["architecture"])
    for task, fields in drivers.items():
        assert set(fields) - dropped <= architecture.features_feeding(task), task


def _searched_valid(rank: int, config: NasConfig, run_dir: str) -> dict:
    return run_search(config, run_dir).result.search.valid


@pytest.mark.slow
def test_a_search_that_decides_every_item_on_the_way_still_scores_its_end(tiny_aliccp, tmp_path):
    config = _config([f"dataset.path={tiny_aliccp}", "search.selection_discretization=progressive"] + TINY)
    valid = run_on_ranks(_searched_valid, 1, tmp_path / "out", config, str(tmp_path / "run"))[0]
    log = [json.loads(line) for line in (tmp_path / "run" / "search_log.jsonl").read_text().splitlines()]
    assert log[-1]["stage"] == "final" and log[-1]["decisions"] == [] and log[-2]["undecided"] == 0
    assert ["valid" in r for r in log] == [False] * (len(log) - 1) + [True]  # only the discretized supernet is scored
    assert valid == log[-1]["valid"]


@pytest.mark.slow
@pytest.mark.parametrize("cap, rows_read", [(0, "all"), (100, 128)], ids=["every-row", "capped"])
def test_the_feature_test_drops_the_features_that_fail_it_from_every_consumer(tiny_aliccp, tmp_path, cap, rows_read):
    threshold = 0.5
    config = _config([f"dataset.path={tiny_aliccp}", "search.feature_test=true", f"search.feature_test_z={threshold}",
                      f"search.feature_test_rows={cap}"] + TINY + ["trainer.eval_batch_size=64"])
    run_on_ranks(_searched_valid, 1, tmp_path / "out", config, str(tmp_path / "run"))
    final = [json.loads(line) for line in (tmp_path / "run" / "search_log.jsonl").read_text().splitlines()][-1]
    test = final["feature_test"]
    valid_rows = ParquetSplit.open(tiny_aliccp, "valid", Schema.load(tiny_aliccp)).num_rows
    assert test["rows"] == (valid_rows if rows_read == "all" else rows_read)  # a cap of 100 reads two batches of 64
    failed = sorted(name for name, z in test["z"].items() if z <= threshold)
    assert sorted(test["dropped"]) == failed and 0 < len(failed) < len(test["z"])  # on this fixture some features pass, some fail
    architecture = json.loads((tmp_path / "run" / "architecture.json").read_text())
    read = {f for consumer in architecture["layers"][0] + architecture["gates"] for f in consumer.get("features", [])}
    rescued = {d["item"].split(" <- ")[1] for d in test["kept_so_no_consumer_is_empty"]}
    assert read & set(failed) <= rescued and read <= set(test["z"])  # only the keep-one rule may bring a dropped feature back


@pytest.mark.slow
def test_without_feature_selection_the_feature_test_is_skipped_and_every_feature_stays(tiny_aliccp, tmp_path):
    config = _config([f"dataset.path={tiny_aliccp}", "search.feature_test=true", "search.feature_test_z=100",
                      "search_space.feature_selection=false"] + TINY)
    run_on_ranks(_searched_valid, 1, tmp_path / "out", config, str(tmp_path / "run"))
    final = [json.loads(line) for line in (tmp_path / "run" / "search_log.jsonl").read_text().splitlines()][-1]
    assert "feature_test" not in final
    architecture = json.loads((tmp_path / "run" / "architecture.json").read_text())
    inputs = architecture["sparse_features"] + architecture["dense_features"]
    assert all(consumer["features"] == inputs for consumer in architecture["layers"][0] + architecture["gates"] if "features" in consumer)


def _refuse_to_read(cls, path):
    raise AssertionError(f"fine-tuning read {path}: the architecture should reach it in memory")


def _search_on_rank(rank: int, config: NasConfig, run_dir: str) -> dict:
    derived.load_architecture = functools.partial(_refuse_to_read, None)  # this spawned rank only
    run = run_search(config, run_dir)
    dense = {k: v.detach().clone() for k, v in run.model.module.model.dense_arch.state_dict().items()}
    return {"architecture": run.architecture.to_dict(), "dense": dense, "test": run.result.test}


@pytest.mark.slow
@pytest.mark.distributed
@pytest.mark.parametrize("tiny", [TINY, TINY + ["search.relaxation=sampled"], TINY + PRUNING, TINY + ["search.feature_test=true", "search.feature_test_z=1.5"], TINY_V1],
                         ids=["desan", "desan-sampled", "desan-pruned", "desan-feature-test", "v1"])
def test_two_rank_search_takes_identical_decisions_and_fine_tunes_identical_weights(tiny_aliccp, tmp_path, tiny):
    config = _config([f"dataset.path={tiny_aliccp}", "trainer.sharding_type=table_wise"] + tiny)
    first, second = run_on_ranks(_search_on_rank, 2, tmp_path / "out", config, str(tmp_path / "run"))
    if tiny[-len(PRUNING):] == PRUNING:  # ops were pruned (on rank 0, then broadcast), and the ranks stayed identical
        log = [json.loads(line) for line in (tmp_path / "run" / "search_log.jsonl").read_text().splitlines()]
        assert sum(record.get("pruned_operations", 0) for record in log) > 0
    if "search.feature_test=true" in tiny:  # the test's sums were reduced over the ranks: both dropped the same features
        log = [json.loads(line) for line in (tmp_path / "run" / "search_log.jsonl").read_text().splitlines()]
        assert log[-1]["feature_test"]["dropped"]
    assert first["architecture"] == second["architecture"]
    assert first["dense"].keys() == second["dense"].keys()
    for name, value in first["dense"].items():
        torch.testing.assert_close(value, second["dense"][name], rtol=0, atol=0)
    assert first["test"] == second["test"]
    assert json.loads((tmp_path / "run" / "architecture.json").read_text()) == first["architecture"]


def _dense_regression_search(rank: int, config: NasConfig, run_dir: str) -> dict:
    run = run_search(config, run_dir)
    score_split(run_dir, Path(run_dir) / "test_scores.parquet", progress=False)  # the run's checkpoint, scored apart
    return {"test": run.result.test, "architecture": run.architecture.to_dict()}


@pytest.mark.slow
def test_search_on_an_all_dense_regression_dataset(tmp_path):
    """The MMoE synthetic study's data: dense inputs only, two regression tasks (MSE loss, metric and monitor)."""
    from torchrec_automtl.datasets.mmoe_synthetic import MMoEGenerator
    from torchrec_automtl.datasets.synthetic import write_synthetic

    data = tmp_path / "mmoe"
    write_synthetic(MMoEGenerator(0.5, seed=0), data, rows=3000, progress=False)
    config = _config([f"dataset.path={data}"] + TINY)
    result = run_on_ranks(_dense_regression_search, 1, tmp_path / "out", config, str(tmp_path / "run"))[0]
    assert set(result["test"]) >= {"y1", "y2", "avg_mse"}
    # The reported test MSE is the fine-tuned model's: its scores, written apart, give the same MSE per task.
    scores = pq.read_table(tmp_path / "run" / "test_scores.parquet").sort_by("row")
    schema = Schema.load(data)
    labels = np.concatenate([b.labels[b.mask].numpy() for b in BatchReader(ParquetSplit.open(data, "test", schema), 500).epoch()])
    assert scores.num_rows == len(labels) == 300
    for t, task in enumerate(("y1", "y2")):
        mse = float(np.mean((scores[f"{task}_score"].to_numpy().astype(np.float64) - labels[:, t]) ** 2))
        assert mse == pytest.approx(result["test"][task]["mse"], rel=1e-5)
    architecture = result["architecture"]
    assert architecture["sparse_features"] == [] and architecture["dense_features"] == schema.dense_names
    assert architecture["task_types"] == ["regression", "regression"]
    assert {f for layer in architecture["layers"] for e in layer for f in e["features"]} <= set(schema.dense_names)


def _search_with_harmful_fine_tuning(rank: int, config: NasConfig, run_dir: str) -> dict:
    """A search whose fine-tuning (only) takes huge steps that wreck the inherited model."""
    choose = search_and_finetune.finetune_config

    def harmful(*args, **kwargs):
        train = choose(*args, **kwargs)
        return dataclasses.replace(train, trainer=dataclasses.replace(train.trainer, dense_lr=100.0, embedding_lr=100.0))

    search_and_finetune.finetune_config = harmful  # this spawned rank only
    return _search_on_rank(rank, config, run_dir)


@pytest.mark.slow
def test_inherited_fine_tuning_falls_back_to_the_inherited_weights_when_training_makes_them_worse(tiny_aliccp, tmp_path):
    overrides = [o for o in TINY if not o.startswith("trainer.epochs=")] + ["trainer.epochs=2"]
    config = _config([f"dataset.path={tiny_aliccp}", "search.finetune=inherit"] + overrides)
    run_on_ranks(_search_with_harmful_fine_tuning, 1, tmp_path / "out", config, str(tmp_path / "run"))
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    searched = json.loads((tmp_path / "run" / "search_log.jsonl").read_text().splitlines()[-1])["valid"]
    start, *trained = metrics["epochs"]
    assert not start["trained"] and len(trained) == 2 and all(e["trained"] for e in trained)
    assert start["valid"]["avg_auc"] > 0.52  # the inherited model has learned something (0.561 here)
    assert all(not e["valid"]["avg_auc"] >= start["valid"]["avg_auc"] for e in trained)  # worse (or NaN) after training
    # The inherited weights (epoch 0, the discretized supernet's score) are what the run keeps and tests.
    assert metrics["best_epoch"] == 0 and metrics["valid"] == start["valid"]
    assert metrics["valid"]["avg_auc"] == pytest.approx(searched["avg_auc"], abs=1e-9)
