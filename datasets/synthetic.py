"""Seeded synthetic datasets with planted structure, written as Parquet + schema.json.

``python -m torchrec_automtl.datasets.synthetic aliccp_like --rows N --out DIR`` writes an AliCCP-shaped dataset:
the 23 published AliCCP sparse fields (cardinalities scaled down, six of them multi-hot), four
dense features and two binary tasks, ``click`` and ``conversion``, where a conversion only
happens after a click. Each task's label is drawn from a planted logit with three parts:

* additive: a random effect per id of each driving field (normal, std ``EFFECT_STD`` for click,
  ``CONVERSION_EFFECT_STD`` for conversion; a multi-hot field contributes the sum of its ids'
  effects divided by sqrt(bag size)) plus ``DENSE_WEIGHT`` times one dense feature:
  click: 121, 206, 216, 301, 210 (multi-hot), ``dense_0``; conversion: 206, 121 (both shared with
  click), 125, 508, 853 (multi-hot), ``dense_1``;
* interactions (FM-like): each field of a pair in ``INTERACTIONS`` has a latent vector per id
  (``LATENT_DIM``, normal, centred under the id distribution so a pair has no main effect) and the
  pair adds ``<v_a[id_a], v_b[id_b]>``: click (121, 216), (206, 301); conversion (206, 125) and
  (508, 702), where 702 drives conversion through the interaction only;
* nonlinear: click ``cos(2 * dense_2)``, conversion ``|dense_3|`` (both centred); even functions
  of a standard normal input, so no linear model over the inputs captures any of them.

The interaction and nonlinear parts are scaled on a calibration sample so the three parts carry
``LOGIT_VARIANCE_SHARES`` of a task's logit variance (every pair the same share). ``conflict`` sets
how the shared fields' conversion effects relate to their click effects:
``rho * click_effect + sqrt(1 - rho^2) * independent`` (both scaled to the task's std) with
``rho = 1 - 2 * conflict``: 0 pushes both tasks the same way, 0.5 unrelated, 1 opposite ways.
Intercepts are calibrated so the click rate is about ``click_rate`` and the conversion rate among
clicks about ``conversion_rate``. Drivers, noise fields and every setting are written into
``schema.json``'s metadata (``planted``, ``logit``); ``write_synthetic`` also records the oracle
AUC (scoring each row by its true probability: ``sigmoid(click_logit)`` for click,
``sigmoid(click_logit) * sigmoid(conversion_logit)`` for conversion) of the valid and test splits
under ``metadata.oracle_auc``, the ceiling a model can reach.

``python -m torchrec_automtl.datasets.synthetic small_vocab --rows N --out DIR`` writes the same planted model on
another layout (``SMALL_VOCAB``), shaped like a common kind of tabular recommender data: 30
categorical fields with small vocabularies (2 to 50 ids), 7 numeric features and two independent
binary tasks ``task_a`` / ``task_b`` with very different positive rates (6% and 43% by default).
``task_a`` is driven additively by c00-c04 and d0, by the pairs (c00, c08), (c03, c09) and by
cos(2 * d2); ``task_b`` by c01, c02 (shared with task_a, conflict as above), c05-c07 and d1, by the
pairs (c05, c10), (c11, c12) (c12 only through its pair) and by |d3|; c13-c29 and d4-d6 are noise.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Protocol, runtime_checkable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from scipy.special import expit
from tqdm import tqdm

from torchrec_automtl.common.atomic_files import atomic_directory
from torchrec_automtl.common.ranking import auc
from torchrec_automtl.datasets.schema import SPLITS, DenseFeature, Schema, SparseFeature, TaskSpec


@dataclass(frozen=True)
class FieldSpec:
    """An AliCCP field of the synthetic data: cardinality and the largest multi-hot bag size."""

    name: str
    cardinality: int
    max_ids: int = 1  # 1 = single-hot; >1 = multi-hot with 0..max_ids ids per row

    @property
    def multi_hot(self) -> bool:
        return self.max_ids > 1


@dataclass(frozen=True)
class NonlinearTerm:
    """A task's nonlinear logit term: ``formula`` of one dense feature, standardized (mean 0, std 1 under N(0, 1))."""

    dense: str
    formula: str
    standardized: Callable[[np.ndarray], np.ndarray]


