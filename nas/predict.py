"""Batch scoring of any run, search runs (``model=automtl``) included:
``python -m torchrec_automtl.nas.predict RUN_DIR --out scores.parquet [--split test]``.

``pipelines.predict`` with ``model=automtl`` registered: pipelines never import nas, so the entry
that scores the derived model lives here. Runs under torchrun like ``pipelines.predict``.
"""

from __future__ import annotations

import torchrec_automtl.nas.derived  # noqa: F401  (registers model=automtl)
from torchrec_automtl.pipelines.predict import main

if __name__ == "__main__":
    main()
