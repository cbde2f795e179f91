"""Mixture-of-operations blocks: an op runs only for the experts that weigh it, with the same results."""

import copy

import pytest
import torch

from torchrec_automtl.nas.supernet import MixtureOfOperations

OPERATIONS = ["skip", "linear", "mlp-4", "mlp-16", "conv1d", "gating"]


def _mixed_weights(num_experts: int, decided: dict[int, int]) -> torch.Tensor:
    """Softmax weights per expert, one-hot for the ``decided`` experts (expert -> op)."""
    weights = torch.randn(num_experts, len(OPERATIONS), generator=torch.Generator().manual_seed(3)).softmax(-1)
    for expert, op in decided.items():
        weights[expert] = torch.nn.functional.one_hot(torch.tensor(op), len(OPERATIONS)).float()
    return weights


def _every_op_for_every_expert(block: MixtureOfOperations, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """The reference: the weighted sum of every op run for all experts."""
    return sum(weights[:, m, None, None] * op(x) for m, op in enumerate(block.operations))


@pytest.mark.parametrize("training", [True, False])
def test_decided_experts_skip_the_ops_they_did_not_choose_with_identical_results(training):
    torch.manual_seed(0)
    block = MixtureOfOperations(OPERATIONS, num_experts=4, width=8, mlp_batchnorm=True)
    for module in block.modules():  # distinct running statistics per channel, so mixing up channels shows
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
    reference = copy.deepcopy(block)
    block.train(training), reference.train(training)
    weights = _mixed_weights(4, decided={1: OPERATIONS.index("mlp-16"), 3: OPERATIONS.index("linear")})
    x = torch.randn(4, 32, 8, requires_grad=True)
    x_reference = x.detach().clone().requires_grad_(True)

    rows_seen: dict[str, int] = {}
    for name, op in zip(OPERATIONS, block.operations):
        op.register_forward_hook(lambda module, inputs, output, name=name: rows_seen.__setitem__(name, inputs[0].shape[0]))
    out = block(x, weights)
    expected = _every_op_for_every_expert(reference, x_reference, weights)

    # mlp-16 runs for the two undecided experts and expert 1, linear for them and expert 3, the rest for 0 and 2.
    assert rows_seen == {"skip": 2, "linear": 3, "mlp-4": 2, "mlp-16": 3, "conv1d": 2, "gating": 2}
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
    out.square().sum().backward()
    expected.square().sum().backward()
    torch.testing.assert_close(x.grad, x_reference.grad, rtol=0, atol=1e-5)
    for (name, parameter), (_, reference_parameter) in zip(block.named_parameters(), reference.named_parameters()):
        assert (parameter.grad is None) == (reference_parameter.grad is None) or not reference_parameter.grad.any(), name
        if parameter.grad is not None:
            torch.testing.assert_close(parameter.grad, reference_parameter.grad, rtol=0, atol=1e-5, msg=name)
    for m, (op, reference_op) in enumerate(zip(block.operations, reference.operations)):
        if getattr(op, "norm", None) is None:
            continue
        users = (weights[:, m] > 0).nonzero().flatten()  # the statistics of the experts that ran the op
        channels = (users[:, None] * op.norm.features + torch.arange(op.norm.features)).flatten()
        for name in ("running_mean", "running_var"):
            torch.testing.assert_close(getattr(op.norm.norm, name)[channels], getattr(reference_op.norm.norm, name)[channels],
                                       rtol=0, atol=1e-6, msg=f"{OPERATIONS[m]} {name}")


def test_decided_experts_keep_the_running_statistics_of_ops_they_dropped():
    """Expert 0 chose linear: its slice of the mlp op's BatchNorm statistics stays as it was."""
    torch.manual_seed(0)
    block = MixtureOfOperations(["linear", "mlp-4"], num_experts=2, width=8, mlp_batchnorm=True)
    norm = block.operations[1].norm.norm
    before = norm.running_mean.clone()
    block(torch.randn(2, 16, 8) + 3.0, torch.tensor([[1.0, 0.0], [0.5, 0.5]]))
    assert torch.equal(norm.running_mean[:4], before[:4]) and not torch.equal(norm.running_mean[4:], before[4:])


def test_cumulative_batchnorm_average_is_kept_for_a_subset():
    """With momentum None (PreciseBN's plain average) the subset path averages like nn.BatchNorm1d."""
    torch.manual_seed(0)
    block = MixtureOfOperations(["linear", "mlp-4"], num_experts=2, width=8, mlp_batchnorm=True)
    norm = block.operations[1].norm.norm
    norm.momentum = None
    norm.reset_running_stats()
    inputs = [torch.randn(2, 16, 8) * scale for scale in (1.0, 3.0)]
    hidden = [block.operations[1].up(x[1:], torch.tensor([1])) for x in inputs]
    for x in inputs:
        block(x, torch.tensor([[1.0, 0.0], [0.5, 0.5]]))
    expected = torch.stack([h[0].var(dim=0) for h in hidden]).mean(0)
    torch.testing.assert_close(norm.running_var[4:], expected)
