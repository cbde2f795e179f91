"""PD-DARTS (paper 001, Algorithm 1) over the DESAN supernet, under DistributedModelParallel.

``ArchitectureSearch`` runs warm-up 1 (supernet weights w only), warm-up 2 (w, alpha, beta on the
same batches: single-level optimization, eq. 6; or bi-level, ``nas/bilevel.py``), then progressive discretization: at the start of
each further epoch the most confident items are decided on rank 0 and broadcast, until the supernet
is a regular network. It writes ``architecture.json``, ``search_log.jsonl`` and a DCP checkpoint of
the discretized supernet (``supernet/``), from which fine-tuning inherits its weights.
"""

from __future__ import annotations

import itertools
import math
import time
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torchrec.distributed.model_parallel import DistributedModelParallel
from torchrec.optim.keyed import CombinedOptimizer, KeyedOptimizerWrapper

from modules.embeddings import build_embedding_bag_collection
from modules.multitask import MultiTaskModel, MultiTaskTrain
from nas.architecture import Architecture
from nas.bilevel import BiLevelPipeline, endless, hold_out_architecture_rows
from nas.discretization import KINDS, Decision, Kind, apply_decisions, is_discretized, next_decisions, undecided_count
from nas.search_config import NasConfig
from nas.search_log import append_record, describe, snapshot
from nas.supernet import DesanSupernet
from pipelines.checkpoint import save_checkpoint
from pipelines.evaluation import evaluate
from pipelines.sharding import adam, dense_parameters, shard_model
from pipelines.train_pipeline import build_train_pipeline
from pipelines.trainer import count_parameters, epoch_steps, prepare_run, task_scores_text, task_weight_list, train_epoch

DECISION_BUFFERS = ("block_decided", "block_choice", "feature_decided", "feature_kept", "connection_decided", "connection_kept")


class PausableOptimizer(KeyedOptimizerWrapper):
    """A keyed optimizer whose ``step`` does nothing while ``active`` is False (alpha/beta in warm-up 1)."""

    active: bool = True

    def step(self, closure=None) -> None:
        if self.active:
            super().step(closure)


