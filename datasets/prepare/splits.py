"""Deterministic train/valid/test assignment: a seeded hash of each row's stable key.

A row's split depends only on ``(seed, row key)``, never on block sizes or processing order, so
re-running a conversion (or converting with another chunking) gives the same splits.
"""

from __future__ import annotations

import numpy as np

from torchrec_automtl.datasets.schema import SPLITS

TRAIN, VALID, TEST = (SPLITS.index(name) for name in ("train", "valid", "test"))
# Staged ``_split`` values: a row of a dataset without official splits, a row of an official
# training file (split into train/valid), or a row of an official test file.
ANY_SPLIT, OFFICIAL_TRAIN, OFFICIAL_TEST = -1, TRAIN, TEST

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def splitmix64(values: np.ndarray) -> np.ndarray:
    """The splitmix64 finalizer: a well-mixed uint64 hash of each uint64 value."""
    with np.errstate(over="ignore"):
        z = values.astype(np.uint64) + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def uniform_of(keys: np.ndarray, seed: int) -> np.ndarray:
    """A uniform [0, 1) number per key, fixed by ``seed``."""
    with np.errstate(over="ignore"):
        mixed = splitmix64(splitmix64(keys.astype(np.uint64)) ^ splitmix64(np.array([seed], dtype=np.uint64)))
    return (mixed >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def assign_splits(keys: np.ndarray, staged_split: np.ndarray, seed: int, valid_fraction: float, test_fraction: float) -> np.ndarray:
    """Split index (0 train, 1 valid, 2 test) per row.

    ``ANY_SPLIT`` rows go to test with probability ``test_fraction`` and to valid with
    ``valid_fraction``; ``OFFICIAL_TRAIN`` rows go to valid with ``valid_fraction``;
    ``OFFICIAL_TEST`` rows stay in test.
    """
    u = uniform_of(keys, seed)
    random_split = np.where(u < test_fraction, TEST, np.where(u < test_fraction + valid_fraction, VALID, TRAIN))
    official_train = np.where(u < valid_fraction, VALID, TRAIN)
    split = np.where(staged_split == ANY_SPLIT, random_split, np.where(staged_split == OFFICIAL_TEST, TEST, official_train))
    return split.astype(np.int8)
