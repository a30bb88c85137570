"""Logistic regression on hashed ids and dense values: the wide baseline (one weight per id bucket and class)."""

from __future__ import annotations

import torch
from torch import nn

from shoal.config import LogisticConfig
from shoal.models.embeddings import SparseArch, squeeze_single
from shoal.models.registry import register

__all__ = ["Logistic"]


@register("logistic")
class Logistic(nn.Module):
    def __init__(self, config: LogisticConfig, dense_dim: int, buckets: list[int], outputs: int = 1,
                 sequences: list[int] | None = None) -> None:
        super().__init__()
        # no dense inputs (text only): just a bias; nn.Linear(0, C) would be a zero-width layer
        self.dense = nn.Linear(dense_dim, outputs) if dense_dim else None
        self.bias = None if dense_dim else nn.Parameter(torch.zeros(outputs))
        self.sparse_arch = SparseArch(buckets, outputs, init_std=0.0)  # one weight per id and class

    def forward(self, dense: torch.Tensor, ids: list[torch.Tensor], offsets: list[torch.Tensor]) -> torch.Tensor:
        if self.dense is not None:
            out = self.dense(dense)  # (B, C)
        else:
            assert self.bias is not None
            out = self.bias.expand(dense.shape[0], -1)
        if self.sparse_arch.num_features:
            out = out + self.sparse_arch(ids, offsets).sum(dim=1)  # (B, F, C) -> (B, C)
        return squeeze_single(out)  # (B,) or (B, C)
