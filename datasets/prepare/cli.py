"""``python -m torchrec_automtl.datasets.prepare <name> --raw DIR --out DIR``: convert a public dataset's raw download."""

from __future__ import annotations

import argparse
from pathlib import Path

from torchrec_automtl.datasets.prepare.converter import Converter
from torchrec_automtl.datasets.prepare.lines import BLOCK_BYTES
from torchrec_automtl.datasets.prepare.registry import CONVERTERS
from torchrec_automtl.datasets.prepare.run import MANIFEST_FILE, PrepareOptions, prepare
from torchrec_automtl.datasets.schema import SchemaError
from torchrec_automtl.datasets.validation import DataError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m torchrec_automtl.datasets.prepare", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    for name, converter in CONVERTERS.items():
        help_text = converter.summary.replace("%", "%%")  # argparse %-formats help strings
        command = commands.add_parser(name, help=help_text, description=converter.summary)
        _add_common_arguments(command, converter)
        converter.add_arguments(command)
    return parser


def _add_common_arguments(command: argparse.ArgumentParser, converter: type[Converter]) -> None:
    command.add_argument("--raw", type=Path, required=True, help="folder holding the raw files as published")
    command.add_argument("--out", type=Path, required=True, help="output folder (refused if it exists, unless --overwrite)")
    command.add_argument("--seed", type=int, default=0, help="seed of the deterministic train/valid/test split")
    command.add_argument("--valid-fraction", type=float, default=None,
                         help=f"fraction of (training) rows for validation (default {converter.default_valid_fraction})")
    command.add_argument("--test-fraction", type=float, default=None,
                         help=f"fraction of rows for test (default {converter.default_test_fraction})")
    command.add_argument("--min-count", type=int, default=1,
                         help="ids seen fewer times in the training split map to the out-of-vocabulary id 0 "
                              "(with --vocab the reused vocabularies' own)")
    command.add_argument("--vocab", type=Path, default=None,
                         help="reuse the vocabularies of an earlier conversion (its output folder or its vocab/)")
    command.add_argument("--skip-bad-lines", action="store_true",
                         help="drop malformed lines and count them in manifest.json instead of stopping")
    command.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    command.add_argument("--rows-per-file", type=int, default=1_000_000, help="rows per output Parquet file")
    command.add_argument("--block-bytes", type=int, default=BLOCK_BYTES,
                         help="raw text read per block; memory per block is a small multiple of it")
    command.add_argument("--no-progress", action="store_true", help="no progress bars")


def options_from_args(args: argparse.Namespace) -> PrepareOptions:
    return PrepareOptions(raw=args.raw, out=args.out, seed=args.seed, valid_fraction=args.valid_fraction,
                          test_fraction=args.test_fraction, min_count=args.min_count, vocab=args.vocab,
                          skip_bad_lines=args.skip_bad_lines, overwrite=args.overwrite,
                          rows_per_file=args.rows_per_file, progress=not args.no_progress,
                          block_bytes=args.block_bytes)


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        manifest = prepare(CONVERTERS[args.dataset](args), options_from_args(args))
    except (DataError, SchemaError, FileExistsError, ValueError) as error:
        parser.exit(2, f"error: {error}\n")
    print(f"wrote {args.out}: rows {manifest['rows']}, label rates (train) {manifest['label_rates']['train']}")
    skipped = sum(tally["lines"] for reasons in manifest["bad_lines"].values() for tally in reasons.values())
    if skipped:
        print(f"skipped {skipped} bad lines (counts per file and reason in {args.out / MANIFEST_FILE})")
