"""AutoMTL: search a multi-task architecture, fine-tune it, test it.

    python nas/search.py [hydra overrides]          (or python -m torchrec_automtl.nas.search)
    torchx run -s local_cwd dist.ddp -j 1x2 --script nas/search.py -- search_space=small

Config groups under conf/: dataset, search_space, search, trainer.
"""

from __future__ import annotations

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from torchrec_automtl.nas.search_and_finetune import run_search
from torchrec_automtl.nas.search_config import parse_nas_config
from torchrec_automtl.pipelines.hydra_launch import quiet_hydra_on_other_ranks, report_input_errors


@hydra.main(config_path="../conf", config_name="search", version_base="1.3")
@report_input_errors
def main(cfg: DictConfig) -> None:
    run_search(parse_nas_config(cfg), HydraConfig.get().runtime.output_dir)


def cli() -> None:
    """The console command (and ``python -m``): quiet Hydra on ranks other than 0, then run."""
    quiet_hydra_on_other_ranks()
    main()


if __name__ == "__main__":
    cli()
