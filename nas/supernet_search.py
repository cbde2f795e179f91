"""What every supernet search shares: the Trainer over a supernet, the held-out architecture batches
of a bi-level search, the search log, and the resumable state of both.

A method subclasses ``SupernetSearch`` with its supernet (``build_supernet``) and its schedule
(the ``TrainerHooks``): ``nas/pd_darts.py`` (DESAN, paper 001) and ``nas/v1/search.py`` (paper 000).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchrec.distributed.model_parallel import DistributedModelParallel
from torchrec.optim.keyed import KeyedOptimizer, KeyedOptimizerWrapper

from torchrec_automtl.datasets.schema import Schema
from torchrec_automtl.modules.embeddings import build_embedding_bag_collection
from torchrec_automtl.modules.multitask import MultiTaskModel, MultiTaskTrain
from torchrec_automtl.nas.bilevel import BiLevelPipeline, hold_out_architecture_rows
from torchrec_automtl.nas.search_log import append_record, rewrite_log
from torchrec_automtl.pipelines.checkpoint import save_checkpoint
from torchrec_automtl.pipelines.config import TrainerConfig
from torchrec_automtl.pipelines.trainer import Trainer, TrainerHooks, task_weight_list


class PausableOptimizer(KeyedOptimizerWrapper):
    """A keyed optimizer whose ``step`` does nothing while ``active`` is False (a warm-up)."""

    active: bool = True

    def step(self, closure=None) -> None:
        if self.active:
            super().step(closure)


class SupernetSearch(TrainerHooks):
    """The ``Trainer`` over a supernet (no early stopping, state kept for resuming) and the hooks every
    method shares. ``setup`` then the subclass's ``search``; the process group stays up for fine-tuning.
    ``trainer_options`` replaces ``config.trainer`` for the search's own steps (paper 000's SGD)."""

    def __init__(self, config, run_dir: str | Path, trainer_options: TrainerConfig | None = None) -> None:
        self.config = config
        self.run_dir = Path(run_dir)
        self.trainer = Trainer(config.dataset.path, trainer_options or config.trainer, config.seed, self.run_dir, self._build_module,
                               "search", self,
                               # The supernet's graph changes step to step (discretized blocks): no static DDP graph.
                               static_graph=False, early_stopping=False, write_metrics=False, label="search ",
                               validate_epochs=config.search.validate_epochs,
                               schedule_epochs=config.search.epochs, keep_state=True, resume=config.resume)
        self.records: list[dict] = []
        self.log_path = self.run_dir / "search_log.jsonl"

    def build_supernet(self, schema: Schema) -> nn.Module:
        """The method's supernet over ``schema``'s inputs and tasks."""
        raise NotImplementedError

    def build_train_module(self, model: MultiTaskModel, schema: Schema) -> MultiTaskTrain:
        """The train module around the supernet's model (its loss)."""
        return MultiTaskTrain(model, schema.tasks, task_weight_list(schema.tasks, self.config.trainer.task_weights))

    def _build_module(self, schema: Schema) -> MultiTaskTrain:
        space = self.config.search_space
        sparse_arch = (
            build_embedding_bag_collection(schema, space.embedding_dim, torch.device("meta"), space.multi_hot_pooling)
            if schema.sparse else None  # an all-dense dataset (e.g. the MMoE synthetic study)
        )
        model = MultiTaskModel(sparse_arch, self.build_supernet(schema), schema.sparse_names, space.embedding_dim)
        return self.build_train_module(model, schema)

    def setup(self) -> None:
        self.trainer.setup()

    def trained_apart(self, model: DistributedModelParallel) -> set[int]:
        return {id(p) for p in model.module.model.dense_arch.architecture_parameters()}

    def bilevel_pipeline(self, trainer: Trainer, optimizer: KeyedOptimizer, architecture_optimizer: PausableOptimizer) -> BiLevelPipeline:
        """Hold the architecture rows out of the training reader; a pipeline of weight steps (``optimizer``)
        on training batches and architecture steps on the held-out ones."""
        search = self.config.search
        architecture_batch = trainer.rows_per_rank(search.architecture_batch_size, "search.architecture_batch_size")
        trainer.readers["train"], architecture_reader = hold_out_architecture_rows(
            trainer.readers["train"], search.architecture_fraction, self.config.seed, architecture_batch)
        return BiLevelPipeline(trainer.model, optimizer, architecture_optimizer, trainer.model.module.model,
                               architecture_reader, trainer.ctx.device, search.architecture_objective)

    def start_log(self, trainer: Trainer) -> None:
        """A fresh search log (a resumed search rewrites it in ``restore``)."""
        self.records = []
        if trainer.ctx.is_main:
            self.log_path.unlink(missing_ok=True)

    def log_record(self, trainer: Trainer, record: dict) -> None:
        self.records.append(record)
        if trainer.ctx.is_main:
            append_record(self.log_path, record)

    def state(self, trainer: Trainer) -> dict:
        """The architecture batches taken so far (bi-level); the architecture and its optimizers are in the model and optimizer state."""
        pipeline = trainer.pipeline
        return {"architecture_steps": pipeline.architecture_steps if isinstance(pipeline, BiLevelPipeline) else 0}

    def restore(self, trainer: Trainer, state: dict) -> None:
        """Continue the architecture batches where they stopped, and the search log from the saved epochs."""
        if isinstance(trainer.pipeline, BiLevelPipeline):
            trainer.pipeline.skip_architecture_batches(state["architecture_steps"])
        self.records = list(trainer.history)
        if trainer.ctx.is_main:  # drop what a killed run logged after its last saved epoch
            rewrite_log(self.log_path, self.records)

    def save_supernet(self, epochs: int) -> None:
        """The discretized supernet's DCP checkpoint (``supernet/``), tables and their optimizer state included."""
        trainer = self.trainer
        save_checkpoint(trainer.model, self.run_dir / "supernet", {"epochs": epochs}, trainer.model.fused_optimizer.state_dict())