def _standardized_cosine(x: np.ndarray) -> np.ndarray:
    """``cos(2x)`` minus its mean exp(-2), over its std, for x ~ N(0, 1)."""
    return (np.cos(2 * x) - np.exp(-2)) / np.sqrt((1 + np.exp(-8)) / 2 - np.exp(-4))


def _standardized_abs(x: np.ndarray) -> np.ndarray:
    """``|x|`` minus its mean sqrt(2/pi), over its std, for x ~ N(0, 1)."""
    return (np.abs(x) - np.sqrt(2 / np.pi)) / np.sqrt(1 - 2 / np.pi)


# The 23 published AliCCP fields; cardinalities scaled down from the real vocabularies.
ALICCP_FIELDS = (
    FieldSpec("101", 5000), FieldSpec("121", 100), FieldSpec("122", 15), FieldSpec("124", 3),
    FieldSpec("125", 8), FieldSpec("126", 4), FieldSpec("127", 4), FieldSpec("128", 3),
    FieldSpec("129", 5), FieldSpec("205", 20000), FieldSpec("206", 300), FieldSpec("207", 5000),
    FieldSpec("210", 500, max_ids=5), FieldSpec("216", 1000), FieldSpec("508", 500),
    FieldSpec("509", 5000), FieldSpec("702", 2000), FieldSpec("853", 300, max_ids=4),
    FieldSpec("301", 4), FieldSpec("109_14", 1000, max_ids=6), FieldSpec("110_14", 5000, max_ids=6),
    FieldSpec("127_14", 5000, max_ids=6), FieldSpec("150_14", 5000, max_ids=6),
)
DENSE_FEATURES = ("dense_0", "dense_1", "dense_2", "dense_3")
TASKS = ("click", "conversion")
# Additive drivers; the fields in both tuples are shared, their conversion effects set by the conflict.
ADDITIVE_FIELDS = {"click": ("121", "206", "216", "301", "210"), "conversion": ("206", "121", "125", "508", "853")}
ADDITIVE_DENSE = {"click": ("dense_0",), "conversion": ("dense_1",)}
# FM-like pairs (single-hot fields only); 702 drives conversion through its pair with 508 alone.
INTERACTIONS = {"click": (("121", "216"), ("206", "301")), "conversion": (("206", "125"), ("508", "702"))}
LATENT_DIM = 4
NONLINEAR = {
    "click": NonlinearTerm("dense_2", "cos(2 * dense_2)", _standardized_cosine),
    "conversion": NonlinearTerm("dense_3", "|dense_3|", _standardized_abs),
}
# Share of a task's logit variance per part (measured on the calibration sample): half of it is out
# of reach of a model that is linear in the inputs.
LOGIT_VARIANCE_SHARES = {"additive": 0.50, "interaction": 0.35, "nonlinear": 0.15}
DENSE_WEIGHT = 0.5
EFFECT_STD = 0.6
# Conversions are rare (about 1.5% of rows), so their drivers get larger effects to stay learnable.
CONVERSION_EFFECT_STD = 1.0
EFFECT_STDS = {"click": EFFECT_STD, "conversion": CONVERSION_EFFECT_STD}
DEFAULT_CONFLICT = 0.3
DEFAULT_CLICK_RATE = 0.06
# Among clicks. 0.25 (not AliCCP's ~0.12) so a 30k-row test split holds about 450 conversions and the
# conversion AUC moves little from seed to seed.
DEFAULT_CONVERSION_RATE = 0.25
ID_SKEW = 3.0  # id = floor(cardinality * u**ID_SKEW): small ids are frequent, as in real logs
CALIBRATION_ROWS = 200_000
ORACLE_SPLITS = ("valid", "test")  # splits whose oracle AUC write_synthetic records


