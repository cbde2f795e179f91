"""Train any registered model, the searched architecture included:
``python -m torchrec_automtl.nas.train model=automtl model.architecture=runs/make-search/architecture.json [overrides]``.

``pipelines.train`` with ``model=automtl`` registered: pipelines never import nas, so the entry
that offers the derived model lives here. Runs under torchrun like ``pipelines.train``.
"""

from __future__ import annotations

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

import torchrec_automtl.nas.derived  # noqa: F401  (registers model=automtl)
from torchrec_automtl.pipelines.config import parse_train_config
from torchrec_automtl.pipelines.hydra_launch import quiet_hydra_on_other_ranks, report_input_errors
from torchrec_automtl.pipelines.trainer import run_training


@hydra.main(config_path="../conf", config_name="train", version_base="1.3")
@report_input_errors
def main(cfg: DictConfig) -> None:
    run_training(parse_train_config(cfg), HydraConfig.get().runtime.output_dir)


def cli() -> None:
    """The console command (and ``python -m``): quiet Hydra on ranks other than 0, then run."""
    quiet_hydra_on_other_ranks()
    main()


if __name__ == "__main__":
    cli()
