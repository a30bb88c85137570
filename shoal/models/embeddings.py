"""Embedding tables for sparse features, pooled over each row's ids, and the MLP helper."""

from __future__ import annotations

import itertools
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["PooledScratch", "SparseArch", "SparseStep", "mlp", "squeeze_single"]


class PooledScratch:
    """The memory of :meth:`SparseStep.pooled_step`'s loop, kept by a table from step to step (fresh
    arrays each step cost page faults): ``slots`` (rows,) int32, each row's place among the touched rows or -1
    (all -1 between steps); ``rows`` and ``sums``, grown to the largest batch seen."""

    def __init__(self) -> None:
        self.slots = np.zeros(0, np.int32)
        self.rows = np.zeros(0, np.int64)
        self.sums = np.zeros((0, 0), np.float32)

    def arrays(self, table_rows: int, ids: int, dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self.slots.shape[0] != table_rows:
            self.slots = np.full(table_rows, -1, np.int32)
        if self.rows.shape[0] < ids or self.sums.shape[1] != dim:
            size = max(ids, 2 * self.rows.shape[0])
            self.rows, self.sums = np.empty(size, np.int64), np.empty((size, dim), np.float32)
        return self.slots, self.rows, self.sums


class SparseStep(Protocol):
    """An optimizer a table applies inside its backward pass to the rows a batch touched (:meth:`SparseArch.fuse`),
    as FBGEMM's fused-optimizer tables do, instead of leaving a sparse ``.grad`` for ``step()``. Implemented by
    :class:`~shoal.training.optimizers.RowWiseAdagrad`; defined here so the models need no optimizer."""

    def fused_step(self, weight: torch.Tensor, rows: torch.Tensor, values: torch.Tensor,
                   grad: torch.Tensor) -> None:
        """Update the unique ``rows`` of ``weight`` given their values and summed gradients (R, dim)."""

    def pooled_step(self, weight: torch.Tensor, flat: torch.Tensor, bags: torch.Tensor,
                    weights: torch.Tensor | None, grad: torch.Tensor, scratch: PooledScratch) -> None:
        """Sum each touched row's gradient from the pooled bags' gradient ``grad`` (B, dim) and update it."""

    def can_pool(self, weight: torch.Tensor) -> bool:
        """Whether :meth:`pooled_step` can update ``weight``."""
        ...


class _GatherRows(torch.autograd.Function):
    """``weight[rows]`` for unique ``rows``, whose gradient is a coalesced sparse tensor over those rows only.

    The usual sparse gradient of an embedding bag lists one entry per looked-up id and must be coalesced
    (sorted, summed) by the optimizer; gathering the unique rows first makes the gradient (U, dim) and
    already coalesced, so the optimizer touches each row once.
    """

    @staticmethod
    def forward(ctx: Any, weight: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(rows)
        ctx.num_rows = weight.shape[0]
        return weight.index_select(0, rows)  # (U, dim)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (rows,) = ctx.saved_tensors
        size = (ctx.num_rows, grad.shape[1])
        sparse = torch.sparse_coo_tensor(rows.unsqueeze(0), grad, size, is_coalesced=True, check_invariants=False)
        return sparse, None


class _PoolRows(torch.autograd.Function):
    """``pooled[b] = sum_i weights_i * rows[inverse_i]`` over the ids i of bag b (sum-mode embedding bag).

    The forward is ``embedding_bag``. So is the backward, read the other way round: with the ids sorted by row
    (``order``; row u owns positions ``starts[u]`` on), row u's gradient is the weighted sum of the gradients of
    the bags that hold it, one ``embedding_bag`` over ``grad`` with the bags as ids. No (N, dim) tensor is built
    and nothing is scattered, unlike ``embedding_bag``'s own backward (a sort, then an index_add)::

        rows[u] -> pooled[b] for every id i with inverse_i = u, bag_i = b;  grad_rows[u] = sum_i w_i * grad[bag_i]
    """

    @staticmethod
    def forward(ctx: Any, rows: torch.Tensor, inverse: torch.Tensor, bags: torch.Tensor, bag_of_id: torch.Tensor,
                weights: torch.Tensor | None, order: torch.Tensor, starts: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(bag_of_id.index_select(0, order), None if weights is None else weights[order], starts)
        return F.embedding_bag(inverse, rows, bags, mode="sum", per_sample_weights=weights)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None, None, None, None, None]:
        bags_by_row, weights_by_row, starts = ctx.saved_tensors
        grad_rows = F.embedding_bag(bags_by_row, grad, starts, mode="sum", per_sample_weights=weights_by_row)
        return grad_rows, None, None, None, None, None, None  # (U, dim)


class _FusedPool(torch.autograd.Function):
    """Mean pooling straight from the table, with the optimizer's step on the rows inside the backward, in torch
    ops (where numba is missing; else :class:`_CompiledFusedPool` makes the same step in one loop).

    The forward is one ``embedding_bag`` over the table. The backward sums each touched row's gradient as
    :class:`_PoolRows` does (the ids grouped by row: ``unique``, ``bags_by_row``, ``starts``), gathers the rows
    and hands both to the optimizer, so a step builds no sparse gradient and no ``inverse`` map (FBGEMM's
    table-batched embeddings fuse their optimizer the same way). The weight gets no ``.grad``: this is for one
    process, whose optimizer owns the table (DDP needs the gradient).
    """

    @staticmethod
    def forward(ctx: Any, weight: torch.Tensor, flat: torch.Tensor, bags: torch.Tensor,
                weights: torch.Tensor | None, group: tuple[torch.Tensor, ...], optimizer: Any) -> torch.Tensor:
        ctx.step = (weight, group, optimizer)
        return F.embedding_bag(flat, weight, bags, mode="sum", per_sample_weights=weights)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, ...]:
        weight, (unique, bags_by_row, weights_by_row, starts), optimizer = ctx.step
        ctx.step = None
        grad_rows = F.embedding_bag(bags_by_row, grad, starts, mode="sum", per_sample_weights=weights_by_row)
        optimizer.fused_step(weight, unique, weight.index_select(0, unique), grad_rows)  # the rows as they are now
        return (None,) * 6


class _CompiledFusedPool(torch.autograd.Function):
    """:class:`_FusedPool` with its backward in one compiled loop (:meth:`SparseStep.pooled_step`):
    the ids are not sorted or grouped in the forward; the loop groups them by row as it sums their gradients,
    then updates each touched row in place. The same step to float rounding, without the sort and the separate
    gather and write-back passes."""

    @staticmethod
    def forward(ctx: Any, weight: torch.Tensor, flat: torch.Tensor, bags: torch.Tensor,
                weights: torch.Tensor | None, optimizer: Any, scratch: PooledScratch) -> torch.Tensor:
        ctx.step = (weight, flat, bags, weights, optimizer, scratch)
        return F.embedding_bag(flat, weight, bags, mode="sum", per_sample_weights=weights)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, ...]:
        weight, flat, bags, weights, optimizer, scratch = ctx.step
        ctx.step = None
        optimizer.pooled_step(weight, flat, bags, weights, grad, scratch)
        return (None,) * 6


