import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from torchrec_automtl.datasets.parquet_reader import BatchReader, ParquetSplit, split_files
from torchrec_automtl.datasets.schema import Schema
from torchrec_automtl.datasets.validation import DataError
from tests.conftest import write_indexed_dataset


@pytest.fixture()
def indexed(tmp_path):
    schema = write_indexed_dataset(tmp_path, {"train": 1000, "valid": 301})
    return tmp_path, schema


def _rows(batches):
    """row_id of every real row, in order."""
    out = []
    for batch in batches:
        ids = batch.sparse_features["row_id"].values()
        out.extend(ids[batch.mask].tolist())
    return out


def test_kjt_dense_and_labels_equal_parquet_content(tiny_aliccp):
    schema = Schema.load(tiny_aliccp)
    table = pq.read_table(split_files(tiny_aliccp, "valid"))
    reader = BatchReader(ParquetSplit.open(tiny_aliccp, "valid", schema), batch_size=64)
    batches = list(reader.epoch())
    sparse = {name: [] for name in schema.sparse_names}
    lengths = {name: [] for name in schema.sparse_names}
    for batch in batches:
        features = batch.sparse_features.to_dict()
        real = int(batch.mask.sum())
        assert batch.mask[:real].all() and not batch.mask[real:].any()
        for name in schema.sparse_names:
            jagged_lengths = features[name].lengths()[:real]
            lengths[name].extend(jagged_lengths.tolist())
            sparse[name].extend(features[name].values()[: int(jagged_lengths.sum())].tolist())
    for feature in schema.sparse:
        column = table.column(feature.name).combine_chunks()
        if feature.multi_hot:
            assert sparse[feature.name] == pa.compute.list_flatten(column).to_pylist()
            assert lengths[feature.name] == pa.compute.list_value_length(column).to_pylist()
        else:
            assert sparse[feature.name] == column.to_pylist()
            assert set(lengths[feature.name]) == {1}
    dense = np.concatenate([b.dense_features[b.mask].numpy() for b in batches])
    labels = np.concatenate([b.labels[b.mask].numpy() for b in batches])
    np.testing.assert_array_equal(dense, np.stack([table.column(n).to_numpy() for n in schema.dense_names], 1))
    np.testing.assert_array_equal(labels, np.stack([table.column(n).to_numpy() for n in schema.task_names], 1))
    assert sum(f.multi_hot for f in schema.sparse) >= 2


def test_group_ids_come_from_the_group_column(indexed):
    folder, schema = indexed
    batch = next(BatchReader(ParquetSplit.open(folder, "valid", schema), batch_size=50).epoch())
    assert batch.group_ids.tolist() == [i % 11 for i in range(50)]


@pytest.mark.parametrize("world_size", [2, 3])
def test_evaluation_ranks_are_disjoint_cover_all_rows_and_take_equal_steps(indexed, world_size):
    folder, schema = indexed
    split = ParquetSplit.open(folder, "valid", schema)
    readers = [BatchReader(split, batch_size=32, rank=r, world_size=world_size) for r in range(world_size)]
    per_rank = [_rows(reader.epoch()) for reader in readers]
    steps = [len(list(reader.epoch())) for reader in readers]
    assert len(set(steps)) == 1 and steps[0] == readers[0].num_steps
    assert steps[0] == math.ceil(math.ceil(301 / world_size) / 32)
    flat = [row for rows in per_rank for row in rows]
    assert sorted(flat) == list(range(301))  # every row exactly once
    for batch in readers[-1].epoch():
        assert batch.batch_size == 32  # padded to a constant shape


def test_uneven_evaluation_ranks_take_the_longest_ranks_steps_with_all_padding_batches(indexed):
    """301 rows on 2 ranks are 150 + 151: at batch 50, rank 0 has 3 batches of its own and rank 1 needs 4.
    Both must take 4 (collectives pair up step by step), rank 0's last one all padding."""
    folder, schema = indexed
    split = ParquetSplit.open(folder, "valid", schema)
    readers = [BatchReader(split, batch_size=50, rank=r, world_size=2) for r in range(2)]
    batches = [list(reader.epoch()) for reader in readers]
    assert [len(b) for b in batches] == [len(r) for r in readers] == [4, 4]
    assert not batches[0][-1].mask.any() and batches[0][-1].batch_size == 50
    assert int(batches[1][-1].mask.sum()) == 1
    assert sorted(_rows(batches[0]) + _rows(batches[1])) == list(range(301))


