import itertools

import numpy as np
import pyarrow.parquet as pq
import pytest
import scipy.sparse as sparse
from scipy.optimize import minimize
from scipy.special import expit

from torchrec_automtl.common.ranking import auc
from torchrec_automtl.datasets.parquet_reader import split_files
from torchrec_automtl.datasets.schema import Schema
from torchrec_automtl.datasets.synthetic import ADDITIVE_FIELDS, ALICCP_FIELDS, ALICCP_LIKE, SMALL_VOCAB, PlantedGenerator, Rows, write_aliccp_like
from torchrec_automtl.datasets.synthetic import main as synthetic_main

CLICK_ADDITIVE = list(ADDITIVE_FIELDS["click"])


def _read(folder, split):
    return pq.read_table(split_files(folder, split))


def test_same_seed_gives_identical_data(tmp_path):
    write_aliccp_like(tmp_path / "a", rows=600, seed=3, row_group_rows=128, progress=False)
    write_aliccp_like(tmp_path / "b", rows=600, seed=3, row_group_rows=128, progress=False)
    write_aliccp_like(tmp_path / "c", rows=600, seed=4, row_group_rows=128, progress=False)
    for split in ("train", "valid", "test"):
        assert _read(tmp_path / "a", split).equals(_read(tmp_path / "b", split))
    assert not _read(tmp_path / "a", "train").equals(_read(tmp_path / "c", "train"))


@pytest.fixture(scope="module")
def aliccp_60k(tmp_path_factory):
    """60,000 rows of seed 0 with the default settings."""
    out = tmp_path_factory.mktemp("data") / "aliccp_60k"
    write_aliccp_like(out, rows=60000, seed=0, progress=False)
    return out


def test_label_rates_and_conversion_only_after_click(aliccp_60k):
    table = _read(aliccp_60k, "train")
    click = table.column("click").to_numpy()
    conversion = table.column("conversion").to_numpy()
    assert 0.04 <= click.mean() <= 0.10
    assert 0.18 <= conversion[click == 1].mean() <= 0.32
    assert not np.any((conversion == 1) & (click == 0))


def test_rates_follow_the_arguments(tmp_path):
    """With conflict 0 clicky rows also convert more, so the conversion rate is calibrated among clicks."""
    write_aliccp_like(tmp_path / "r", rows=60000, seed=0, conflict=0.0, click_rate=0.2, conversion_rate=0.5,
                      progress=False)
    table = _read(tmp_path / "r", "train")
    click, conversion = table.column("click").to_numpy(), table.column("conversion").to_numpy()
    assert 0.18 <= click.mean() <= 0.22
    assert 0.46 <= conversion[click == 1].mean() <= 0.54


def test_schema_records_the_planted_structure(tiny_aliccp):
    schema = Schema.load(tiny_aliccp)
    planted = schema.metadata["planted"]
    drivers = set(planted["click"]["sparse"]) | set(planted["conversion"]["sparse"])
    assert set(planted["click"]["sparse"]) != set(planted["conversion"]["sparse"])
    assert set(planted["click"]["sparse"]) & set(planted["conversion"]["sparse"])  # partly shared
    assert drivers.isdisjoint(planted["noise"]["sparse"])
    assert drivers | set(planted["noise"]["sparse"]) == set(schema.sparse_names)
    assert len(schema.sparse) == 23 and sum(f.multi_hot for f in schema.sparse) >= 2
    assert schema.task_names == ["click", "conversion"]


def test_schema_lists_every_driver_and_setting(tiny_aliccp):
    schema = Schema.load(tiny_aliccp)
    metadata, planted = schema.metadata, schema.metadata["planted"]
    for kind, names in (("sparse", schema.sparse_names), ("dense", schema.dense_names)):
        drivers = set(planted["click"][kind]) | set(planted["conversion"][kind])
        assert drivers.isdisjoint(planted["noise"][kind]) and drivers | set(planted["noise"][kind]) == set(names)
    for task in ("click", "conversion"):
        assert planted[task]["interactions"] and all(len(pair) == 2 for pair in planted[task]["interactions"])
        assert {f for pair in planted[task]["interactions"] for f in pair} <= set(planted[task]["sparse"])
    assert "702" in planted["conversion"]["sparse"] and "702" not in planted["noise"]["sparse"]  # interaction only
    assert {"dense_2", "dense_3"} <= set(planted["click"]["dense"]) | set(planted["conversion"]["dense"])
    settings = ("conflict", "click_rate", "conversion_rate", "latent_dim")
    assert [metadata[name] for name in settings] == [0.3, 0.06, 0.25, 4]
    for task in ("click", "conversion"):
        shares = metadata["logit"][task]["variance_shares"]
        assert shares == pytest.approx(metadata["logit"]["target_variance_shares"], abs=0.02)


