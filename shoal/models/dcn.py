"""DCN-v2: Deep & Cross Network, version 2.

Wang et al. 2021, "DCN V2: Improved Deep & Cross Network and Practical Lessons for Web-scale Learning to Rank
Systems" (WWW '21, arXiv:2008.13535). The embedding layer stacks the dense values and every sparse feature's
pooled embedding into one vector x0; each cross layer multiplies x0 element-wise by a linear map of the previous
layer's output, so layer l holds feature crosses of degree l + 1 (eq. 1); the low-rank variant factors W = U V^T
(eq. 2). A deep MLP either reads the cross network's output (stacked) or x0 beside it (parallel); one linear
layer maps the result to a click logit (or one logit per class).
"""

from __future__ import annotations

import torch
from torch import nn

from shoal.config import DCNv2Config
from shoal.models.embeddings import SparseArch, mlp, squeeze_single
from shoal.models.registry import register

__all__ = ["CrossLayer", "CrossNet", "DCNv2"]


class CrossLayer(nn.Module):
    """x_{l+1} = x0 * (W x_l + b) + x_l (eq. 1), with W = U V^T when ``rank`` is given (eq. 2): (B, D) -> (B, D)."""

    def __init__(self, width: int, rank: int | None = None) -> None:
        super().__init__()
        # full rank: one D x D map; low rank: V^T projects to ``rank`` dimensions, U (with b) maps them back
        self.linear = nn.Linear(width, width) if rank is None else nn.Sequential(
            nn.Linear(width, rank, bias=False), nn.Linear(rank, width))

    def forward(self, x0: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return x0 * self.linear(x) + x  # (B, D)


class CrossNet(nn.Module):
    """``layers`` cross layers, each fed x0 and the previous output: (B, D) -> (B, D)."""

    def __init__(self, width: int, layers: int, rank: int | None = None) -> None:
        super().__init__()
        self.layers = nn.ModuleList(CrossLayer(width, rank) for _ in range(layers))

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = x0
        for layer in self.layers:
            x = layer(x0, x)  # (B, D)
        return x


@register("dcn_v2")
class DCNv2(nn.Module):
    def __init__(self, config: DCNv2Config, dense_dim: int, buckets: list[int], outputs: int = 1,
                 sequences: list[int] | None = None) -> None:
        super().__init__()
        self.parallel = config.structure == "parallel"
        self.sparse_arch = SparseArch(buckets, config.embedding_dim)
        width = dense_dim + len(buckets) * config.embedding_dim  # D0: dense values as they are, as in the paper
        self.cross_net = CrossNet(width, config.cross_layers, config.low_rank)
        self.deep_net = mlp([width, *config.hidden])  # ends in ReLU; no layers when ``hidden`` is empty
        deep_width = config.hidden[-1] if config.hidden else width
        self.head = nn.Linear(deep_width + width if self.parallel else deep_width, outputs)

    def forward(self, dense: torch.Tensor, ids: list[torch.Tensor], offsets: list[torch.Tensor]) -> torch.Tensor:
        emb = self.sparse_arch(ids, offsets).flatten(1) if ids else dense[:, :0]  # (B, F*d); dense only: (B, 0)
        x0 = torch.cat([dense, emb], dim=1)  # (B, D0), D0 = D + F*d
        cross = self.cross_net(x0)  # (B, D0)
        # parallel: (B, D0 + h), the deep MLP reads x0 beside the cross net; stacked: (B, h), it reads the cross output
        z = torch.cat([cross, self.deep_net(x0)], dim=1) if self.parallel else self.deep_net(cross)
        return squeeze_single(self.head(z))  # (B,) or (B, C)
