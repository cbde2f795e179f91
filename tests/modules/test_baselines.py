"""Every hand-designed baseline trains a step on 2 and on 3 tasks with the right output shape; task-specific
experts, gates and paths serve only their task where the design says so."""

from typing import Iterator

import pytest
import torch

from torchrec_automtl.modules.moe_blocks import ExpertGroup, SoftmaxGate
from torchrec_automtl.modules.multitask import MultiTaskTrain, build_multitask_model
from torchrec_automtl.modules.registry import model_entry
from tests.modules.test_mmoe import _batch, _schema

BASELINES = ["single_task", "shared_bottom", "mmoe", "ml_mmoe", "cgc", "ple", "aitm", "adatt"]
SMALL = {
    "single_task": {"bottom_hidden": [16, 8]},
    "shared_bottom": {"bottom_hidden": [16, 8], "tower_hidden": [8]},
    "mmoe": {"num_experts": 3, "expert_hidden": [16, 8], "tower_hidden": [8]},
    "ml_mmoe": {"num_experts": 3, "expert_hidden": [16, 8], "tower_hidden": [8]},
    "cgc": {"specific_experts": 1, "shared_experts": 2, "expert_hidden": [16, 8], "tower_hidden": [8]},
    "ple": {"specific_experts": 1, "shared_experts": 2, "expert_hidden": [16, 8], "tower_hidden": [8]},
    "aitm": {"tower_hidden": [16, 8]},
    "adatt": {"specific_experts": 1, "shared_experts": 2, "expert_hidden": [16, 8], "tower_hidden": [8]},
}


@pytest.mark.parametrize("num_tasks", [2, 3])
@pytest.mark.parametrize("name", BASELINES)
def test_baseline_trains_one_step_with_one_logit_per_task(name, num_tasks):
    schema = _schema(num_tasks)
    config = model_entry(name).config_class(name=name, embedding_dim=4, **SMALL[name])
    torch.manual_seed(0)
    train = MultiTaskTrain(build_multitask_model(config, schema), schema.tasks)
    optimizer = torch.optim.Adam(train.parameters(), lr=0.01)
    batch = _batch(schema, rows=16)
    before = {n: p.detach().clone() for n, p in train.named_parameters()}
    loss, (_, logits, _) = train(batch)
    loss.backward()
    optimizer.step()
    assert logits.shape == (16, num_tasks) and torch.isfinite(loss)
    dense_arch = {n: p for n, p in train.named_parameters() if ".dense_arch." in f".{n}"}
    assert all(not torch.equal(before[n], p) for n, p in dense_arch.items() if p.grad is not None)
    assert sum(p.grad is not None for p in dense_arch.values()) == len(dense_arch)  # every weight is used


def test_ple_levels_and_cgc_default():
    assert model_entry("cgc").config_class(name="cgc").num_levels == 1
    assert model_entry("ple").config_class(name="ple").num_levels == 2


def test_softmax_gate_mixes_with_weights_summing_to_one():
    gate, experts = SoftmaxGate(5, 4), ExpertGroup(5, 4, [6, 3])
    x = torch.randn(7, 5)
    weights = gate.weights(x)
    torch.testing.assert_close(weights.sum(-1), torch.ones(7))
    outputs = experts(x)
    torch.testing.assert_close(gate(x, outputs), (weights.unsqueeze(-1) * outputs).sum(1))


def _reached(module: torch.nn.Module) -> bool:
    """Whether the last backward pass reached any weight of ``module``."""
    return any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())


def _backward_per_task(name: str, num_tasks: int = 3) -> Iterator[tuple[int, torch.nn.Module]]:
    """``(task, dense arch)`` with the gradients of that task's logits alone, for each task in turn."""
    config = model_entry(name).config_class(name=name, embedding_dim=4, **SMALL[name])
    network = build_multitask_model(config, _schema(num_tasks)).dense_arch
    embeddings, dense = torch.randn(5, 2, 4), torch.randn(5, 2)
    for task in range(num_tasks):
        network.zero_grad()
        network(embeddings, dense)[:, task].sum().backward()
        yield task, network


def test_aitm_passes_information_only_from_earlier_to_later_tasks():
    for task, aitm in _backward_per_task("aitm"):
        for other, tower in enumerate(aitm.towers):
            assert _reached(tower) == (other <= task), (task, other)


@pytest.mark.parametrize("name", ["cgc", "ple"])
def test_a_tasks_loss_reaches_no_other_tasks_own_experts_or_gates_in_the_last_level(name):
    """CGC/PLE: task t reads its own and the shared experts. In PLE the lower levels' shared gate mixes
    every task's experts into the shared stream, so only there do other tasks' experts serve task t."""
    for task, network in _backward_per_task(name):
        last = network.levels[-1]
        for other in range(3):
            assert _reached(last.task_experts[other]) == (other == task), (task, other)
            assert _reached(last.task_gates[other]) == (other == task), (task, other)
        assert _reached(last.shared_experts)
        for lower in network.levels[:-1]:  # PLE only
            assert all(_reached(experts) for experts in lower.task_experts)  # through the shared gate
            assert [_reached(gate) for gate in lower.task_gates] == [other == task for other in range(3)]


def test_adatt_fuses_every_tasks_experts_but_its_native_path_and_gate_stay_the_tasks_own():
    for task, network in _backward_per_task("adatt"):
        last = network.levels[-1]
        assert all(_reached(experts) for experts in last.task_experts)  # task-to-task fusion
        assert [_reached(gate) for gate in last.task_gates] == [other == task for other in range(3)]
        native = last.native_weights.grad.abs().sum(dim=1)
        assert [bool(g > 0) for g in native] == [other == task for other in range(3)]


def _expert_modules(model: torch.nn.Module) -> list[torch.nn.Module]:
    """Every expert MLP of a PLE / CGC / AdaTT / ML-MMoE model."""
    groups = [m for m in model.modules() if isinstance(m, ExpertGroup)]
    upper = [mlp for level in getattr(model, "upper_levels", []) for mlp in level]
    return [expert for group in groups for expert in group.experts] + upper


@pytest.mark.parametrize("name", ["ple", "cgc", "adatt", "ml_mmoe"])
@pytest.mark.parametrize("expert_batchnorm", [False, True])
def test_expert_batchnorm_reaches_every_expert_of_the_multi_level_baselines(name, expert_batchnorm):
    """``model.expert_batchnorm`` (as ``model=mmoe_bn``): every expert layer is Linear -> BatchNorm -> ReLU;
    towers and gates get none; off by default."""
    entry = model_entry(name)
    config = entry.config_class(name=name, expert_hidden=[8, 6], tower_hidden=[4], expert_batchnorm=expert_batchnorm)
    model = entry.build(config, _schema(2))
    experts = _expert_modules(model)
    layer = [torch.nn.Linear, torch.nn.BatchNorm1d, torch.nn.ReLU] if expert_batchnorm else [torch.nn.Linear, torch.nn.ReLU]
    assert experts and all([type(m) for m in expert] == layer * 2 for expert in experts)
    in_experts = sum(isinstance(m, torch.nn.BatchNorm1d) for expert in experts for m in expert.modules())
    assert sum(isinstance(m, torch.nn.BatchNorm1d) for m in model.modules()) == in_experts
    assert entry.config_class(name=name).expert_batchnorm is False