def test_uneven_training_ranks_take_the_shortest_ranks_steps(indexed):
    """1000 rows on 3 ranks are 333 + 333 + 334: at batch 167 only rank 2 has a second full batch,
    so every rank takes 1 step (a rank taking 2 would wait forever for the others)."""
    folder, schema = indexed
    split = ParquetSplit.open(folder, "train", schema)
    readers = [BatchReader(split, 167, r, 3, training=True, shuffle_buffer=0) for r in range(3)]
    assert [len(list(reader.epoch(0))) for reader in readers] == [len(reader) for reader in readers] == [1, 1, 1]


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_training_ranks_are_disjoint_and_take_equal_steps(indexed, world_size):
    folder, schema = indexed
    split = ParquetSplit.open(folder, "train", schema)
    readers = [BatchReader(split, 64, r, world_size, training=True, shuffle_buffer=200, seed=1) for r in range(world_size)]
    per_rank = [_rows(reader.epoch(0)) for reader in readers]
    assert {len(rows) for rows in per_rank} == {(1000 // world_size) // 64 * 64}
    flat = [row for rows in per_rank for row in rows]
    assert len(flat) == len(set(flat))
    for rank, rows in enumerate(per_rank):
        low, high = readers[rank].row_range
        assert all(low <= row < high for row in rows)


@pytest.mark.parametrize("world_size", [1, 2])
def test_views_of_a_split_read_exactly_their_rows_across_files_and_row_groups(indexed, world_size):
    """Rows 250..612 cross files of 97 rows and row groups of 31; the rest is two disjoint ranges."""
    folder, schema = indexed
    split = ParquetSplit.open(folder, "train", schema)
    held, rest = split.rows(250, 613), split.without_rows(250, 613)
    assert (held.num_rows, rest.num_rows, split.num_rows) == (363, 637, 1000)
    for view, expected in ((held, list(range(250, 613))), (rest, list(range(250)) + list(range(613, 1000)))):
        readers = [BatchReader(view, 32, r, world_size) for r in range(world_size)]
        assert sorted(row for reader in readers for row in _rows(reader.epoch())) == expected
    assert _rows(BatchReader(held.rows(10, 13), 3).epoch()) == [260, 261, 262]  # a view of a view


def test_shuffling_changes_order_between_epochs_and_is_seeded(indexed):
    folder, schema = indexed
    split = ParquetSplit.open(folder, "train", schema)
    reader = BatchReader(split, 100, training=True, shuffle_buffer=300, seed=5)
    epoch0, epoch1 = _rows(reader.epoch(0)), _rows(reader.epoch(1))
    assert epoch0 != epoch1 and epoch0 != sorted(epoch0)
    assert _rows(BatchReader(split, 100, training=True, shuffle_buffer=300, seed=5).epoch(0)) == epoch0
    assert _rows(BatchReader(split, 100, training=True).epoch(0)) == list(range(1000))  # no shuffle buffer: file order


def test_missing_split_names_the_expected_path(tmp_path, indexed):
    folder, schema = indexed
    with pytest.raises(DataError, match="test"):
        ParquetSplit.open(folder, "test", schema)


def _rewrite(folder, split, column, values):
    path = split_files(folder, split)[0]
    table = pq.read_table(path)
    table = table.set_column(table.schema.get_field_index(column), column, values(table))
    pq.write_table(table, path)
    return path


@pytest.mark.parametrize(
    "column, values, message",
    [
        ("row_id", lambda t: pa.array(np.r_[-1, np.arange(1, t.num_rows)]), "id -1 outside"),
        ("row_id", lambda t: pa.array(np.r_[np.arange(t.num_rows - 1), 5000]), "id 5000 outside"),
        ("tags", lambda t: pa.array([[0]] * (t.num_rows - 1) + [[3, 16]], type=pa.list_(pa.int64())), "id 16 outside"),
        ("a", lambda t: pa.array(np.r_[np.zeros(t.num_rows - 1), 2.0].astype(np.float32)), "binary label outside"),
        ("x", lambda t: pa.array(np.r_[np.nan, np.zeros(t.num_rows - 1)].astype(np.float32)), "NaN or infinite"),
        ("b", lambda t: pa.array(np.r_[np.inf, np.zeros(t.num_rows - 1)].astype(np.float32)), "NaN or infinite"),
        ("x", lambda t: pa.array([None] + [0.0] * (t.num_rows - 1), type=pa.float32()), "null value"),
    ],
)
def test_bad_values_stop_with_file_and_column(indexed, column, values, message):
    folder, schema = indexed
    path = _rewrite(folder, "valid", column, values)
    reader = BatchReader(ParquetSplit.open(folder, "valid", schema), batch_size=16)
    with pytest.raises(DataError) as error:
        list(reader.epoch())
    assert str(path) in str(error.value) and f"column '{column}'" in str(error.value) and message in str(error.value)


def test_bad_row_is_located(indexed):
    folder, schema = indexed
    path = _rewrite(folder, "valid", "a", lambda t: pa.array(np.where(np.arange(t.num_rows) == 40, 7.0, 0.0).astype(np.float32)))
    with pytest.raises(DataError, match="row 40"):
        list(BatchReader(ParquetSplit.open(folder, "valid", schema), batch_size=16).epoch())
    assert path.exists()


def test_missing_or_mistyped_columns_are_named(indexed):
    folder, schema = indexed
    path = split_files(folder, "valid")[0]
    table = pq.read_table(path)
    pq.write_table(table.drop_columns(["b"]), path)
    with pytest.raises(DataError, match=r"missing column\(s\) \['b'\]") as error:
        ParquetSplit.open(folder, "valid", schema)
    assert str(path) in str(error.value)
    pq.write_table(table.set_column(1, "tags", pa.array([0] * table.num_rows)), path)
    with pytest.raises(DataError, match="column 'tags' has type int64, schema.json expects list<integer>"):
        ParquetSplit.open(folder, "valid", schema)


def test_missing_file_is_named(indexed):
    folder, schema = indexed
    ghost = folder / "valid" / "ghost.parquet"
    with pytest.raises(DataError, match="ghost.parquet: file not found"):
        ParquetSplit([ghost], schema)


@pytest.mark.parametrize("damage", ["truncated", "not_parquet"])
def test_a_damaged_file_of_a_split_is_named(indexed, damage):
    folder, schema = indexed
    path = split_files(folder, "valid")[-1]
    content = path.read_bytes()
    path.write_bytes(content[: len(content) // 2] if damage == "truncated" else b"user_id,click\n1,0\n")
    with pytest.raises(DataError, match=f"{path}: not a readable Parquet file"):
        ParquetSplit.open(folder, "valid", schema)
