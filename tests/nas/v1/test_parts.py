"""Paper 000's parts: the JSD loss and its decay, the interaction and expert ops, the variant switches,
top-c selection, and the derived model against the discretized supernet."""

import json
import math

import pytest
import torch

from torchrec_automtl.datasets.batch import Batch
from torchrec_automtl.modules.multitask import MultiTaskModel
from torchrec_automtl.nas.architecture import ArchitectureError
from torchrec_automtl.nas.derived import AutoMTLConfig, build_automtl
from torchrec_automtl.nas.operations import build_operation
from torchrec_automtl.nas.v1.architecture import V1Architecture
from torchrec_automtl.nas.v1.derived import V1DerivedArch, derive_v1_from_supernet
from torchrec_automtl.nas.v1.interaction import build_interaction
from torchrec_automtl.nas.v1.search import SelectionRegularizedTrain
from torchrec_automtl.nas.v1.space import V1SearchConfig, V1SearchSpaceConfig
from torchrec_automtl.nas.v1.supernet import V1Supernet, negative_jensen_shannon
from tests.nas.helpers import DENSE, SCHEMA, SPARSE, TASKS

INTERACTIONS = ["skip", "inner-product", "outer-product", "cross-2", "attention-2", "mlp-8"]
EXPERT_OPERATIONS = ["gating", "mlp-4", "conv1d-3", "conv1d-5", "skip"]


def small_v1_config(**overrides) -> V1SearchSpaceConfig:
    values = dict(embedding_dim=4, width=8, interaction_operations=INTERACTIONS, num_experts=4, num_blocks=2,
                  expert_operations=EXPERT_OPERATIONS, top_experts=2, tower_hidden=[8])
    values.update(overrides)
    return V1SearchSpaceConfig(**values)


def _supernet(seed: int = 0, **overrides) -> V1Supernet:
    torch.manual_seed(seed)
    net = V1Supernet(small_v1_config(**overrides), SPARSE, DENSE, TASKS)
    with torch.no_grad():
        for parameter in net.architecture_parameters() + net.selection_parameters():
            parameter.normal_(0, 2)
    return net


def _inputs(seed: int, rows: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(rows, 3, 4, generator=g), torch.randn(rows, 2, generator=g)


# --- the JSD auxiliary loss (eq. 2) and its schedule ----------------------------------------------------

def test_jsd_is_zero_for_identical_distributions_and_minus_log_k_for_disjoint_one_hot_ones():
    same = torch.tensor([[0.1, 0.2, 0.3, 0.4]] * 3)
    assert negative_jensen_shannon(same).item() == pytest.approx(0.0, abs=1e-7)
    assert negative_jensen_shannon(torch.eye(2, 4)).item() == pytest.approx(-math.log(2), abs=1e-7)
    assert negative_jensen_shannon(torch.eye(3, 5)).item() == pytest.approx(-math.log(3), abs=1e-7)
    # Anything between lies between: entropy of the mean minus the mean entropy, in [0, log K].
    mixed = torch.rand(3, 5, generator=torch.Generator().manual_seed(0)).softmax(dim=1)
    assert -math.log(3) < negative_jensen_shannon(mixed).item() < 0


def test_jsd_gradient_pushes_the_tasks_apart():
    beta = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.2, 0.0]], requires_grad=True)
    negative_jensen_shannon(beta.softmax(dim=1)).backward()
    with torch.no_grad():
        stepped = beta - 0.5 * beta.grad
    assert negative_jensen_shannon(stepped.softmax(dim=1)) < negative_jensen_shannon(beta.detach().softmax(dim=1))


def test_jsd_weight_and_auxiliary_skip_decay_linearly_to_zero():
    search = V1SearchConfig(epochs=5)
    assert [search.decay(epoch) for epoch in range(5)] == [1.0, 0.75, 0.5, 0.25, 0.0]
    assert V1SearchConfig(epochs=1, selection_warmup_epochs=0).decay(0) == 1.0


def test_the_jsd_term_joins_the_training_loss_only():
    net = _supernet()
    model = SelectionRegularizedTrain(MultiTaskModel(None, net, [], 4), SCHEMA.tasks)
    embeddings, dense = _inputs(0, 8)
    batch = Batch(dense_features=dense, sparse_features=None, labels=torch.rand(8, 2).round(), mask=torch.ones(8, dtype=torch.bool),
                  group_ids=torch.full((8,), -1))
    model.model.pooled_embeddings = lambda batch: embeddings  # no EBC here: feed the embeddings directly
    plain, _ = model(batch)
    model.jsd_weight = 0.5
    regularized, (reported, _, _) = model(batch)
    assert regularized.item() == pytest.approx(plain.item() + 0.5 * net.selection_loss().item(), rel=1e-6)
    assert reported.item() == pytest.approx(plain.item(), rel=1e-6)  # the logged loss stays the task loss
    assert model.eval()(batch)[0].item() == pytest.approx(plain.item(), rel=1e-6)


