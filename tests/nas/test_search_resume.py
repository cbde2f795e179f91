"""A 2-rank search + fine-tune SIGKILLed four times (between epochs, within a discretization epoch,
inside a save, in fine-tuning) and resumed each time ends with the architecture, search log and
metrics of the uninterrupted job."""

import json
from pathlib import Path

import pytest

from torchrec_automtl.pipelines.training_state import STATE_DIR
from tests.nas.test_search import TINY
from tests.pipelines.test_resume import finish, kill_after_epoch, torchrun, without_timings

SEARCH = ["nas/search.py", *TINY, "search.finetune=inherit", "trainer.epochs=3", "trainer.batch_size=128",
          "trainer.sharding_type=table_wise", "trainer.dense_optimizer=sgd", "trainer.dense_lr=0.05", "trainer.lr_schedule=cosine",
          "trainer.state_every_steps=2"]


def _search(data: Path, run_dir: Path, *extra: str):
    return torchrun([*SEARCH, f"dataset.path={data}", f"run_dir={run_dir}", *extra])


def _outcome(run_dir: Path) -> dict:
    log = [json.loads(line) for line in (run_dir / "search_log.jsonl").read_text().splitlines()]
    return {
        "architecture": (run_dir / "architecture.json").read_text(),
        "log": [without_timings(record) for record in log],
        "metrics": without_timings(json.loads((run_dir / "metrics.json").read_text())),
        "finetune": without_timings(json.loads((run_dir / "finetune" / "metrics.json").read_text())),
    }


@pytest.mark.slow
@pytest.mark.distributed
def test_a_search_killed_anywhere_resumes_to_the_same_architecture_and_metrics(tiny_aliccp, tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    finish(_search(tiny_aliccp, whole))
    expected = _outcome(whole)
    assert [r["stage"] for r in expected["log"]] == ["warmup_weights", "warmup_joint", "discretize", "discretize", "final"]

    kill_after_epoch(_search(tiny_aliccp, killed), killed / STATE_DIR, epoch=0)  # after warm-up 1
    # Within the first discretization epoch, after its decisions and 2 of its 4 steps.
    kill_after_epoch(_search(tiny_aliccp, killed, "resume=true"), killed / STATE_DIR, epoch=1, steps=2)
    # In the last discretization epoch, as if inside a save, between its two renames: only the old copy is left.
    kill_after_epoch(_search(tiny_aliccp, killed, "resume=true"), killed / STATE_DIR, epoch=2)
    (killed / STATE_DIR).rename(killed / f".{STATE_DIR}.old")
    # In fine-tuning, after its first epoch.
    kill_after_epoch(_search(tiny_aliccp, killed, "resume=true"), killed / "finetune" / STATE_DIR, epoch=1)
    finish(_search(tiny_aliccp, killed, "resume=true"))
    assert _outcome(killed) == expected
