"""Each search switch changes the built supernet or the schedule as its name says (paper 001's ablations and the official code's choices)."""

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from torchrec_automtl.nas.architecture import Architecture
from torchrec_automtl.nas.discretization import apply_decisions, next_decisions, prune_operations, undecided_count
from torchrec_automtl.nas.operations import MLP
from torchrec_automtl.nas.pd_darts import ArchitectureSearch
from torchrec_automtl.nas.search_config import SearchConfig
from torchrec_automtl.nas.selection import selection_mask
from tests.nas.helpers import SCHEMA, small_supernet


def _inputs(rows=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(rows, 3, 4, generator=g), torch.randn(rows, 2, generator=g)


def test_all_ones_masks_keep_every_undecided_item_and_pass_the_straight_through_gradient():
    beta = torch.tensor([[-3.0, 0.0, 2.0]], requires_grad=True)
    decided, kept = torch.tensor([[False, False, True]]), torch.tensor([[False, False, False]])
    for sample in (True, False):  # the same in training and evaluation
        mask = selection_mask(beta, decided, kept, sample=sample, rows=5, all_ones=True)
        assert mask.tolist() == [[[1.0, 1.0, 0.0]]]
    (mask[0, 0] * torch.tensor([1.0, -2.0, 7.0])).sum().backward()
    slope = torch.sigmoid(beta.detach()) * (1 - torch.sigmoid(beta.detach()))
    torch.testing.assert_close(beta.grad, slope * torch.tensor([[1.0, -2.0, 0.0]]))


def test_supernet_with_no_sampling_sees_every_feature_while_searching():
    net = small_supernet(selection_sampling="none").train()
    with torch.no_grad():
        net.feature_beta.fill_(-5.0)  # far below the threshold: sampling would drop almost everything
    assert torch.all(net.feature_mask(32) == 1) and torch.all(net.connection_mask(32) == 1)
    embeddings, dense = _inputs()
    net(embeddings, dense).sum().backward()
    assert net.feature_beta.grad.abs().sum() > 0


@pytest.mark.parametrize("kind", ["feature", "connection"])
def test_turning_a_selection_off_keeps_every_item_of_that_kind(kind):
    net = small_supernet(**{f"{kind}_selection": False})
    decided, kept = getattr(net, f"{kind}_decided"), getattr(net, f"{kind}_kept")
    assert decided.all() and kept.all()
    other = "connection" if kind == "feature" else "feature"
    assert not getattr(net, f"{other}_decided").any()
    assert undecided_count(net, (kind,)) == 0
    apply_decisions(net, next_decisions(net, 10_000))
    architecture = Architecture.from_supernet(net, SCHEMA)
    if kind == "feature":
        assert all(len(e.features) == 5 for e in architecture.layers[0]) and all(len(g.features) == 5 for g in architecture.gates)
    else:
        assert all(len(g.experts) == 3 for g in architecture.gates)


def test_homogeneous_experts_have_one_op_and_nothing_to_search():
    net = small_supernet(operations=["mlp-16"])
    assert net.alpha.shape[-1] == 1
    apply_decisions(net, next_decisions(net, 10_000))
    histogram = Architecture.from_supernet(net, SCHEMA).operation_histogram(used_only=False)
    assert histogram == {"mlp-16": 2 * 3 * 2}


def test_auxiliary_skip_adds_a_scaled_identity_around_every_block():
    net = small_supernet(operations=["mlp-4"]).eval()
    layer, x = net.layers[1], torch.randn(3, 6, 8)
    weights = torch.ones(3, 2, 1)
    plain = layer(x, weights)
    first = layer.blocks[0](x, weights[:, 0])
    expected = layer.blocks[1](first + 0.5 * x, weights[:, 1]) + 0.5 * (first + 0.5 * x)
    torch.testing.assert_close(layer(x, weights, auxiliary_skip=0.5), expected)
    assert not torch.allclose(plain, expected)


def test_auxiliary_skip_weight_decays_linearly_to_zero_at_the_last_epoch():
    search = SearchConfig(epochs=5, auxiliary_skip=1.0)
    assert [search.auxiliary_skip_weight(e) for e in range(6)] == [1.0, 0.75, 0.5, 0.25, 0.0, 0.0]
    assert SearchConfig(epochs=5, auxiliary_skip=0.0).auxiliary_skip_weight(0) == 0.0


def test_gumbel_relaxation_samples_block_weights_in_training_only():
    search = SearchConfig(epochs=5, relaxation="gumbel", gumbel_temperature=1.0, gumbel_final_temperature=0.2)
    assert [round(search.temperature(e), 6) for e in (0, 2, 4)] == [1.0, 0.6, 0.2]
    assert SearchConfig(epochs=5).temperature(0) is None
    net = small_supernet()
    net.gumbel_temperature = 1.0
    torch.manual_seed(0)
    first, second = net.training_block_weights(), net.training_block_weights()
    assert not torch.allclose(first, second)  # a fresh sample per step
    torch.testing.assert_close(first.sum(-1), torch.ones(first.shape[:-1]))
    with torch.no_grad():
        net.block_decided[0, 0, 0], net.block_choice[0, 0, 0] = True, 2
    assert net.training_block_weights()[0, 0, 0].tolist() == [0.0, 0.0, 1.0, 0.0]  # decided blocks stay one-hot
    net.gumbel_temperature = None
    torch.testing.assert_close(net.training_block_weights(), net.block_weights())


def test_sampled_paths_draw_one_op_per_block_position_for_all_experts_with_the_drawn_ops_alpha_gradient():
    net = small_supernet().train()  # 2 layers x 3 experts x 2 blocks x 4 ops
    net.sample_paths = True
    with torch.no_grad():
        net.alpha.normal_(generator=torch.Generator().manual_seed(1))
        net.block_decided[1, 2, 0], net.block_choice[1, 2, 0] = True, 3
    torch.manual_seed(0)
    weights = net.training_block_weights()
    drawn = weights.argmax(-1)  # [L, n, K]
    undecided = ~net.block_decided
    assert set(weights.detach().unique().tolist()) == {0.0, 1.0} and torch.all(weights.sum(-1) == 1)
    for layer in range(2):
        for block in range(2):
            ops = drawn[layer, :, block][undecided[layer, :, block]]
            assert torch.all(ops == ops[0])  # one draw shared by the layer's experts
    assert drawn[1, 2, 0] == 3  # a decided block runs its choice
    # alpha's gradient is DARTS's gradient of the drawn op's term: d softmax(alpha)[drawn] / d alpha
    signal = torch.randn(weights.shape, generator=torch.Generator().manual_seed(2))
    (weights * signal).sum().backward()
    alpha = net.alpha.detach().clone().requires_grad_(True)
    picked = alpha.softmax(-1).gather(-1, drawn.unsqueeze(-1)).squeeze(-1)
    (picked * signal.gather(-1, drawn.unsqueeze(-1)).squeeze(-1) * undecided).sum().backward()
    torch.testing.assert_close(net.alpha.grad, alpha.grad)
    assert net.alpha.grad[1, 2, 0].abs().sum() == 0
    # uniform draws: every op of every block position runs, about equally often
    with torch.no_grad():
        counts = sum(F.one_hot(net.sampled_path_weights().argmax(-1)[:, 0], 4) for _ in range(400))
    assert counts.min() > 70 and counts.max() < 130, counts


def test_a_sampled_path_forward_runs_one_op_per_block_and_evaluation_mixes_them_all():
    net = small_supernet()
    calls = []
    for layer in net.layers:
        for block in layer.blocks:
            for op in block.operations:
                op.register_forward_hook(lambda module, args, out: calls.append(module))
    embeddings, dense = _inputs()
    net.train()
    net.sample_paths = True
    net(embeddings, dense).sum().backward()
    assert len(calls) == 2 * 2  # layers x block positions, one op each
    calls.clear()
    net.eval()
    net(embeddings, dense)
    assert len(calls) == 2 * 2 * 4
    net.train()
    net.sample_paths = False
    torch.testing.assert_close(net.training_block_weights(), net.block_weights())


@pytest.mark.parametrize("relaxation", ["sampled", "softmax", "gumbel"])
def test_each_search_epoch_sets_the_relaxation_its_config_names(relaxation):
    search = ArchitectureSearch.__new__(ArchitectureSearch)  # the epoch hook alone, without a trainer
    search.config = SimpleNamespace(search=SearchConfig(epochs=5, relaxation=relaxation))
    search.supernet, search.architecture_optimizer = small_supernet(), SimpleNamespace(active=False)
    for epoch, stage in enumerate(["warmup_weights", "warmup_joint", "discretize"]):
        search._configure_epoch(epoch, stage)
        assert search.supernet.sample_paths is (relaxation == "sampled")
        assert (search.supernet.gumbel_temperature is not None) is (relaxation == "gumbel")
        assert search.architecture_optimizer.active is (stage != "warmup_weights")


def test_final_discretization_leaves_its_kinds_to_the_end():
    assert SearchConfig(block_discretization="final", selection_discretization="final").progressive_kinds == ()
    assert SearchConfig(selection_discretization="final").progressive_kinds == ("block",)
    net = small_supernet()
    apply_decisions(net, next_decisions(net, 10_000, kinds=("block",)))
    assert net.block_decided.all() and not net.feature_decided.any() and not net.connection_decided.any()


def test_mlp_batchnorm_normalizes_each_experts_hidden_units_separately():
    torch.manual_seed(0)
    op = MLP(num_experts=2, width=3, hidden=5, batchnorm=True).train()
    x = torch.randn(2, 64, 3)
    x[1] = x[1] * 10 + 4  # expert 2 sees a very different scale
    hidden = op.norm(op.up(x))
    torch.testing.assert_close(hidden.mean(dim=1), torch.zeros(2, 5), atol=1e-5, rtol=0)
    torch.testing.assert_close(hidden.var(dim=1, unbiased=False), torch.ones(2, 5), atol=1e-3, rtol=0)
    single = op.expert(1).eval()
    op.eval()
    torch.testing.assert_close(single(x[1]), op(x)[1])


@pytest.mark.parametrize("key, value", [("block_discretization", "sometimes"), ("relaxation", "gumble"), ("finetune", "both"),
                                        ("auxiliary_skip", -0.1), ("gumbel_final_temperature", 2.0),
                                        ("architecture_objective", "geometric")])
def test_bad_search_switches_are_named(key, value):
    with pytest.raises(ValueError, match=f"search.{key}"):
        SearchConfig(**{key: value})


def test_a_balanced_architecture_objective_needs_separate_architecture_steps():
    with pytest.raises(ValueError, match="search.architecture_objective=balanced needs search.optimization=bi_level"):
        SearchConfig(optimization="single_level", architecture_objective="balanced")


def test_operation_pruning_drops_the_weak_ops_of_undecided_blocks_and_stops_running_them():
    net = small_supernet()  # ops skip, linear, mlp-4, mlp-16 (M = 4); 2 layers x 3 experts x 2 blocks
    with torch.no_grad():
        net.alpha.zero_()
        net.alpha[0, :, 0] = torch.tensor([2.0, 1.0, -1.0, -1.5])  # weights ~ .67 .25 .03 .02 in layer 1's first blocks
        net.alpha[1, 0, 1] = torch.tensor([2.0, 1.0, -1.0, -1.5])
    apply_decisions(net, [d for d in next_decisions(net, 10_000, kinds=("block",)) if d.index == (1, 0, 1)])
    pruned = prune_operations(net, share=0.5)  # below 0.5 / 4 = 0.125 goes
    assert pruned == 3 * 2  # mlp-4 and mlp-16 of layer 1's three first blocks; the decided and the uniform blocks keep all
    assert net.operation_pruned[0, :, 0].tolist() == [[False, False, True, True]] * 3
    assert net.operation_pruned.sum() == pruned and prune_operations(net, share=0.5) == 0
    weights = net.block_weights()
    torch.testing.assert_close(weights[0, 0, 0], torch.cat([torch.tensor([2.0, 1.0]).softmax(0), torch.zeros(2)]))
    remaining = torch.tensor([2.0, 1.0]).softmax(0)  # the confidence of a pruned block is over the ops it kept
    block = next(d for d in next_decisions(net, 10_000, kinds=("block",)) if d.index == (0, 0, 0))
    assert block.value == 0 and block.confidence == pytest.approx(1 + float((remaining * remaining.log()).sum()) / math.log(4))

    seen = []
    net.layers[0].blocks[0].operations[3].register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].shape[0]))
    net.train()(*_inputs()).sum().backward()
    assert seen == []  # no expert of layer 1's first block runs mlp-16 any more
    assert net.alpha.grad[0, :, 0, 2:].abs().sum() == 0 and net.alpha.grad[0, :, 0, :2].abs().sum() > 0


