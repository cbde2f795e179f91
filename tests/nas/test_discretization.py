import math

import pytest
import torch

from torchrec_automtl.nas.discretization import (
    apply_decisions,
    block_confidence,
    is_discretized,
    next_decisions,
    normalized_entropy,
    selection_confidence,
)
from tests.nas.helpers import small_supernet


def test_normalized_entropy_is_zero_for_one_hot_and_one_for_uniform():
    alpha = torch.tensor([[0.0, 0.0, 0.0, 0.0], [100.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0]])
    entropy = normalized_entropy(alpha)
    assert entropy[0] == pytest.approx(1.0)
    assert entropy[1] == pytest.approx(0.0, abs=1e-6)
    p = torch.softmax(alpha[2], 0)
    assert entropy[2] == pytest.approx(float(-(p * p.log()).sum() / math.log(4)))
    torch.testing.assert_close(block_confidence(alpha), 1 - entropy)


def test_selection_confidence_is_distance_from_the_threshold():
    beta = torch.tensor([0.0, 2.0, -2.0, 10.0])
    confidence = selection_confidence(beta)
    torch.testing.assert_close(confidence, torch.tanh(beta.abs() / 2))  # |2 sigmoid(b) - 1| = tanh(|b| / 2)
    assert confidence[0] == 0 and confidence[1] == pytest.approx(float(confidence[2])) and confidence[3] > 0.99


def test_most_confident_items_are_decided_first_across_kinds():
    net = small_supernet()
    with torch.no_grad():
        net.alpha.zero_()
        net.feature_beta.zero_()
        net.connection_beta.zero_()
        net.alpha[1, 2, 0] = torch.tensor([0.0, 9.0, 0.0, 0.0])  # very sure block -> op 1
        net.alpha[0, 0, 1] = torch.tensor([2.0, 0.0, 0.0, 0.0])  # fairly sure block -> op 0
        net.feature_beta[4, 3] = -6.0  # very sure drop
        net.connection_beta[2, 1] = 3.0  # sure keep
    confidences = {
        "block_a": float(block_confidence(net.alpha.detach()[1, 2, 0])),
        "block_b": float(block_confidence(net.alpha.detach()[0, 0, 1])),
        "feature": float(selection_confidence(net.feature_beta.detach()[4, 3])),
        "connection": float(selection_confidence(net.connection_beta.detach()[2, 1])),
    }
    expected = sorted(confidences, key=confidences.get, reverse=True)
    decisions = next_decisions(net, 4)
    got = {("block", (1, 2, 0)): "block_a", ("block", (0, 0, 1)): "block_b",
           ("feature", (4, 3)): "feature", ("connection", (2, 1)): "connection"}
    assert [got[(d.kind, d.index)] for d in decisions] == expected
    values = {got[(d.kind, d.index)]: d.value for d in decisions}
    assert values == {"block_a": 1, "block_b": 0, "feature": 0, "connection": 1}
    apply_decisions(net, decisions)
    assert net.block_decided[1, 2, 0] and net.block_choice[1, 2, 0] == 1
    assert net.feature_decided[4, 3] and not net.feature_kept[4, 3]
    assert net.connection_decided[2, 1] and net.connection_kept[2, 1]
    assert all((d.kind, d.index) not in got for d in next_decisions(net, 1000))


def test_a_gate_never_loses_all_its_experts_and_keeps_the_strongest():
    net = small_supernet()
    with torch.no_grad():
        net.connection_beta[0] = torch.tensor([-3.0, -1.0, -2.0])  # every connection says drop
    decisions = [d for d in next_decisions(net, 10_000) if d.kind == "connection" and d.index[0] == 0]
    assert all(d.value == 0 for d in decisions)
    added = apply_decisions(net, decisions)
    assert [(d.kind, d.index) for d in added] == [("connection", (0, 1))]  # beta -1 is the strongest
    assert net.connection_kept[0].tolist() == [False, True, False]


def test_an_expert_never_loses_all_its_input_features():
    net = small_supernet()
    with torch.no_grad():
        net.feature_beta[1] = torch.tensor([-2.0, -5.0, -4.0, -3.0, -6.0])
    apply_decisions(net, [d for d in next_decisions(net, 10_000) if d.kind == "feature" and d.index[0] == 1])
    assert net.feature_kept[1].tolist() == [True, False, False, False, False]


def test_discretization_ends_with_a_regular_network():
    net = small_supernet()
    steps = 0
    while not is_discretized(net):
        apply_decisions(net, next_decisions(net, 7))
        steps += 1
    total = net.block_decided.numel() + net.feature_decided.numel() + net.connection_decided.numel()
    assert steps == math.ceil(total / 7)
    assert net.feature_kept.any(dim=1).all() and net.connection_kept.any(dim=1).all()
