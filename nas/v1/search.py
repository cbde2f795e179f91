"""Paper 000's search (Algorithm 1) over ``V1Supernet``, under DistributedModelParallel.

Every step: a weight step on a training batch (the supernet weights with SGD and cosine decay, and,
after the selection warm-up, beta with Adam, on the task loss plus ``w_JSD`` times the JSD loss),
then an alpha step on a held-out architecture batch with the embedding tables frozen
(``nas/bilevel.py``). Each epoch sets ``w_JSD`` and the DARTS- skip weight, both decaying linearly to
0. After the last epoch the supernet is discretized (argmax ops, top-c experts per task, decided
on rank 0 and broadcast) and ``architecture.json``, ``search_log.jsonl`` and ``supernet/`` are written.
"""

from __future__ import annotations

import dataclasses
import time

import torch
import torch.distributed as dist
from torchrec.optim.keyed import CombinedOptimizer

from torchrec_automtl.datasets.batch import Batch
from torchrec_automtl.datasets.schema import Schema
from torchrec_automtl.modules.multitask import MultiTaskModel, MultiTaskTrain
from torchrec_automtl.nas.supernet_search import PausableOptimizer, SupernetSearch
from torchrec_automtl.nas.v1.architecture import V1Architecture, v1_expert_name
from torchrec_automtl.nas.v1.supernet import V1Supernet
from torchrec_automtl.pipelines.optimizers import adam
from torchrec_automtl.pipelines.sharding import dense_parameters
from torchrec_automtl.pipelines.trainer import Trainer, task_scores_text, task_weight_list

V1_DECISION_BUFFERS = ("discretized", "interaction_choice", "block_choice", "expert_kept")


class SelectionRegularizedTrain(MultiTaskTrain):
    """The multi-task loss plus ``jsd_weight`` times the supernet's JSD loss (eq. 3's inner objective).

    The JSD term is added in training mode only, to the loss that is differentiated; the reported loss
    (the output's first entry) stays the task loss, comparable with every other model's.
    """

    jsd_weight: float = 0.0

    def forward(self, batch: Batch) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        loss, output = super().forward(batch)
        if self.training and self.jsd_weight:
            loss = loss + self.jsd_weight * self.model.dense_arch.selection_loss()
        return loss, output


