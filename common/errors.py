"""The one base class of errors a user can fix from the message alone."""

from __future__ import annotations


class InputError(ValueError):
    """Bad input data or configuration: the message names the file, column, row or config key.

    Entry points report it as one line without a traceback (``pipelines.hydra_launch.report_input_errors``).
    """
