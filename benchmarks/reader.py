"""Reader throughput and memory: ``python -m benchmarks.reader [--sizes 1000000 4000000]``.

For each size, writes a synthetic AliCCP-like training split, then reads one epoch in a fresh
process pinned to one core (torch and Arrow threads = 1) and reports rows/s and peak RSS. Peak RSS
must not grow with the number of rows. Writes benchmarks/results/reader.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.report import write_report


def read_one_epoch(folder: str, batch_size: int, shuffle_buffer: int) -> dict:
    """Read the training split once on one core; returns rows, rows/s and peak RSS (MiB)."""
    import pyarrow as pa
    import torch

    from torchrec_automtl.datasets.parquet_reader import BatchReader, ParquetSplit
    from torchrec_automtl.datasets.schema import Schema

    torch.set_num_threads(1)
    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    schema = Schema.load(folder)
    reader = BatchReader(ParquetSplit.open(folder, "train", schema), batch_size, training=True, shuffle_buffer=shuffle_buffer)
    start, rows = time.perf_counter(), 0
    for batch in reader.epoch(0):
        rows += batch.batch_size
    seconds = time.perf_counter() - start
    return {"rows": rows, "seconds": seconds, "rows_per_s": rows / seconds,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 4_000_000], help="training rows per run")
    parser.add_argument("--batch-size", type=int, default=2048)
    parser.add_argument("--shuffle-buffer", type=int, default=65536)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(read_one_epoch(args.child, args.batch_size, args.shuffle_buffer)))
        return
    from torchrec_automtl.datasets.synthetic import write_aliccp_like

    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            folder = Path(tmp) / f"rows{size}"
            # valid/test fractions kept tiny: only the training split is read.
            write_aliccp_like(folder, rows=int(size / 0.98), valid_fraction=0.01, test_fraction=0.01, progress=False)
            child = subprocess.run(
                [sys.executable, "-m", "benchmarks.reader", "--child", str(folder),
                 "--batch-size", str(args.batch_size), "--shuffle-buffer", str(args.shuffle_buffer)],
                check=True, capture_output=True, text=True,
            )
            run = {"train_rows": size, **json.loads(child.stdout.strip().splitlines()[-1])}
            print(f"{size:>10} rows: {run['rows_per_s']:,.0f} rows/s, peak RSS {run['peak_rss_mib']:.0f} MiB")
            runs.append(run)
    write_report("reader", {
        "batch_size": args.batch_size, "shuffle_buffer": args.shuffle_buffer, "runs": runs,
        "rss_growth_ratio": runs[-1]["peak_rss_mib"] / runs[0]["peak_rss_mib"],
    })


if __name__ == "__main__":
    main()
