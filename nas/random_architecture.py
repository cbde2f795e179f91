"""The random-architecture baseline: an architecture drawn uniformly from the DESAN search space.

Every block's op is drawn uniformly from the candidates and every feature and expert connection is
kept with probability 0.5; the keep-one rule of the search still applies (a row that would end empty
keeps its strongest, here random, item). Train it from scratch like any architecture:

    python -m torchrec_automtl.nas.random_architecture --dataset data/synthetic_aliccp --search-space small --seed 1 --out runs/random1.json
    python -m torchrec_automtl.nas.train model=automtl model.architecture=runs/random1.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from torchrec_automtl.datasets.schema import Schema
from torchrec_automtl.nas.architecture import Architecture
from torchrec_automtl.nas.discretization import apply_decisions, next_decisions
from torchrec_automtl.nas.search_space import SearchSpaceConfig
from torchrec_automtl.nas.supernet import DesanSupernet
from torchrec_automtl.pipelines.config import typed_group

CONF = Path(__file__).resolve().parents[1] / "conf"


def sample_architecture(space: SearchSpaceConfig, schema: Schema, seed: int) -> Architecture:
    """A uniformly random architecture of ``space`` for ``schema``, fixed by ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    net = DesanSupernet(space, schema.sparse_names, schema.dense_names, schema.task_names)
    with torch.no_grad():
        # argmax of i.i.d. uniforms is a uniform op; the sign of a standard normal is a fair coin.
        net.alpha.copy_(torch.rand(net.alpha.shape, generator=generator))
        net.feature_beta.copy_(torch.randn(net.feature_beta.shape, generator=generator))
        net.connection_beta.copy_(torch.randn(net.connection_beta.shape, generator=generator))
    every_item = net.alpha[..., 0].numel() + net.feature_beta.numel() + net.connection_beta.numel()
    apply_decisions(net, next_decisions(net, every_item))
    return Architecture.from_supernet(net, schema)


def search_space_preset(name: str) -> SearchSpaceConfig:
    """The ``conf/search_space/<name>.yaml`` preset, validated."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return typed_group(compose(config_name="search", overrides=[f"search_space={name}"]).search_space, SearchSpaceConfig,
                           "search_space")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m torchrec_automtl.nas.random_architecture", description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", required=True, help="prepared dataset folder (its schema.json is used)")
    parser.add_argument("--out", required=True, type=Path, help="architecture.json to write")
    parser.add_argument("--search-space", default="paper", help="a preset of conf/search_space/")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    args = parser.parse_args(argv)
    if args.out.exists() and not args.overwrite:
        parser.exit(2, f"error: {args.out} already exists; pass --overwrite to replace it\n")
    architecture = sample_architecture(search_space_preset(args.search_space), Schema.load(args.dataset), args.seed)
    architecture.save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
