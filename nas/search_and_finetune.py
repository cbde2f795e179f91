"""The whole AutoMTL job: search -> derive -> fine-tune -> test -> explain, writing one run directory.

``run_dir`` receives::

    config.yaml          the resolved NasConfig
    search_log.jsonl     per search epoch: decisions, alpha/beta snapshots, train loss (valid metrics with search.validate_epochs; the final record always)
    architecture.json    the searched architecture (nas/architecture.py; nas/v1/architecture.py for method=v1)
    supernet/            DCP checkpoint of the discretized supernet
    finetune/            the fine-tuning Trainer's run dir (metrics.json, checkpoint/, config.yaml)
    metrics.json         the run's RunResult: the derived model's metrics and fine-tuning, plus the search part
    summary.md           experts, gates, features, average task gate weights
    auc_curves.png  gate_weights.png  decisions.png (DESAN's progressive decisions)
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torchrec.distributed.model_parallel import DistributedModelParallel

from torchrec_automtl.common.atomic_files import atomic_write_text
from torchrec_automtl.nas.architecture import Architecture
from torchrec_automtl.nas.derived import AutoMTLConfig, DerivedMultiTaskArch, derive_from_supernet
from torchrec_automtl.nas.explain import average_task_gate_weights
from torchrec_automtl.nas.pd_darts import ArchitectureSearch, warm_start
from torchrec_automtl.nas.report import plot_auc_curves, plot_decision_timeline, plot_gate_heatmap, summary_markdown, v1_summary_markdown
from torchrec_automtl.nas.search_config import NasConfig
from torchrec_automtl.nas.v1.architecture import V1Architecture
from torchrec_automtl.nas.v1.derived import V1DerivedArch
from torchrec_automtl.nas.v1.search import V1Search
from torchrec_automtl.pipelines.config import ConfigError, TrainConfig
from torchrec_automtl.pipelines.process_group import destroy_distributed
from torchrec_automtl.pipelines.result import RunResult, SearchPart
from torchrec_automtl.pipelines.trainer import Trainer, check_run_dir, format_results, write_resolved_config
from torchrec_automtl.pipelines.training_state import discard_training_state, find_training_state


def finetune_config(config: NasConfig, run_dir: Path, resume: bool) -> TrainConfig:
    """Training config of the derived model: the search's trainer options, as every baseline's (N3 = ``trainer.epochs``)."""
    return TrainConfig(
        dataset=config.dataset,
        model=AutoMTLConfig(name="automtl", embedding_dim=config.search_space.embedding_dim,
                            multi_hot_pooling=config.search_space.multi_hot_pooling,
                            architecture=str(run_dir / "architecture.json")),
        trainer=config.trainer,
        seed=config.seed,
        run_dir=str(run_dir / "finetune"),
        overwrite=config.overwrite,
        resume=resume,
    )


@dataclass
class SearchRun:
    """What a search run leaves in memory: its result, the architecture and the fine-tuned model."""

    result: RunResult
    architecture: Architecture
    model: DistributedModelParallel


def run_search(config: NasConfig, run_dir: str | Path) -> SearchRun:
    """Search, fine-tune and test; returns the run (on every rank; the process group is closed).

    Both phases keep a state folder (``state/``, ``finetune/state/``); with ``config.resume`` a killed
    run continues from them: the search from its last saved epoch (a finished search is set up again
    from its final state, which redoes only the last thresholding), then fine-tuning from its own
    state, or from its start when it had saved none.
    """
    run_dir = Path(run_dir)
    finetune_dir = run_dir / "finetune"
    if config.resume and config.overwrite:
        raise ConfigError("resume=true continues the run in run_dir; overwrite=true would replace it: pass one of them")
    if not config.resume:
        check_run_dir(run_dir, config.overwrite)
    started = time.perf_counter()
    v1 = config.method == "v1"
    search = V1Search(config, run_dir) if v1 else ArchitectureSearch(config, run_dir)
    try:
        search.setup()
        if search.trainer.ctx.is_main:
            write_resolved_config(run_dir, config)
            if not config.resume:
                discard_training_state(finetune_dir)
        architecture = search.search()
        schema = search.trainer.schema
        # paper 000 retrains from fresh weights; DESAN retrains or inherits (search.finetune)
        finetune = "retrain" if v1 else config.search.finetune
        # The architecture reaches fine-tuning in memory (every rank derived it from the same broadcast
        # decisions); finetune/config.yaml names architecture.json, the record.
        resume_finetune = config.resume and find_training_state(finetune_dir) is not None
        derived_class = V1DerivedArch if v1 else DerivedMultiTaskArch
        trainer = Trainer.for_model(finetune_config(config, run_dir, resume_finetune), finetune_dir,
                                    build_dense_arch=lambda schema: derived_class(architecture), keep_state=True)
        inherit = finetune == "inherit"
        inherited = (warm_start(run_dir / "supernet", derive_from_supernet(search.supernet, schema).state_dict())
                     if inherit and not resume_finetune else None)
        trainer.setup(initialize=inherited)
        stopping = trainer.fit(evaluate_start=inherit)
        finetuned = trainer.test(stopping)
        gate_weights = average_task_gate_weights(trainer.model, trainer.readers["valid"], trainer.ctx)
        # Wall time of the whole job: this process's, plus what the states recorded before a kill.
        earlier = search.trainer.resumed_seconds + trainer.resumed_seconds
        result = dataclasses.replace(finetuned, wall_time_s=time.perf_counter() - started + earlier, search=SearchPart(
            epochs=len(search.records), seconds=search.search_seconds,
            samples_per_s=[r["samples_per_s"] for r in search.records if "samples_per_s" in r],
            valid=search.records[-1]["valid"],  # the discretized supernet's
            supernet_parameters=search.trainer.num_parameters, finetune=finetune,
            task_gate_weights={t: gate_weights[i].tolist() for i, t in enumerate(architecture.tasks)},
        ))
        if trainer.ctx.is_main:
            _write_report(run_dir, search, architecture, gate_weights, result)
            print(f"\nsearch {result.search.seconds:.0f}s + fine-tune {result.train_seconds:.0f}s; results in {run_dir}")
            print(format_results(result, schema.tasks), flush=True)
        return SearchRun(result, architecture, trainer.model)
    finally:
        destroy_distributed()


def _write_report(run_dir: Path, search: ArchitectureSearch | V1Search, architecture: Architecture | V1Architecture,
                  gate_weights: np.ndarray, result: RunResult) -> None:
    result.write(run_dir)
    if isinstance(architecture, V1Architecture):
        summary, experts = v1_summary_markdown(architecture, gate_weights, result.test), [e.name for e in architecture.experts]
    else:
        used = [sorted(u) for u in architecture.used_experts()]
        summary, experts = summary_markdown(architecture, gate_weights, used, result.test), [e.name for e in architecture.layers[-1]]
        plot_decision_timeline(search.records, run_dir / "decisions.png")
    atomic_write_text(run_dir / "summary.md", summary)
    plot_auc_curves(search.records, result.epochs, architecture.tasks, run_dir / "auc_curves.png")
    plot_gate_heatmap(gate_weights, architecture.tasks, experts, run_dir / "gate_weights.png")
