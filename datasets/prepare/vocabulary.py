"""Per-field vocabularies: raw ids -> dense ids ``[1, n]``, with 0 for out-of-vocabulary and missing.

A vocabulary is built from value counts over the training split: values seen at least
``min_count`` times get ids by descending count (ties by value), so id 1 is the most frequent.
Rarer, unseen and missing values all map to ``OOV_ID = 0``, which therefore also learns an
embedding from the rare training ids. Vocabularies are saved as ``vocab/<field>.parquet``
(columns ``value``, ``count``; row ``i`` has id ``i + 1``) so new data can be converted with
the same mapping (``--vocab``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from torchrec_automtl.common.atomic_files import read_json
from torchrec_automtl.datasets.validation import DataError

OOV_ID = 0
_MERGE_ROWS = 1 << 16  # pending (value, count) rows before a merge, per counter


class FrequencyCounter:
    """Streaming value counts of one column (nulls ignored); memory grows with distinct values only."""

    def __init__(self) -> None:
        self._parts: list[pa.Table] = []
        self._pending = 0
        self._merged_rows = 0

    def update(self, values: pa.Array) -> None:
        counts = pc.value_counts(values.drop_null())
        if len(counts) == 0:
            return
        self._parts.append(pa.table({"value": counts.field("values"), "count": counts.field("counts")}))
        self._pending += len(counts)
        if self._pending > max(_MERGE_ROWS, self._merged_rows):
            self._merge()

    def _merge(self) -> None:
        if len(self._parts) > 1:
            table = pa.concat_tables(self._parts).group_by("value").aggregate([("count", "sum")])
            self._parts = [table.rename_columns(["value", "count"])]
        self._merged_rows = sum(len(part) for part in self._parts)
        self._pending = 0

    def counts(self, value_type: pa.DataType) -> pa.Table:
        """All ``(value, count)`` pairs seen so far."""
        self._merge()
        if not self._parts:
            return pa.table({"value": pa.array([], value_type), "count": pa.array([], pa.int64())})
        return self._parts[0].select(["value", "count"])


class SortedKeys:
    """Positions of int64 keys in a fixed set of distinct keys (no hash table rebuilt per batch).

    Keys spanning a compact range (at most ``DIRECT_TABLE_SPAN_FACTOR`` x their number, or 1M)
    are looked up in a direct position table; others by binary search over the sorted keys.
    """

    DIRECT_TABLE_SPAN_FACTOR = 4

    def __init__(self, keys: pa.Array) -> None:
        raw = keys.to_numpy(zero_copy_only=False).astype(np.int64)
        self._order = np.argsort(raw, kind="stable")
        self._sorted = raw[self._order]
        self._direct: np.ndarray | None = None
        if len(raw) and int(self._sorted[-1]) - int(self._sorted[0]) < max(self.DIRECT_TABLE_SPAN_FACTOR * len(raw), 1 << 20):
            self._low = int(self._sorted[0])
            self._direct = np.full(int(self._sorted[-1]) - self._low + 1, -1, dtype=np.int64)
            self._direct[raw - self._low] = np.arange(len(raw))

    def positions(self, keys: pa.Array) -> np.ndarray:
        """Index of each of ``keys`` in the key set, -1 where absent or null."""
        missing = pc.is_null(keys).to_numpy(zero_copy_only=False)
        raw = pc.fill_null(keys, 0).to_numpy(zero_copy_only=False).astype(np.int64)
        if len(self._sorted) == 0:
            return np.full(len(raw), -1)
        if self._direct is not None:
            offset = raw - self._low
            inside = (offset >= 0) & (offset < len(self._direct)) & ~missing
            return np.where(inside, self._direct[np.where(inside, offset, 0)], -1)
        position = np.minimum(np.searchsorted(self._sorted, raw), len(self._sorted) - 1)
        return np.where((self._sorted[position] == raw) & ~missing, self._order[position], -1)


class Vocabulary:
    """The id mapping of one field; integer raw ids are looked up by binary search, strings by hashing."""

    def __init__(self, field: str, values: pa.Array, counts: pa.Array) -> None:
        self.field = field
        self.values = values
        self.counts = counts
        self._keys = SortedKeys(values) if pa.types.is_integer(values.type) else None

    @classmethod
    def build(cls, field: str, counts: pa.Table, min_count: int) -> "Vocabulary":
        kept = counts.filter(pc.greater_equal(counts["count"], min_count))
        kept = kept.sort_by([("count", "descending"), ("value", "ascending")])
        return cls(field, kept["value"].combine_chunks(), kept["count"].combine_chunks())

    @property
    def cardinality(self) -> int:
        """Embedding rows needed: the kept values plus the OOV row."""
        return len(self.values) + 1

    def lookup(self, raw: pa.Array) -> np.ndarray:
        """int64 ids of ``raw`` (``OOV_ID`` for null, rare or unseen values)."""
        if self._keys is not None:
            return self._keys.positions(raw) + 1  # absent (-1) -> OOV_ID
        index = pc.index_in(raw, value_set=self.values)
        return pc.fill_null(index, -1).to_numpy(zero_copy_only=False).astype(np.int64) + 1

    def save(self, folder: Path) -> None:
        """Write ``folder/<field>.parquet`` (``folder`` is inside the run's temporary output folder)."""
        pq.write_table(pa.table({"value": self.values, "count": self.counts}), folder / f"{self.field}.parquet")

    @classmethod
    def load(cls, folder: Path, field: str) -> "Vocabulary":
        path = folder / f"{field}.parquet"
        if not path.is_file():
            raise DataError(f"vocabulary of field '{field}' not found: {path}")
        try:
            table = pq.read_table(path)
        except (pa.ArrowInvalid, OSError) as error:
            raise DataError(f"{path}: not a readable vocabulary file ({error})") from None
        if table.column_names != ["value", "count"]:
            raise DataError(f"{path}: expected columns ['value', 'count'], found {table.column_names}")
        return cls(field, table["value"].combine_chunks(), table["count"].combine_chunks())


VOCAB_FILE = "vocab.json"


class VocabularySet:
    """The vocabularies of all sparse fields of one converted dataset, with the layout they belong to.

    ``vocab/vocab.json`` records the dataset, the layout (sparse, dense, task columns), which
    sparse fields are multi-hot and the ``min_count`` used, so a later conversion with ``--vocab``
    produces exactly the same columns and ids.
    """

    def __init__(self, dataset: str, layout: dict, multi_hot: list[str], min_count: int, fields: dict[str, Vocabulary]) -> None:
        self.dataset = dataset
        self.layout = layout
        self.multi_hot = multi_hot
        self.min_count = min_count
        self.fields = fields

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for vocabulary in self.fields.values():
            vocabulary.save(folder)
        payload = {"dataset": self.dataset, "layout": self.layout, "multi_hot": self.multi_hot,
                   "min_count": self.min_count, "sizes": {name: v.cardinality for name, v in self.fields.items()}}
        (folder / VOCAB_FILE).write_text(json.dumps(payload, indent=2) + "\n")

    @classmethod
    def load(cls, location: Path, dataset: str) -> "VocabularySet":
        """Read the vocabularies at ``location``: a ``vocab/`` folder or a converted dataset containing one."""
        folder = location / "vocab" if (location / "vocab" / VOCAB_FILE).is_file() else location
        payload = read_json(folder / VOCAB_FILE, DataError, "vocabulary index (--vocab)")
        try:
            if payload["dataset"] != dataset:
                raise DataError(f"{folder / VOCAB_FILE}: vocabularies of dataset '{payload['dataset']}', not '{dataset}'")
            fields = {name: Vocabulary.load(folder, name) for name in payload["layout"]["sparse"]}
            return cls(dataset, payload["layout"], payload["multi_hot"], payload["min_count"], fields)
        except (KeyError, TypeError) as error:
            raise DataError(f"{folder / VOCAB_FILE}: malformed vocabulary index ({error!r})") from None
