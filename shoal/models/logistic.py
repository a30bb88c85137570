"""Logistic regression on hashed ids and dense values: the wide baseline (one weight per id bucket)."""

from __future__ import annotations

import torch
from torch import nn

from shoal.config import LogisticConfig
from shoal.models.embeddings import SparseArch
from shoal.models.registry import register

__all__ = ["Logistic"]


@register("logistic")
class Logistic(nn.Module):
    def __init__(self, config: LogisticConfig, dense_dim: int, buckets: list[int]) -> None:
        super().__init__()
        self.dense = nn.Linear(dense_dim, 1)
        self.sparse_arch = SparseArch(buckets, 1, init_std=0.0)

    def forward(self, dense: torch.Tensor, ids: list[torch.Tensor], offsets: list[torch.Tensor]) -> torch.Tensor:
        w = self.sparse_arch(ids, offsets)  # (B, F, 1)
        return self.dense(dense).squeeze(1) + w.sum(dim=(1, 2))  # (B,)
