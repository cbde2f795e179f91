"""Vocabularies: frequency order, min count, OOV for unseen/missing values, both lookup paths."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from torchrec_automtl.datasets.prepare.vocabulary import OOV_ID, FrequencyCounter, SortedKeys, Vocabulary


def vocabulary_of(values: list, min_count: int = 1) -> Vocabulary:
    counter = FrequencyCounter()
    for start in range(0, len(values), 3):  # several updates, as in a stream of blocks
        counter.update(pa.array(values[start:start + 3]))
    return Vocabulary.build("f", counter.counts(pa.array(values).type), min_count)


@pytest.mark.parametrize("spread", [1, 10**12])  # compact ids (direct table) and sparse ids (binary search)
def test_ids_by_descending_count_then_value(spread: int) -> None:
    a, b, c, d = (spread * k for k in (7, 3, 5, 9))
    vocabulary = vocabulary_of([a, b, a, c, b, a, d, None, c], min_count=2)
    # counts: a 3, b 2, c 2, d 1 (below min_count), None ignored
    assert vocabulary.values.to_pylist() == [a, b, c] and vocabulary.cardinality == 4
    ids = vocabulary.lookup(pa.array([c, a, d, None, b, 123456789], pa.int64()))
    assert ids.tolist() == [3, 1, OOV_ID, OOV_ID, 2, OOV_ID]


def test_string_vocabulary_and_save_load(tmp_path) -> None:
    vocabulary = vocabulary_of(["x", "y", "x", "z", "x", "y"])
    vocabulary.save(tmp_path)
    loaded = Vocabulary.load(tmp_path, "f")
    assert loaded.lookup(pa.array(["z", "x", "w", None])).tolist() == [3, 1, OOV_ID, OOV_ID]


def test_sorted_keys_positions_match_a_dict() -> None:
    rng = np.random.default_rng(0)
    for high in (1000, 1 << 50):
        keys = rng.choice(high, size=500, replace=False).astype(np.int64)
        probe = np.concatenate([keys[rng.integers(0, 500, 300)], rng.integers(0, high, 300)])
        expected = [dict(zip(keys.tolist(), range(500))).get(k, -1) for k in probe.tolist()]
        assert SortedKeys(pa.array(keys)).positions(pa.array(probe)).tolist() == expected