class ArchitectureSearch:
    """Searches an architecture with PD-DARTS; ``setup`` then ``search``; the process group stays up for fine-tuning."""

    def __init__(self, config: NasConfig, run_dir: str | Path) -> None:
        self.config = config
        self.run_dir = Path(run_dir)

    def setup(self) -> None:
        config, trainer = self.config, self.config.trainer
        run = prepare_run(config.dataset.path, trainer, config.seed)
        self.ctx, self.schema, self.readers = run.ctx, run.schema, run.readers
        space = config.search_space
        supernet = DesanSupernet(space, self.schema.sparse_names, self.schema.dense_names, self.schema.task_names)
        sparse_arch = (
            build_embedding_bag_collection(self.schema, space.embedding_dim, torch.device("meta"), space.multi_hot_pooling)
            if self.schema.sparse else None  # an all-dense dataset (e.g. the MMoE synthetic study)
        )
        module = MultiTaskTrain(
            MultiTaskModel(sparse_arch, supernet, self.schema.sparse_names, space.embedding_dim),
            self.schema.tasks,
            task_weight_list(self.schema.tasks, trainer.task_weights),
        )
        self.num_parameters = count_parameters(module)
        # The supernet's graph changes step to step (sampled features, discretized blocks): no static DDP graph.
        self.model = shard_model(module, self.ctx, trainer.embedding_optimizer, trainer.embedding_lr, trainer.sharding_type,
                                 static_graph=False)
        self.supernet: DesanSupernet = self.model.module.model.dense_arch
        architecture_ids = {id(p) for p in self.supernet.architecture_parameters()}
        named = dense_parameters(self.model)
        weights = {n: p for n, p in named.items() if id(p) not in architecture_ids}
        architecture = {n: p for n, p in named.items() if id(p) in architecture_ids}
        self.architecture_optimizer = adam(architecture, config.search.arch_lr, config.search.arch_weight_decay, PausableOptimizer)
        weight_optimizers = [self.model.fused_optimizer, adam(weights, trainer.dense_lr, trainer.dense_weight_decay)]
        if config.search.optimization == "bi_level":
            self.readers["train"], architecture_reader = hold_out_architecture_rows(
                self.readers["train"], config.search.architecture_fraction, config.seed, config.search.architecture_batch_size)
            self.pipeline = BiLevelPipeline(self.model, CombinedOptimizer(weight_optimizers), self.architecture_optimizer,
                                            self.model.module.model, endless(architecture_reader), self.ctx.device)
        else:  # single-level (eq. 6): w, alpha and beta step on the same training batches
            optimizer = CombinedOptimizer(weight_optimizers + [self.architecture_optimizer])
            self.pipeline = build_train_pipeline(self.model, optimizer, self.ctx.device, sparse_arch is not None)
        self.log_path = self.run_dir / "search_log.jsonl"
        if self.ctx.is_main:
            self.log_path.unlink(missing_ok=True)

    def search(self) -> Architecture:
        """Run Algorithm 1 up to a regular network; write and return its architecture."""
        search = self.config.search
        started = time.perf_counter()
        self.records: list[dict] = []
        stages = ["warmup_weights"] * search.warmup_weights_epochs + ["warmup_joint"] * search.warmup_joint_epochs
        for epoch, stage in enumerate(stages):
            self._epoch(epoch, stage, [])
        epoch, kinds = len(stages), search.progressive_kinds
        # Progressive items are decided at the start of each epoch; with decisions_per_epoch > 0 the
        # search runs past `epochs` until they are all decided (or stops early once all items are).
        while (epoch < search.epochs and not is_discretized(self.supernet)) or undecided_count(self.supernet, kinds):
            remaining = undecided_count(self.supernet, kinds)
            count = search.decisions_per_epoch or math.ceil(remaining / max(1, search.epochs - epoch))
            self._epoch(epoch, "discretize" if kinds else "search", self._decide(count, kinds))
            epoch += 1
        self.supernet.auxiliary_skip, self.supernet.gumbel_temperature = 0.0, None
        if not is_discretized(self.supernet):  # items with `final` discretization: thresholded once, now
            self._final_record(epoch, self._decide(undecided_count(self.supernet), KINDS))
        self.search_seconds = time.perf_counter() - started
        architecture = Architecture.from_supernet(self.supernet, self.schema.fingerprint())
        if self.ctx.is_main:
            architecture.save(self.run_dir / "architecture.json")
        save_checkpoint(self.model, self.run_dir / "supernet", {"epochs": epoch}, self.model.fused_optimizer.state_dict())
        return architecture

    def _decide(self, count: int, kinds: Sequence[Kind]) -> list[dict]:
        """Decide the ``count`` most confident items of ``kinds`` on rank 0 and broadcast; returns them by name (rank 0)."""
        described: list[dict] = []
        if self.ctx.is_main:
            decisions: list[Decision] = next_decisions(self.supernet, count, kinds)
            added = apply_decisions(self.supernet, decisions)
            described = [describe(d, self.supernet) for d in decisions]
            described += [{**describe(d, self.supernet), "kind": f"{d.kind} (kept so the row is not empty)"} for d in added]
        if dist.is_initialized() and self.ctx.world_size > 1:
            for name in DECISION_BUFFERS:
                dist.broadcast(getattr(self.supernet, name), src=0)
        return described

    def _epoch(self, epoch: int, stage: str, decisions: list[dict]) -> None:
        trainer, search = self.config.trainer, self.config.search
        self.architecture_optimizer.active = stage != "warmup_weights"
        self.supernet.auxiliary_skip = search.auxiliary_skip_weight(epoch)
        self.supernet.gumbel_temperature = search.temperature(epoch)
        reader = self.readers["train"]
        steps = epoch_steps(reader, trainer.max_steps_per_epoch)
        self.model.train()
        record = {"epoch": epoch, "stage": stage, "decisions": decisions}
        record.update(train_epoch(self.pipeline, itertools.islice(reader.epoch(epoch), steps), steps,
                                  trainer.batch_size * self.ctx.world_size, self.ctx, f"search {epoch} {stage}", trainer.progress))
        self._log(record)
        if self.ctx.is_main:
            print(f"search epoch {epoch} [{stage}]: {len(decisions)} decisions, {record['undecided']} undecided, "
                  f"train_loss={record['train_loss']:.4f} {record['samples_per_s']:.0f} samples/s | "
                  f"valid {task_scores_text(record['valid'], self.schema.tasks)}", flush=True)

    def _final_record(self, epoch: int, decisions: list[dict]) -> None:
        """Log the once-for-all decisions after the last epoch, with the discretized supernet's validation metrics."""
        self._log({"epoch": epoch, "stage": "final", "decisions": decisions})
        if self.ctx.is_main:
            print(f"search end: {len(decisions)} items thresholded at once | valid "
                  f"{task_scores_text(self.records[-1]['valid'], self.schema.tasks)}", flush=True)

    def _log(self, record: dict) -> None:
        """Complete ``record`` with validation metrics and the alpha/beta snapshot, keep it and append it to the log."""
        trainer = self.config.trainer
        record["valid"] = evaluate(self.model, self.readers["valid"], self.schema.tasks, self.ctx, trainer.gauc, "valid", trainer.progress)
        record["undecided"] = undecided_count(self.supernet)
        record.update(snapshot(self.supernet))
        self.records.append(record)
        if self.ctx.is_main:
            append_record(self.log_path, record)


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
