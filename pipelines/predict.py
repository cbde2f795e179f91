"""Batch scoring: the trained model of a run over a prepared split -> one Parquet file of per-task scores.

    python -m torchrec_automtl.pipelines.predict RUN_DIR --out scores.parquet [--split test] [--dataset PATH] [--batch-size 8192]
    torchrun --nproc_per_node 8 -m torchrec_automtl.pipelines.predict RUN_DIR --out scores.parquet
    python -m torchrec_automtl.nas.predict RUN_DIR --out scores.parquet       # a search run (model=automtl)

The model is the run's best checkpoint (``checkpoint/``; a search run's ``finetune/checkpoint/``),
built from its ``config.yaml``. The file holds ``row`` (the row's position in the split, files in
name order) and ``<task>_score`` per task: the probability for a binary task, the value for a
regression task, exactly what evaluation scores. Every rank scores its part of the split; batch by
batch the scores are gathered to rank 0, which streams them into the file, so memory stays at a few
batches whatever the split's size. Rows are ordered by batch, then rank: sort by ``row`` for file order.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import pyarrow as pa
import pyarrow.parquet as pq
import torch
from omegaconf import OmegaConf
from tqdm import tqdm

from torchrec_automtl.common.atomic_files import atomic_file
from torchrec_automtl.datasets.parquet_reader import BatchReader, ParquetSplit
from torchrec_automtl.datasets.schema import Schema, TaskSpec
from torchrec_automtl.modules.multitask import MultiTaskTrain, build_multitask_model
from torchrec_automtl.pipelines.checkpoint import load_checkpoint
from torchrec_automtl.pipelines.config import ConfigError, TrainConfig, parse_train_config
from torchrec_automtl.pipelines.evaluation import to_scores
from torchrec_automtl.pipelines.hydra_launch import report_input_errors
from torchrec_automtl.pipelines.metrics import gather_rows
from torchrec_automtl.pipelines.process_group import DistributedContext, destroy_distributed, init_distributed
from torchrec_automtl.pipelines.result import RunResult
from torchrec_automtl.pipelines.sharding import shard_model

ROW_COLUMN = "row"
SCORE_SUFFIX = "_score"


def model_dir_of(run_dir: Path) -> Path:
    """Where a run keeps its trained model: the run dir, or a search run's ``finetune/``."""
    finetune = run_dir / "finetune"
    return finetune if (finetune / "config.yaml").is_file() else run_dir


def load_run_config(model_dir: Path) -> TrainConfig:
    """The typed training config a run recorded (``config.yaml``)."""
    path = model_dir / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"{path} not found: is {model_dir} the run_dir of a finished training or search run?")
    return parse_train_config(OmegaConf.load(path))


def score_columns(tasks: Sequence[TaskSpec]) -> list[str]:
    return [f"{task.name}{SCORE_SUFFIX}" for task in tasks]


@torch.no_grad()
def write_scores(model: torch.nn.Module, reader: BatchReader, tasks: Sequence[TaskSpec], ctx: DistributedContext,
                 out: Path | None, progress: bool = True) -> int:
    """Score every row of ``reader``'s split into the Parquet file ``out`` (given on rank 0, which writes;
    None on the other ranks); returns the rows written."""
    model.eval()
    schema = pa.schema([(ROW_COLUMN, pa.int64())] + [(name, pa.float32()) for name in score_columns(tasks)])
    first_row = reader.row_range[0]
    written = 0
    writer = pq.ParquetWriter(out, schema) if out is not None else None
    try:
        batches = tqdm(reader.epoch(), total=len(reader), desc="score", unit="batch", disable=not (progress and ctx.is_main))
        for step, batch in enumerate(batches):
            batch = batch.to(ctx.device, non_blocking=True)
            _, (_, logits, _) = model(batch)
            start = first_row + step * reader.batch_size
            rows = torch.arange(start, start + batch.mask.numel(), device=ctx.device)
            scores = gather_rows(to_scores(logits.float(), tasks)).cpu()
            rows, mask = gather_rows(rows).cpu(), gather_rows(batch.mask).cpu()
            if writer is not None:
                columns = [pa.array(rows[mask].numpy())] + [pa.array(scores[mask, t].numpy()) for t in range(len(tasks))]
                writer.write_table(pa.Table.from_arrays(columns, schema=schema))
                written += int(mask.sum())
    finally:
        if writer is not None:
            writer.close()
    return written


def score_split(run_dir: str | Path, out: str | Path, split: str = "test", dataset: str | None = None,
                batch_size: int = 8192, overwrite: bool = False, progress: bool = True) -> int:
    """Score ``split`` of ``dataset`` (default: the run's own dataset) with the run's model into ``out``;
    returns the rows written (on rank 0; 0 elsewhere). Call on every rank."""
    run_dir, out = Path(run_dir), Path(out)
    if out.exists() and not overwrite:  # on every rank, before any of them starts
        raise FileExistsError(f"{out} already exists; pass --overwrite to replace it")
    model_dir = model_dir_of(run_dir)
    config = load_run_config(model_dir)
    dataset_path = dataset or config.dataset.path
    ctx = init_distributed(config.trainer.device)
    try:
        schema = Schema.load(dataset_path)
        trained_on = RunResult.read(model_dir).schema_fingerprint
        if schema.fingerprint() != trained_on:
            raise ConfigError(f"{dataset_path}/schema.json is not the schema {run_dir} was trained on "
                              f"(fingerprint {schema.fingerprint()}, the run's {trained_on})")
        reader = BatchReader(ParquetSplit.open(dataset_path, split, schema), batch_size, ctx.rank, ctx.world_size)
        module = MultiTaskTrain(build_multitask_model(config.model, schema, device=torch.device("meta")), schema.tasks)
        trainer = config.trainer
        model = shard_model(module, ctx, trainer.embedding_optimizer, trainer.embedding_lr, trainer.sharding_type)
        load_checkpoint(model, model_dir / "checkpoint")
        if not ctx.is_main:
            return write_scores(model, reader, schema.tasks, ctx, None, progress)
        with atomic_file(out) as tmp:
            rows = write_scores(model, reader, schema.tasks, ctx, tmp, progress)
        print(f"{rows} rows of {dataset_path}/{split} scored by {model_dir} -> {out}", flush=True)
        return rows
    finally:
        destroy_distributed()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="a finished training or search run")
    parser.add_argument("--out", required=True, help="the Parquet file to write")
    parser.add_argument("--split", default="test", help="train, valid or test (default: test)")
    parser.add_argument("--dataset", default=None, help="a prepared dataset with the run's schema (default: the run's own)")
    parser.add_argument("--batch-size", type=int, default=8192, help="rows per rank and batch")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args(argv)


@report_input_errors
def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    score_split(args.run_dir, args.out, args.split, args.dataset, args.batch_size, args.overwrite, not args.no_progress)


if __name__ == "__main__":
    main()
