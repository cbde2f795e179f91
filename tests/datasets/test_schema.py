import json

import pytest

from torchrec_automtl.datasets.schema import DenseFeature, Schema, SchemaError, SparseFeature, TaskSpec


def _schema(**overrides) -> Schema:
    fields = dict(
        sparse=(SparseFeature("user", 10), SparseFeature("tags", 5, multi_hot=True)),
        dense=(DenseFeature("price"),),
        tasks=(TaskSpec("click"), TaskSpec("watch_time", "regression")),
        group_column="user",
        metadata={"source": "test"},
    )
    fields.update(overrides)
    return Schema(**fields)


def test_schema_round_trips_through_json(tmp_path):
    schema = _schema()
    schema.save(tmp_path)
    loaded = Schema.load(tmp_path)
    assert loaded == schema
    assert loaded.metadata == {"source": "test"}
    assert loaded.columns == ["user", "tags", "price", "click", "watch_time"]


def test_fingerprint_changes_with_cardinality_but_not_metadata():
    base = _schema()
    assert base.fingerprint() == _schema(metadata={"other": 1}).fingerprint()
    assert base.fingerprint() != _schema(sparse=(SparseFeature("user", 11), SparseFeature("tags", 5, True))).fingerprint()


def test_missing_schema_file_is_named(tmp_path):
    with pytest.raises(SchemaError, match=str(tmp_path / "schema.json")):
        Schema.load(tmp_path)


def test_unknown_schema_key_is_rejected(tmp_path):
    payload = _schema().to_dict()
    payload["featurez"] = []
    (tmp_path / "schema.json").write_text(json.dumps(payload))
    with pytest.raises(SchemaError, match="featurez"):
        Schema.load(tmp_path)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"group_column": "tags"}, "group_column 'tags'"),
        ({"tasks": (TaskSpec("click", "ranking"),)}, "ranking"),
        ({"dense": (DenseFeature("user"),)}, "unique"),
        ({"sparse": (SparseFeature("user", 0),), "group_column": None}, "cardinality"),
    ],
)
def test_inconsistent_schema_is_rejected(overrides, message):
    with pytest.raises(SchemaError, match=message):
        _schema(**overrides)