# --- interaction and expert ops --------------------------------------------------------------------------

def test_interaction_signals_match_their_definitions():
    torch.manual_seed(0)
    fields = torch.randn(5, 3, 4)
    inner = build_interaction("inner-product", 3, 4, 8).signal(fields)
    pairs = [(fields[:, i] * fields[:, j]).sum(dim=1) for i in range(3) for j in range(i + 1, 3)]
    torch.testing.assert_close(inner, torch.cat([fields.flatten(1), torch.stack(pairs, dim=1)], dim=1))
    outer = build_interaction("outer-product", 3, 4, 8).signal(fields)
    pooled = fields.sum(dim=1)
    torch.testing.assert_close(outer[:, 12:].view(5, 4, 4), torch.einsum("bi,bj->bij", pooled, pooled))
    cross = build_interaction("cross-2", 3, 4, 8).signal
    x0 = x = fields.flatten(1)
    for weight, bias in zip(cross.weights, cross.biases):
        x = x0 * (x @ weight)[:, None] + bias + x
    torch.testing.assert_close(cross(fields), x)
    for name in INTERACTIONS:
        assert build_interaction(name, 3, 4, 8)(fields).shape == (5, 8)


def test_bad_interaction_names_are_refused_by_name():
    with pytest.raises(ValueError, match="does not divide into 3 heads"):
        build_interaction("attention-3", 3, 4, 8)
    with pytest.raises(ValueError, match="unknown interaction 'fm'"):
        build_interaction("fm", 3, 4, 8)
    with pytest.raises(ValueError, match="search_space.interaction_operations"):
        small_v1_config(interaction_operations=["skip", "cross-0"])
    with pytest.raises(ValueError, match="search_space.expert_operations"):
        small_v1_config(expert_operations=["conv1d-4"])
    with pytest.raises(ValueError, match="top_experts=5 exceeds"):
        small_v1_config(top_experts=5)


def test_bit_level_gating_and_sized_conv1d_per_expert():
    torch.manual_seed(0)
    x = torch.randn(3, 6, 8)
    gating = build_operation("gating", 3, 8)
    for j in range(3):
        expected = x[j] * torch.sigmoid(x[j] @ gating.gate.weight[j] + gating.gate.bias[j])
        torch.testing.assert_close(gating(x)[j], expected)
        torch.testing.assert_close(gating.expert(j)(x[j]), expected)
    conv = build_operation("conv1d-5", 3, 8)
    assert conv.conv.kernel_size == (5,)
    torch.testing.assert_close(conv.expert(1)(x[1]), conv(x)[1])


# --- the supernet's variant switches and selection --------------------------------------------------------

def test_discretize_keeps_the_top_c_experts_of_every_task_and_the_argmax_ops():
    net = _supernet(top_experts=3)
    net.discretize()
    assert net.expert_kept.sum(dim=1).tolist() == [3, 3]
    for task in range(2):
        assert set(net.expert_kept[task].nonzero().flatten().tolist()) == set(net.beta[task].topk(3).indices.tolist())
    assert torch.equal(net.block_choice, net.alpha_experts.argmax(dim=-1))
    assert int(net.interaction_choice) == int(net.alpha_interaction.argmax())
    weights = net.selection_weights()
    assert torch.all(weights[~net.expert_kept] == 0)
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(2))


def test_variant_switches_change_the_supernet_as_named():
    full = _supernet()
    assert full.alpha_interaction.numel() == len(INTERACTIONS) and full.alpha_experts.shape == (4, 2, len(EXPERT_OPERATIONS))
    assert full.beta is not None and full.gates is None and full.selection_loss().item() < 0
    no_interaction = _supernet(interaction=False)  # w/o INT: only the linear projection of the fields
    assert no_interaction.alpha_interaction.numel() == 1 and len(no_interaction.interactions) == 1
    homogeneous = _supernet(homogeneous_experts=True)  # hom Expert: one architecture for every expert
    assert homogeneous.alpha_experts.shape == (1, 2, len(EXPERT_OPERATIONS))
    homogeneous.discretize()
    assert all(torch.equal(homogeneous.block_choice[0], row) for row in homogeneous.block_choice)
    no_selection = _supernet(expert_selection=False)  # w/o SEL: gating networks, no beta, no JSD
    assert no_selection.beta is None and no_selection.selection_parameters() == []
    assert no_selection.gates is not None and no_selection.selection_loss().item() == 0.0
    no_selection.discretize()
    assert bool(no_selection.expert_kept.all())
    embeddings, dense = _inputs(0)
    for net in (full, no_interaction, homogeneous, no_selection):
        assert net(embeddings, dense).shape == (16, 2)


