"""Hydra under torchrun / TorchX: only rank 0 writes Hydra's output folder and log."""

from __future__ import annotations

import os
import sys

NON_MAIN_RANK_OVERRIDES = ("hydra.output_subdir=null", "hydra/job_logging=disabled", "hydra/hydra_logging=disabled")


def quiet_hydra_on_other_ranks(argv: list[str] = sys.argv) -> None:
    """On ranks other than 0, append overrides so Hydra writes no ``.hydra/`` folder and no job log.

    Call before the ``@hydra.main`` function; all ranks would otherwise race on the same files.
    """
    if int(os.environ.get("RANK", 0)) != 0:
        argv.extend(NON_MAIN_RANK_OVERRIDES)
