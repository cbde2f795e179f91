"""Train a multi-task model: ``python -m torchrec_automtl.pipelines.train [hydra overrides]``.

Config groups under conf/: dataset, model, trainer. Runs on one process or on every rank of
torchrun / ``torchx run -s local_cwd dist.ddp -j 1x2 --script pipelines/train.py``.
"""

from __future__ import annotations

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from torchrec_automtl.pipelines.config import parse_train_config
from torchrec_automtl.pipelines.hydra_launch import quiet_hydra_on_other_ranks, report_input_errors
from torchrec_automtl.pipelines.trainer import run_training


@hydra.main(config_path="../conf", config_name="train", version_base="1.3")
@report_input_errors
def main(cfg: DictConfig) -> None:
    config = parse_train_config(cfg)
    run_training(config, HydraConfig.get().runtime.output_dir)


def cli() -> None:
    """The console command (and ``python -m``): quiet Hydra on ranks other than 0, then run."""
    quiet_hydra_on_other_ranks()
    main()


if __name__ == "__main__":
    cli()
