"""The training's optimizer parts: row-wise Adagrad for embedding tables with sparse gradients, and the
learning-rate schedules of Adam.

Row-wise Adagrad, as in DLRM's and FBGEMM's ``rowwise_adagrad``: one accumulator per embedding row (the mean of the
row's squared gradient) instead of one per value, so the optimizer state is 1/dim of the table, and only the rows
a batch touched are read and written::

    g_r  += weight_decay * w_r          (L2 on the rows a batch touched: "lazy" regularisation)
    G_r  += mean_j(g_rj^2)
    w_r  -= lr * g_r / (sqrt(G_r) + eps)

The schedules (``train.lr_schedule``, :func:`lr_schedule`) scale Adam's ``lr`` by a factor of the step, through
``torch.optim.lr_scheduler.LambdaLR``; ``warmup`` is the fraction of the ``total`` steps spent rising::

    constant   1 (no scheduler: the optimizer is left as built)
    cosine     a line up to 1 over the warm-up, then (1 + cos(pi * progress)) / 2 down to ~0
               (Loshchilov & Hutter 2017, "SGDR", with the linear warm-up of Goyal et al. 2017)
    onecycle   lr/25 up to lr over the warm-up, then down to lr/2.5e5, both halves cosine: the learning rates
               of torch.optim.lr_scheduler.OneCycleLR (Smith & Topin 2019) with its defaults, without its
               momentum cycling (Adam's betas stay as set)

Row-wise Adagrad is not scheduled: it already anneals each row by the row's own gradient history, and a row of a
rare id steps seldom, so a schedule by global step would give rows first seen late in the run a rate near 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from functools import partial
from typing import Any

import numpy as np
import torch
from torch.optim.lr_scheduler import LambdaLR

from shoal.jit import lazy_njit
from shoal.models.embeddings import PooledScratch

__all__ = ["LR_SCHEDULES", "RowWiseAdagrad", "cosine_factor", "lr_schedule", "onecycle_factor"]

ONECYCLE_DIV = 25.0  # OneCycleLR's div_factor: the first learning rate is lr / 25
ONECYCLE_FINAL_DIV = 1e4  # its final_div_factor: the last is the first / 1e4


def cosine_factor(step: int, total: int, warmup: float) -> float:
    """Step ``step``'s (from 0) share of the peak learning rate: a line from 1/(W+1) up to 1 at step W = ``warmup``
    * ``total``, then a cosine down to ~0 at the last step; 0 after ``total`` steps."""
    rise = warmup * total
    if step < rise:
        return (step + 1) / (rise + 1)
    progress = min((step - rise) / (total - rise), 1.0)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def onecycle_factor(step: int, total: int, warmup: float) -> float:
    """Step ``step``'s share of the peak learning rate under ``torch.optim.lr_scheduler.OneCycleLR(max_lr=1,
    total_steps=total, pct_start=warmup)``, the same float arithmetic; past the last step, the last value (where
    OneCycleLR raises)."""
    first, last = 1.0 / ONECYCLE_DIV, 1.0 / (ONECYCLE_DIV * ONECYCLE_FINAL_DIV)
    peak = float(warmup * total) - 1  # OneCycleLR's end of its first phase
    if step <= peak:
        return _cos_anneal(first, 1.0, step / peak if peak > 0 else 1.0)  # peak 0: a first phase of one step
    return _cos_anneal(1.0, last, min((step - peak) / (total - 1 - peak), 1.0))


def _cos_anneal(start: float, end: float, pct: float) -> float:
    """OneCycleLR's ``_annealing_cos``: from ``start`` at ``pct`` 0 to ``end`` at 1."""
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)


LR_SCHEDULES = {"cosine": cosine_factor, "onecycle": onecycle_factor}  # train.lr_schedule -> its factor


def lr_schedule(optimizer: torch.optim.Optimizer, name: str, total: int, warmup: float) -> LambdaLR | None:
    """The scheduler of ``optimizer``'s learning rate for schedule ``name`` over ``total`` steps (see the module
    docstring), to step once after every optimizer step; None for ``constant``. Its state (the steps taken) goes
    into the checkpoint; the factor itself is rebuilt from the config, so the checkpoint holds no code."""
    if name == "constant":
        return None
    if name not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule must be one of constant, {', '.join(LR_SCHEDULES)}, not {name!r}")
    return LambdaLR(optimizer, partial(LR_SCHEDULES[name], total=max(total, 1), warmup=warmup))


