import pytest
import torch

from torchrec_automtl.nas.operations import BatchedLinear
from torchrec_automtl.nas.selection import bi_interaction, selection_mask
from tests.nas.helpers import small_supernet


def _inputs(rows=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(rows, 3, 4, generator=g), torch.randn(rows, 2, generator=g)


def test_supernet_outputs_one_logit_per_task_and_splits_parameters():
    net = small_supernet()
    embeddings, dense = _inputs()
    assert net(embeddings, dense).shape == (5, 2)
    architecture = {id(p) for p in net.architecture_parameters()}
    weights = {id(p) for p in net.weight_parameters()}
    assert architecture.isdisjoint(weights) and len(architecture | weights) == len(list(net.parameters()))


def test_ste_gradient_reaches_beta_with_the_right_sign():
    """A toy loss that rewards keeping a feature pushes its beta up; one that penalizes it pushes beta down."""
    beta = torch.zeros(1, 4, requires_grad=True)
    decided = torch.tensor([[False, False, False, True]])
    kept = torch.tensor([[False, False, False, True]])
    torch.manual_seed(0)
    mask = selection_mask(beta, decided, kept, sample=True, rows=1)
    assert mask.shape == (1, 1, 4)
    reward = torch.tensor([1.0, -1.0, 2.0, 5.0])
    loss = -(mask[0, 0] * reward).sum()  # keeping item i changes the loss by -reward_i
    loss.backward()
    sigmoid_slope = 0.25  # sigmoid'(0)
    torch.testing.assert_close(beta.grad, torch.tensor([[-1.0, 1.0, -2.0, 0.0]]) * sigmoid_slope)
    assert set(mask[0, 0, :3].tolist()) <= {0.0, 1.0} and mask[0, 0, 3] == 1.0  # forward values are samples / decisions


def test_per_example_sampling_draws_each_row_and_sums_the_ste_gradient():
    beta = torch.zeros(2, 3, requires_grad=True)
    none = torch.zeros(2, 3, dtype=torch.bool)
    torch.manual_seed(1)
    mask = selection_mask(beta, none, none, sample=True, rows=4000)
    assert mask.shape == (2, 4000, 3)
    assert abs(float(mask.detach().mean()) - 0.5) < 0.02 and not torch.equal(mask[:, 0], mask[:, 1])
    mask.sum().backward()
    torch.testing.assert_close(beta.grad, torch.full((2, 3), 4000 * 0.25))


def test_ste_gradient_reaches_the_supernets_betas():
    net = small_supernet()
    net.train()
    embeddings, dense = _inputs(rows=64)
    net(embeddings, dense).pow(2).mean().backward()
    assert net.feature_beta.grad.abs().sum() > 0 and net.connection_beta.grad.abs().sum() > 0
    assert net.alpha.grad.abs().sum() > 0


def test_evaluation_mask_thresholds_at_one_half():
    beta = torch.tensor([[-0.1, 0.0, 0.1]])
    none = torch.zeros(1, 3, dtype=torch.bool)
    mask = selection_mask(beta, none, none, sample=False, rows=64)
    assert mask.tolist() == [[[0.0, 1.0, 1.0]]]


def test_bi_interaction_is_the_elementwise_sum_of_products_of_selected_field_pairs():
    """Per embedding dimension, sum over pairs i < j of selected fields of e_i * e_j (its sum over
    dimensions is FM's pairwise term); per-example masks select per row."""
    torch.manual_seed(0)
    embeddings = torch.randn(3, 4, 5)
    mask = torch.tensor([[[1.0, 0.0, 1.0, 1.0], [0.0, 1.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0]]])  # [1 consumer, 3 rows, 4 fields]
    expected = torch.zeros(3, 5)
    for row in range(3):
        selected = [f for f in range(4) if mask[0, row, f]]
        for a, i in enumerate(selected):
            for j in selected[a + 1:]:
                expected[row] += embeddings[row, i] * embeddings[row, j]
    vector = bi_interaction(embeddings, mask)[0]
    torch.testing.assert_close(vector, expected)
    shared = bi_interaction(embeddings, mask[:, :1])[0]  # row 0's mask shared by the batch
    torch.testing.assert_close(shared[0], expected[0])


def test_dropped_inputs_do_not_change_the_output():
    net = small_supernet()
    net.eval()
    with torch.no_grad():
        net.feature_decided.fill_(True)
        net.feature_kept.fill_(True)
        net.feature_kept[:, 1] = False  # nobody reads field "item"
    embeddings, dense = _inputs()
    changed = embeddings.clone()
    changed[:, 1] += 10.0
    torch.testing.assert_close(net(embeddings, dense), net(changed, dense))
    changed[:, 0] += 10.0
    assert not torch.allclose(net(embeddings, dense), net(changed, dense))


@pytest.mark.parametrize("normalization", ["selected", "all"])
def test_gate_weights_of_kept_experts(normalization):
    net = small_supernet(gate_normalization=normalization)
    net.eval()
    with torch.no_grad():
        net.connection_decided.fill_(True)
        net.connection_kept.fill_(True)
        net.connection_kept[:, 0] = False
    embeddings, dense = _inputs()
    _, gate_logits = net.consumer_projections(embeddings, dense, net.feature_mask(5))
    weights = net.gate_weights(gate_logits, net.connection_mask(5))
    assert torch.all(weights[..., 0] == 0)
    if normalization == "selected":
        torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:2]))
    else:
        assert torch.all(weights.sum(-1) < 1)


@pytest.mark.parametrize("mask_rows", [1, 5])
def test_masked_projection_equals_projecting_each_masked_copy(mask_rows):
    """Folding a batch-shared mask into the weights (or masking per example) computes expert i's
    ``Linear(cat(shared * mask[i], tail[i]))``, values and gradients alike."""
    g = torch.Generator().manual_seed(1)
    linear = BatchedLinear(3, 6 + 2, 4)
    shared = torch.randn(5, 6, generator=g, requires_grad=True)
    tail = torch.randn(3, 5, 2, generator=g)
    mask = torch.bernoulli(torch.full((3, mask_rows, 6), 0.5), generator=g).requires_grad_()
    explicit = linear(torch.cat([shared.unsqueeze(0) * mask, tail], dim=2))
    folded = linear.forward_masked(shared, mask, tail)
    torch.testing.assert_close(folded, explicit)
    upstream = torch.randn(3, 5, 4, generator=g)
    expected = torch.autograd.grad(explicit, (shared, mask, linear.weight), upstream)
    for got, want in zip(torch.autograd.grad(folded, (shared, mask, linear.weight), upstream), expected):
        torch.testing.assert_close(got, want)


def test_bi_interaction_of_a_batch_shared_mask_equals_the_per_example_form():
    embeddings, _ = _inputs(rows=4)
    mask = torch.tensor([[[1.0, 0.0, 1.0]], [[0.0, 1.0, 1.0]]])
    torch.testing.assert_close(bi_interaction(embeddings, mask), bi_interaction(embeddings, mask.expand(-1, 4, -1)))
