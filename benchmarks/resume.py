"""What resumability costs on 2 gloo ranks: ``python -m benchmarks.resume``.

MMoE (``trainer=fast``: epochs of 40 steps at batch 2048 per rank) on the synthetic AliCCP-like data,
in-process on 2 spawned ranks: one training epoch, then the resumable state saved as every epoch
saves it (its size and seconds against the epoch's), then the time from the start of a run to its
first trained step, fresh and resumed from that state (both in the process group the first run
started, so that the difference is what resuming adds). Writes benchmarks/results/resume.json.
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from pathlib import Path

from benchmarks.report import write_report
from tests.distributed.spawn import run_on_ranks
from torchrec_automtl.datasets.synthetic import write_aliccp_like
from torchrec_automtl.modules.mmoe import MMoEConfig
from torchrec_automtl.pipelines.config import DatasetConfig, TrainConfig, TrainerConfig
from torchrec_automtl.pipelines.early_stopping import EarlyStopping
from torchrec_automtl.pipelines.trainer import Trainer
from torchrec_automtl.pipelines.training_state import STATE_DIR


def _config(data: Path, run_dir: Path, resume: bool) -> TrainConfig:
    return TrainConfig(dataset=DatasetConfig(name="synthetic", path=str(data)), model=MMoEConfig(name="mmoe"),
                       trainer=TrainerConfig(epochs=1, max_steps_per_epoch=40, progress=False), run_dir=str(run_dir), resume=resume)


def _first_step_seconds(trainer: Trainer) -> float:
    """Seconds from before ``setup`` to the end of the first training step."""
    started = time.perf_counter()
    trainer.setup()
    trainer.model.train()
    trainer.pipeline.progress(itertools.islice(trainer.readers["train"].epoch(0), 1))
    seconds = time.perf_counter() - started
    trainer.pipeline.detach()
    return seconds


def _measure(rank: int, data: str, run_dir: str) -> dict:
    """On each rank: a fresh run's epoch and state save, then a run resumed from that state, in the
    same process group (the resumed Trainer joins the one the fresh Trainer started)."""
    fresh = Trainer.for_model(_config(Path(data), Path(run_dir), resume=False), run_dir, keep_state=True)
    to_first_step = _first_step_seconds(fresh)
    fresh.fit()  # one epoch, saving state/ at its end as every run does
    started = time.perf_counter()
    fresh._save_state(EarlyStopping(fresh.monitor, 1))
    save_seconds = time.perf_counter() - started
    # Both measured in the warm process group, so that the difference is what resuming adds.
    other_dir = f"{run_dir}-fresh"
    again = Trainer.for_model(_config(Path(data), Path(other_dir), resume=False), other_dir)
    resumed = Trainer.for_model(_config(Path(data), Path(run_dir), resume=True), run_dir, keep_state=True)
    try:
        return {"epoch_seconds": fresh.history[-1]["seconds"], "save_seconds": save_seconds, "first_run_to_first_step_s": to_first_step,
                "fresh_to_first_step_s": _first_step_seconds(again), "resumed_to_first_step_s": _first_step_seconds(resumed)}
    finally:
        resumed.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=300_000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        data, run_dir = Path(tmp) / "data", Path(tmp) / "run"
        write_aliccp_like(data, rows=args.rows, progress=False)
        ranks = run_on_ranks(_measure, 2, Path(tmp) / "out", str(data), str(run_dir))
        state_bytes = sum(f.stat().st_size for f in (run_dir / STATE_DIR).rglob("*") if f.is_file())
    rank0 = ranks[0]
    result = {
        "ranks": 2, "state_mb": state_bytes / 2**20, "epoch_seconds": rank0["epoch_seconds"], "save_seconds": rank0["save_seconds"],
        "save_vs_epoch": rank0["save_seconds"] / rank0["epoch_seconds"],
        "first_run_to_first_step_s": rank0["first_run_to_first_step_s"],  # includes starting the process group
        "fresh_to_first_step_s": rank0["fresh_to_first_step_s"], "resumed_to_first_step_s": rank0["resumed_to_first_step_s"],
        "resume_overhead_s": rank0["resumed_to_first_step_s"] - rank0["fresh_to_first_step_s"],
    }
    print(f"state {result['state_mb']:.1f} MB, saved in {result['save_seconds']:.2f} s against a {result['epoch_seconds']:.1f} s "
          f"epoch ({100 * result['save_vs_epoch']:.1f}%); first step after {result['fresh_to_first_step_s']:.2f} s fresh, "
          f"{result['resumed_to_first_step_s']:.2f} s resumed")
    write_report("resume", result)


if __name__ == "__main__":
    main()