class SparseArch(nn.Module):
    """One embedding table per sparse feature, stored as a single concatenated table.

    Feature k owns rows ``[table_offsets[k], table_offsets[k + 1])`` of ``weight``. All features are looked up
    by one ``embedding_bag`` call (mean pooling over a row's ids), and the gradient is one sparse tensor
    touching only the rows a batch used, so a step costs the same whatever the table sizes
    (the layout FBGEMM's table-batched embeddings use)::

        ids[k]     (N_k,)  bucket ids of feature k, 0 = missing
        offsets[k] (B,)    start of each row's ids in ids[k]
        -> (B, F, dim)
    """

    def __init__(self, buckets: list[int], dim: int, init_std: float = 0.01) -> None:
        super().__init__()
        self.dim = dim
        self.num_features = len(buckets)
        # summed in Python and no random init on the meta device (where a bundle's model is built first to check
        # its shapes): torch's meta cumsum and normal_ import torch._dynamo, seconds of every server worker's start
        starts = torch.tensor([0, *itertools.accumulate(buckets)], dtype=torch.int64)
        self.table_offsets: torch.Tensor
        self.register_buffer("table_offsets", starts, persistent=False)
        rows = sum(buckets)  # from the list, not the tensor: builds on the meta device too (shape checks)
        self.bag = nn.EmbeddingBag(rows, dim, mode="sum", sparse=True,  # the weight of all tables
                                   _weight=torch.empty(rows, dim))
        if not self.bag.weight.is_meta:
            nn.init.normal_(self.bag.weight, std=init_std)
        self._rows_used = -1  # rows gathered by the last training forward
        self._fused: SparseStep | None = None  # applied inside the backward (:meth:`fuse`), or None
        self._scratch = PooledScratch()  # the compiled fused step's memory (one int32 per row, and more)
        self.bag.weight.register_post_accumulate_grad_hook(self._mark_coalesced)

    def fuse(self, optimizer: SparseStep | None) -> None:
        """Apply ``optimizer`` (a row-wise Adagrad holding this table's weight) to the rows
        a batch touched inside the backward pass, instead of leaving a sparse ``.grad`` for its ``step()``.
        The result is the same step; ``None`` turns it off. One process only: DDP needs the ``.grad``."""
        self._fused = optimizer

    def _mark_coalesced(self, weight: torch.Tensor) -> None:
        """One backward's gradient lists each row once (already coalesced), but storing it in ``.grad`` drops
        that flag, and the optimizer would sort it again. Restore the flag when ``.grad`` holds exactly one
        backward's rows (a second accumulated backward adds its rows, and the flag stays off)."""
        grad = weight.grad
        if grad is not None and grad.is_sparse and not grad.is_coalesced() and grad._nnz() == self._rows_used:
            grad._coalesced_(True)

    def forward(self, ids: list[torch.Tensor], offsets: list[torch.Tensor]) -> torch.Tensor:
        if self.num_features == 0:
            return torch.zeros(0, 0, self.dim)
        batch = offsets[0].shape[0]
        if self.num_features == 1:  # table 0 starts at row 0: the inputs as they are
            flat, bags = ids[0], offsets[0]
        else:
            flat = torch.cat([i + self.table_offsets[k] for k, i in enumerate(ids)])  # (sum N_k,)
            counts = torch.tensor([0] + [int(i.shape[0]) for i in ids[:-1]], dtype=torch.int64).cumsum(0)
            bags = torch.cat([o + counts[k] for k, o in enumerate(offsets)])  # (F * B,)
        weights, lengths = None, None
        if flat.shape[0] != bags.shape[0]:
            # some rows hold several ids: mean-pool them (sum with weights 1/len; mode="sum" has the fast kernels)
            ends = torch.cat([bags[1:], flat.new_tensor([flat.shape[0]])])
            lengths = ends - bags  # (F * B,)
            weights = torch.repeat_interleave(1.0 / lengths.clamp(min=1).float(), lengths)
        if (torch.is_grad_enabled() and self.bag.weight.requires_grad and self._fused is not None
                and self._fused.can_pool(self.bag.weight)):
            pooled = _CompiledFusedPool.apply(self.bag.weight, flat, bags, weights, self._fused, self._scratch)
        elif torch.is_grad_enabled() and self.bag.weight.requires_grad:
            sorted_ids, order = _sort_ids(flat, int(self.table_offsets[-1]))  # (N,): the ids grouped by row
            unique, counts = torch.unique_consecutive(sorted_ids, return_counts=True)  # (U,), (U,)
            starts = counts.cumsum(0) - counts  # where row u's ids start in ``order``
            self._rows_used = int(unique.shape[0])
            bag_ids = torch.arange(bags.shape[0], device=flat.device)  # (F * B,)
            bag_of_id = bag_ids if lengths is None else torch.repeat_interleave(bag_ids, lengths)  # (N,)
            if self._fused is not None:
                group = (unique, bag_of_id[order], None if weights is None else weights[order], starts)
                pooled = _FusedPool.apply(self.bag.weight, flat, bags, weights, group, self._fused)
            else:
                inverse = torch.empty_like(flat)
                inverse[order] = torch.repeat_interleave(torch.arange(unique.shape[0], device=flat.device), counts)
                rows = _GatherRows.apply(self.bag.weight, unique)  # (U, dim)
                pooled = _PoolRows.apply(rows, inverse, bags, bag_of_id, weights, order, starts)
        else:
            pooled = self.bag(flat, bags, per_sample_weights=weights)  # (F * B, dim), feature-major
        return pooled.view(self.num_features, batch, self.dim).transpose(0, 1)  # (B, F, dim)


