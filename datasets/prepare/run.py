"""One conversion from start to end: check the raw files, stage, build or reuse vocabularies,
write the splits, ``schema.json``, ``vocab/`` and ``manifest.json`` - all inside a temporary
folder renamed to ``--out`` at the very end, so an interrupted run leaves nothing half-written."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torchrec_automtl.common.atomic_files import atomic_directory, atomic_write_json
from torchrec_automtl.datasets.prepare.bad_lines import BadLines
from torchrec_automtl.datasets.prepare.converter import Converter, StageContext
from torchrec_automtl.datasets.prepare.finishing import SplitPlan, build_vocabularies, check_reusable, schema_of, write_splits
from torchrec_automtl.datasets.prepare.lines import BLOCK_BYTES
from torchrec_automtl.datasets.prepare.vocabulary import VocabularySet
from torchrec_automtl.datasets.validation import DataError

MANIFEST_FILE = "manifest.json"
MANIFEST_VERSION = 1


@dataclass(frozen=True)
class PrepareOptions:
    """The options every converter shares (``python -m torchrec_automtl.datasets.prepare <name> --help``)."""

    raw: Path
    out: Path
    seed: int = 0
    valid_fraction: float | None = None  # None: the converter's default (paper 001's protocol)
    test_fraction: float | None = None
    min_count: int = 1
    vocab: Path | None = None
    skip_bad_lines: bool = False
    overwrite: bool = False
    rows_per_file: int = 1_000_000
    progress: bool = True
    block_bytes: int = BLOCK_BYTES

    def __post_init__(self) -> None:
        if self.min_count < 1 or self.rows_per_file < 1 or not 1 <= self.block_bytes <= 1 << 30:
            raise ValueError("--min-count and --rows-per-file must be >= 1, --block-bytes in [1, 2**30] "
                             "(a block's line offsets are 32-bit)")


def check_raw_files(converter: Converter, raw: Path) -> dict[str, int]:
    """Sizes in bytes of the converter's raw files; a missing one is named with its expected path."""
    if not raw.is_dir():
        raise DataError(f"--raw {raw}: folder not found")
    sizes = {}
    for name in converter.raw_files():
        path = raw / name
        if not path.is_file():
            raise DataError(f"{converter.name}: expected raw file {path} (the published file name) was not found")
        sizes[name] = path.stat().st_size
    return sizes


def prepare(converter: Converter, options: PrepareOptions) -> dict[str, Any]:
    """Convert ``options.raw`` into ``options.out``; return the manifest written there."""
    plan = SplitPlan(
        options.seed,
        converter.default_valid_fraction if options.valid_fraction is None else options.valid_fraction,
        converter.default_test_fraction if options.test_fraction is None else options.test_fraction,
    )
    sizes = check_raw_files(converter, options.raw)
    reused = VocabularySet.load(options.vocab, converter.name) if options.vocab is not None else None
    bad_lines = BadLines(options.skip_bad_lines)
    with atomic_directory(options.out, overwrite=options.overwrite) as folder:
        context = StageContext(options.raw, folder / "_staging", bad_lines, options.progress, options.block_bytes)
        context.staging.mkdir()
        staged = converter.stage(context)
        if reused is None:
            vocabularies = build_vocabularies(converter.name, staged, plan, options.min_count, options.progress)
            layout = staged.layout
        else:
            vocabularies, layout = reused, check_reusable(reused, staged, options.vocab)
        counts = write_splits(staged, layout, vocabularies, plan, folder, options.rows_per_file, options.progress)
        shutil.rmtree(context.staging)
        vocabularies.save(folder / "vocab")
        manifest = {
            "version": MANIFEST_VERSION,
            "dataset": converter.name,
            "options": {
                "seed": plan.seed, "valid_fraction": plan.valid_fraction, "test_fraction": plan.test_fraction,
                "min_count": vocabularies.min_count, "vocab": str(options.vocab) if options.vocab else None,
                "skip_bad_lines": options.skip_bad_lines, "rows_per_file": options.rows_per_file,
                **converter.options(),
            },
            "source_files": sizes,
            **counts,
            "vocabulary_sizes": {name: v.cardinality for name, v in vocabularies.fields.items()},
            "multi_hot": vocabularies.multi_hot,
            "lines_read": dict(sorted(bad_lines.lines_read.items())),
            "bad_lines": bad_lines.summary(),
            **staged.info,
        }
        schema_of(layout, vocabularies, {"dataset": converter.name, "rows": counts["rows"]}).save(folder)
        atomic_write_json(folder / MANIFEST_FILE, manifest)
    return manifest
