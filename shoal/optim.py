"""Row-wise Adagrad for embedding tables with sparse gradients.

As in DLRM's and FBGEMM's ``rowwise_adagrad``: one accumulator per embedding row (the mean of the row's
squared gradient) instead of one per value, so the optimizer state is 1/dim of the table, and only the rows
a batch touched are read and written::

    g_r  += weight_decay * w_r          (L2 on the rows a batch touched: "lazy" regularisation)
    G_r  += mean_j(g_rj^2)
    w_r  -= lr * g_r / (sqrt(G_r) + eps)
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

__all__ = ["RowWiseAdagrad"]


class RowWiseAdagrad(torch.optim.Optimizer):
    def __init__(self, params: Iterable[torch.Tensor], lr: float = 0.05, eps: float = 1e-8,
                 weight_decay: float = 0.0) -> None:
        if lr <= 0:
            raise ValueError(f"lr must be > 0, not {lr}")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, not {weight_decay}")
        super().__init__(params, {"lr": lr, "eps": eps, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure: None = None) -> None:  # type: ignore[override]
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "sum" not in state:
                    state["sum"] = torch.zeros(p.shape[0], dtype=torch.float32)
                acc: torch.Tensor = state["sum"]
                grad = p.grad
                if grad.is_sparse:
                    grad = grad.coalesce()
                    rows, values = grad.indices()[0], grad.values()  # (R,), (R, dim)
                else:
                    rows = torch.arange(p.shape[0])
                    values = grad
                if group["weight_decay"]:
                    values = values + group["weight_decay"] * p.index_select(0, rows)
                acc.index_add_(0, rows, values.pow(2).mean(dim=1))
                scale = group["lr"] / (acc[rows].sqrt() + group["eps"])  # (R,)
                p.index_add_(0, rows, -values * scale.unsqueeze(1))
