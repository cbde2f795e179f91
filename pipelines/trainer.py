"""The training recipe: setup -> fit (early stopping on validation) -> test of the best checkpoint -> close."""

from __future__ import annotations

import dataclasses
import itertools
import time
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch
import torch.distributed as dist
from omegaconf import OmegaConf
from torch import nn
from torchrec.distributed.model_parallel import DistributedModelParallel
from torchrec.distributed.train_pipeline import TrainPipelineSparseDist
from torchrec.optim.keyed import CombinedOptimizer, KeyedOptimizer
from tqdm import tqdm

from torchrec_automtl.common.atomic_files import atomic_write_text
from torchrec_automtl.datasets.batch import Batch
from torchrec_automtl.datasets.parquet_reader import BatchReader, ParquetSplit
from torchrec_automtl.datasets.schema import Schema, TaskSpec
from torchrec_automtl.modules.multitask import MultiTaskTrain, build_multitask_model
from torchrec_automtl.pipelines.checkpoint import load_checkpoint, save_checkpoint
from torchrec_automtl.pipelines.config import ConfigError, TrainConfig, TrainerConfig
from torchrec_automtl.pipelines.early_stopping import EarlyStopping, monitored_value, resolve_monitor
from torchrec_automtl.pipelines.evaluation import evaluate
from torchrec_automtl.pipelines.optimizers import LearningRateSchedule, dense_optimizer
from torchrec_automtl.pipelines.precise_batchnorm import recompute_batchnorm_statistics
from torchrec_automtl.pipelines.process_group import DistributedContext, destroy_distributed, init_distributed
from torchrec_automtl.pipelines.result import RESULT_FILE, RunResult
from torchrec_automtl.pipelines.sharding import average_batchnorm_statistics, dense_parameters, shard_model
from torchrec_automtl.pipelines.train_pipeline import StepPipeline, build_train_pipeline
from torchrec_automtl.pipelines.training_state import (
    STATE_DIR, discard_training_state, find_training_state, load_training_state, read_state_meta, save_training_state,
)

RESULT_FILES = (RESULT_FILE, "checkpoint")


def write_resolved_config(run_dir: Path, config: object) -> None:
    """``run_dir/config.yaml``: the typed config of a run (a dataclass), as YAML."""
    atomic_write_text(run_dir / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(asdict(config))))


