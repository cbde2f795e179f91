"""MMoE training throughput on 1 and 2 processes: ``python -m benchmarks.train``.

Runs ``pipelines.train`` for a fixed number of steps on the synthetic AliCCP-like data, once as a
plain process and once under torchrun with 2 gloo ranks, and reports the training samples/s the
pipeline measured (global batch = per-rank batch x ranks). Writes benchmarks/results/train.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.report import write_report


def run_training(data: Path, run_dir: Path, processes: int, steps: int, batch_size: int, model: str) -> dict:
    overrides = [f"dataset.path={data}", f"run_dir={run_dir}", f"model={model}", "trainer.epochs=1",
                 f"trainer.max_steps_per_epoch={steps}", f"trainer.batch_size={batch_size}", "trainer.progress=false"]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes)] if processes > 1 else [sys.executable]
    subprocess.run(launcher + ["-m", "torchrec_automtl.pipelines.train"] + overrides, check=True, capture_output=True, text=True)
    epoch = json.loads((run_dir / "metrics.json").read_text())["epochs"][0]
    return {"processes": processes, "steps": epoch["steps"], "samples_per_s": epoch["samples_per_s"], "seconds": epoch["seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--steps", type=int, default=60, help="training steps per run (per rank)")
    parser.add_argument("--batch-size", type=int, default=2048, help="per rank")
    parser.add_argument("--model", default="mmoe")
    args = parser.parse_args()
    from torchrec_automtl.datasets.synthetic import write_aliccp_like

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        write_aliccp_like(data, rows=args.rows, progress=False)
        runs = [run_training(data, Path(tmp) / f"run{p}", p, args.steps, args.batch_size, args.model) for p in (1, 2)]
    for run in runs:
        print(f"{args.model} on {run['processes']} process(es): {run['samples_per_s']:,.0f} samples/s")
    write_report("train", {"model": args.model, "batch_size_per_rank": args.batch_size, "runs": runs,
                           "two_vs_one_process": runs[1]["samples_per_s"] / runs[0]["samples_per_s"]})


if __name__ == "__main__":
    main()
