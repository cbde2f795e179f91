"""PD-DARTS (paper 001, Algorithm 1) over the DESAN supernet, under DistributedModelParallel.

``ArchitectureSearch`` runs warm-up 1 (supernet weights w only), warm-up 2 (w, alpha, beta on the
same batches: single-level optimization, eq. 6; or bi-level, ``nas/bilevel.py``), then progressive discretization: at the start of
each further epoch the most confident items are decided on rank 0 and broadcast, until the supernet
is a regular network. It writes ``architecture.json``, ``search_log.jsonl`` and a DCP checkpoint of
the discretized supernet (``supernet/``), from which fine-tuning inherits its weights.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torchrec.distributed.model_parallel import DistributedModelParallel
from torchrec.optim.keyed import CombinedOptimizer

from torchrec_automtl.datasets.schema import Schema
from torchrec_automtl.nas.architecture import Architecture
from torchrec_automtl.nas.discretization import (KINDS, Decision, Kind, apply_decisions, drop_features, is_discretized,
                                                 next_decisions, prune_operations, undecided_count)
from torchrec_automtl.nas.feature_test import validation_z_scores
from torchrec_automtl.nas.search_config import NasConfig
from torchrec_automtl.nas.search_log import describe, snapshot
from torchrec_automtl.nas.supernet import DesanSupernet
from torchrec_automtl.nas.supernet_search import PausableOptimizer, SupernetSearch
from torchrec_automtl.pipelines.optimizers import adam
from torchrec_automtl.pipelines.sharding import dense_parameters
from torchrec_automtl.pipelines.train_pipeline import build_train_pipeline
from torchrec_automtl.pipelines.trainer import Trainer, task_scores_text

DECISION_BUFFERS = ("block_decided", "block_choice", "feature_decided", "feature_kept", "connection_decided", "connection_kept",
                    "operation_pruned")


class ArchitectureSearch(SupernetSearch):
    """Searches an architecture with PD-DARTS: the ``Trainer`` over the supernet plus these hooks
    (architecture optimizer, held-out architecture batches, stages, decisions, the search log).

    ``setup`` then ``search``; the process group stays up for fine-tuning.
    """

    config: NasConfig

    def __init__(self, config: NasConfig, run_dir: str | Path) -> None:
        batch_size = config.search.batch_size
        options = dataclasses.replace(config.trainer, batch_size=batch_size) if batch_size else None
        super().__init__(config, run_dir, options)  # fine-tuning keeps config.trainer

    def build_supernet(self, schema: Schema) -> DesanSupernet:
        return DesanSupernet(self.config.search_space, schema.sparse_names, schema.dense_names, schema.task_names)

    # --- TrainerHooks ---------------------------------------------------------------------------

    def configure(self, trainer: Trainer) -> None:
        """The architecture optimizer, and the pipeline of the chosen optimization (eq. 6 or bi-level)."""
        search = self.config.search
        self.supernet: DesanSupernet = trainer.model.module.model.dense_arch
        apart = self.trained_apart(trainer.model)
        architecture = {n: p for n, p in dense_parameters(trainer.model).items() if id(p) in apart}
        self.architecture_optimizer = adam(architecture, search.arch_lr, search.arch_weight_decay, PausableOptimizer)
        trainer.state_optimizers.append(self.architecture_optimizer)
        if search.optimization == "bi_level":
            trainer.pipeline = self.bilevel_pipeline(trainer, trainer.optimizer, self.architecture_optimizer)
        else:  # single-level (eq. 6): w, alpha and beta step on the same training batches
            trainer.optimizer = CombinedOptimizer([trainer.optimizer, self.architecture_optimizer])
            trainer.pipeline = build_train_pipeline(trainer.model, trainer.optimizer, trainer.ctx.device, bool(trainer.schema.sparse))
        self.stages = ["warmup_weights"] * search.warmup_weights_epochs + ["warmup_joint"] * search.warmup_joint_epochs
        # Every discretization epoch decides at least one item: this bounds the loop (counted on the
        # fresh supernet, so a resumed search has the same bound); `finished` ends it.
        self.epoch_limit = max(search.epochs, len(self.stages)) + undecided_count(self.supernet) + 1
        self.start_log(trainer)

    def start_epoch(self, trainer: Trainer, epoch: int) -> dict:
        """Set the epoch's stage; in the discretization epochs decide the next items first."""
        search = self.config.search
        kinds = search.progressive_kinds
        if epoch < len(self.stages):
            stage, decisions = self.stages[epoch], []
        else:
            remaining = undecided_count(self.supernet, kinds)
            count = search.decisions_per_epoch or math.ceil(remaining / max(1, search.epochs - epoch))
            stage, decisions = "discretize" if kinds else "search", self._decide(count, kinds)
        self._configure_epoch(epoch, stage)
        record = {"stage": stage, "decisions": decisions}
        if search.prunes_operations and epoch > search.warmup_weights_epochs:  # alpha has had steps
            record["pruned_operations"] = self._prune(search.operation_pruning)
        return record

    def restart_epoch(self, trainer: Trainer, epoch: int, record: dict) -> None:
        """Continue an epoch a resumed search had begun: its decisions are already in the supernet's buffers."""
        self._configure_epoch(epoch, record["stage"])

    def _configure_epoch(self, epoch: int, stage: str) -> None:
        search = self.config.search
        self.architecture_optimizer.active = stage != "warmup_weights"
        self.supernet.auxiliary_skip = search.auxiliary_skip_weight(epoch)
        self.supernet.gumbel_temperature = search.temperature(epoch)
        self.supernet.sample_paths = search.relaxation == "sampled"

    def end_epoch(self, trainer: Trainer, record: dict) -> None:
        """Add the decision state and the alpha/beta snapshot to the record; append it to the search log."""
        record["undecided"] = undecided_count(self.supernet)
        record.update(snapshot(self.supernet))
        self.log_record(trainer, record)
        if trainer.ctx.is_main:
            print(f"  [{record['stage']}] {len(record['decisions'])} decisions, {record['undecided']} undecided", flush=True)

    def finished(self, trainer: Trainer, epoch: int) -> bool:
        """Algorithm 1 ends after ``search.epochs`` with a regular network; with ``decisions_per_epoch`` > 0
        it runs on until every progressive item is decided (or stops early once all items are)."""
        search = self.config.search
        following = epoch + 1
        if following < len(self.stages):
            return False
        return not ((following < search.epochs and not is_discretized(self.supernet))
                    or undecided_count(self.supernet, search.progressive_kinds))

    # --- the search -----------------------------------------------------------------------------

    def search(self) -> Architecture:
        """Run Algorithm 1 up to a regular network; write and return its architecture."""
        trainer = self.trainer
        trainer.fit(epochs=self.epoch_limit)
        epoch = self.records[-1]["epoch"] + 1
        self.supernet.auxiliary_skip, self.supernet.gumbel_temperature, self.supernet.sample_paths = 0.0, None, False
        # Items with `final` discretization are thresholded once, now.
        decisions = self._decide(undecided_count(self.supernet), KINDS) if not is_discretized(self.supernet) else None
        # w/o FS (feature_selection=false) keeps every feature: no test either
        tests_features = self.config.search.feature_test and self.config.search_space.feature_selection
        feature_test = self._test_features(epoch) if tests_features else None
        if decisions is not None or feature_test is not None or "valid" not in self.records[-1]:
            self._final_record(epoch, decisions or [], feature_test)
        self.search_seconds = time.perf_counter() - trainer.started  # a resumed search counts its earlier epochs too
        architecture = Architecture.from_supernet(self.supernet, trainer.schema)
        if trainer.ctx.is_main:
            architecture.save(self.run_dir / "architecture.json")
        self.save_supernet(epoch)
        return architecture

    def _decide(self, count: int, kinds: Sequence[Kind]) -> list[dict]:
        """Decide the ``count`` most confident items of ``kinds`` on rank 0 and broadcast; returns them by name (rank 0)."""
        described: list[dict] = []
        if self.trainer.ctx.is_main:
            decisions: list[Decision] = next_decisions(self.supernet, count, kinds)
            added = apply_decisions(self.supernet, decisions)
            described = [describe(d, self.supernet) for d in decisions]
            described += [{**describe(d, self.supernet), "kind": f"{d.kind} (kept so the row is not empty)"} for d in added]
        self._broadcast_decisions()
        return described

    def _prune(self, share: float) -> int:
        """Prune weak ops of the undecided blocks on rank 0 and broadcast; returns how many (rank 0)."""
        pruned = prune_operations(self.supernet, share) if self.trainer.ctx.is_main else 0
        self._broadcast_decisions()
        return pruned

    def _test_features(self, epoch: int) -> dict:
        """``search.feature_test``: the permutation test (``nas/feature_test.py``) of every feature the
        discretized supernet still reads, on the validation split; the features that fail are dropped everywhere."""
        trainer, supernet, search = self.trainer, self.supernet, self.config.search
        threshold = search.feature_test_z
        features = supernet.feature_kept.any(dim=0).nonzero().flatten().tolist()
        started = time.perf_counter()
        scores = validation_z_scores(trainer, supernet, features, self.config.seed, epoch, search.feature_test_permutations,
                                     search.feature_test_rows)
        failed = [feature for feature, score in zip(features, scores.z.tolist()) if score <= threshold]
        added = drop_features(supernet, failed) if trainer.ctx.is_main else []
        self._broadcast_decisions()
        names = supernet.sparse_names + supernet.dense_names
        if trainer.ctx.is_main:
            print(f"feature test: {len(failed)} of {len(features)} features dropped (shuffling them raised no task's "
                  f"validation loss by more than {threshold} standard errors): {', '.join(names[f] for f in failed) or 'none'}"
                  f" ({time.perf_counter() - started:.1f} s)", flush=True)
        return {"threshold": threshold, "rows": scores.rows,
                "z": {names[f]: round(float(z), 3) for f, z in zip(features, scores.z.tolist())},
                "dropped": [names[f] for f in failed],
                "kept_so_no_consumer_is_empty": [describe(d, supernet) for d in added],
                "seconds": round(time.perf_counter() - started, 2)}

    def _broadcast_decisions(self) -> None:
        if dist.is_initialized() and self.trainer.ctx.world_size > 1:
            for name in DECISION_BUFFERS:
                dist.broadcast(getattr(self.supernet, name), src=0)

    def _final_record(self, epoch: int, decisions: list[dict], feature_test: dict | None = None) -> None:
        """Log the once-for-all decisions after the last epoch (and the feature test's result), with the
        discretized supernet's validation metrics."""
        trainer = self.trainer
        record = {"epoch": epoch, "stage": "final", "decisions": decisions,
                  **({"feature_test": feature_test} if feature_test is not None else {}), "valid": trainer.evaluate("valid")}
        self.end_epoch(trainer, record)
        if trainer.ctx.is_main:
            print(f"search end: {len(decisions)} items thresholded at once | valid "
                  f"{task_scores_text(record['valid'], trainer.tasks)}", flush=True)


def warm_start(supernet_checkpoint: Path, derived_state: dict[str, torch.Tensor]) -> Callable[[DistributedModelParallel], None]:
    """An ``initialize`` hook for the fine-tuning Trainer: the derived dense weights, and the embedding
    tables with their fused optimizer state from the discretized supernet's checkpoint (DCP reshards
    them to the new model's plan). Carrying the optimizer state matters: a fresh row-wise Adagrad takes
    full-size first steps that undo much of what the tables learned. The dense Adam state starts fresh.
    """

    def initialize(model: DistributedModelParallel) -> None:
        model.module.model.dense_arch.load_state_dict(derived_state)
        tables = {k: v for k, v in model.state_dict().items() if ".sparse_arch." in f".{k}"}
        dcp.load(tables, checkpoint_id=str(supernet_checkpoint))
        model.load_state_dict(tables, strict=False)
        # Only after the tables: loading table weights resets the fused optimizer's state.
        optimizer = {"optimizer": model.fused_optimizer.state_dict()}
        dcp.load(optimizer, checkpoint_id=str(supernet_checkpoint))
        model.fused_optimizer.load_state_dict(optimizer["optimizer"])

    return initialize
