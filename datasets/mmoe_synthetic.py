"""The synthetic regression data of the MMoE paper (Ma et al., KDD 2018), used by paper 001's Table 5.

Two unit vectors u1, u2 in R^d (d = 100) are drawn orthonormal; w1 = c u1 and
w2 = c (P u1 + sqrt(1 - P^2) u2), so cos(w1, w2) = P. Each row has x ~ N(0, I_d) and labels
``y_k = w_k . x + sum_{i=1..m} sin(a_i w_k . x + b_i) + noise`` with m = 10 and a_i, b_i ~ N(0, 1)
fixed by the seed; the noise is N(0, 0.01) (variance 0.01, as in the MMoE paper); c = 1. The label
Pearson correlation that results is measured on 100,000 draws and written to the schema's metadata
beside P. Inputs are dense features ``x0..x{d-1}``; with ``sparse_buckets`` = K each input is also
bucketized into K equal-probability buckets (sparse fields ``b0..``), so the embedding path is used.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from scipy.stats import norm

from torchrec_automtl.datasets.schema import DenseFeature, Schema, SparseFeature, TaskSpec

DIMENSION, NUM_SINES, SCALE, NOISE_VARIANCE = 100, 10, 1.0, 0.01
TASKS = ("y1", "y2")


class MMoEGenerator:
    """Rows of the MMoE synthetic study at task correlation ``correlation`` (P), fixed by ``seed``."""

    def __init__(self, correlation: float, seed: int = 0, dimension: int = DIMENSION, sparse_buckets: int = 0) -> None:
        if not -1.0 <= correlation <= 1.0:
            raise ValueError(f"--correlation must be in [-1, 1], got {correlation}")
        if sparse_buckets == 1 or sparse_buckets < 0:
            raise ValueError(f"--sparse-buckets must be 0 (off) or >= 2, got {sparse_buckets}")
        rng = np.random.default_rng([seed, 0])
        u1, u2 = np.linalg.qr(rng.standard_normal((dimension, 2)))[0].T  # orthonormal
        self.weights = SCALE * np.stack([u1, correlation * u1 + np.sqrt(1 - correlation**2) * u2])  # [2, d]
        self.a, self.b = rng.standard_normal(NUM_SINES), rng.standard_normal(NUM_SINES)
        self.correlation, self.seed, self.dimension, self.sparse_buckets = correlation, seed, dimension, sparse_buckets
        self.bucket_edges = norm.ppf(np.arange(1, sparse_buckets) / sparse_buckets) if sparse_buckets else None
        self.label_pearson = float(np.corrcoef(self._labels(np.random.default_rng([seed, 1]), 100_000)[1].T)[0, 1])

    def _labels(self, rng: np.random.Generator, rows: int) -> tuple[np.ndarray, np.ndarray]:
        x = rng.standard_normal((rows, self.dimension))
        projection = x @ self.weights.T  # [rows, 2]
        sines = np.sin(projection[..., None] * self.a + self.b).sum(-1)
        noise = rng.normal(0.0, np.sqrt(NOISE_VARIANCE), projection.shape)
        return x, projection + sines + noise

    def table(self, rng: np.random.Generator, rows: int) -> pa.Table:
        x, y = self._labels(rng, rows)
        columns = {}
        if self.sparse_buckets:
            buckets = np.searchsorted(self.bucket_edges, x)
            columns.update({f"b{j}": pa.array(buckets[:, j].astype(np.int64)) for j in range(self.dimension)})
        columns.update({f"x{j}": pa.array(x[:, j].astype(np.float32)) for j in range(self.dimension)})
        columns.update({task: pa.array(y[:, k].astype(np.float32)) for k, task in enumerate(TASKS)})
        return pa.table(columns)

    def schema(self, metadata: dict) -> Schema:
        cosine = float(self.weights[0] @ self.weights[1] / np.linalg.norm(self.weights, axis=1).prod())
        return Schema(
            sparse=tuple(SparseFeature(f"b{j}", self.sparse_buckets) for j in range(self.dimension)) if self.sparse_buckets else (),
            dense=tuple(DenseFeature(f"x{j}") for j in range(self.dimension)),
            tasks=tuple(TaskSpec(task, "regression") for task in TASKS),
            metadata={"generator": "mmoe", "seed": self.seed, "correlation": self.correlation, "cosine_w1_w2": cosine,
                      "label_pearson": self.label_pearson, "noise_variance": NOISE_VARIANCE, "num_sines": NUM_SINES,
                      **metadata},
        )