_POSITION_BITS = 20  # ids and their positions packed in one int64 when N <= 2**20 and ids < 2**43


def _sort_ids(flat: torch.Tensor, num_rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(sorted ids, order): ``flat[order] == sorted ids``, equal ids in position order.

    On CPU each id and its position are packed in one int64 and sorted as plain numbers by numpy: one SIMD
    sort of one array instead of ``torch.sort``'s (values, indices)."""
    n = flat.shape[0]
    if (flat.device.type != "cpu" or flat.dtype != torch.int64 or n > 1 << _POSITION_BITS
            or num_rows >= 1 << (63 - _POSITION_BITS)):
        return torch.sort(flat, stable=True)
    keys = (flat.numpy() << _POSITION_BITS) | np.arange(n, dtype=np.int64)  # numpy throughout: no thread wake-ups
    keys.sort()
    return torch.from_numpy(keys >> _POSITION_BITS), torch.from_numpy(keys & ((1 << _POSITION_BITS) - 1))


def mlp(sizes: list[int], final_activation: bool = True) -> nn.Sequential:
    """Linear layers with ReLU between them: sizes = [in, h1, ..., out]."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if final_activation or i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def squeeze_single(logits: torch.Tensor) -> torch.Tensor:
    """(B, 1) -> (B,) for a binary label; (B, C) stays as it is."""
    return logits.squeeze(1) if logits.shape[1] == 1 else logits
