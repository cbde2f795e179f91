"""One ``metrics.json`` format for every run, training and search alike: ``RunResult``.

A training run fills the common fields; a search run fills them for the derived model it fine-tuned
(its parameters, its fine-tuning epochs) and adds ``search``, the part only a search has. ``format``
versions the file, so readers refuse a file of another format by name instead of misreading it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from torchrec_automtl.common.atomic_files import atomic_write_json, read_json
from torchrec_automtl.common.errors import InputError

RESULT_FORMAT = 2
RESULT_FILE = "metrics.json"


class ResultError(InputError):
    """A metrics.json that is missing, unfinished or of another format."""


@dataclass
class SearchPart:
    """What only a search run has: the search's epochs, time, speed and the discretized supernet's scores."""

    epochs: int
    seconds: float
    samples_per_s: list[float]  # per search epoch, the supernet's training speed
    valid: dict  # the discretized supernet's validation metrics
    supernet_parameters: dict[str, int]
    finetune: str  # "retrain" or "inherit"
    task_gate_weights: dict[str, list[float]]  # per task, its average gate weight per last-layer expert (valid)


@dataclass
class RunResult:
    """Per-task metrics, averages, timings and history of one run (``metrics.json``).

    ``num_parameters``, ``best_epoch``, ``valid``, ``test`` and ``epochs`` describe the model that was
    trained (for a search: the derived model's fine-tuning); ``train_seconds`` is that training's time
    (fit and test), ``wall_time_s`` the whole run's (a search's included).
    """

    model: str
    dataset: str
    schema_fingerprint: str
    world_size: int
    num_parameters: dict[str, int]
    monitor: str
    best_epoch: int
    valid: dict
    test: dict | None
    epochs: list[dict]
    train_seconds: float
    wall_time_s: float
    search: SearchPart | None = None
    format: int = RESULT_FORMAT

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def write(self, run_dir: str | Path) -> None:
        atomic_write_json(Path(run_dir) / RESULT_FILE, self.to_dict())

    @classmethod
    def from_dict(cls, payload: dict[str, Any], source: str = "metrics") -> "RunResult":
        if payload.get("format") != RESULT_FORMAT:
            raise ResultError(f"{source}: metrics format {payload.get('format')!r}, this code reads format {RESULT_FORMAT}; "
                              f"rerun it to rewrite the file")
        names = {f.name for f in fields(cls)}
        if set(payload) != names:
            raise ResultError(f"{source}: keys {sorted(set(payload) ^ names)} differ from the metrics format {RESULT_FORMAT}")
        search = SearchPart(**payload["search"]) if payload["search"] is not None else None
        return cls(**{**payload, "search": search})

    @classmethod
    def read(cls, run_dir: str | Path, finished: bool = True) -> "RunResult":
        """The result of ``run_dir``; with ``finished``, one that has test metrics."""
        path = Path(run_dir) / RESULT_FILE
        if not path.is_file():
            raise ResultError(f"{path} not found: is {run_dir} a finished run?")
        result = cls.from_dict(read_json(path, ResultError, "metrics file"), source=str(path))
        if finished and not result.test:
            raise ResultError(f"{path} has no test metrics: the run did not finish")
        return result
