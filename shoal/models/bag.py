"""Bag: the mean embedding of each input's ids, then one linear layer; fastText's architecture.

Joulin, Grave, Bojanowski & Mikolov 2016, "Bag of Tricks for Efficient Text Classification"
(arXiv:1607.01759). For a text feature the ids are its hashed byte and word n-grams
(:func:`shoal.data.text.text_bag`), so the model is a fastText classifier; other sparse features and dense
values join the same linear layer. It is the fast model, and the natural student of ``bytecnn``.
"""

from __future__ import annotations

import torch
from torch import nn

from shoal.config import BagConfig
from shoal.models.embeddings import SparseArch, squeeze_single
from shoal.models.registry import register

__all__ = ["Bag"]


@register("bag")
class Bag(nn.Module):
    def __init__(self, config: BagConfig, dense_dim: int, buckets: list[int], outputs: int = 1,
                 sequences: list[int] | None = None) -> None:
        super().__init__()
        self.sparse_arch = SparseArch(buckets, config.embedding_dim)
        self.linear = nn.Linear(dense_dim + len(buckets) * config.embedding_dim, outputs)

    def forward(self, dense: torch.Tensor, ids: list[torch.Tensor], offsets: list[torch.Tensor]) -> torch.Tensor:
        emb = self.sparse_arch(ids, offsets)  # (B, F, d): each input's mean embedding
        return squeeze_single(self.linear(torch.cat([dense, emb.flatten(1)], dim=1)))  # (B,) or (B, C)
