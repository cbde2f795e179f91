"""The shared behaviour-log aggregation: pairs from one bucket, count lookups, option checks; plus
helpers the IJCAI-2015 and UserBehavior tests share to read converted samples back as raw ids."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from torchrec_automtl.datasets.prepare.interactions import Sampling, counts_of, pairs_of, with_flags
from torchrec_automtl.datasets.prepare.splits import ANY_SPLIT, TRAIN, assign_splits
from torchrec_automtl.datasets.prepare.userbehavior import LOG
from tests.datasets.prepare.helpers import rows_as_dicts


def seed_keeping_in_train(keys: list[int]) -> int:
    """A split seed that puts every one of the row ``keys`` in the training split (so their ids are in the vocabularies)."""
    keys_array = np.array(keys, dtype=np.uint64)
    for seed in range(10_000):
        if (assign_splits(keys_array, np.full(len(keys), ANY_SPLIT), seed, 0.1, 0.1) == TRAIN).all():
            return seed
    raise AssertionError("no seed keeps all keys in train")


def hand_written(samples: Counter) -> Counter:
    """The samples of a test's hand-written lines (users below 100), without its filler lines."""
    return Counter({sample: n for sample, n in samples.items() if sample[0] is not None and sample[0] < 100})


def decoded_samples(out: Path, fields: tuple[str, ...], tasks: tuple[str, ...]) -> Counter:
    """The multiset of output rows as ``(raw field values..., labels...)``, ids mapped back through
    ``vocab/`` (OOV -> None)."""
    values = {name: pq.read_table(out / "vocab" / f"{name}.parquet")["value"].to_pylist() for name in fields}
    return Counter((*(values[name][row[name] - 1] if row[name] else None for name in fields),
                    *(int(row[task]) for task in tasks)) for row in rows_as_dicts(out))


def events(rows: list[tuple[int, int, int | None, str]]) -> pa.Table:
    """UserBehavior-coded log lines ``(user, item, category, behaviour)`` with row keys 1, 2, ..."""
    users, items, categories, behaviours = zip(*rows)
    return pa.table({"_row": pa.array(range(1, len(rows) + 1), pa.uint64()), "user_id": pa.array(users, pa.int64()),
                     "item_id": pa.array(items, pa.int64()), "category_id": pa.array(categories, pa.int64()),
                     "_behaviour": pa.array([LOG.behaviours.index(b) for b in behaviours], pa.int8())})


def test_pairs_take_the_first_lines_key_and_features_and_any_behaviour() -> None:
    table = with_flags(events([(1, 10, None, "pv"), (2, 10, 7, "fav"), (1, 10, 5, "buy"), (1, 11, 6, "cart")]), LOG)
    pairs = {(r["user_id"], r["item_id"]): r for r in pairs_of(table, LOG).to_pylist()}
    assert set(pairs) == {(1, 10), (2, 10), (1, 11)}
    assert pairs[(1, 10)] == {"_row": 1, "user_id": 1, "item_id": 10, "category_id": None, "click": True, "buy": True,
                              "cart": False, "favourite": False, "_purchased": True}
    assert (pairs[(2, 10)]["_row"], pairs[(2, 10)]["category_id"], pairs[(2, 10)]["favourite"]) == (2, 7, True)
    assert (pairs[(1, 11)]["cart"], pairs[(1, 11)]["_purchased"], pairs[(1, 11)]["click"]) == (True, False, False)


def test_counts_of_looks_up_counts_and_zero_for_absent_keys() -> None:
    counts = pa.table({"value": pa.array([30, 10, 20], pa.int64()), "count": pa.array([3, 1, 2], pa.int64())})
    assert counts_of(pa.array([20, 99, 30, 10, 20], pa.int64()), counts).tolist() == [2, 0, 3, 1, 2]
    assert counts_of(pa.array([5], pa.int64()), counts.slice(0, 0)).tolist() == [0]


@pytest.mark.parametrize("samples, users, items, buckets", [("row", 1, 1, 1), ("pair", -1, 1, 1), ("pair", 1, 1, 0)])
def test_sampling_options_are_checked(samples: str, users: int, items: int, buckets: int) -> None:
    with pytest.raises(ValueError):
        Sampling(samples, users, items, buckets)