def test_the_auxiliary_skip_adds_the_block_input():
    net = _supernet().eval()
    embeddings, dense = _inputs(1)
    with torch.no_grad():
        plain = net(embeddings, dense)
        net.auxiliary_skip = 0.7
        assert not torch.allclose(net(embeddings, dense), plain)


# --- the derived model --------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed, overrides", [(0, {}), (1, {"expert_selection": False}), (2, {"mlp_batchnorm": True}),
                                             (3, {"homogeneous_experts": True, "top_experts": 1})])
def test_derived_model_reproduces_the_discretized_supernet(seed, overrides):
    net = _supernet(seed, **overrides)
    embeddings, dense = _inputs(seed, 64)
    net.train()(embeddings * 3 + 1, dense)  # BatchNorm statistics away from their init
    net.discretize()
    net.eval()
    derived = derive_v1_from_supernet(net, SCHEMA).eval()
    embeddings, dense = _inputs(seed + 100)
    with torch.no_grad():
        torch.testing.assert_close(derived(embeddings, dense), net(embeddings, dense), rtol=1e-5, atol=1e-6)
    chosen = derived.architecture.task_experts
    selected = set().union(*chosen.values())
    assert len(derived.experts) == len(selected) < 4 or not net.config.expert_selection
    for gate, task in zip(derived.gates, TASKS):  # retraining builds gates over exactly the selected experts
        assert gate.out_features == len(chosen[task]) == (net.config.top_experts if net.config.expert_selection else 4)


def test_v1_architecture_round_trips_and_builds_as_model_automtl(tmp_path):
    net = _supernet(5)
    net.discretize()
    architecture = V1Architecture.from_supernet(net, SCHEMA)
    path = architecture.save(tmp_path / "architecture.json")
    payload = json.loads(path.read_text())
    assert payload["method"] == "v1" and payload["interaction"] in INTERACTIONS
    assert all(op in EXPERT_OPERATIONS for e in payload["experts"] for op in e["operations"])
    model = build_automtl(AutoMTLConfig(name="automtl", embedding_dim=4, architecture=str(path)), SCHEMA)
    assert isinstance(model, V1DerivedArch) and model.architecture == architecture
    payload["task_experts"]["click"] = ["expert9"]
    path.write_text(json.dumps(payload))
    with pytest.raises(ArchitectureError, match=r"task_experts\['click'\]"):
        build_automtl(AutoMTLConfig(name="automtl", embedding_dim=4, architecture=str(path)), SCHEMA)


def test_an_undiscretized_supernet_has_no_architecture():
    with pytest.raises(ArchitectureError, match="not discretized"):
        V1Architecture.from_supernet(_supernet(), SCHEMA)


def test_the_search_steps_its_weights_with_its_own_optimizer_and_fine_tuning_keeps_the_trainers(tmp_path):
    from torchrec_automtl.nas.search_config import NasConfig
    from torchrec_automtl.nas.v1.search import V1Search
    from torchrec_automtl.pipelines.config import DatasetConfig, TrainerConfig

    trainer = TrainerConfig(dense_optimizer="adam", dense_lr=0.003)
    for optimizer, lr in (("sgd", 0.02), ("adam", 0.001)):
        search = V1SearchConfig(weight_optimizer=optimizer, weight_lr=lr)
        config = NasConfig(DatasetConfig(path=str(tmp_path)), small_v1_config(), search, trainer, method="v1")
        options = V1Search(config, tmp_path).trainer.options
        assert (options.dense_optimizer, options.dense_lr, options.lr_schedule) == (optimizer, lr, "cosine")
    assert (trainer.dense_optimizer, trainer.dense_lr, trainer.lr_schedule) == ("adam", 0.003, "constant")
    with pytest.raises(ValueError, match="search.weight_optimizer must be one of"):
        V1SearchConfig(weight_optimizer="rmsprop")


def test_an_unknown_architecture_objective_is_named():
    with pytest.raises(ValueError, match="search.architecture_objective must be one of"):
        V1SearchConfig(architecture_objective="geometric")