@pytest.mark.parametrize("share, relaxation", [(0.0, "softmax"), (0.5, "softmax"), (0.5, "sampled")])
def test_operation_pruning_starts_after_the_first_epoch_with_architecture_steps(share, relaxation):
    search = ArchitectureSearch.__new__(ArchitectureSearch)  # the epoch hook alone, without a trainer
    search.config = SimpleNamespace(search=SearchConfig(epochs=5, warmup_weights_epochs=1, warmup_joint_epochs=2,
                                                        operation_pruning=share, relaxation=relaxation))
    prunes = share > 0 and relaxation != "sampled"  # sampled paths never prune
    search.trainer = SimpleNamespace(ctx=SimpleNamespace(is_main=True, world_size=1))
    search.supernet, search.architecture_optimizer = small_supernet(), SimpleNamespace(active=False)
    search.stages = ["warmup_weights", "warmup_joint", "warmup_joint"]
    with torch.no_grad():
        search.supernet.alpha[..., 3] = -5.0  # mlp-16 weighs almost nothing anywhere
    records = [search.start_epoch(None, epoch) for epoch in range(3)]
    assert [record.get("pruned_operations") for record in records] == ([None, None, 2 * 3 * 2] if prunes else [None] * 3)
    assert bool(search.supernet.operation_pruned.any()) is prunes


@pytest.mark.parametrize("share", [-0.1, 1.0])
def test_operation_pruning_outside_its_range_is_named(share):
    with pytest.raises(ValueError, match=r"search.operation_pruning must be in \[0, 1\)"):
        SearchConfig(operation_pruning=share)


@pytest.mark.parametrize("relaxation, prunes", [("softmax", True), ("gumbel", True), ("sampled", False)])
def test_sampled_paths_never_prune_ops(relaxation, prunes):
    assert SearchConfig(operation_pruning=0.5, relaxation=relaxation).prunes_operations is prunes
    assert not SearchConfig(operation_pruning=0.0, relaxation=relaxation).prunes_operations
