"""metrics.json: one typed format, written and read back, and files of another format refused by name."""

import json

import pytest

from torchrec_automtl.pipelines.result import RESULT_FORMAT, ResultError, RunResult, SearchPart


def _result(**changes) -> RunResult:
    values = dict(model="mmoe", dataset="data/x", schema_fingerprint="0" * 16, world_size=2,
                  num_parameters={"embedding": 10, "dense": 5}, monitor="avg_auc", best_epoch=1,
                  valid={"avg_auc": 0.7}, test={"avg_auc": 0.71}, epochs=[{"epoch": 0}, {"epoch": 1}],
                  train_seconds=3.0, wall_time_s=4.0)
    return RunResult(**{**values, **changes})


def test_a_search_result_round_trips_through_its_file(tmp_path):
    search = SearchPart(epochs=3, seconds=2.0, samples_per_s=[1.0, 2.0], valid={"avg_auc": 0.6},
                        supernet_parameters={"embedding": 10, "dense": 50}, finetune="retrain",
                        task_gate_weights={"click": [0.5, 0.5]})
    result = _result(search=search)
    result.write(tmp_path)
    assert RunResult.read(tmp_path) == result
    assert json.loads((tmp_path / "metrics.json").read_text())["format"] == RESULT_FORMAT


@pytest.mark.parametrize("payload, message", [
    ({"model": "automtl", "test": {}, "finetune": {"seconds": 1.0}}, "metrics format None"),
    ({**_result().to_dict(), "extra": 1}, r"keys \['extra'\]"),
])
def test_a_file_of_another_format_is_refused_by_name(tmp_path, payload, message):
    (tmp_path / "metrics.json").write_text(json.dumps(payload))
    with pytest.raises(ResultError, match=message) as error:
        RunResult.read(tmp_path)
    assert str(tmp_path / "metrics.json") in str(error.value)


def test_an_unfinished_run_is_refused_where_test_metrics_are_needed(tmp_path):
    _result(test=None).write(tmp_path)
    with pytest.raises(ResultError, match="no test metrics"):
        RunResult.read(tmp_path)
    assert RunResult.read(tmp_path, finished=False).test is None
