"""The Hydra configs, packaged as ``torchrec_automtl.conf`` (Hydra finds an installed config module by its ``__init__.py``)."""
