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
from typing import Any

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
                grad = p.grad
                if not grad.is_sparse:
                    acc = self._sum(p)
                    if group["weight_decay"]:
                        grad = grad + group["weight_decay"] * p
                    acc.add_(grad.pow(2).mean(dim=1))
                    p.addcdiv_(grad, acc.sqrt().add_(group["eps"]).unsqueeze(1), value=-group["lr"])
                    continue
                grad = grad.coalesce()  # free when already coalesced (one backward of SparseArch)
                rows = grad.indices()[0]
                self._update_rows(p, group, rows, p.index_select(0, rows), grad.values())

    def fused_step(self, weight: torch.Tensor, rows: torch.Tensor, values: torch.Tensor,
                   grad: torch.Tensor) -> None:
        """One step on the unique ``rows`` of ``weight``, given their values (``weight[rows]``) and gradients: the
        update a fused backward applies (FBGEMM's fused-optimizer tables), so no sparse gradient is built."""
        for group in self.param_groups:
            if any(p is weight for p in group["params"]):
                self._update_rows(weight, group, rows, values, grad)
                return
        raise ValueError("fused_step: the weight is not one of this optimizer's parameters")

    def _sum(self, p: torch.Tensor) -> torch.Tensor:
        """The row accumulators of ``p``, (rows,), created at the first step."""
        state = self.state[p]
        if "sum" not in state:
            state["sum"] = torch.zeros(p.shape[0], dtype=torch.float32, device=p.device)
        acc: torch.Tensor = state["sum"]
        return acc

    @torch.no_grad()
    def _update_rows(self, p: torch.Tensor, group: dict[str, Any], rows: torch.Tensor, w: torch.Tensor,
                     grad: torch.Tensor) -> None:
        """``rows`` (R,) unique, ``w`` = p[rows] (R, dim) (overwritten), ``grad`` (R, dim)."""
        acc = self._sum(p)
        if group["weight_decay"]:
            grad = grad + group["weight_decay"] * w
        row_acc = acc.index_select(0, rows).add_(grad.pow(2).mean(dim=1))  # (R,)
        acc.index_copy_(0, rows, row_acc)  # rows are unique: a copy, not a scatter-add
        scale = (-group["lr"] / row_acc.sqrt_().add_(group["eps"])).unsqueeze(1)  # (R, 1)
        p.index_copy_(0, rows, w.addcmul_(grad, scale))
