"""Two gloo ranks train MMoE under DistributedModelParallel with table-wise sharded embeddings."""

import math

import pytest
import torch

from torchrec_automtl.datasets.parquet_reader import BatchReader, ParquetSplit
from torchrec_automtl.datasets.schema import Schema
from torchrec_automtl.datasets.synthetic import write_aliccp_like
from torchrec_automtl.modules.mmoe import MMoEConfig
from torchrec_automtl.modules.multitask import MultiTaskTrain, build_multitask_model
from torchrec_automtl.pipelines.checkpoint import load_checkpoint, save_checkpoint
from torchrec_automtl.pipelines.config import DatasetConfig, TrainConfig, TrainerConfig
from torchrec_automtl.pipelines.evaluation import predict, to_scores
from torchrec_automtl.pipelines.sharding import shard_model
from torchrec_automtl.pipelines.trainer import Trainer
from tests.distributed.spawn import run_on_ranks


# 3037 rows split 2431 / 303 / 303. On 2 ranks training has 1215 + 1216 rows: 18 full batches on rank
# 0, 19 on rank 1, so both must take 18; evaluation has 151 + 152 rows: 1 batch on rank 0, 2 on rank 1,
# so both must take 2, rank 0's second one all padding.
ROWS, TRAIN_BATCH, EVAL_BATCH = 3037, 64, 151


def _config(dataset: str, run_dir: str) -> TrainConfig:
    return TrainConfig(
        dataset=DatasetConfig(name="tiny", path=dataset),
        model=MMoEConfig(name="mmoe", embedding_dim=8, num_experts=2, expert_hidden=[32, 16], tower_hidden=[16, 8]),
        trainer=TrainerConfig(epochs=3, batch_size=TRAIN_BATCH, eval_batch_size=EVAL_BATCH, shuffle_buffer=512, sharding_type="table_wise",
                              embedding_lr=0.05, dense_lr=3e-3, progress=False, patience=3),
        run_dir=run_dir,
    )


def _train_and_restore(rank: int, dataset: str, run_dir: str) -> dict:
    config = _config(dataset, run_dir)
    trainer = Trainer.for_model(config, run_dir)
    try:
        trainer.setup()
        stopping = trainer.fit()
        ctx, schema = trainer.ctx, trainer.schema
        valid = trainer.readers["valid"]
        trained = predict(trainer.model, valid, schema.tasks, ctx, progress=False).scores
        dense_state = {k: v.clone() for k, v in trainer.model.state_dict().items() if "sparse_arch" not in k}
        plan = trainer.model.plan.plan["model.sparse_arch"]
        keys = trainer.model.module.model.sparse_arch(next(valid.epoch()).sparse_features).keys()
        save_checkpoint(trainer.model, f"{run_dir}/final", {"epoch": "final"})

        # The same weights in an unsharded model give the same predictions (DCP reshards on load).
        plain = MultiTaskTrain(build_multitask_model(config.model, schema), schema.tasks)
        load_checkpoint(plain, f"{run_dir}/final")
        plain.eval()
        whole_split = BatchReader(valid.split, batch_size=256)
        with torch.no_grad():
            unsharded = torch.cat([to_scores(plain(b)[1][1], schema.tasks)[b.mask] for b in whole_split.epoch()]).numpy()

        torch.manual_seed(1234 + rank)
        fresh = shard_model(
            MultiTaskTrain(build_multitask_model(config.model, schema, torch.device("meta")), schema.tasks),
            ctx, sharding_type="table_wise",
        )
        untrained = predict(fresh, valid, schema.tasks, ctx, progress=False).scores
        load_checkpoint(fresh, f"{run_dir}/final")
        restored = predict(fresh, valid, schema.tasks, ctx, progress=False).scores
        test_metrics = trainer.test(stopping)
        return {
            "losses": [epoch["train_loss"] for epoch in trainer.history],
            "steps": [epoch["steps"] for epoch in trainer.history],
            "trained": trained, "unsharded": unsharded, "untrained": untrained, "restored": restored,
            "dense_state": dense_state,
            "ranks_by_table": {name: [s.placement.rank() for s in p.sharding_spec.shards] for name, p in plan.items()},
            "keys": keys, "schema_keys": schema.sparse_names, "test": test_metrics.test,
        }
    finally:
        trainer.close()


@pytest.mark.distributed
def test_two_rank_dmp_training_decreases_loss_and_checkpoint_restores_predictions(tmp_path):
    data, run_dir = tmp_path / "data", tmp_path / "run"
    write_aliccp_like(data, rows=ROWS, seed=0, rows_per_file=1500, row_group_rows=400, progress=False)
    schema = Schema.load(data)
    rows = {split: ParquetSplit.open(data, split, schema).num_rows for split in ("train", "valid", "test")}
    assert rows == {"train": 2431, "valid": 303, "test": 303}
    assert 1215 // TRAIN_BATCH != 1216 // TRAIN_BATCH and math.ceil(151 / EVAL_BATCH) != math.ceil(152 / EVAL_BATCH)
    results = run_on_ranks(_train_and_restore, 2, tmp_path / "out", str(data), str(run_dir))
    first, second = results
    losses = first["losses"]
    assert losses[-1] < losses[0] * 0.8, losses
    assert first["losses"] == second["losses"]  # all-reduced mean loss
    # Tables really are spread over both ranks, one rank per table.
    placements = first["ranks_by_table"]
    assert {ranks[0] for ranks in placements.values()} == {0, 1}
    assert all(len(ranks) == 1 for ranks in placements.values())
    # The sharded EBC orders its output by placement, which is why MultiTaskModel picks fields by name.
    assert sorted(first["keys"]) == sorted(first["schema_keys"])
    for name, value in first["dense_state"].items():
        torch.testing.assert_close(value, second["dense_state"][name], rtol=0, atol=0)
    assert not torch.allclose(torch.from_numpy(first["untrained"]), torch.from_numpy(first["trained"]))
    torch.testing.assert_close(torch.from_numpy(first["restored"]), torch.from_numpy(first["trained"]), rtol=0, atol=0)
    torch.testing.assert_close(torch.from_numpy(first["unsharded"]), torch.from_numpy(first["trained"]), rtol=1e-5, atol=1e-6)
    assert first["test"]["rows"] == 303 and first["steps"] == [18] * 3
    assert (run_dir / "metrics.json").is_file() and (run_dir / "checkpoint" / "meta.json").is_file()
    assert not any(path.name.endswith(".tmp") for path in run_dir.iterdir())
