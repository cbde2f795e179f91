"""Building blocks and dense archs; importing the package registers every model."""

from modules import mmoe  # noqa: F401  (registers model=mmoe)
