"""The monitored validation metric and patience-based early stopping."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

from torchrec_automtl.common.errors import InputError
from torchrec_automtl.datasets.schema import TaskSpec

_METRICS = ("auc", "gauc", "logloss", "mse")


def resolve_monitor(monitor: str, tasks: Sequence[TaskSpec], with_gauc: bool = False) -> str:
    """The metric key to monitor: ``avg_<metric>`` or ``<task>.<metric>``; ``auto`` picks avg_auc (avg_mse if no binary task)."""
    if monitor == "auto":
        return "avg_auc" if any(t.type == "binary" for t in tasks) else "avg_mse"
    prefix, _, metric = monitor.rpartition(".") if "." in monitor else ("", "", monitor.removeprefix("avg_"))
    task_types = {t.name: t.type for t in tasks}
    binary_metric = metric in ("auc", "gauc", "logloss")
    valid = metric in _METRICS and (metric != "gauc" or with_gauc)
    if prefix:
        valid = valid and prefix in task_types and (task_types[prefix] == "binary") == binary_metric
    else:
        valid = valid and monitor.startswith("avg_") and any((t.type == "binary") == binary_metric for t in tasks)
    if not valid:
        choices = [f"avg_{m}" for m in _METRICS] + [f"{t.name}.<metric>" for t in tasks]
        raise ValueError(f"trainer.monitor '{monitor}' does not fit the tasks {dict(task_types)} (gauc={with_gauc}); use one of {choices}")
    return monitor


def monitored_value(metrics: dict, monitor: str) -> float:
    node = metrics
    for part in monitor.split("."):
        node = node[part]
    return float(node)


class MonitorError(InputError):
    """The monitored validation metric is not a number, so no epoch can be chosen by it."""


@dataclass
class EarlyStopping:
    """Tracks the best value of ``monitor`` (higher is better for AUCs, lower otherwise).

    A tie is no improvement: the earlier epoch stays the best (fewer epochs, the same score). NaN is
    never an improvement (a run that diverges after its best epoch stops after ``patience`` and keeps
    that epoch); a NaN before any best value stops the run with a ``MonitorError``, since no epoch
    could ever be chosen (e.g. a validation split whose labels hold one class: its AUC is undefined).
    """

    monitor: str
    patience: int
    best_value: float | None = None
    best_epoch: int = -1
    _bad_epochs: int = field(default=0, repr=False)

    @property
    def maximize(self) -> bool:
        return self.monitor.endswith("auc")

    def update(self, epoch: int, metrics: dict) -> bool:
        """Record ``epoch``'s metrics; True when it is the best so far."""
        value = monitored_value(metrics, self.monitor)
        if math.isnan(value) and self.best_value is None:
            raise MonitorError(
                f"trainer.monitor={self.monitor} is NaN on the validation split at epoch {epoch}: an AUC is undefined when a "
                "task's validation labels hold one class only, and a loss is NaN when training diverged; check the split's "
                "labels, or monitor another metric (e.g. trainer.monitor=avg_logloss)")
        improved = self.best_value is None or (value > self.best_value if self.maximize else value < self.best_value)  # False for NaN
        if improved:
            self.best_value, self.best_epoch, self._bad_epochs = value, epoch, 0
        else:
            self._bad_epochs += 1
        return improved

    def state(self) -> dict:
        """What a resumed run needs to continue counting: best value and epoch, bad epochs since."""
        return {"best_value": self.best_value, "best_epoch": self.best_epoch, "bad_epochs": self._bad_epochs}

    def restore(self, state: dict) -> None:
        self.best_value, self.best_epoch, self._bad_epochs = state["best_value"], state["best_epoch"], state["bad_epochs"]

    @property
    def should_stop(self) -> bool:
        return self._bad_epochs >= self.patience
