"""Entry points under Hydra, torchrun and TorchX: only rank 0 writes Hydra's output folder and log,
and input errors end a run with one readable line."""

from __future__ import annotations

import functools
import os
import sys
from typing import Callable, TypeVar

from torchrec_automtl.common.errors import InputError

DEBUG_VARIABLE = "AUTOMTL_DEBUG"
Result = TypeVar("Result")

NON_MAIN_RANK_OVERRIDES = ("hydra.output_subdir=null", "hydra/job_logging=disabled", "hydra/hydra_logging=disabled")


def quiet_hydra_on_other_ranks(argv: list[str] = sys.argv) -> None:
    """On ranks other than 0, append overrides so Hydra writes no ``.hydra/`` folder and no job log.

    Call before the ``@hydra.main`` function; all ranks would otherwise race on the same files.
    """
    if int(os.environ.get("RANK", 0)) != 0:
        argv.extend(NON_MAIN_RANK_OVERRIDES)


def report_input_errors(main: Callable[..., Result]) -> Callable[..., Result]:
    """Run ``main``; bad input or config (``InputError``) or a refused run dir stops it with one line on
    stderr, naming the file, column, row or key, and exit code 2. ``AUTOMTL_DEBUG=1`` re-raises instead,
    with the traceback. Put it under ``@hydra.main`` (Hydra would print a traceback of its own)."""

    @functools.wraps(main)
    def run(*args, **kwargs) -> Result:
        try:
            return main(*args, **kwargs)
        except (InputError, FileExistsError) as error:
            if os.environ.get(DEBUG_VARIABLE):
                raise
            rank = os.environ.get("RANK")
            print(f"error{f' (rank {rank})' if rank and int(os.environ.get('WORLD_SIZE', 1)) > 1 else ''}: {error}",
                  file=sys.stderr, flush=True)
            sys.exit(2)

    return run
