"""Small per-key feature tables (user profiles, video features) joined onto streamed rows."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from torchrec_automtl.datasets.prepare.vocabulary import SortedKeys


class SideTable:
    """Feature rows by distinct int64 key; a key absent from the table gets null features (dense: 0)."""

    def __init__(self, keys: pa.Array, features: pa.Table, dense: tuple[str, ...] = ()) -> None:
        self.features = features
        self.dense = dense
        self._keys = SortedKeys(keys)

    @property
    def rows(self) -> int:
        """How many keys (rows of the source table) the table holds."""
        return self.features.num_rows

    def join(self, keys: pa.Array) -> tuple[pa.Table, int]:
        """The feature rows of ``keys`` and how many of ``keys`` were absent (or null)."""
        position = self._keys.positions(keys)
        absent = position < 0
        joined = self.features.take(pa.array(np.where(absent, 0, position), mask=absent))
        for name in self.dense:
            joined = joined.set_column(joined.column_names.index(name), name, pc.fill_null(joined[name], 0.0))
        return joined, int(absent.sum())
