"""Search cost: ``python -m benchmarks.search`` (run alone; writes benchmarks/results/search.json).

1. Throughput: supernet training samples/s during warm-up 2 (search_space=benchmark, the official
   implementation's shapes) next to MMoE training samples/s, same data, same process count.
2. Wall time: `make search`'s search + fine-tune next to MMoE trained to early stopping on the same
   data and trainer budget.
3. Efficiency: FLOPs of one supernet training step of the dense arch (forward + backward of every
   candidate op still evaluated, counted by torch's FlopCounterMode), the achieved FLOP/s of that step
   at batch 2048, and the fp32 matmul peak (2048 x 2048 x 2048) measured in the same run and threads.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.report import write_report

REPO = Path(__file__).resolve().parents[1]


def matmul_peak_flops(size: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    start = time.perf_counter()
    for _ in range(repeats):
        torch.mm(a, b)
    return 2 * size**3 * repeats / (time.perf_counter() - start)


def supernet_step_efficiency(batch_size: int, steps: int) -> dict:
    """FLOPs and FLOP/s of the benchmark supernet's dense training step (random pooled embeddings)."""
    from hydra import compose, initialize_config_dir

    from torchrec_automtl.nas.search_space import SearchSpaceConfig
    from torchrec_automtl.nas.supernet import DesanSupernet
    from torchrec_automtl.pipelines.config import typed_group

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        space = typed_group(compose(config_name="search", overrides=["search_space=benchmark"]).search_space,
                            SearchSpaceConfig, "search_space")
    net = DesanSupernet(space, [f"f{i}" for i in range(23)], [f"d{i}" for i in range(4)], ["click", "conversion"]).train()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    embeddings = torch.randn(batch_size, 23, space.embedding_dim, requires_grad=True)
    dense, labels = torch.randn(batch_size, 4), (torch.rand(batch_size, 2) < 0.1).float()

    def step() -> None:
        loss = torch.nn.functional.binary_cross_entropy_with_logits(net(embeddings, dense), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    with FlopCounterMode(display=False) as counter:
        step()
    flops = counter.get_total_flops()
    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = (time.perf_counter() - start) / steps
    return {"batch_size": batch_size, "flops_per_step": flops, "seconds_per_step": seconds, "flops_per_s": flops / seconds}


def _run(args: list[str]) -> None:
    subprocess.run([sys.executable, "-m"] + args, cwd=REPO, check=True, capture_output=True, text=True)


def throughput_and_wall_time(data: Path, tmp: Path, steps: int, search_overrides: list[str]) -> dict:
    """``search_overrides`` go to both AutoMTL searches (MMoE trains as in `make search`)."""
    common = [f"dataset.path={data}", "trainer.progress=false", "overwrite=true"]
    _run(["torchrec_automtl.nas.search", "search_space=benchmark", "search.epochs=3", "trainer.epochs=1",
          f"trainer.max_steps_per_epoch={steps}", f"run_dir={tmp / 'throughput-search'}"] + common + search_overrides)
    log = [json.loads(line) for line in (tmp / "throughput-search" / "search_log.jsonl").read_text().splitlines()]
    _run(["torchrec_automtl.pipelines.train", "model=mmoe", "trainer.epochs=1", f"trainer.max_steps_per_epoch={steps}",
          f"run_dir={tmp / 'throughput-mmoe'}"] + common)
    mmoe = json.loads((tmp / "throughput-mmoe" / "metrics.json").read_text())["epochs"][0]
    warmup_joint = next(r for r in log if r["stage"] == "warmup_joint")

    _run(["torchrec_automtl.nas.search", "search_space=small", "search=fast", "trainer=fast", f"run_dir={tmp / 'make-search'}"]
         + common + search_overrides)
    _run(["torchrec_automtl.pipelines.train", "model=mmoe", "trainer=fast", f"run_dir={tmp / 'make-search-mmoe'}"] + common)
    search_metrics = json.loads((tmp / "make-search" / "metrics.json").read_text())
    mmoe_metrics = json.loads((tmp / "make-search-mmoe" / "metrics.json").read_text())
    return {
        "throughput": {
            "supernet_warmup2_samples_per_s": warmup_joint["samples_per_s"],
            "mmoe_samples_per_s": mmoe["samples_per_s"],
            "supernet_vs_mmoe": warmup_joint["samples_per_s"] / mmoe["samples_per_s"],
        },
        "wall_time": {
            "search_seconds": search_metrics["search"]["seconds"],
            "finetune_seconds": search_metrics["train_seconds"],
            "search_and_finetune_seconds": search_metrics["wall_time_s"],
            "mmoe_to_early_stopping_seconds": mmoe_metrics["wall_time_s"],
            "ratio": search_metrics["wall_time_s"] / mmoe_metrics["wall_time_s"],
            "automtl_test_avg_auc": search_metrics["test"]["avg_auc"],
            "mmoe_test_avg_auc": mmoe_metrics["test"]["avg_auc"],
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--throughput-steps", type=int, default=20)
    parser.add_argument("--efficiency-steps", type=int, default=5)
    parser.add_argument("search_overrides", nargs="*", help="Hydra overrides for the AutoMTL searches, e.g. search.batch_size=1024")
    args = parser.parse_args()
    from torchrec_automtl.datasets.synthetic import write_aliccp_like

    peak = matmul_peak_flops()
    efficiency = supernet_step_efficiency(2048, args.efficiency_steps)
    efficiency["matmul_peak_flops_per_s"] = peak
    efficiency["fraction_of_peak"] = efficiency["flops_per_s"] / peak
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        write_aliccp_like(data, rows=args.rows, progress=False)
        runs = throughput_and_wall_time(data, Path(tmp), args.throughput_steps, args.search_overrides)
    print(f"supernet dense step: {efficiency['flops_per_step'] / 1e9:.1f} GFLOP, {efficiency['flops_per_s'] / 1e9:.1f} GFLOP/s "
          f"= {efficiency['fraction_of_peak']:.0%} of the {peak / 1e9:.1f} GFLOP/s matmul peak")
    print(f"warm-up 2: {runs['throughput']['supernet_warmup2_samples_per_s']:,.0f} samples/s vs MMoE "
          f"{runs['throughput']['mmoe_samples_per_s']:,.0f} samples/s")
    print(f"search + fine-tune {runs['wall_time']['search_and_finetune_seconds']:.0f}s vs MMoE to early stopping "
          f"{runs['wall_time']['mmoe_to_early_stopping_seconds']:.0f}s (x{runs['wall_time']['ratio']:.2f})")
    write_report("search", {"threads": torch.get_num_threads(), "search_overrides": args.search_overrides,
                            "efficiency": efficiency, **runs})


if __name__ == "__main__":
    main()
