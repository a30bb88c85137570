"""DLRM: Deep Learning Recommendation Model.

Naumov et al. 2019, "Deep Learning Recommendation Model for Personalization and Recommendation Systems"
(arXiv:1906.00091). Dense features go through the bottom MLP to a vector of the embedding size; each sparse
feature has its own embedding table; the interaction layer takes the pairwise dot products of all these
vectors; the top MLP maps [bottom output, dot products] to a click logit (or one logit per class).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import nn

from shoal.config import DLRMConfig
from shoal.models.embeddings import SparseArch, mlp, squeeze_single
from shoal.models.registry import register

__all__ = ["DLRM"]


class DotInteraction(nn.Module):
    """Pairwise dot products of F vectors: (B, F, d) -> (B, F(F-1)/2), upper triangle without diagonal."""

    def __init__(self, num_vectors: int) -> None:
        super().__init__()
        # numpy's: torch's triu_indices on the meta device (a bundle's shape check) imports torch._dynamo, seconds
        rows, cols = (torch.tensor(a, dtype=torch.int64) for a in np.triu_indices(num_vectors, k=1))
        self.rows: torch.Tensor
        self.cols: torch.Tensor
        self.register_buffer("rows", rows, persistent=False)
        self.register_buffer("cols", cols, persistent=False)

    def forward(self, vectors: torch.Tensor) -> torch.Tensor:
        z = torch.bmm(vectors, vectors.transpose(1, 2))  # (B, F, F)
        return z[:, self.rows, self.cols]  # (B, F(F-1)/2)


@register("dlrm")
class DLRM(nn.Module):
    def __init__(self, config: DLRMConfig, dense_dim: int, buckets: list[int], outputs: int = 1,
                 sequences: list[int] | None = None) -> None:
        super().__init__()
        d = config.embedding_dim
        with warnings.catch_warnings():  # no dense input: a (width, 0) first layer, its bias a learned constant
            warnings.filterwarnings("ignore", "Initializing zero-element tensors", UserWarning)
            self.bottom_mlp = mlp([dense_dim, *config.bottom_mlp, d])
        self.sparse_arch = SparseArch(buckets, d)
        n = len(buckets) + 1
        self.interaction = DotInteraction(n)
        self.top_mlp = mlp([d + n * (n - 1) // 2, *config.top_mlp, outputs], final_activation=False)

    def forward(self, dense: torch.Tensor, ids: list[torch.Tensor], offsets: list[torch.Tensor]) -> torch.Tensor:
        x = self.bottom_mlp(dense)  # (B, d)
        if not ids:  # dense features only: no tables, no pairs to interact (the top MLP reads x alone)
            return squeeze_single(self.top_mlp(x))
        emb = self.sparse_arch(ids, offsets)  # (B, F, d)
        vectors = torch.cat([x.unsqueeze(1), emb], dim=1)  # (B, F + 1, d)
        z = torch.cat([x, self.interaction(vectors)], dim=1)  # (B, d + (F+1)F/2)
        return squeeze_single(self.top_mlp(z))  # (B,) or (B, C)
