import pytest

from torchrec_automtl.datasets.schema import TaskSpec
from torchrec_automtl.pipelines.early_stopping import EarlyStopping, MonitorError, resolve_monitor

BINARY = [TaskSpec("click"), TaskSpec("buy")]
REGRESSION = [TaskSpec("y1", "regression"), TaskSpec("y2", "regression")]


def test_auto_monitor_follows_task_types():
    assert resolve_monitor("auto", BINARY) == "avg_auc"
    assert resolve_monitor("auto", REGRESSION) == "avg_mse"
    assert resolve_monitor("click.logloss", BINARY) == "click.logloss"


@pytest.mark.parametrize("monitor", ["avg_mse", "buy.mse", "view.auc", "avg_gauc", "avg_accuracy"])
def test_monitor_that_does_not_fit_the_tasks_is_rejected(monitor):
    with pytest.raises(ValueError, match="trainer.monitor"):
        resolve_monitor(monitor, BINARY)


def test_early_stopping_keeps_best_and_stops_after_patience():
    stopping = EarlyStopping("avg_auc", patience=2)
    history = [0.70, 0.72, 0.71, 0.715, 0.80]
    stopped_at = None
    for epoch, value in enumerate(history):
        stopping.update(epoch, {"avg_auc": value})
        if stopping.should_stop:
            stopped_at = epoch
            break
    assert stopped_at == 3 and stopping.best_epoch == 1 and stopping.best_value == 0.72


def test_losses_are_minimized():
    stopping = EarlyStopping("click.logloss", patience=1)
    assert stopping.update(0, {"click": {"logloss": 0.5}})
    assert stopping.update(1, {"click": {"logloss": 0.4}})
    assert not stopping.update(2, {"click": {"logloss": 0.45}}) and stopping.should_stop


def test_a_tie_keeps_the_earlier_epoch():
    stopping = EarlyStopping("avg_auc", patience=2)
    improved = [stopping.update(epoch, {"avg_auc": value}) for epoch, value in enumerate([0.70, 0.75, 0.75, 0.75])]
    assert improved == [True, True, False, False] and stopping.best_epoch == 1 and stopping.should_stop


def test_nan_is_never_the_best_and_a_nan_before_any_best_is_an_error():
    stopping = EarlyStopping("avg_logloss", patience=2)
    assert stopping.update(0, {"avg_logloss": 0.3})
    assert not stopping.update(1, {"avg_logloss": float("nan")})  # diverged after its best epoch
    assert not stopping.update(2, {"avg_logloss": float("nan")}) and stopping.should_stop
    assert (stopping.best_epoch, stopping.best_value) == (0, 0.3)
    with pytest.raises(MonitorError, match=r"trainer.monitor=click.auc is NaN on the validation split at epoch 0.*one class"):
        EarlyStopping("click.auc", patience=2).update(0, {"click": {"auc": float("nan")}})