@pytest.mark.parametrize("conflict", [-0.1, 1.5])
def test_conflict_outside_unit_interval_is_refused(conflict, tmp_path, capsys):
    with pytest.raises(ValueError, match="--conflict"):
        PlantedGenerator(ALICCP_LIKE, 0, conflict=conflict)
    with pytest.raises(SystemExit) as stopped:
        synthetic_main(["aliccp_like", "--rows", "300", "--conflict", str(conflict), "--out", str(tmp_path / "x")])
    assert stopped.value.code == 2 and "--conflict" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_conflict_flips_the_shared_fields_conversion_effects():
    generators = {conflict: PlantedGenerator(ALICCP_LIKE, 0, conflict=conflict) for conflict in (0.0, 0.5, 1.0)}
    for name in generators[0.0].shared_fields:
        correlation = {conflict: np.corrcoef(g.planted_logits["click"].effects[name],
                                             g.planted_logits["conversion"].effects[name])[0, 1]
                       for conflict, g in generators.items()}
        assert correlation[0.0] > 0.99 and correlation[1.0] < -0.99 and abs(correlation[0.5]) < 0.3, (name, correlation)
    # Only the shared fields' conversion effects move with the conflict.
    np.testing.assert_array_equal(generators[0.0].planted_logits["click"].effects["206"],
                                  generators[1.0].planted_logits["click"].effects["206"])
    np.testing.assert_array_equal(generators[0.0].planted_logits["conversion"].effects["508"],
                                  generators[1.0].planted_logits["conversion"].effects["508"])


def test_exact_auc_counts_every_pair_with_ties_as_half():
    rng = np.random.default_rng(5)
    scores, labels = rng.integers(0, 6, 120).astype(float), rng.random(120) < 0.3  # many ties
    pairs = list(itertools.product(scores[labels], scores[~labels]))
    brute_force = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in pairs) / len(pairs)
    assert auc(scores, labels) == pytest.approx(brute_force, abs=1e-12)
    assert np.isnan(auc(scores, np.zeros(120)))


def _generator_of(metadata: dict) -> PlantedGenerator:
    """The generator that wrote a dataset, rebuilt from its schema's metadata."""
    return PlantedGenerator(ALICCP_LIKE, metadata["seed"], metadata["conflict"],
                            (metadata["click_rate"], metadata["conversion_rate"]))


def test_oracle_scores_are_calibrated_label_probabilities(aliccp_60k):
    generator = _generator_of(Schema.load(aliccp_60k).metadata)
    table = _read(aliccp_60k, "train")
    oracle = generator.oracle_scores(generator.task_probabilities(Rows.from_table(table, ALICCP_LIKE)))
    for task in ("click", "conversion"):
        rate = table.column(task).to_numpy().mean()
        assert abs(oracle[task].mean() - rate) < 4 * np.sqrt(rate / table.num_rows), task  # ~4 standard errors


def test_oracle_auc_is_recorded_for_valid_and_test(aliccp_60k):
    metadata = Schema.load(aliccp_60k).metadata
    generator = _generator_of(metadata)
    for split in ("valid", "test"):
        recorded = metadata["oracle_auc"][split]
        assert all(0.5 < recorded[name] <= 1 for name in ("click", "conversion", "avg")), recorded
        assert recorded["avg"] == pytest.approx((recorded["click"] + recorded["conversion"]) / 2)
        # The oracle scores are recomputable from the written features and the recorded settings.
        table = _read(aliccp_60k, split)
        oracle = generator.oracle_scores(generator.task_probabilities(Rows.from_table(table, ALICCP_LIKE)))
        for task in ("click", "conversion"):
            assert auc(oracle[task], table.column(task).to_numpy()) == pytest.approx(recorded[task], abs=1e-12)


def test_interactions_have_no_main_effect():
    """The latent vectors are centred under the id distribution: no field's ids alone explain a pair's term."""
    generator = PlantedGenerator(ALICCP_LIKE, 0)
    rows = generator.draw_rows(np.random.default_rng(9), 200_000)
    for task, logit in generator.planted_logits.items():
        interactions = logit.parts(rows).interactions  # [rows, num pairs]
        for k, pair in enumerate(logit.pairs):
            for name in pair:
                ids = rows.ids[name][0]
                id_means = np.bincount(ids, interactions[:, k]) / np.maximum(np.bincount(ids), 1)
                assert id_means[ids].var() < 0.03 * interactions[:, k].var(), (task, pair, name)


def _one_hot(rows: Rows, fields: list[str]) -> sparse.csr_matrix:
    """One column per id of each field; a multi-hot bag's ids weigh 1/sqrt(bag size), like the planted effects."""
    cardinality = {f.name: f.cardinality for f in ALICCP_FIELDS}
    blocks = []
    for name in fields:
        ids, lengths = rows.ids[name]
        row = np.repeat(np.arange(len(lengths)), lengths)
        weights = 1 / np.sqrt(lengths[row])
        blocks.append(sparse.csr_matrix((weights, (row, ids)), shape=(len(lengths), cardinality[name])))
    return sparse.hstack(blocks).tocsr()


