"""Paper 001's synthetic-data study (Table 5): ``python -m torchrec_automtl.experiments.synthetic_study`` (``make synthetic-study``).

For task correlation P in 0, 0.5, 0.9 it writes the MMoE-paper regression data
(``datasets/mmoe_synthetic.py``: 100 dense inputs, two regression tasks), then runs the comparison
(``experiments/compare.py``) of Shared-Bottom, MMoE, PLE, AutoMTL and AutoMTL v1 (paper 000's
method, which paper 001's table does not have) over the seeds, and writes ``study.md``: test MSE
(mean +- std over seeds, averaged over the two tasks) next to the paper's figures. The paper gives no dataset size, seeds or budget; ours are the options below, recorded in
``study.md``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir

from torchrec_automtl.common.atomic_files import atomic_write_text
from torchrec_automtl.datasets.mmoe_synthetic import MMoEGenerator
from torchrec_automtl.datasets.synthetic import write_synthetic
from torchrec_automtl.experiments.compare import CONF, parse_compare_config, run_comparison
from torchrec_automtl.pipelines.hydra_launch import report_input_errors

CORRELATIONS = (0.0, 0.5, 0.9)
MODELS = ("shared_bottom", "mmoe", "ple", "automtl", "automtl_v1")
PAPER_MSE = {  # paper 001, Table 5: test MSE at correlation 0 / 0.5 / 0.9
    "shared_bottom": (1.0556, 0.6105, 0.0343),
    "mmoe": (0.5043, 0.0908, 0.0316),
    "ple": (0.1934, 0.0719, 0.0229),
    "automtl": (0.1218, 0.0277, 0.0116),
}


def study_table(results: dict[float, list[dict]], options: str) -> str:
    """Markdown: per model, our test MSE at each correlation next to the paper's."""
    header = "| model | " + " | ".join(f"P={p}: ours | P={p}: paper" for p in CORRELATIONS) + " |"
    lines = ["# Synthetic-data study (paper 001, Table 5 protocol)", "", options, "", header,
             "|---|" + "---|---|" * len(CORRELATIONS)]
    for model in MODELS:
        cells = []
        for k, p in enumerate(CORRELATIONS):
            values = [r["avg_mse"] for r in results[p] if r["model"] == model]
            paper = f"{PAPER_MSE[model][k]:.4f}" if model in PAPER_MSE else "-"
            cells += [f"{np.mean(values):.4f} +- {np.std(values):.4f}", paper]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


@report_input_errors
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m torchrec_automtl.experiments.synthetic_study", description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=60_000, help="rows per correlation (80/10/10 split)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("runs/synthetic-study"))
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("overrides", nargs="*", help="extra compare overrides, e.g. trainer.batch_size=1024")
    args = parser.parse_args(argv)
    results = {}
    for p in CORRELATIONS:
        data = args.out / f"data-p{p}"
        if not (data / "schema.json").is_file():
            write_synthetic(MMoEGenerator(p, seed=0), data, rows=args.rows)
        overrides = [f"dataset.path={data}", f"dataset.name=mmoe-p{p}", f"models=[{','.join(MODELS)}]",
                     f"seeds=[{','.join(map(str, args.seeds))}]", f"out_dir={args.out / f'p{p}'}",
                     f"overwrite={str(args.overwrite).lower()}"] + args.overrides
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            config = parse_compare_config(compose(config_name="compare", overrides=overrides))
        results[p] = run_comparison(config)
    options = (f"Data: {args.rows:,} rows per correlation (80/10/10), data seed 0; training seeds {args.seeds}; "
               f"compare defaults (trainer=fast: batch 2048, epochs of 40 steps, early stopping on validation MSE, "
               f"patience 3; search_space=small, search=fast; v1: v1_search_space=v1_small, v1_search=v1_fast) plus {args.overrides or 'no overrides'}.")
    atomic_write_text(args.out / "study.md", study_table(results, options))
    print((args.out / "study.md").read_text())


if __name__ == "__main__":
    main()
