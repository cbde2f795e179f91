"""The sparse arch: one EmbeddingBagCollection table per schema field."""

from __future__ import annotations

import torch
from torchrec.modules.embedding_configs import EmbeddingBagConfig, PoolingType
from torchrec.modules.embedding_modules import EmbeddingBagCollection

from torchrec_automtl.datasets.schema import Schema


def table_name(feature_name: str) -> str:
    """Embedding table name of a sparse field (also the key of its sharding plan entry)."""
    return f"t_{feature_name}"


MULTI_HOT_POOLINGS = {"mean": PoolingType.MEAN, "sum": PoolingType.SUM}


def build_embedding_bag_collection(
    schema: Schema, embedding_dim: int, device: torch.device | None = None, multi_hot_pooling: str = "mean"
) -> EmbeddingBagCollection:
    """One table of ``cardinality x embedding_dim`` per sparse field, keyed and ordered as the schema.

    Build it on ``torch.device("meta")`` for DistributedModelParallel, which materializes each
    shard on its rank. Multi-hot bags are pooled by ``multi_hot_pooling`` (``mean``, the usual choice
    for behaviour and tag fields of varying length, or ``sum``); single-hot fields hold one id each.
    """
    if multi_hot_pooling not in MULTI_HOT_POOLINGS:
        raise ValueError(f"multi_hot_pooling must be one of {sorted(MULTI_HOT_POOLINGS)}, got '{multi_hot_pooling}'")
    tables = [
        EmbeddingBagConfig(
            name=table_name(feature.name),
            embedding_dim=embedding_dim,
            num_embeddings=feature.cardinality,
            feature_names=[feature.name],
            pooling=MULTI_HOT_POOLINGS[multi_hot_pooling] if feature.multi_hot else PoolingType.SUM,
        )
        for feature in schema.sparse
    ]
    return EmbeddingBagCollection(tables=tables, device=device)
