"""The embedding step as the trainer takes it, timed on this machine with the config's own features.

A step's embedding work is more than its ids and rows: :class:`~shoal.models.embeddings.SparseArch` offsets every
feature's ids into the one weight, counts and concatenates the bags, weights the ids of list features for mean
pooling, and its compiled fused backward walks the ids feature by feature, bag by bag. The calibration's
one-table, one-id-a-row step sees none of that (a 26-feature step costs about three times what its ids predict).
So a calibrated local plan times the model's own embedding step, as one training step runs it::

    mini-batch (numpy)  --Batch.slice, .inputs-->  ids[k] (N_k,), offsets[k] (b,)  for each feature k
        --SparseArch forward-->  (b, F, d)  --backward-->  row-wise Adagrad on the touched rows
                                                           (fused: inside the backward; else .grad, then step())

on the real per-process batch ``b`` and the real features, cycling through many mini-batches as an epoch does
(the same batch again would find its rows in the cache): the training file's first chunk, encoded and shuffled,
when the plan read it (its ids' repeats and popular rows as training meets them), else made-up batches with the
measured or assumed ids per row (list features with several) and distinct rows, scattered over tables of the real
sizes. With several processes on this machine the step is timed in that many processes at
once, each exchanging its touched rows with the others as a rank does
(:func:`~shoal.distributed.strategy.all_reduce_sparse_grad`: two gloo all-gathers, the union coalesced, then
Adagrad) and all-reducing gradients of the model's dense parameter sizes through DDP during the backward, as
the trainer's DDP wrapper does: the collectives' waits for the slower rank and the ranks sharing the cores are in
the figure (timed alone, one rank's step with idle collectives was 2.8x too fast for a two-process logistic
model; without DDP's all-reduce, the ranks' step was still 1.5x too fast). Tables over
:data:`MAX_TIMED_LLC` x the last-level cache are shrunk to that (a random row misses the cache either way; a
10M-row table is never allocated). The forward and backward's ``aten`` ops are
counted, so that the planner's per-op overhead (:mod:`shoal.plan.ops`) does not count them again.

A config whose tables TorchRec shards (``train.embeddings.backend: torchrec``) is timed the same way in its
processes, each taking TorchRec's sharded step as the trainer builds it (:func:`torchrec_step`): its
KeyedJaggedTensor, all-to-alls and fused Adagrad are then in the figure, where link formulas missed most of their
cost on CPU (a two-process row-wise MLP was predicted 4x too fast).
"""

from __future__ import annotations

import itertools
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from shoal.data.batch import Batch
from shoal.plan.calibrate import evictor, mean_seconds
from shoal.plan.cost import ModelCost, TableCost
from shoal.plan.inputs import InputShape
from shoal.plan.ops import count_ops

__all__ = ["MAX_TIMED_LLC", "SparseTime", "made_up_batch", "sparse_step", "time_sparse_steps", "torchrec_step"]

MAX_TIMED_LLC = 8  # timed tables hold at most this many last-level caches (beyond it, every random row misses)
POOL_BATCHES = 64  # distinct mini-batches a timed step cycles through ...
POOL_BYTES = 64 << 20  # ... holding at most this many bytes of ids


@dataclass(frozen=True)
class SparseTime:
    """Measured seconds of one process's embedding steps (every SparseArch of the model, the mini-batch's cut
    included), the ``aten`` ops of their forward and backward, and whether the optimizer was fused."""

    seconds: float
    ops: int
    fused: bool
    world: int = 1  # > 1: timed in that many processes, the touched rows' exchange included
    dense_all_reduce: bool = False  # the dense gradients' DDP all-reduce is in ``seconds`` (timed ranks)
    placement: str = "data_parallel"  # else TorchRec's (table_wise, row_wise): its all-to-alls and fused Adagrad