def _fit_logistic(features: sparse.csr_matrix, labels: np.ndarray, penalized: int) -> np.ndarray:
    """Logistic regression weights (last one the bias) by L-BFGS; the first ``penalized`` weights get an L2 penalty."""
    features = sparse.hstack([features, np.ones((features.shape[0], 1))]).tocsr()
    penalty = np.r_[np.ones(penalized), np.zeros(features.shape[1] - penalized)]

    def loss_and_gradient(weights):
        logits = features @ weights
        loss = np.sum(np.logaddexp(0, logits) - labels * logits) + 0.5 * np.sum(penalty * weights**2)
        return loss, features.T @ (expit(logits) - labels) + penalty * weights

    return minimize(loss_and_gradient, np.zeros(features.shape[1]), jac=True, method="L-BFGS-B").x


def _click_features(generator: PlantedGenerator, rows: Rows, planted: bool) -> sparse.csr_matrix:
    """One-hot click drivers + raw dense features; with ``planted`` also the click's interaction and nonlinear terms."""
    columns = [_one_hot(rows, CLICK_ADDITIVE), sparse.csr_matrix(rows.dense.astype(np.float64))]
    if planted:
        parts = generator.planted_logits["click"].parts(rows)
        columns.append(sparse.csr_matrix(np.column_stack([parts.interactions, parts.nonlinear])))
    return sparse.hstack(columns).tocsr()


def test_labels_hold_interactions_and_nonlinearity_no_additive_model_captures():
    """A logistic regression on the click drivers' one-hot ids and the raw dense features falls clearly short of
    the oracle; given the planted interaction and nonlinear terms too, it weighs each about 1 and closes the gap."""
    generator = PlantedGenerator(ALICCP_LIKE, 0)
    (fit_table, _), (eval_table, eval_oracle) = (generator.table_with_oracle(np.random.default_rng(seed), 60000)
                                                 for seed in (1, 2))
    fit_rows, eval_rows = Rows.from_table(fit_table, ALICCP_LIKE), Rows.from_table(eval_table, ALICCP_LIKE)
    labels, eval_labels = fit_table.column("click").to_numpy(), eval_table.column("click").to_numpy()
    oracle = auc(eval_oracle["click"], eval_labels)
    fitted = {}
    for planted in (False, True):
        features = _click_features(generator, fit_rows, planted)
        weights = _fit_logistic(features, labels, penalized=_one_hot(fit_rows, CLICK_ADDITIVE).shape[1])
        fitted[planted] = auc(_click_features(generator, eval_rows, planted) @ weights[:-1], eval_labels)
    assert oracle - fitted[False] > 0.05, (oracle, fitted)
    assert fitted[True] - fitted[False] > 0.7 * (oracle - fitted[False]), (oracle, fitted)
    np.testing.assert_allclose(weights[-4:-1], 1.0, atol=0.25)  # the two pairs and the nonlinear term, as planted


def test_cli_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "e"
    synthetic_main(["aliccp_like", "--rows", "300", "--out", str(out)])
    before = _read(out, "train")
    with pytest.raises(SystemExit) as stopped:
        synthetic_main(["aliccp_like", "--rows", "300", "--seed", "9", "--out", str(out)])
    assert stopped.value.code == 2
    assert "--overwrite" in capsys.readouterr().err
    assert _read(out, "train").equals(before)


def test_small_vocab_layout_has_independent_tasks_at_their_rates_and_records_its_oracle(tmp_path):
    synthetic_main(["small_vocab", "--rows", "40000", "--task-a-rate", "0.06", "--task-b-rate", "0.43",
                    "--out", str(tmp_path / "sv")])
    schema = Schema.load(tmp_path / "sv")
    assert len(schema.sparse) == 30 and len(schema.dense) == 7 and schema.task_names == ["task_a", "task_b"]
    assert all(2 <= f.cardinality <= 50 and not f.multi_hot for f in schema.sparse)
    table = _read(tmp_path / "sv", "train")
    a, b = table.column("task_a").to_numpy(), table.column("task_b").to_numpy()
    assert abs(a.mean() - 0.06) < 0.01 and abs(b.mean() - 0.43) < 0.02, (a.mean(), b.mean())
    # Not chained: task_b is as frequent where task_a is negative as the model says, not zero.
    assert b[a == 0].mean() > 0.3
    planted = schema.metadata["planted"]
    assert set(planted["task_a"]["sparse"]) & set(planted["task_b"]["sparse"]) == {"c01", "c02"}
    assert len(planted["noise"]["sparse"]) == 17 and planted["noise"]["dense"] == ["d4", "d5", "d6"]
    # The recorded oracle AUC is recomputable from the features and the recorded settings.
    metadata = schema.metadata
    generator = PlantedGenerator(SMALL_VOCAB, metadata["seed"], metadata["conflict"],
                                 (metadata["task_a_rate"], metadata["task_b_rate"]))
    test = _read(tmp_path / "sv", "test")
    oracle = generator.oracle_scores(generator.task_probabilities(Rows.from_table(test, SMALL_VOCAB)))
    for task in ("task_a", "task_b"):
        assert auc(oracle[task], test.column(task).to_numpy()) == pytest.approx(metadata["oracle_auc"]["test"][task], abs=1e-12)
        assert metadata["oracle_auc"]["test"][task] > 0.75