def check_run_dir(run_dir: Path, overwrite: bool) -> None:
    """Refuse a run dir that already holds results, unless ``overwrite``."""
    existing = [name for name in RESULT_FILES if (run_dir / name).exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{run_dir} already holds results {existing}; choose another run_dir=... or pass overwrite=true")


def task_weight_list(tasks: Sequence[TaskSpec], weights: dict[str, float] | None) -> list[float]:
    """Per-task loss weights in schema order (1.0 where not given); unknown task names are an error."""
    weights = weights or {}
    unknown = sorted(set(weights) - {t.name for t in tasks})
    if unknown:
        raise ConfigError(f"trainer.task_weights names unknown task(s) {unknown}; tasks are {[t.name for t in tasks]}")
    return [float(weights.get(t.name, 1.0)) for t in tasks]


def open_readers(dataset_path: str, schema: Schema, trainer: TrainerConfig, ctx: DistributedContext, seed: int) -> dict[str, BatchReader]:
    """Train (shuffled, drop_last) and valid/test (every row once) readers for this rank."""
    return {
        "train": BatchReader(ParquetSplit.open(dataset_path, "train", schema), trainer.batch_size, ctx.rank, ctx.world_size,
                             training=True, shuffle_buffer=trainer.shuffle_buffer, seed=seed),
        "valid": BatchReader(ParquetSplit.open(dataset_path, "valid", schema), trainer.eval_batch_size, ctx.rank, ctx.world_size),
        "test": BatchReader(ParquetSplit.open(dataset_path, "test", schema), trainer.eval_batch_size, ctx.rank, ctx.world_size),
    }


def epoch_steps(reader: BatchReader, max_steps: int) -> int:
    """Training steps per epoch: the whole split, or ``max_steps`` (trainer.max_steps_per_epoch) when smaller."""
    return min(len(reader), max_steps or len(reader))


def task_scores_text(metrics: dict, tasks: Sequence[TaskSpec]) -> str:
    """``click=0.7312 conversion=0.7790``: AUC per binary task, MSE per regression task."""
    return " ".join(f"{t.name}={metrics[t.name].get('auc', metrics[t.name].get('mse')):.4f}" for t in tasks)


@dataclass
class EpochProgress:
    """How far a training epoch got: steps taken, this rank's loss sum, seconds spent."""

    steps: int
    loss_sum: torch.Tensor
    seconds: float = 0.0


def train_epoch(
    pipeline: TrainPipelineSparseDist | StepPipeline, batches: Iterator[Batch], steps: int, samples_per_step: int, ctx: DistributedContext,
    desc: str, progress: bool = True, after_step: Callable[[EpochProgress], None] | None = None,
    start: EpochProgress | None = None,
) -> dict:
    """Drive ``pipeline`` over ``batches``, calling ``after_step`` with the progress after each step;
    returns the mean loss over all ranks, samples/s and seconds. ``start`` continues an epoch a
    resumed run had begun (``batches`` then holds only the rest).

    The model is detached from the pipeline at the end, so evaluation can call it directly; the
    next ``progress`` call attaches it again.
    """
    done = start or EpochProgress(0, torch.zeros((), device=ctx.device))
    started, before = time.perf_counter(), done.seconds
    with tqdm(total=steps * samples_per_step, initial=done.steps * samples_per_step, desc=desc, unit="samples", unit_scale=True,
              disable=not (progress and ctx.is_main)) as bar:
        while True:
            try:
                loss, _, _ = pipeline.progress(batches)
            except StopIteration:
                break
            done.loss_sum += loss.detach()
            done.steps += 1
            done.seconds = before + time.perf_counter() - started
            if after_step is not None:
                after_step(done)
            bar.update(samples_per_step)
            if done.steps % 50 == 0:
                bar.set_postfix(loss=f"{float(loss):.4f}")
    seconds = before + time.perf_counter() - started
    pipeline.detach()
    loss_sum = done.loss_sum.clone()
    if dist.is_initialized():
        dist.all_reduce(loss_sum)
    return {
        "train_loss": float(loss_sum) / max(done.steps * ctx.world_size, 1),
        "steps": done.steps,
        "samples_per_s": done.steps * samples_per_step / seconds if seconds > 0 else 0.0,
        "seconds": seconds,
    }


@dataclass
class RunData:
    """What every recipe needs before it builds a model: its place in the job, the schema, the readers."""

    ctx: DistributedContext
    schema: Schema
    readers: dict[str, BatchReader]
    monitor: str


def prepare_run(dataset_path: str, trainer: TrainerConfig, seed: int) -> RunData:
    """Join the process group, seed, load the schema and open this rank's readers, checking the options against the data."""
    ctx = init_distributed(trainer.device)
    torch.manual_seed(seed)
    schema = Schema.load(dataset_path)
    monitor = resolve_monitor(trainer.monitor, schema.tasks, trainer.gauc)
    if trainer.gauc and schema.group_column is None:
        raise ConfigError(f"trainer.gauc=true but {dataset_path}/schema.json has no group_column")
    readers = open_readers(dataset_path, schema, trainer, ctx, seed)
    if len(readers["train"]) == 0:
        raise ConfigError(
            f"the training split has fewer rows per rank than trainer.batch_size={trainer.batch_size} "
            f"({readers['train'].split.num_rows} rows over {ctx.world_size} ranks)"
        )
    return RunData(ctx, schema, readers, monitor)


def count_parameters(module: nn.Module) -> dict[str, int]:
    """Embedding (sparse arch) and dense parameter counts of an unsharded train module."""
    counts = {"embedding": 0, "dense": 0}
    for name, parameter in module.named_parameters():
        counts["embedding" if "sparse_arch" in name else "dense"] += parameter.numel()
    return counts


class TrainerHooks:
    """Extension points of the ``Trainer``; the defaults do nothing. A recipe built on the Trainer (the
    architecture search) subclasses this instead of writing its own loop."""

    def trained_apart(self, model: DistributedModelParallel) -> set[int]:
        """Ids of dense parameters the hooks optimize themselves, kept out of the dense optimizer."""
        return set()

    def configure(self, trainer: "Trainer") -> None:
        """Called once the model, optimizer and pipeline exist; may add optimizers, readers or a pipeline
        (an optimizer of its own joins ``trainer.state_optimizers``, so that resuming restores it)."""

    def state(self, trainer: "Trainer") -> dict:
        """What the hooks need besides the model and optimizers to resume (JSON), saved after every epoch."""
        return {}

    def restore(self, trainer: "Trainer", state: dict) -> None:
        """Take back ``state`` (what ``state`` returned) when the Trainer resumes."""

    def start_epoch(self, trainer: "Trainer", epoch: int) -> dict:
        """Called before an epoch trains; returns extra fields of its record."""
        return {}

    def restart_epoch(self, trainer: "Trainer", epoch: int, record: dict) -> None:
        """Called instead of ``start_epoch`` when a resumed run continues an epoch it had begun;
        ``record`` holds what ``start_epoch`` returned then (whose effects the saved state holds)."""

    def end_epoch(self, trainer: "Trainer", record: dict) -> None:
        """Called after an epoch's validation, with its complete record."""

    def finished(self, trainer: "Trainer", epoch: int) -> bool:
        """True ends training after ``epoch`` (besides early stopping and the epoch limit)."""
        return False


class Trainer:
    """Trains one multi-task model under DistributedModelParallel and writes its run directory.

    The recipe of every run: setup (data, model, DMP, optimizers, pipeline) -> fit (epochs with
    validation, early stopping, the best epoch's checkpoint) -> test (of that checkpoint) -> close.
    ``build_module(schema)`` returns the train module on the meta device; ``hooks`` extend the recipe
    (the architecture search is this Trainer plus its hooks). ``run_dir`` receives ``config.yaml``
    (``record_config``, resolved), ``metrics.json`` (per-epoch history, best validation metrics, test
    metrics; unless ``write_metrics`` is False) and ``checkpoint/`` (best validation epoch); rank 0 writes.
    With ``keep_state`` it rewrites ``state/`` after every epoch, and every ``trainer.state_every_steps``
    steps within one (``pipelines/training_state.py``); ``resume`` continues from it: the same epochs,
    weights and metrics as a run that was never killed (at another world size, the same global batch).
    """

    def __init__(self, dataset_path: str, options: TrainerConfig, seed: int, run_dir: str | Path,
                 build_module: Callable[[Schema], MultiTaskTrain], name: str, hooks: TrainerHooks | None = None, *,
                 static_graph: bool = True, early_stopping: bool = True, write_metrics: bool = True, validate_epochs: bool = True,
                 record_config: object | None = None, keep_state: bool = False, resume: bool = False, label: str = "",
                 schedule_epochs: int | None = None) -> None:
        self.dataset_path, self.options, self.seed, self.run_dir = dataset_path, options, seed, Path(run_dir)
        self.build_module, self.name, self.hooks = build_module, name, hooks or TrainerHooks()
        self.static_graph, self.early_stopping, self.write_metrics = static_graph, early_stopping, write_metrics
        if early_stopping and not validate_epochs:
            raise ValueError("early stopping needs the validation score of every epoch (validate_epochs=True)")
        self.validate_epochs = validate_epochs  # False: epochs end without a validation pass (a search's, say)
        self.record_config = record_config
        self.keep_state, self.resume = keep_state or resume, resume
        self.label = label  # printed before "epoch N" (e.g. "search ")
        self.schedule_epochs = schedule_epochs or options.epochs  # the span of trainer.lr_schedule
        self.batch_scale = Fraction(1)  # the resumed run's ranks over this run's (per-rank sizes scale by it)

    @classmethod
    def for_model(cls, config: TrainConfig, run_dir: str | Path,
                  build_dense_arch: Callable[[Schema], nn.Module] | None = None, keep_state: bool = False) -> "Trainer":
        """The Trainer of a registered model (``config.model``), as ``pipelines.train`` runs it;
        ``build_dense_arch`` builds the dense arch instead of the registry (e.g. from an object in memory)."""
        trainer = config.trainer

        def build_module(schema: Schema) -> MultiTaskTrain:
            dense_arch = build_dense_arch(schema) if build_dense_arch is not None else None
            model = build_multitask_model(config.model, schema, device=torch.device("meta"), dense_arch=dense_arch)
            return MultiTaskTrain(model, schema.tasks, task_weight_list(schema.tasks, trainer.task_weights))

        return cls(config.dataset.path, trainer, config.seed, run_dir, build_module, config.model.name, record_config=config,
                   keep_state=keep_state, resume=config.resume)

    def setup(self, initialize: Callable[[DistributedModelParallel], None] | None = None) -> None:
        """Build data, model, DMP, optimizers and pipeline; ``initialize`` may warm-start the sharded model."""
        options = self.options
        run = prepare_run(self.dataset_path, options, self.seed)
        self.ctx, self.schema, self.readers, self.monitor = run.ctx, run.schema, run.readers, run.monitor
        self.tasks = self.schema.tasks
        self.state_folder = self._state_to_resume() if self.resume else None
        if self.state_folder is not None:
            options = self._keep_global_batch(read_state_meta(self.state_folder))
        module = self.build_module(self.schema)
        self.num_parameters = count_parameters(module)
        self.model = shard_model(module, self.ctx, options.embedding_optimizer, options.embedding_lr, options.sharding_type,
                                 static_graph=self.static_graph)
        if initialize is not None:
            initialize(self.model)
        apart = self.hooks.trained_apart(self.model)
        dense = {n: p for n, p in dense_parameters(self.model).items() if id(p) not in apart}
        self.dense_optimizer = dense_optimizer(dense, options.dense_optimizer, options.dense_lr, options.dense_weight_decay,
                                               options.dense_momentum)
        self.optimizer = CombinedOptimizer([self.model.fused_optimizer, self.dense_optimizer])
        self.pipeline = build_train_pipeline(self.model, self.optimizer, self.ctx.device, bool(self.schema.sparse))
        self.state_optimizers: list[KeyedOptimizer] = [self.dense_optimizer]  # saved with the fused one in state/
        self.history: list[dict] = []
        self.hooks.configure(self)
        self.resumed: dict | None = None
        self.resumed_seconds = 0.0  # training time the resumed state had already spent
        if self.state_folder is not None:
            self.resumed = load_training_state(self.state_folder, self.model, self.model.fused_optimizer, self.state_optimizers)
            self.history = self.resumed["history"]
            self.resumed_seconds = self.resumed["seconds"]
            self.hooks.restore(self, self.resumed["hooks"])
            if self.ctx.is_main:
                print(f"resuming {self.run_dir} after epoch {self.resumed['epoch']}", flush=True)
        elif self.keep_state and self.ctx.is_main:
            discard_training_state(self.run_dir)
        steps = epoch_steps(self.readers["train"], options.max_steps_per_epoch)
        self.schedule = LearningRateSchedule(self.dense_optimizer, options.lr_schedule, options.dense_lr, options.min_lr,
                                             self.schedule_epochs * steps, self.resumed["dense_steps"] if self.resumed else 0)
        if self.ctx.is_main and self.record_config is not None:
            write_resolved_config(self.run_dir, self.record_config)

    def _state_to_resume(self) -> Path:
        folder = find_training_state(self.run_dir)
        if folder is None:
            raise ConfigError(f"resume=true, but {self.run_dir} holds no training state ({self.run_dir / STATE_DIR}/)")
        return folder

    def _keep_global_batch(self, saved: dict) -> TrainerConfig:
        """Resuming on another number of ranks: the saved run's global batch, split over this world
        (``rows_per_rank`` rescales other per-rank sizes the same way); the readers follow."""
        self.batch_scale = Fraction(saved["world_size"], self.ctx.world_size)
        batch_size = self.rows_per_rank(saved["batch_size"], "trainer.batch_size")
        if batch_size != self.options.batch_size:
            self.options = dataclasses.replace(self.options, batch_size=batch_size)
            self.readers = open_readers(self.dataset_path, self.schema, self.options, self.ctx, self.seed)
            if self.ctx.is_main:
                print(f"resuming {saved['world_size']} ranks' state on {self.ctx.world_size}: "
                      f"trainer.batch_size={batch_size} per rank keeps the global batch", flush=True)
        return self.options

    def rows_per_rank(self, rows: int, key: str) -> int:
        """A per-rank row count of the run being resumed, on this run's ranks (the same rows in all)."""
        scaled = rows * self.batch_scale
        if scaled.denominator != 1:
            raise ConfigError(f"resume on {self.ctx.world_size} ranks: {key}={rows} per rank on "
                              f"{self.batch_scale * self.ctx.world_size} ranks does not split evenly over {self.ctx.world_size}")
        return int(scaled)

    def fit(self, evaluate_start: bool = False, epochs: int | None = None) -> EarlyStopping:
        """Train up to ``epochs`` (default ``trainer.epochs``), checkpointing the best validation epoch;
        stop after ``patience`` bad epochs (with ``early_stopping``) or when the hooks say so.

        ``evaluate_start`` (for warm-started models) scores the starting weights as epoch 0 first, so
        training can only improve on them; training epochs are then numbered from 1.
        """
        options = self.options
        stopping = EarlyStopping(self.monitor, options.patience)
        train_reader = self.readers["train"]
        steps = epoch_steps(train_reader, options.max_steps_per_epoch)
        self.started = time.perf_counter()
        first = 1 if evaluate_start else 0
        end = first + (options.epochs if epochs is None else epochs)
        if self.resumed is not None:
            stopping.restore(self.resumed["stopping"])
            self.started -= self.resumed_seconds
            if (self.early_stopping and stopping.should_stop) or self.hooks.finished(self, self.resumed["epoch"]):
                return stopping
            first = self.resumed["epoch"] + 1
        elif evaluate_start:
            self._settle_batchnorm(0)
            self._end_epoch({"epoch": 0, "trained": False}, stopping)
        begun = self.resumed.get("partial") if self.resumed is not None else None
        for epoch in range(first, end):
            start = None
            if begun is not None:  # the epoch a state saved within it had begun
                record = begun["record"]
                self.hooks.restart_epoch(self, epoch, record)
                if "loss_sum" in self.resumed["rank_state"]:  # else another world size: the epoch restarts
                    start = EpochProgress(begun["steps"], self.resumed["rank_state"]["loss_sum"], begun["seconds"])
                begun = None
            else:
                record = {"epoch": epoch, **self.hooks.start_epoch(self, epoch), "trained": True}
            self.model.train()
            batches = itertools.islice(train_reader.epoch(epoch), start.steps if start else 0, steps)
            record.update(train_epoch(self.pipeline, batches, steps, options.batch_size * self.ctx.world_size, self.ctx,
                                      f"{self.label}epoch {epoch}", options.progress, self._after_step(record, stopping, steps), start))
            self._settle_batchnorm(epoch)
            self._end_epoch(record, stopping)
            if (self.early_stopping and stopping.should_stop) or self.hooks.finished(self, epoch):
                break
        return stopping

    def _settle_batchnorm(self, epoch: int) -> None:
        """After an epoch: its BatchNorm statistics settled when it is validated, else only averaged over the ranks."""
        if self.validate_epochs:
            self.settle_batchnorm(epoch)
        else:
            average_batchnorm_statistics(self.model)

    def settle_batchnorm(self, epoch: int) -> None:
        """BatchNorm statistics re-estimated on epoch ``epoch``'s first ``precise_batchnorm_batches``
        training batches (0: the running averages kept), then averaged over the ranks."""
        batches = self.options.precise_batchnorm_batches
        if batches:
            recompute_batchnorm_statistics(self.model, itertools.islice(self.readers["train"].epoch(epoch), batches), self.ctx.device)
        average_batchnorm_statistics(self.model)

    def _end_epoch(self, record: dict, stopping: EarlyStopping) -> None:
        """Validate (``validate_epochs``), checkpoint when best, log and write the metrics so far."""
        improved = False
        if self.validate_epochs:
            record["valid"] = self.evaluate("valid")
            improved = stopping.update(record["epoch"], record["valid"])
        if improved and self.early_stopping:
            save_checkpoint(self.model, self.run_dir / "checkpoint", {"epoch": record["epoch"], self.monitor: stopping.best_value})
        self.history.append(record)
        self._log_epoch(record, improved and self.early_stopping)
        self.hooks.end_epoch(self, record)
        if self.write_metrics:
            self._write_metrics(stopping)
        if self.keep_state:
            self._save_state(stopping)

    def _after_step(self, record: dict, stopping: EarlyStopping, steps: int) -> Callable[[EpochProgress], None]:
        """Advance the LR schedule; every ``trainer.state_every_steps`` steps, save the state within the epoch."""
        every = self.options.state_every_steps if self.keep_state else 0

        def after_step(progress: EpochProgress) -> None:
            self.schedule.advance()
            if every and progress.steps % every == 0 and progress.steps < steps:
                self._save_state(stopping, {"record": record, "steps": progress.steps, "seconds": progress.seconds},
                                 {"loss_sum": progress.loss_sum})

        return after_step

    def _save_state(self, stopping: EarlyStopping, partial: dict | None = None, rank_state: dict | None = None) -> None:
        """``state/`` after the last finished epoch, or within the next one (``partial``: its record and progress)."""
        meta = {"epoch": self.history[-1]["epoch"] if self.history else -1, "history": self.history, "stopping": stopping.state(),
                "dense_steps": self.schedule.step, "batch_size": self.options.batch_size,
                "seconds": time.perf_counter() - self.started, "hooks": self.hooks.state(self), "partial": partial}
        save_training_state(self.run_dir, self.model, self.model.fused_optimizer, self.state_optimizers, meta, rank_state)

    def evaluate(self, split: str) -> dict:
        """Metrics of the model as it is now on ``split`` (``valid`` or ``test``), exact over all ranks."""
        return evaluate(self.model, self.readers[split], self.tasks, self.ctx, self.options.gauc, split, self.options.progress)

    def test(self, stopping: EarlyStopping) -> RunResult:
        """Reload the best checkpoint and evaluate it on the test split; write and return the result (``metrics.json``)."""
        load_checkpoint(self.model, self.run_dir / "checkpoint")
        return self._write_metrics(stopping, self.evaluate("test"))

    def close(self) -> None:
        destroy_distributed()

    def _log_epoch(self, record: dict, improved: bool) -> None:
        if not self.ctx.is_main:
            return
        training = f"train_loss={record['train_loss']:.4f} {record['samples_per_s']:.0f} samples/s" if record["trained"] else "start"
        valid = record.get("valid")
        scores = (f" | valid {task_scores_text(valid, self.tasks)} {self.monitor}={monitored_value(valid, self.monitor):.4f}"
                  if valid is not None else "")
        print(f"{self.label}epoch {record['epoch']}: {training}{scores}{' (best)' if improved else ''}", flush=True)

    def _write_metrics(self, stopping: EarlyStopping, test: dict | None = None) -> RunResult:
        best = self.history[stopping.best_epoch]
        seconds = time.perf_counter() - self.started
        result = RunResult(
            model=self.name, dataset=self.dataset_path, schema_fingerprint=self.schema.fingerprint(),
            world_size=self.ctx.world_size, num_parameters=self.num_parameters, monitor=self.monitor,
            best_epoch=best["epoch"], valid=best["valid"], test=test, epochs=self.history,
            train_seconds=seconds, wall_time_s=seconds,
        )
        if self.ctx.is_main:
            result.write(self.run_dir)
        return result


def format_results(result: RunResult, tasks: Sequence[TaskSpec]) -> str:
    """A small text table of per-task validation and test metrics."""
    lines = [f"{'task':<16}{'metric':<10}{'valid':>10}{'test':>10}"]
    for task in tasks:
        for metric in ("auc", "logloss", "gauc") if task.type == "binary" else ("mse",):
            if metric in result.test[task.name]:
                lines.append(f"{task.name:<16}{metric:<10}{result.valid[task.name][metric]:>10.4f}{result.test[task.name][metric]:>10.4f}")
    return "\n".join(lines)


def run_training(config: TrainConfig, run_dir: str | Path) -> RunResult:
    """Train, test and write ``run_dir``; returns the result (on every rank)."""
    if config.resume and config.overwrite:
        raise ConfigError("resume=true continues the run in run_dir; overwrite=true would replace it: pass one of them")
    if not config.resume:
        check_run_dir(Path(run_dir), config.overwrite)
    trainer = Trainer.for_model(config, run_dir, keep_state=True)
    try:
        trainer.setup()
        stopping = trainer.fit()
        result = trainer.test(stopping)
        if trainer.ctx.is_main:
            print(f"\nbest epoch {stopping.best_epoch} ({trainer.monitor}={stopping.best_value:.4f}); results in {run_dir}")
            print(format_results(result, trainer.tasks), flush=True)
        return result
    finally:
        trainer.close()
