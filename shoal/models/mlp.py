"""An MLP over the concatenated embeddings and dense values (no explicit interactions)."""

from __future__ import annotations

import torch
from torch import nn

from shoal.config import MLPConfig
from shoal.models.embeddings import SparseArch, mlp, squeeze_single
from shoal.models.registry import register

__all__ = ["MLP"]


@register("mlp")
class MLP(nn.Module):
    def __init__(self, config: MLPConfig, dense_dim: int, buckets: list[int], outputs: int = 1,
                 sequences: list[int] | None = None) -> None:
        super().__init__()
        self.sparse_arch = SparseArch(buckets, config.embedding_dim)
        width = dense_dim + len(buckets) * config.embedding_dim
        self.net = mlp([width, *config.hidden, outputs], final_activation=False)

    def forward(self, dense: torch.Tensor, ids: list[torch.Tensor], offsets: list[torch.Tensor]) -> torch.Tensor:
        # (B, D + F*d); dense only: the dense input itself (no empty slice and copy in a traced graph)
        x = torch.cat([dense, self.sparse_arch(ids, offsets).flatten(1)], dim=1) if ids else dense
        return squeeze_single(self.net(x))  # (B,) or (B, C)