@dataclass(frozen=True)
class PlantedLayout:
    """The columns of a planted dataset and what drives its two binary tasks.

    ``chained``: the second task can be positive only where the first is (a conversion after a
    click); its rate is then a rate among the first task's positives and its oracle the product of
    both probabilities. Otherwise the two tasks are drawn independently given the features.
    """

    name: str
    fields: tuple[FieldSpec, ...]
    dense: tuple[str, ...]
    tasks: tuple[str, str]
    additive_fields: dict[str, tuple[str, ...]]  # per task; fields in both tasks' tuples are shared
    additive_dense: dict[str, tuple[str, ...]]
    interactions: dict[str, tuple[tuple[str, str], ...]]  # FM-like pairs of single-hot fields
    nonlinear: dict[str, NonlinearTerm]
    effect_stds: dict[str, float]
    chained: bool
    default_rates: tuple[float, float]  # target positive rates (chained: the second among the first's positives)
    group_column: str | None = None


ALICCP_LIKE = PlantedLayout(
    "aliccp_like", ALICCP_FIELDS, DENSE_FEATURES, TASKS, ADDITIVE_FIELDS, ADDITIVE_DENSE, INTERACTIONS, NONLINEAR,
    EFFECT_STDS, chained=True, default_rates=(DEFAULT_CLICK_RATE, DEFAULT_CONVERSION_RATE), group_column="101",
)
SMALL_VOCAB = PlantedLayout(
    "small_vocab",
    fields=tuple(FieldSpec(f"c{i:02d}", cardinality) for i, cardinality in enumerate(
        (12, 30, 8, 5, 20, 15, 40, 6, 10, 25, 7, 50, 9) + (2, 3, 4, 5, 6, 8, 10, 12, 15, 18, 20, 25, 30, 35, 40, 45, 50))),
    dense=tuple(f"d{i}" for i in range(7)),
    tasks=("task_a", "task_b"),
    additive_fields={"task_a": ("c00", "c01", "c02", "c03", "c04"), "task_b": ("c01", "c02", "c05", "c06", "c07")},
    additive_dense={"task_a": ("d0",), "task_b": ("d1",)},
    interactions={"task_a": (("c00", "c08"), ("c03", "c09")), "task_b": (("c05", "c10"), ("c11", "c12"))},
    nonlinear={"task_a": NonlinearTerm("d2", "cos(2 * d2)", _standardized_cosine),
               "task_b": NonlinearTerm("d3", "|d3|", _standardized_abs)},
    effect_stds={"task_a": EFFECT_STD, "task_b": EFFECT_STD},
    chained=False,
    default_rates=(0.06, 0.43),
)