class V1Search(SupernetSearch):
    """Searches a paper-000 architecture: ``setup`` then ``search``."""

    def __init__(self, config, run_dir) -> None:
        search = config.search
        # The search's own weight steps: paper 000's SGD with cosine decay; fine-tuning keeps config.trainer.
        options = dataclasses.replace(config.trainer, dense_optimizer=search.weight_optimizer, dense_lr=search.weight_lr,
                                      dense_momentum=search.weight_momentum, lr_schedule="cosine", min_lr=0.0)
        super().__init__(config, run_dir, options)

    def build_supernet(self, schema: Schema) -> V1Supernet:
        return V1Supernet(self.config.search_space, schema.sparse_names, schema.dense_names, schema.task_names)

    def build_train_module(self, model: MultiTaskModel, schema: Schema) -> SelectionRegularizedTrain:
        return SelectionRegularizedTrain(model, schema.tasks, task_weight_list(schema.tasks, self.config.trainer.task_weights))

    def trained_apart(self, model) -> set[int]:
        supernet = model.module.model.dense_arch
        return {id(p) for p in supernet.architecture_parameters() + supernet.selection_parameters()}

    def configure(self, trainer: Trainer) -> None:
        """alpha's Adam on the architecture batches; beta's Adam beside the weights' SGD on the training batches."""
        search = self.config.search
        self.supernet: V1Supernet = trainer.model.module.model.dense_arch
        self.train_module: SelectionRegularizedTrain = trainer.model.module
        named = dense_parameters(trainer.model)
        alpha = {id(p) for p in self.supernet.architecture_parameters()}
        beta = {id(p) for p in self.supernet.selection_parameters()}
        self.architecture_optimizer = adam({n: p for n, p in named.items() if id(p) in alpha}, search.arch_lr, 0.0, PausableOptimizer)
        trainer.state_optimizers.append(self.architecture_optimizer)
        self.selection_optimizer = None
        if beta:  # none under "w/o SEL": gating networks are ordinary weights
            self.selection_optimizer = adam({n: p for n, p in named.items() if id(p) in beta}, search.selection_lr, 0.0, PausableOptimizer)
            trainer.state_optimizers.append(self.selection_optimizer)
            trainer.optimizer = CombinedOptimizer([trainer.optimizer, self.selection_optimizer])
        trainer.pipeline = self.bilevel_pipeline(trainer, trainer.optimizer, self.architecture_optimizer)
        self.start_log(trainer)

    def start_epoch(self, trainer: Trainer, epoch: int) -> dict:
        stage = "warmup_selection" if epoch < self.config.search.selection_warmup_epochs else "search"
        return self._configure_epoch(epoch, stage)

    def restart_epoch(self, trainer: Trainer, epoch: int, record: dict) -> None:
        self._configure_epoch(epoch, record["stage"])

    def _configure_epoch(self, epoch: int, stage: str) -> dict:
        search = self.config.search
        if self.selection_optimizer is not None:
            self.selection_optimizer.active = stage != "warmup_selection"
        self.train_module.jsd_weight = search.jsd_weight * search.decay(epoch)
        self.supernet.auxiliary_skip = search.auxiliary_skip * search.decay(epoch)
        return {"stage": stage, "jsd_weight": self.train_module.jsd_weight, "auxiliary_skip": self.supernet.auxiliary_skip}

    def end_epoch(self, trainer: Trainer, record: dict) -> None:
        record.update(v1_snapshot(self.supernet))
        self.log_record(trainer, record)

    def finished(self, trainer: Trainer, epoch: int) -> bool:
        return epoch + 1 >= self.config.search.epochs

    def search(self) -> V1Architecture:
        """Run the search; discretize; write and return the architecture."""
        trainer = self.trainer
        trainer.fit(epochs=self.config.search.epochs)
        epoch = self.records[-1]["epoch"] + 1
        self.train_module.jsd_weight, self.supernet.auxiliary_skip = 0.0, 0.0
        if trainer.ctx.is_main:
            self.supernet.discretize()
        if dist.is_initialized() and trainer.ctx.world_size > 1:
            for name in V1_DECISION_BUFFERS:
                dist.broadcast(getattr(self.supernet, name), src=0)
        architecture = V1Architecture.from_supernet(self.supernet, trainer.schema)
        record = {"epoch": epoch, "stage": "final", "interaction": architecture.interaction,
                  "task_experts": architecture.task_experts, "valid": trainer.evaluate("valid")}
        self.log_record(trainer, record)
        self.search_seconds = time.perf_counter() - trainer.started
        if trainer.ctx.is_main:
            print(f"search end: interaction {architecture.interaction}, experts {architecture.task_experts} | valid "
                  f"{task_scores_text(record['valid'], trainer.tasks)}", flush=True)
            architecture.save(self.run_dir / "architecture.json")
        self.save_supernet(epoch)
        return architecture


def v1_snapshot(supernet: V1Supernet) -> dict:
    """The op weights of the interaction and of every expert block, and each task's expert-selection weights, by name."""
    config = supernet.config
    with torch.no_grad():
        interaction = supernet.interaction_weights().tolist()
        blocks = supernet.block_weights().tolist()
        selection = supernet.selection_weights().tolist() if supernet.beta is not None else None
    snapshot = {
        "alpha_interaction": dict(zip(config.searched_interactions, (round(w, 5) for w in interaction), strict=True)),
        "alpha_experts": {
            f"{v1_expert_name(j)}.block{k + 1}": dict(zip(config.expert_operations, (round(w, 5) for w in block), strict=True))
            for j, expert in enumerate(blocks) for k, block in enumerate(expert)
        },
    }
    if selection is not None:
        snapshot["expert_selection"] = {task: {v1_expert_name(j): round(p, 5) for j, p in enumerate(row)}
                                        for task, row in zip(supernet.task_names, selection, strict=True)}
    return snapshot