def _feature_ids(ids_per_row: float, unique: float, rows: int, table_rows: int,
                 gen: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(ids (N,), offsets (rows + 1,)): ``ids_per_row`` ids a row on average (at least one, as the twin's batch),
    ``unique`` x N of them distinct, spread at random over rows 1..table_rows - 1 (0 is the missing id)."""
    total = max(round(ids_per_row * rows), rows)
    lengths = np.full(rows, total // rows, np.int64)
    lengths[: total % rows] += 1
    distinct = min(max(round(unique * total), 1), total, table_rows - 1)
    chosen = gen.choice(table_rows - 1, distinct, replace=False) + 1  # (R,) the rows this batch touches
    ids = np.concatenate([chosen, gen.choice(chosen, total - distinct)])  # every chosen row once, then repeats
    gen.shuffle(ids)
    offsets = np.zeros(rows + 1, np.int64)
    offsets[1:] = np.cumsum(lengths)
    return ids.astype(np.int64), offsets


def sparse_step(tables: list[TableCost], shape: InputShape, rows: int, fused: bool, max_bytes: float,
                seed: int = 0, exchange: Callable[[torch.Tensor], None] | None = None
                ) -> tuple[Callable[[], None], Callable[[], None]]:
    """(the step, its forward and backward alone) of one SparseArch over ``tables`` on ``rows`` rows: the
    mini-batch cut and handed to torch as the trainer does (:meth:`Batch.slice`, :meth:`Batch.inputs`), the
    forward, the backward and row-wise Adagrad (``fused``: inside the backward). The tables together hold at most
    ``max_bytes`` (weights, accumulators and the fused step's row slots), shrunk in proportion beyond it.
    ``exchange`` (unfused only) is called with the weight between the backward and the step, as a rank's hook
    exchanges the gradient with the other ranks."""
    from shoal.models.embeddings import SparseArch
    from shoal.training.optimizers import RowWiseAdagrad

    dim = tables[0].dim
    sizes = _shrunk(tables, dim * 4 + (8 if fused else 4), max_bytes)
    pool = _pool(tables, shape, rows, sizes, seed)
    arch = SparseArch(sizes, dim)
    opt = RowWiseAdagrad([arch.bag.weight], lr=0.01)
    if fused:
        arch.fuse(opt)
    cut = pool[0].slice(0, rows).inputs()
    turn = itertools.cycle(pool)

    def arch_step(inputs: tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]] = cut) -> None:
        _, ids, offsets = inputs
        arch(ids, offsets).sum().backward()
        if not fused:
            if exchange is not None:
                exchange(arch.bag.weight)
            opt.step()
            opt.zero_grad(set_to_none=True)

    def step() -> None:
        arch_step(next(turn).slice(0, rows).inputs())
    return step, arch_step


def torchrec_step(tables: list[TableCost], shape: InputShape, rows: int, max_bytes: float, placement: str,
                  seed: int = 0) -> Callable[[], None]:
    """One rank's step of ``tables`` sharded by TorchRec as the trainer shards them
    (:class:`~shoal.models.torchrec_backend.TorchRecSparseArch`, ``placement`` table_wise or row_wise): the
    mini-batch cut, the KeyedJaggedTensor, the input and output all-to-alls, the pooled lookup and, inside the
    backward, FBGEMM's fused row-wise Adagrad. A collective: every rank of the default process group builds and
    calls it together. Tables shrunk as :func:`sparse_step` shrinks them."""
    from shoal.models.embeddings import SparseArch
    from shoal.models.torchrec_backend import TorchRecSparseArch

    dim = tables[0].dim
    sizes = _shrunk(tables, dim * 4 + 8, max_bytes)  # weights, accumulators, FBGEMM's fused step
    turn = itertools.cycle(_pool(tables, shape, rows, sizes, seed))
    arch = TorchRecSparseArch(SparseArch(sizes, dim), placement, {"lr": 0.01}, torch.device("cpu"))

    def step() -> None:
        _, ids, offsets = next(turn).slice(0, rows).inputs()
        arch(ids, offsets).sum().backward()
    return step


def _shrunk(tables: list[TableCost], bytes_per_row: float, max_bytes: float) -> list[int]:
    """Each table's rows, shrunk in proportion so that all of them hold at most ``max_bytes``."""
    scale = min(1.0, max_bytes / max(sum(t.rows for t in tables) * bytes_per_row, 1))
    return [max(int(t.rows * scale), 2) for t in tables]


def _pool(tables: list[TableCost], shape: InputShape, rows: int, sizes: list[int], seed: int) -> list[Batch]:
    """Mini-batches of ``rows`` rows of ``tables`` (``sizes`` rows each) for a timed step to cycle through: the
    sampled first chunk shuffled (ids folded into a shrunk table), else made-up batches (:func:`made_up_batch`)."""
    gen = np.random.default_rng(seed)
    ids_bytes = 8 * rows * sum(max(shape.ids_per_row[t.feature], 1.0) for t in tables)
    count = max(1, min(POOL_BATCHES, int(POOL_BYTES // max(ids_bytes, 1.0))))
    sample = shape.sample
    if sample is not None and len(sample) >= rows:
        dense, label = np.zeros((rows, 0), np.float32), np.zeros(rows, np.float32)
        lines, pool = np.arange(rows, dtype=np.int64), []
        shuffled = sample.take(gen.permutation(len(sample)))
        for start in range(0, min(len(sample) - rows, (count - 1) * rows) + 1, rows):
            part = shuffled.slice(start, start + rows)
            ids = [part.ids[t.feature] % n if n < t.rows else part.ids[t.feature]
                   for t, n in zip(tables, sizes, strict=True)]
            pool.append(Batch(dense, ids, [part.offsets[t.feature] for t in tables], label, lines))
        return pool
    return [made_up_batch(shape, rows, [t.feature for t in tables], sizes, gen) for _ in range(count)]


def made_up_batch(shape: InputShape, rows: int, features: list[int], sizes: list[int], gen: np.random.Generator,
                  dense: bool = False) -> Batch:
    """``rows`` made-up rows of ``shape``'s inputs ``features``, ids over ``sizes`` table rows
    (:func:`_feature_ids`; a byte sequence at its padded length), and random dense values when ``dense``."""
    feats = [_feature_ids(shape.seq_len if k in shape.sequences else shape.ids_per_row[k], shape.unique_fraction[k],
                          rows, n, gen) for k, n in zip(features, sizes, strict=True)]
    return Batch(dense=gen.random((rows, shape.dense_dim if dense else 0), dtype=np.float32),
                 ids=[i for i, _ in feats], offsets=[o for _, o in feats], label=np.zeros(rows, np.float32),
                 lines=np.arange(rows, dtype=np.int64))


def _groups(cost: ModelCost) -> list[list[TableCost]]:
    """The tables of each SparseArch of the model (empty when a table is not a feature's)."""
    groups: dict[str, list[TableCost]] = {}
    for t in cost.tables:
        groups.setdefault(t.arch, []).append(t)
    return [] if any(t.feature < 0 for t in cost.tables) else list(groups.values())


def time_sparse_steps(cost: ModelCost, shape: InputShape, rows: int, fused: bool, threads: int, llc_bytes: float,
                      seconds: float = 0.3, world: int = 1, evict_bytes: float = 0.0,
                      placement: str = "data_parallel") -> SparseTime | None:
    """The embedding steps of ``cost``'s tables (grouped by the SparseArch that holds them) on ``rows`` rows, with
    ``threads`` threads: timed (the mean of repeated calls: a run pays its slow steps too) and their ops counted;
    None without tables. ``world`` > 1 (unfused): timed in that many processes at once, each exchanging its rows as
    a rank does, or with ``placement`` table_wise / row_wise, each taking TorchRec's sharded step
    (:func:`torchrec_step`; TorchRec must import). ``evict_bytes`` (the rest of the step's activations and dense
    state) are walked before each timed step (:func:`~shoal.plan.calibrate.evictor`), as the dense layers walk
    them between two steps."""
    if placement != "data_parallel" and world < 2:
        raise ValueError(f"a {placement} placement shards tables over several processes, not {world}")
    groups = _groups(cost)
    if not groups:
        return None
    total_s, ops = 0.0, 0
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    walk = evictor(evict_bytes, llc_bytes) if world == 1 else None
    try:
        for tables in groups:
            step, arch_step = sparse_step(tables, shape, rows, fused, MAX_TIMED_LLC * llc_bytes)
            if world == 1:
                total_s += mean_seconds(step, seconds, before=walk)
            ops += count_ops(arch_step)
    finally:
        torch.set_num_threads(saved)
    if world > 1:
        total_s = _time_ranks(groups, shape, rows, world, threads, MAX_TIMED_LLC * llc_bytes, seconds,
                              cost.dense_tensors, evict_bytes, llc_bytes, placement)
    return SparseTime(total_s, ops, fused, world, dense_all_reduce=world > 1 and bool(cost.dense_tensors),
                      placement=placement)


def _time_ranks(groups: list[list[TableCost]], shape: InputShape, rows: int, world: int, threads: int,
                max_bytes: float, seconds: float, dense_tensors: list[int], evict_bytes: float,
                llc_bytes: float, placement: str = "data_parallel") -> float:
    """Seconds of one rank's embedding steps with the row exchange and DDP's all-reduce of gradients of
    ``dense_tensors`` sizes, ``world`` processes (gloo on loopback) taking them at once: the slowest rank's
    mean."""
    import torch.multiprocessing as mp

    from shoal.runtime.http_load import free_port

    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "ranks.json")
        mp.start_processes(_rank, args=(world, free_port(), groups, shape, rows, threads, max_bytes, seconds,
                                        dense_tensors, evict_bytes, llc_bytes, out, placement),
                           nprocs=world, join=True, start_method="spawn")
        return float(json.loads(Path(out).read_text(encoding="utf-8"))["seconds"])


class _DenseGrads(torch.nn.Module):
    """Parameters of the model's dense sizes whose gradients a backward produces (full size, as a layer's), for
    DDP to all-reduce; their compute is the plan's dense phases, not timed here."""

    def __init__(self, sizes: list[int]) -> None:
        super().__init__()
        self.weights = torch.nn.ParameterList(torch.nn.Parameter(torch.zeros(n)) for n in sizes)

    def forward(self) -> torch.Tensor:
        return torch.stack([w[0] for w in self.weights]).sum()


def _rank(rank: int, world: int, port: int, groups: list[list[TableCost]], shape: InputShape, rows: int,
          threads: int, max_bytes: float, seconds: float, dense_tensors: list[int], evict_bytes: float,
          llc_bytes: float, out: str, placement: str = "data_parallel") -> None:
    """One of ``world`` processes: its embedding steps, the dense gradients all-reduced by DDP during the backward
    and each followed by the trainer's row exchange (or TorchRec's sharded step, for its ``placement``), timed over
    the same number of calls on every rank (a time limit could differ and leave a rank waiting in a
    collective)."""
    import torch.distributed as dist

    from shoal.distributed.context import RankContext
    from shoal.distributed.strategy import all_reduce_sparse_grad

    torch.set_num_threads(threads)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    ctx = RankContext(rank, world, rank, torch.device("cpu"), dist.new_group(backend="gloo"))
    if placement == "data_parallel":
        steps = [sparse_step(tables, shape, rows, False, max_bytes, seed=rank,
                             exchange=lambda w: all_reduce_sparse_grad(w, ctx))[0] for tables in groups]
    else:
        steps = [torchrec_step(tables, shape, rows, max_bytes, placement, seed=rank) for tables in groups]
    dense = (torch.nn.parallel.DistributedDataParallel(_DenseGrads(dense_tensors)) if dense_tensors
             else None)

    def step() -> None:
        if dense is not None:
            dense().backward()  # DDP's hooks all-reduce the gradients, as the trainer's wrapper does
            dense.zero_grad(set_to_none=True)
        for s in steps:
            s()

    for _ in range(3):  # warm up
        step()
    start = time.perf_counter()
    step()
    calls = torch.tensor([max(5, min(200, int(seconds / max(time.perf_counter() - start, 1e-6))))])
    dist.all_reduce(calls, op=dist.ReduceOp.MIN)
    times = []
    walk = evictor(evict_bytes, llc_bytes)
    dist.barrier()
    for _ in range(int(calls)):
        if walk is not None:
            walk()
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    mean = torch.tensor([float(np.mean(times))], dtype=torch.float64)
    dist.all_reduce(mean, op=dist.ReduceOp.MAX)
    if rank == 0:
        Path(out).write_text(json.dumps({"seconds": float(mean)}), encoding="utf-8")
    dist.destroy_process_group()