def _draw_ids(rng: np.random.Generator, field: FieldSpec, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Ids and per-row bag lengths of ``field`` for ``rows`` rows."""
    lengths = np.ones(rows, dtype=np.int64) if not field.multi_hot else rng.integers(0, field.max_ids + 1, rows)
    ids = np.floor(field.cardinality * rng.random(int(lengths.sum())) ** ID_SKEW).astype(np.int64)
    return ids, lengths


def _id_probabilities(field: FieldSpec) -> np.ndarray:
    """P(id = k) for k in [0, cardinality) under ``_draw_ids``: P(id < k) = (k / cardinality) ** (1 / ID_SKEW)."""
    return np.diff((np.arange(field.cardinality + 1) / field.cardinality) ** (1 / ID_SKEW))


def _bag_effect(effects: np.ndarray, ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Per-row ``sum(effects[ids]) / sqrt(bag size)`` (0 for an empty bag): the std of ``effects`` for any size."""
    row = np.repeat(np.arange(len(lengths)), lengths)
    total = np.bincount(row, weights=effects[ids], minlength=len(lengths))
    return total / np.sqrt(np.maximum(lengths, 1))


def _calibrated_intercept(logits: np.ndarray, rate: float, weights: np.ndarray | None = None) -> float:
    """The intercept b with the ``weights``-weighted mean of sigmoid(b + logits) equal to ``rate`` (bisection)."""
    low, high = -30.0, 30.0
    for _ in range(80):
        mid = (low + high) / 2
        if np.average(expit(mid + logits), weights=weights) < rate:
            low = mid
        else:
            high = mid
    return (low + high) / 2


@dataclass(frozen=True)
class Rows:
    """Drawn feature values of some rows, before labels."""

    ids: dict[str, tuple[np.ndarray, np.ndarray]]  # field -> (ids [sum of bag lengths], bag lengths [rows])
    dense: np.ndarray  # [rows, len(dense_names)] float32
    dense_names: tuple[str, ...]

    @classmethod
    def from_table(cls, table: pa.Table, layout: PlantedLayout) -> Rows:
        """The feature values of a table of ``layout``, e.g. a split read back from Parquet."""
        ids = {}
        for spec in layout.fields:
            column = table.column(spec.name).combine_chunks()
            if spec.multi_hot:
                ids[spec.name] = (column.flatten().to_numpy(), column.value_lengths().to_numpy().astype(np.int64))
            else:
                ids[spec.name] = (column.to_numpy(), np.ones(len(column), dtype=np.int64))
        return cls(ids, np.stack([table.column(name).to_numpy() for name in layout.dense], axis=1), layout.dense)

    def dense_column(self, name: str) -> np.ndarray:
        return self.dense[:, self.dense_names.index(name)]


@dataclass(frozen=True)
class LogitParts:
    """One task's planted logit over some rows, by part; the logit is their sum."""

    intercept: float
    additive: np.ndarray  # [rows]
    interactions: np.ndarray  # [rows, num pairs], scaled
    nonlinear: np.ndarray  # [rows], scaled

    @property
    def logit(self) -> np.ndarray:
        return self.intercept + self.additive + self.interactions.sum(axis=1) + self.nonlinear


@dataclass(frozen=True)
class PlantedLogit:
    """One task's planted logit model: per-id effects, dense weights, FM pairs and a nonlinear term."""

    effects: dict[str, np.ndarray]  # field -> effect per id [cardinality]
    dense: tuple[str, ...]  # additive dense features, each weighted DENSE_WEIGHT
    pairs: tuple[tuple[str, str], ...]
    latents: dict[str, np.ndarray]  # field -> latent vector per id [cardinality, LATENT_DIM]
    nonlinear: NonlinearTerm
    pair_scales: tuple[float, ...] = ()  # () = unscaled (1 each)
    nonlinear_scale: float = 1.0
    intercept: float = 0.0

    def parts(self, rows: Rows) -> LogitParts:
        """The additive, interaction and nonlinear parts of this logit on ``rows``."""
        additive = sum(_bag_effect(effects, *rows.ids[name]) for name, effects in self.effects.items())
        additive = additive + DENSE_WEIGHT * sum(rows.dense_column(name).astype(np.float64) for name in self.dense)
        scales = self.pair_scales or (1.0,) * len(self.pairs)
        interactions = np.stack([
            scale * np.einsum("rk,rk->r", self.latents[a][rows.ids[a][0]], self.latents[b][rows.ids[b][0]])
            for (a, b), scale in zip(self.pairs, scales)
        ], axis=1)
        nonlinear_input = rows.dense_column(self.nonlinear.dense).astype(np.float64)
        nonlinear = self.nonlinear_scale * self.nonlinear.standardized(nonlinear_input)
        return LogitParts(self.intercept, additive, interactions, nonlinear)

    def scaled_to_shares(self, rows: Rows) -> PlantedLogit:
        """This logit with pair and nonlinear scales giving ``LOGIT_VARIANCE_SHARES`` of its variance on ``rows``."""
        raw = replace(self, pair_scales=(), nonlinear_scale=1.0).parts(rows)
        additive_variance = raw.additive.var() / LOGIT_VARIANCE_SHARES["additive"]  # per unit of share
        pair_variance = additive_variance * LOGIT_VARIANCE_SHARES["interaction"] / len(self.pairs)
        pair_scales = tuple(float(np.sqrt(pair_variance / variance)) for variance in raw.interactions.var(axis=0))
        nonlinear_scale = float(np.sqrt(additive_variance * LOGIT_VARIANCE_SHARES["nonlinear"] / raw.nonlinear.var()))
        return replace(self, pair_scales=pair_scales, nonlinear_scale=nonlinear_scale)

    @property
    def sparse_drivers(self) -> list[str]:
        """Additive fields, then the fields that only drive through a pair."""
        paired = [name for pair in self.pairs for name in pair]
        return list(self.effects) + [name for name in dict.fromkeys(paired) if name not in self.effects]

    @property
    def dense_drivers(self) -> list[str]:
        return list(self.dense) + [self.nonlinear.dense]


def _latents(rng: np.random.Generator, field: FieldSpec) -> np.ndarray:
    """Normal latent vectors per id [cardinality, LATENT_DIM], centred under the id distribution (no main effect)."""
    if field.multi_hot:
        raise ValueError(f"interaction field '{field.name}' is multi-hot; INTERACTIONS takes single-hot fields only")
    latents = rng.standard_normal((field.cardinality, LATENT_DIM))
    return latents - _id_probabilities(field) @ latents


def _validate_rate(value: float, flag: str) -> None:
    if not 0 < value < 1:
        raise ValueError(f"{flag} must be in (0, 1), got {value}")


class PlantedGenerator:
    """Draws rows of ``layout`` with labels from the planted model fixed by ``seed``.

    ``conflict`` in [0, 1] sets how the shared fields' effects on the second task relate to their
    effects on the first (correlation ``1 - 2 * conflict``); ``rates`` are the target positive rates
    of the two tasks (for a chained layout, the second one among the first task's positives;
    default: the layout's ``default_rates``).
    """

    def __init__(self, layout: PlantedLayout, seed: int, conflict: float = DEFAULT_CONFLICT,
                 rates: tuple[float, float] | None = None) -> None:
        rates = layout.default_rates if rates is None else rates
        if not 0 <= conflict <= 1:
            raise ValueError(f"--conflict must be in [0, 1] (0: shared fields push both tasks the same way, "
                             f"1: opposite ways), got {conflict}")
        for task, rate in zip(layout.tasks, rates):
            _validate_rate(rate, f"--{task.replace('_', '-')}-rate")
        self.layout, self.seed, self.conflict = layout, seed, conflict
        self.rates = dict(zip(layout.tasks, rates))
        self.fields = {f.name: f for f in layout.fields}
        self.planted_logits = self._planted_logits(np.random.default_rng([seed, 0]))
        self._calibrate(self.draw_rows(np.random.default_rng([seed, 1]), CALIBRATION_ROWS))

    @property
    def shared_fields(self) -> tuple[str, ...]:
        first, second = self.layout.tasks
        return tuple(name for name in self.layout.additive_fields[second] if name in self.layout.additive_fields[first])

    def _planted_logits(self, rng: np.random.Generator) -> dict[str, PlantedLogit]:
        """Effects and latents of both tasks, unscaled and without intercepts."""
        layout, (first, second) = self.layout, self.layout.tasks
        first_effects = {n: rng.normal(0, layout.effect_stds[first], self.fields[n].cardinality)
                         for n in layout.additive_fields[first]}
        rho = 1 - 2 * self.conflict
        second_effects = {}
        for name in layout.additive_fields[second]:
            independent = rng.normal(0, layout.effect_stds[second], self.fields[name].cardinality)
            if name in first_effects:
                along_first = first_effects[name] * layout.effect_stds[second] / layout.effect_stds[first]
                independent = rho * along_first + np.sqrt(1 - rho**2) * independent
            second_effects[name] = independent
        effects = {first: first_effects, second: second_effects}
        planted = {}
        for task in layout.tasks:
            paired = dict.fromkeys(name for pair in layout.interactions[task] for name in pair)
            latents = {name: _latents(rng, self.fields[name]) for name in paired}
            planted[task] = PlantedLogit(effects[task], layout.additive_dense[task], layout.interactions[task], latents,
                                         layout.nonlinear[task])
        return planted

    def _calibrate(self, rows: Rows) -> None:
        """Scale each task's parts to ``LOGIT_VARIANCE_SHARES``, then fit the intercepts to the target rates."""
        first, second = self.layout.tasks
        calibrated = {}
        for task in self.layout.tasks:
            logit = self.planted_logits[task].scaled_to_shares(rows)
            # A chained second task's rate is among the first task's positives: weight rows by P(first).
            weights = expit(calibrated[first].parts(rows).logit) if task == second and self.layout.chained else None
            calibrated[task] = replace(logit, intercept=_calibrated_intercept(logit.parts(rows).logit, self.rates[task],
                                                                              weights=weights))
        self.planted_logits = calibrated
        self.variance_shares = {task: self._variance_shares(logit.parts(rows))
                                for task, logit in self.planted_logits.items()}

    @staticmethod
    def _variance_shares(parts: LogitParts) -> dict[str, float]:
        """Each part's share of the logit variance on the rows of ``parts``."""
        total = parts.logit.var()
        return {"additive": float(parts.additive.var() / total),
                "interaction": float(parts.interactions.sum(axis=1).var() / total),
                "nonlinear": float(parts.nonlinear.var() / total)}

    def draw_rows(self, rng: np.random.Generator, rows: int) -> Rows:
        """Feature values of ``rows`` rows (ids of every field, then the dense features)."""
        ids = {name: _draw_ids(rng, field, rows) for name, field in self.fields.items()}
        return Rows(ids, rng.standard_normal((rows, len(self.layout.dense))).astype(np.float32), self.layout.dense)

    def task_probabilities(self, rows: Rows) -> dict[str, np.ndarray]:
        """Each row's sigmoid of each task's logit (for a chained second task: given the first), each [rows]."""
        return {task: expit(logit.parts(rows).logit) for task, logit in self.planted_logits.items()}

    def oracle_scores(self, task_probabilities: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Each row's true probability of a positive label per task (chained: P(first) * P(second | first)), each [rows]."""
        first, second = self.layout.tasks
        if not self.layout.chained:
            return dict(task_probabilities)
        return {first: task_probabilities[first], second: task_probabilities[first] * task_probabilities[second]}

    def table_with_oracle(self, rng: np.random.Generator, rows: int) -> tuple[pa.Table, dict[str, np.ndarray]]:
        """``rows`` rows with labels as an Arrow table in schema column order, and their ``oracle_scores``."""
        first, second = self.layout.tasks
        drawn = self.draw_rows(rng, rows)
        probability = self.task_probabilities(drawn)
        first_positive = rng.random(rows) < probability[first]
        second_positive = rng.random(rows) < probability[second]
        if self.layout.chained:
            second_positive &= first_positive
        columns = {}
        for spec in self.layout.fields:
            ids, lengths = drawn.ids[spec.name]
            if spec.multi_hot:
                offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
                columns[spec.name] = pa.ListArray.from_arrays(pa.array(offsets), pa.array(ids))
            else:
                columns[spec.name] = pa.array(ids)
        columns.update({name: pa.array(drawn.dense_column(name)) for name in self.layout.dense})
        columns[first] = pa.array(first_positive.astype(np.float32))
        columns[second] = pa.array(second_positive.astype(np.float32))
        return pa.table(columns), self.oracle_scores(probability)

    def table(self, rng: np.random.Generator, rows: int) -> pa.Table:
        """``rows`` rows with labels, as an Arrow table in schema column order."""
        return self.table_with_oracle(rng, rows)[0]

    def schema(self, metadata: dict) -> Schema:
        layout = self.layout
        planted: dict = {
            task: {"sparse": logit.sparse_drivers, "dense": logit.dense_drivers,
                   "interactions": [list(pair) for pair in logit.pairs], "nonlinear": logit.nonlinear.formula}
            for task, logit in self.planted_logits.items()
        }
        drivers = {name for task in layout.tasks for name in planted[task]["sparse"] + planted[task]["dense"]}
        planted["noise"] = {"sparse": [f.name for f in layout.fields if f.name not in drivers],
                            "dense": [d for d in layout.dense if d not in drivers]}
        logit = {
            "dense_weight": DENSE_WEIGHT, "effect_std": dict(layout.effect_stds), "id_skew": ID_SKEW,
            "shared_fields": list(self.shared_fields), "target_variance_shares": LOGIT_VARIANCE_SHARES,
            **{task: {"intercept": logit.intercept, "interaction_scales": list(logit.pair_scales),
                      "nonlinear_scale": logit.nonlinear_scale, "variance_shares": self.variance_shares[task]}
               for task, logit in self.planted_logits.items()},
        }
        return Schema(
            sparse=tuple(SparseFeature(f.name, f.cardinality, f.multi_hot) for f in layout.fields),
            dense=tuple(DenseFeature(d) for d in layout.dense),
            tasks=tuple(TaskSpec(task, "binary") for task in layout.tasks),
            group_column=layout.group_column,
            metadata={"generator": layout.name, "seed": self.seed, "conflict": self.conflict,
                      **{f"{task}_rate": rate for task, rate in self.rates.items()}, "latent_dim": LATENT_DIM,
                      "planted": planted, "logit": logit, **metadata},
        )


class SyntheticGenerator(Protocol):
    """What ``write_synthetic`` needs from a generator: seeded tables and the schema describing them."""

    def table(self, rng: np.random.Generator, rows: int) -> pa.Table: ...

    def schema(self, metadata: dict) -> Schema: ...


@runtime_checkable
class OracleGenerator(SyntheticGenerator, Protocol):
    """A generator that also knows each row's true label probabilities; ``write_synthetic`` records their AUC."""

    def table_with_oracle(self, rng: np.random.Generator, rows: int) -> tuple[pa.Table, dict[str, np.ndarray]]:
        """The rows ``table(rng, rows)`` returns, and per task the true probability of a positive label [rows]."""
        ...


@dataclass
class OracleScores:
    """The oracle probabilities and labels of one split per task, gathered chunk by chunk."""

    probabilities: dict[str, list[np.ndarray]] = field(default_factory=dict)
    labels: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def add(self, table: pa.Table, probabilities: dict[str, np.ndarray]) -> None:
        for task, probability in probabilities.items():
            self.probabilities.setdefault(task, []).append(probability)
            self.labels.setdefault(task, []).append(table.column(task).to_numpy())

    def auc(self) -> dict[str, float | None]:
        """Oracle AUC per task and their mean under ``avg``; None where the split holds a single class."""
        aucs = {task: auc(np.concatenate(self.probabilities[task]), np.concatenate(self.labels[task]))
                for task in self.probabilities}
        aucs["avg"] = float(np.mean(list(aucs.values())))
        return {name: None if np.isnan(value) else value for name, value in aucs.items()}


def write_synthetic(
    generator: SyntheticGenerator,
    out: str | Path,
    rows: int,
    seed: int = 0,
    valid_fraction: float = 0.1,
    test_fraction: float = 0.1,
    rows_per_file: int = 1_000_000,
    row_group_rows: int = 65_536,
    overwrite: bool = False,
    progress: bool = True,
) -> Schema:
    """Write ``rows`` rows of ``generator`` split into train/valid/test under ``out`` (atomically); return the schema.

    For an ``OracleGenerator`` the valid and test splits' oracle AUCs go into ``metadata.oracle_auc``.
    """
    if rows < 3:
        raise ValueError(f"--rows must be at least 3 (one per split), got {rows}")
    if not (0 < valid_fraction < 1 and 0 < test_fraction < 1 and valid_fraction + test_fraction < 1):
        raise ValueError("valid and test fractions must be in (0, 1) and sum to less than 1")
    split_rows = {"valid": max(1, int(rows * valid_fraction)), "test": max(1, int(rows * test_fraction))}
    split_rows["train"] = rows - split_rows["valid"] - split_rows["test"]
    oracle = {split: OracleScores() for split in ORACLE_SPLITS} if isinstance(generator, OracleGenerator) else {}
    with atomic_directory(out, overwrite=overwrite) as folder, tqdm(
        total=rows, unit="rows", unit_scale=True, desc=type(generator).__name__, disable=not progress
    ) as bar:
        for split_index, split in enumerate(SPLITS):
            (folder / split).mkdir()
            remaining, file_index = split_rows[split], 0
            while remaining:
                file_rows = min(remaining, rows_per_file)
                _write_file(generator, folder / split / f"part-{file_index:05d}.parquet", file_rows,
                            [seed, 2 + split_index, file_index], row_group_rows, bar, oracle.get(split))
                remaining -= file_rows
                file_index += 1
        metadata: dict = {"rows": split_rows}
        if oracle:
            metadata["oracle_auc"] = {split: scores.auc() for split, scores in oracle.items()}
        schema = generator.schema(metadata)
        schema.save(folder)
    return schema


def write_aliccp_like(out: str | Path, rows: int, seed: int = 0, conflict: float = DEFAULT_CONFLICT,
                      click_rate: float = DEFAULT_CLICK_RATE, conversion_rate: float = DEFAULT_CONVERSION_RATE,
                      **options) -> Schema:
    """The AliCCP-like dataset of ``seed`` (see ``PlantedGenerator`` and, for the options, ``write_synthetic``)."""
    generator = PlantedGenerator(ALICCP_LIKE, seed, conflict, (click_rate, conversion_rate))
    return write_synthetic(generator, out, rows, seed, **options)


def _write_file(generator: SyntheticGenerator, path: Path, rows: int, seed: list[int], row_group_rows: int, bar: tqdm,
                oracle: OracleScores | None = None) -> None:
    """One Parquet file of ``rows`` rows; with ``oracle`` the rows' oracle probabilities and labels are added to it."""
    writer = None
    for chunk_index, start in enumerate(range(0, rows, row_group_rows)):
        rng, chunk_rows = np.random.default_rng(seed + [chunk_index]), min(row_group_rows, rows - start)
        if oracle is None:
            table = generator.table(rng, chunk_rows)
        else:
            table, probabilities = generator.table_with_oracle(rng, chunk_rows)
            oracle.add(table, probabilities)
        if writer is None:
            writer = pq.ParquetWriter(path, table.schema)
        writer.write_table(table, row_group_size=row_group_rows)
        bar.update(table.num_rows)
    writer.close()


def main(argv: list[str] | None = None) -> None:
    from torchrec_automtl.datasets.mmoe_synthetic import MMoEGenerator

    parser = argparse.ArgumentParser(prog="python -m torchrec_automtl.datasets.synthetic", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="generator", required=True)
    aliccp = commands.add_parser("aliccp_like", help="AliCCP-shaped click/conversion data with planted drivers")
    aliccp.add_argument("--click-rate", type=float, default=DEFAULT_CLICK_RATE, help="target click rate")
    aliccp.add_argument("--conversion-rate", type=float, default=DEFAULT_CONVERSION_RATE,
                        help="target conversion rate among clicks")
    small = commands.add_parser("small_vocab", help="30 small-vocabulary fields, 7 numeric features, two independent binary tasks")
    small.add_argument("--task-a-rate", type=float, default=SMALL_VOCAB.default_rates[0], help="target task_a positive rate")
    small.add_argument("--task-b-rate", type=float, default=SMALL_VOCAB.default_rates[1], help="target task_b positive rate")
    for command in (aliccp, small):
        command.add_argument("--conflict", type=float, default=DEFAULT_CONFLICT,
                             help="in [0, 1]: how the shared fields' effects on the second task oppose those on the first "
                                  "(0 same direction, 0.5 unrelated, 1 opposite)")
    mmoe = commands.add_parser("mmoe", help="the MMoE paper's two regression tasks with controlled correlation")
    mmoe.add_argument("--correlation", type=float, required=True, help="P = cos(w1, w2), in [-1, 1]")
    mmoe.add_argument("--sparse-buckets", type=int, default=0,
                      help="also bucketize every input into this many equal-probability buckets as sparse fields")
    for command in (aliccp, small, mmoe):
        command.add_argument("--rows", type=int, required=True, help="total rows over train/valid/test")
        command.add_argument("--out", required=True, help="output folder (must not exist unless --overwrite)")
        command.add_argument("--seed", type=int, default=0)
        command.add_argument("--valid-fraction", type=float, default=0.1)
        command.add_argument("--test-fraction", type=float, default=0.1)
        command.add_argument("--rows-per-file", type=int, default=1_000_000)
        command.add_argument("--row-group-rows", type=int, default=65_536)
        command.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    args = parser.parse_args(argv)
    try:
        if args.generator == "aliccp_like":
            generator = PlantedGenerator(ALICCP_LIKE, args.seed, args.conflict, (args.click_rate, args.conversion_rate))
        elif args.generator == "small_vocab":
            generator = PlantedGenerator(SMALL_VOCAB, args.seed, args.conflict, (args.task_a_rate, args.task_b_rate))
        else:
            generator = MMoEGenerator(args.correlation, args.seed, sparse_buckets=args.sparse_buckets)
        schema = write_synthetic(generator, args.out, args.rows, args.seed, args.valid_fraction, args.test_fraction,
                                 args.rows_per_file, args.row_group_rows, args.overwrite)
    except (FileExistsError, ValueError) as error:
        parser.exit(2, f"error: {error}\n")
    oracle = f", oracle test AUC {schema.metadata['oracle_auc']['test']}" if "oracle_auc" in schema.metadata else ""
    print(f"wrote {args.out}: {schema.metadata['rows']} rows, tasks {schema.task_names}{oracle}")


if __name__ == "__main__":
    main()
