"""Building blocks and dense archs; importing the package registers every model."""

from torchrec_automtl.modules import adatt, aitm, ml_mmoe, mmoe, ple, shared_bottom  # noqa: F401  (register their models)
