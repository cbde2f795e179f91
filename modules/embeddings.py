"""The sparse arch: one EmbeddingBagCollection table per schema field."""

from __future__ import annotations

import torch
from torchrec.modules.embedding_configs import EmbeddingBagConfig, PoolingType
from torchrec.modules.embedding_modules import EmbeddingBagCollection

from datasets.schema import Schema


def table_name(feature_name: str) -> str:
    """Embedding table name of a sparse field (also the key of its sharding plan entry)."""
    return f"t_{feature_name}"


def build_embedding_bag_collection(
    schema: Schema, embedding_dim: int, device: torch.device | None = None, pooling: PoolingType = PoolingType.SUM
) -> EmbeddingBagCollection:
    """One table of ``cardinality x embedding_dim`` per sparse field, keyed and ordered as the schema.

    Build it on ``torch.device("meta")`` for DistributedModelParallel, which materializes each
    shard on its rank. Multi-hot bags are pooled with ``pooling`` (sum by default).
    """
    tables = [
        EmbeddingBagConfig(
            name=table_name(feature.name),
            embedding_dim=embedding_dim,
            num_embeddings=feature.cardinality,
            feature_names=[feature.name],
            pooling=pooling,
        )
        for feature in schema.sparse
    ]
    return EmbeddingBagCollection(tables=tables, device=device)
