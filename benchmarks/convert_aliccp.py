"""AliCCP conversion speed and memory: ``python -m benchmarks.convert_aliccp [--sizes 1000000 4000000]``.

For each size, writes raw AliCCP-format files (skeleton + common features, one user per
``--rows-per-user`` skeleton rows, multi-valued history fields with values), converts them with
``python -m torchrec_automtl.datasets.prepare aliccp`` in a fresh process and reports rows/s and that process's
peak RSS. Ids are drawn from fixed ranges, so vocabularies barely grow with the row count and
peak RSS must stay flat; the largest size is converted again with many join buckets, the path
the real common-features file takes. Writes benchmarks/results/convert_aliccp.json.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from benchmarks.report import write_report

# field -> (id range, largest bag, values other than 1)
SKELETON_FIELDS = {"205": (200_000, 1, False), "206": (5_000, 1, False), "207": (50_000, 1, False),
                   "210": (20_000, 3, False), "216": (30_000, 1, False), "508": (5_000, 1, False),
                   "509": (50_000, 1, False), "702": (30_000, 1, False), "853": (10_000, 3, False),
                   "301": (3, 1, False)}
COMMON_FIELDS = {"101": (100_000, 1, False), "121": (100, 1, False), "122": (15, 1, False), "124": (3, 1, False),
                 "125": (8, 1, False), "126": (4, 1, False), "127": (4, 1, False), "128": (3, 1, False),
                 "129": (5, 1, False), "109_14": (2_000, 8, True), "110_14": (50_000, 8, True),
                 "127_14": (50_000, 8, True), "150_14": (50_000, 8, True)}
CHUNK_ROWS = 200_000


def _feature_lists(rng: np.random.Generator, rows: int, fields: dict) -> tuple[pa.Array, np.ndarray]:
    """Per row ``field\\x02id\\x03value`` entries joined by ``\\x01``, and each row's entry count."""
    texts, owners = [], []
    for name, (cardinality, max_bag, weighted) in fields.items():
        lengths = rng.integers(1, max_bag + 1, rows) if max_bag > 1 else np.ones(rows, dtype=np.int64)
        ids = np.floor(cardinality * rng.random(lengths.sum()) ** 3).astype(np.int64)
        values = np.round(rng.random(len(ids)) * 3, 3) if weighted else np.ones(len(ids))
        entry = pc.binary_join_element_wise(name, "\x02", pa.array(ids).cast(pa.string()), "\x03",
                                            pa.array(values).cast(pa.string()), "")
        texts.append(entry)
        owners.append(np.repeat(np.arange(rows), lengths))
    owner = np.concatenate(owners)
    order = np.argsort(owner, kind="stable")
    counts = np.bincount(owner, minlength=rows)
    offsets = np.zeros(rows + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    entries = pa.concat_arrays(texts).take(pa.array(order))
    return pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets), entries), "\x01"), counts


def _write(path: Path, columns: list) -> None:
    lines = pc.binary_join_element_wise(*[c if isinstance(c, pa.Array) else pa.array(c).cast(pa.string()) for c in columns], ",")
    with open(path, "a") as handle:
        handle.write("\n".join(lines.to_pylist()) + "\n")


def write_raw(folder: Path, rows: int, rows_per_user: int, seed: int = 0) -> None:
    """Raw AliCCP files of ``rows`` train and ``rows // 10`` test skeleton rows."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for split, split_rows in (("train", rows), ("test", max(1, rows // 10))):
        users = max(1, split_rows // rows_per_user)
        md5 = pa.array([f"{split}{u:030d}" for u in range(users)])
        for start in range(0, users, CHUNK_ROWS):
            n = min(CHUNK_ROWS, users - start)
            lists, counts = _feature_lists(rng, n, COMMON_FIELDS)
            _write(folder / f"common_features_{split}.csv", [md5.slice(start, n), counts, lists])
        for start in range(0, split_rows, CHUNK_ROWS):
            n = min(CHUNK_ROWS, split_rows - start)
            click = (rng.random(n) < 0.04).astype(np.int64)
            buy = click * (rng.random(n) < 0.1)
            lists, counts = _feature_lists(rng, n, SKELETON_FIELDS)
            _write(folder / f"sample_skeleton_{split}.csv",
                   [np.arange(start, start + n) + 1, click, buy, md5.take(pa.array(rng.integers(0, users, n))), counts, lists])


def convert(raw: Path, out: Path, buckets: int) -> dict:
    """Run the converter in a fresh process; its wall time and peak RSS."""
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "torchrec_automtl.datasets.prepare", "aliccp", "--raw", str(raw), "--out", str(out),
                                "--buckets", str(buckets), "--overwrite", "--no-progress"], stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"conversion of {raw} failed")
    return {"seconds": seconds, "peak_rss_mib": usage.ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 4_000_000], help="train skeleton rows per run")
    parser.add_argument("--rows-per-user", type=int, default=50, help="skeleton rows per common-features row")
    parser.add_argument("--bucketed", type=int, default=32,
                        help="also convert the largest size with this many join buckets (a multi-GB common-features "
                             "file gets one per 256 MB); 0 skips it")
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            raw = Path(tmp) / f"raw{size}"
            write_raw(raw, size, args.rows_per_user)
            raw_bytes = sum(path.stat().st_size for path in raw.iterdir())
            bucket_counts = [0] + ([args.bucketed] if args.bucketed and size == args.sizes[-1] else [])
            for buckets in bucket_counts:
                run = convert(raw, Path(tmp) / "out", buckets)
                rows = size + max(1, size // 10)
                run.update(skeleton_rows=rows, buckets=buckets or "auto", raw_mib=raw_bytes / 2**20,
                           rows_per_s=rows / run["seconds"])
                print(f"{rows:>10} rows ({run['raw_mib']:.0f} MiB raw, buckets {run['buckets']}): "
                      f"{run['rows_per_s']:,.0f} rows/s, peak RSS {run['peak_rss_mib']:.0f} MiB")
                runs.append(run)
            for path in raw.iterdir():
                path.unlink()
    auto = [run for run in runs if run["buckets"] == "auto"]
    write_report("convert_aliccp", {"rows_per_user": args.rows_per_user, "runs": runs,
                                    "rss_growth_ratio": auto[-1]["peak_rss_mib"] / auto[0]["peak_rss_mib"]})


if __name__ == "__main__":
    main()
