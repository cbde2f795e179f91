import pytest
import torch
import torch.nn.functional as F
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from torchrec_automtl.datasets.batch import Batch
from torchrec_automtl.datasets.schema import DenseFeature, Schema, SparseFeature, TaskSpec
from torchrec_automtl.modules.mmoe import MMoE, MMoEConfig
from torchrec_automtl.modules.multitask import MultiTaskTrain, build_multitask_model
from torchrec_automtl.modules.registry import model_entry


def _schema(num_tasks: int) -> Schema:
    return Schema(
        sparse=(SparseFeature("user", 20), SparseFeature("tags", 9, multi_hot=True)),
        dense=(DenseFeature("price"), DenseFeature("age")),
        tasks=tuple(TaskSpec(f"task{t}", "regression" if t == 2 else "binary") for t in range(num_tasks)),
    )


def _batch(schema: Schema, rows: int = 6, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    tag_lengths = torch.randint(0, 3, (rows,), generator=g, dtype=torch.int32)
    kjt = KeyedJaggedTensor(
        keys=["user", "tags"],
        values=torch.cat([torch.randint(0, 20, (rows,), generator=g), torch.randint(0, 9, (int(tag_lengths.sum()),), generator=g)]),
        lengths=torch.cat([torch.ones(rows, dtype=torch.int32), tag_lengths]),
    )
    labels = torch.randint(0, 2, (rows, len(schema.tasks)), generator=g).float()
    return Batch(torch.randn(rows, 2, generator=g), kjt, labels, torch.ones(rows, dtype=torch.bool), torch.full((rows,), -1))


@pytest.mark.parametrize("num_tasks", [2, 3])
def test_multitask_mmoe_outputs_one_logit_per_task(num_tasks):
    schema = _schema(num_tasks)
    model = build_multitask_model(MMoEConfig(name="mmoe", embedding_dim=4, num_experts=3), schema)
    logits = model(_batch(schema))
    assert logits.shape == (6, num_tasks)
    loss, (detached, out_logits, labels) = MultiTaskTrain(model, schema.tasks)(_batch(schema))
    assert loss.requires_grad and not detached.requires_grad and out_logits.shape == (6, num_tasks)


def test_gate_weights_are_distributions_over_experts():
    mmoe = MMoE(input_dim=10, num_tasks=3, num_experts=5, expert_hidden=(8,), tower_hidden=(4,))
    weights = mmoe.gate_weights(torch.randn(7, 10))
    assert weights.shape == (7, 3, 5)
    assert torch.all(weights >= 0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(7, 3))


def test_loss_is_weighted_mean_of_task_losses_over_real_rows():
    schema = _schema(3)
    model = build_multitask_model(MMoEConfig(name="mmoe", embedding_dim=4, num_experts=2), schema)
    batch = _batch(schema, rows=8)
    batch.mask = torch.tensor([True] * 5 + [False] * 3)
    loss, (_, logits, labels) = MultiTaskTrain(model, schema.tasks, task_weights=[1.0, 3.0, 0.0])(batch)
    real = slice(0, 5)
    expected = (
        1.0 * F.binary_cross_entropy_with_logits(logits[real, 0], labels[real, 0])
        + 3.0 * F.binary_cross_entropy_with_logits(logits[real, 1], labels[real, 1])
    ) / 4.0
    torch.testing.assert_close(loss, expected)


def test_regression_tasks_use_squared_error():
    schema = _schema(3)
    model = build_multitask_model(MMoEConfig(name="mmoe", embedding_dim=4, num_experts=2), schema)
    train = MultiTaskTrain(model, schema.tasks)
    batch = _batch(schema)
    logits = model(batch)
    losses = train.task_losses(logits, batch.labels, batch.mask)
    torch.testing.assert_close(losses[2], F.mse_loss(logits[:, 2], batch.labels[:, 2]))


def test_bad_task_weights_are_rejected():
    schema = _schema(2)
    model = build_multitask_model(MMoEConfig(name="mmoe", embedding_dim=4, num_experts=2), schema)
    with pytest.raises(ValueError, match="task weights"):
        MultiTaskTrain(model, schema.tasks, task_weights=[1.0, -1.0])


@pytest.mark.parametrize("expert_batchnorm", [False, True])
def test_expert_batchnorm_normalizes_every_expert_linear_and_is_off_by_default(expert_batchnorm):
    """``model.expert_batchnorm``: each expert layer is Linear -> BatchNorm -> ReLU, so scaling a Linear's
    weights and bias changes nothing in training mode; without it (the paper's MMoE, the default) the
    experts are Linear -> ReLU and the same scaling changes their outputs."""
    torch.manual_seed(0)
    config = MMoEConfig(name="mmoe", num_experts=3, expert_hidden=[8, 6], tower_hidden=[4], expert_batchnorm=expert_batchnorm)
    mmoe = model_entry("mmoe").build(config, _schema(2)).train()
    layer = [torch.nn.Linear, torch.nn.BatchNorm1d, torch.nn.ReLU] if expert_batchnorm else [torch.nn.Linear, torch.nn.ReLU]
    assert all([type(m) for m in expert] == layer * 2 for expert in mmoe.experts.experts)
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in mmoe.towers.modules())
    x = torch.randn(32, mmoe.gates.in_features)
    before = mmoe.experts(x)
    with torch.no_grad():
        for linear in (m for expert in mmoe.experts.experts for m in expert if isinstance(m, torch.nn.Linear)):
            linear.weight.mul_(3.0)
            linear.bias.mul_(3.0)
    change = (mmoe.experts(x) - before).abs().max().item()
    assert change < 1e-3 if expert_batchnorm else change > 0.1
    assert MMoEConfig().expert_batchnorm is False