class RowWiseAdagrad(torch.optim.Optimizer):
    """Adagrad with one accumulator per embedding row; also a :class:`~shoal.models.embeddings.SparseStep`, so a
    table can apply it inside its backward pass (:meth:`~shoal.models.embeddings.SparseArch.fuse`)."""

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
        self._update_rows(weight, self._group_of(weight, "fused_step"), rows, values, grad)

    def pooled_step(self, weight: torch.Tensor, flat: torch.Tensor, bags: torch.Tensor,
                    weights: torch.Tensor | None, grad: torch.Tensor, scratch: PooledScratch) -> None:
        """The whole fused step of a sum-pooled embedding bag in one compiled loop, if numba is there: each
        touched row's gradient (the weighted sum of the gradients of the bags that hold it, added in the order of
        the ids) and its Adagrad update, in place. ``flat`` (N,) ids, ``bags`` (B,) each bag's first id, ``weights``
        (N,) or None (all 1), ``grad`` (B, dim): the gradient of the pooled rows; ``scratch``: the loop's memory,
        kept from step to step by the caller. Only where :meth:`can_pool` (else the caller groups the ids itself:
        :class:`~shoal.models.embeddings._FusedPool`). The result is the same step to float rounding: no sort, no
        gather and write-back of the rows as separate passes."""
        if not self.can_pool(weight):
            raise RuntimeError("pooled_step needs numba and a contiguous float32 CPU table (see can_pool)")
        group = self._group_of(weight, "pooled_step")

        def array(t: torch.Tensor, dtype: Any) -> np.ndarray:  # one kind of array: numba compiles once
            return np.ascontiguousarray(t.detach().numpy(), dtype=dtype)

        slots, rows, sums = scratch.arrays(weight.shape[0], flat.shape[0], weight.shape[1])
        with torch.no_grad():
            _pooled_adagrad()(weight.detach().numpy(), self._sum(weight).numpy(), array(flat, np.int64),
                     array(bags, np.int64),
                     np.zeros(0, np.float32) if weights is None else array(weights, np.float32), weights is not None,
                     array(grad, np.float32), np.float32(group["lr"]), np.float32(group["eps"]),
                     np.float32(group["weight_decay"]), slots, rows, sums)

    @staticmethod
    def can_pool(weight: torch.Tensor) -> bool:
        """Whether :meth:`pooled_step` can update ``weight``: numba is there and the table is a contiguous
        float32 CPU tensor."""
        return (weight.device.type == "cpu" and weight.dtype == torch.float32 and weight.is_contiguous()
                and _pooled_adagrad() is not None)

    def _group_of(self, weight: torch.Tensor, caller: str) -> dict[str, Any]:
        """The parameter group holding ``weight`` (its lr, eps and weight decay)."""
        for group in self.param_groups:
            if any(p is weight for p in group["params"]):
                return group
        raise ValueError(f"{caller}: the weight is not one of this optimizer's parameters")

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


def _pooled_adagrad_loop(weight: np.ndarray, acc: np.ndarray, flat: np.ndarray, bags: np.ndarray,
                         weights: np.ndarray, has_weights: bool, grad: np.ndarray, lr: np.float32, eps: np.float32,
                         weight_decay: np.float32, slots: np.ndarray, rows: np.ndarray, sums: np.ndarray) -> int:
    """See :meth:`RowWiseAdagrad.pooled_step`; float32 throughout, as the torch step. ``rows`` (>= N,) and
    ``sums`` (>= N, dim) are scratch: the touched rows in order of first use, and their gradients. Returns the
    number of rows touched."""
    n = flat.shape[0]
    num_bags = bags.shape[0]
    dim = weight.shape[1]
    used = 0
    for b in range(num_bags):
        end = bags[b + 1] if b + 1 < num_bags else n
        for i in range(bags[b], end):
            r = flat[i]
            s = slots[r]
            if s < 0:
                s = used
                slots[r] = used
                rows[used] = r
                for j in range(dim):
                    sums[used, j] = 0.0
                used += 1
            w = weights[i] if has_weights else np.float32(1.0)
            for j in range(dim):
                sums[s, j] += w * grad[b, j]
    for k in range(used):
        r = rows[k]
        slots[r] = -1
        square = np.float32(0.0)
        for j in range(dim):
            g = sums[k, j]
            if weight_decay != 0:
                g = g + weight_decay * weight[r, j]
                sums[k, j] = g
            square += g * g
        a = acc[r] + square / np.float32(dim)
        acc[r] = a
        scale = -lr / (np.sqrt(a) + eps)
        for j in range(dim):
            weight[r, j] = weight[r, j] + sums[k, j] * scale
    return used


_pooled_adagrad = lazy_njit(globals(), "_pooled_adagrad_loop")
