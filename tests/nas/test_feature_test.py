"""The permutation test of the searched features on validation rows (search.feature_test)."""

import pytest
import torch

from torchrec_automtl.nas.discretization import drop_features
from torchrec_automtl.nas.feature_test import HeldOutBatch, permutation_z_scores
from torchrec_automtl.nas.search_config import SearchConfig
from tests.nas.helpers import small_supernet

BINARY = torch.tensor([True, True])


def _planted_batches(rows: int = 4096, batch: int = 1024, seed: int = 0) -> list[HeldOutBatch]:
    """Fields 0..2 (dim 2) and dense 0..1: task 0 is driven by dense 0, task 1 by field 0; the rest is noise."""
    generator = torch.Generator().manual_seed(seed)
    embeddings, dense = torch.randn(rows, 3, 2, generator=generator), torch.randn(rows, 2, generator=generator)
    logits = torch.stack([2.0 * dense[:, 0], 1.5 * embeddings[:, 0].sum(-1)], dim=1)
    labels = torch.bernoulli(torch.sigmoid(logits), generator=generator)
    mask = torch.ones(rows, dtype=torch.bool)
    return [HeldOutBatch(embeddings[i:i + batch], dense[i:i + batch], labels[i:i + batch], mask[i:i + batch])
            for i in range(0, rows, batch)]


def _memorizing_model(embeddings: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
    """The planted drivers, plus field 2, which the labels never saw (a feature the network memorized)."""
    return torch.stack([2.0 * dense[:, 0] + embeddings[:, 2].sum(-1), 1.5 * embeddings[:, 0].sum(-1)], dim=1)


FEATURES = [0, 1, 2, 3, 4]  # fields 0..2, then dense 0 and 1


def test_drivers_pass_and_unused_or_memorized_features_fail():
    z = permutation_z_scores(_memorizing_model, _planted_batches(), FEATURES, BINARY, seed=0).z
    assert z.shape == (5, 2)
    best = z.max(dim=1).values
    assert best[3] > 10 and best[0] > 10  # dense 0 for task 0, field 0 for task 1
    assert z[3, 0] > 10 and z[0, 1] > 10 and abs(z[3, 1]) == 0 and abs(z[0, 0]) == 0  # each only for its own task
    assert best[1] == 0 and best[4] == 0  # unread by the model: shuffling changes nothing
    assert abs(best[2]) < 2  # read, but not predictive of held-out labels: no evidence


def test_more_permutations_per_row_give_a_real_driver_more_standard_errors_and_noise_none():
    """Averaging a row's loss over several shuffles removes the shuffle's own noise from the standard
    error: a weak driver (field 1 at a tenth of the strength) stands out more, and the memorized
    noise field stays within the null's range."""
    def weak_driver_model(embeddings, dense):
        return torch.stack([2.0 * dense[:, 0] + 0.2 * embeddings[:, 1].sum(-1) + embeddings[:, 2].sum(-1),
                            1.5 * embeddings[:, 0].sum(-1)], dim=1)

    batches = _planted_batches()
    generator = torch.Generator().manual_seed(1)
    for b in batches:  # relabel task 0 with field 1 as a weak driver
        b.labels[:, 0] = torch.bernoulli(torch.sigmoid(2.0 * b.dense[:, 0] + 0.2 * b.embeddings[:, 1].sum(-1)), generator=generator)
    one = permutation_z_scores(weak_driver_model, batches, [1, 2], BINARY, seed=0, permutations=1).z
    eight = permutation_z_scores(weak_driver_model, batches, [1, 2], BINARY, seed=0, permutations=8).z
    assert eight[0, 0] > 1.25 * one[0, 0] > 0
    assert abs(eight[1, 0]) < 2


def test_scores_are_deterministic_per_seed():
    z = permutation_z_scores(_memorizing_model, _planted_batches(), [0, 2], BINARY, seed=0).z
    again = permutation_z_scores(_memorizing_model, _planted_batches(), [0, 2], BINARY, seed=0).z
    other_seed = permutation_z_scores(_memorizing_model, _planted_batches(), [0, 2], BINARY, seed=1).z
    torch.testing.assert_close(z, again, rtol=0, atol=0)
    assert not torch.equal(z, other_seed)


def test_padding_rows_are_neither_shuffled_into_real_rows_nor_counted():
    batches = _planted_batches(rows=1024, batch=1024)
    padded = [HeldOutBatch(torch.cat([b.embeddings, torch.full((512, 3, 2), 9.0)]), torch.cat([b.dense, torch.full((512, 2), 9.0)]),
                           torch.cat([b.labels, torch.zeros(512, 2)]), torch.cat([b.mask, torch.zeros(512, dtype=torch.bool)]))
              for b in batches]
    z_plain = permutation_z_scores(_memorizing_model, batches, FEATURES, BINARY, seed=0).z
    z_padded = permutation_z_scores(_memorizing_model, padded, FEATURES, BINARY, seed=0).z
    torch.testing.assert_close(z_padded, z_plain)


def test_dropped_features_leave_every_consumer_and_an_emptied_consumer_keeps_its_strongest():
    supernet = small_supernet()
    with torch.no_grad():
        supernet.feature_decided.fill_(True)
        supernet.feature_kept.fill_(False)
        supernet.feature_kept[:, :2] = True  # every consumer reads user and item
        supernet.feature_kept[0] = torch.tensor([False, True, False, False, False])  # consumer 0 reads item only
        supernet.feature_beta[0] = torch.tensor([0.0, 1.0, 3.0, 2.0, -1.0])
    added = drop_features(supernet, [1])
    assert not supernet.feature_kept[1:, 1].any() and supernet.feature_kept[1:, 0].all()
    assert supernet.feature_kept[0].tolist() == [False, False, True, False, False]  # its largest beta, tags
    assert [(d.kind, d.index, d.value) for d in added] == [("feature", (0, 2), 1)]


def test_feature_test_threshold_is_checked():
    with pytest.raises(ValueError, match="feature_test_z must be >= 0"):
        SearchConfig(feature_test_z=-1.0)
