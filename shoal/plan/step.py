"""One training step of one process: its phases and their seconds, and the memory the process holds.

A step of W processes (global batch B, b = B / W rows each) is, on each process::

    overhead   the Python loop, autograd and the optimizers' calls: calibrated, step + loop + ops x op (the ops
               the step dispatches, :mod:`shoal.plan.ops`); from a cluster file, step + layers x layer + features
               x feature
    input      the mini-batch's share of its chunk's shuffle: encoded bytes x 3 / memory bandwidth, or timed
               (calibrated, :mod:`shoal.plan.measured`)
    forward    each layer: its FLOPs / the FLOP/s reached at its width; elementwise layers: bytes / bandwidth
    embeddings lookups, gradient sums and the row-wise Adagrad update of the distinct rows touched, at the rates
               of a table as large as all of them with their accumulators (one weight holds every table, and a
               step's random rows range over all of it)
    backward   each layer's backward FLOPs (2 x forward)
               (a dot interaction, calibrated: forward and backward timed on the model's own F and d, split
               1:2, :mod:`shoal.plan.measured`)
    Adam       28 bytes per dense parameter (read p, g, m, v; write p, m, v) / memory bandwidth, or timed on the
               model's own parameter sizes (calibrated, :mod:`shoal.plan.measured`)
    all-reduce the dense gradients (DDP, ring), overlapped with the backward up to ``overlap`` (with the ranks
               timed together on this machine: in their timed step)
    sparse     native tables: the touched rows' gradients all-gathered (W > 1);
               TorchRec: ids and pooled embeddings all-to-all, forward and backward (:mod:`shoal.plan.sharding`)

The step takes the sum of the compute phases plus the communication that the backward does not hide.
Memory per process: its share of the tables, the Adagrad accumulators (4 bytes a row) and the fused step's row
slots (4 bytes a row, one process), the dense weights, gradients and Adam's two moments (16 bytes a
parameter), activations kept for the backward and their gradients, the cached encoded rows, the process's
baseline (interpreter and libraries), and the largest passing need (the first pass's chunk). On a GPU they are
in two memories: the model's state (tables, accumulators, dense state, activations) and a CUDA context in the
GPU's (``memory``), the process, the cached rows (numpy batches, each copied to the GPU when its step comes) and
the first pass in the host's (``host_memory``)::

                   CPU                       GPU: memory (HBM)            GPU: host_memory (RAM)
    baseline       interpreter + libraries   CUDA context                 interpreter + libraries
    model state    tables ... activations    tables ... activations       -
    data           cached rows, first pass   -                            cached rows, first pass
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from shoal.plan.comm import all_gather_s, all_reduce_bytes, all_reduce_s
from shoal.plan.cost import LayerCost, ModelCost
from shoal.plan.inputs import InputShape
from shoal.plan.measured import MeasuredParts
from shoal.plan.rates import Rates
from shoal.plan.sharding import ShardingOption
from shoal.plan.sparse_step import SparseTime

__all__ = ["Phase", "StepPlan", "plan_step", "walked_bytes"]

ADAM_BYTES_PER_PARAM = 28
CHECKPOINT_EVERY_EPOCH_S = 30.0  # one process checkpoints an epoch end only when the last one is older


@dataclass(frozen=True)
class Phase:
    """A stretch of a step on one lane of the timeline (``compute`` or ``network``)."""

    name: str
    lane: str
    start: float
    seconds: float
    kind: str  # overhead | input | dense | embedding | optimizer | comm


@dataclass
class StepPlan:
    """The predicted step of one process, its memory, and what a whole epoch costs."""

    world: int
    nodes: int
    batch: int
    rank_batch: int
    phases: list[Phase]
    step_s: float
    exposed_comm_s: float
    comm_bytes: dict[str, float]
    memory: dict[str, float]  # bytes per process, by what holds them: the device's (a GPU's HBM, else all RAM)
    layer_seconds: list[tuple[str, float, float]]  # (layer, FLOPs per step, seconds per step)
    epoch_s: float | None = None
    notes: list[str] = field(default_factory=list)
    host_memory: dict[str, float] = field(default_factory=dict)  # beside a GPU, in host RAM (empty on a CPU)
    gather_bytes: float = 0.0  # TorchRec's tables gathered whole on every rank at each checkpoint (0: native)

    @property
    def rows_per_s(self) -> float:
        return self.batch / self.step_s

    @property
    def peak_bytes(self) -> float:
        """The device's bytes: a GPU's HBM, or on a CPU everything the process holds."""
        return sum(self.memory.values())

    @property
    def host_bytes(self) -> float:
        """The host RAM a GPU process holds beside its device's bytes (0 on a CPU: in :attr:`peak_bytes`)."""
        return sum(self.host_memory.values())

    @property
    def bottleneck(self) -> str:
        totals: dict[str, float] = {}
        for p in self.phases:
            if p.lane == "compute":
                totals[p.kind] = totals.get(p.kind, 0.0) + p.seconds
        totals["comm (exposed)"] = self.exposed_comm_s
        return max(totals, key=lambda k: totals[k])

    def to_dict(self) -> dict[str, Any]:
        return {
            "world": self.world, "nodes": self.nodes, "batch": self.batch, "rank_batch": self.rank_batch,
            "step_s": self.step_s, "rows_per_s": self.rows_per_s, "exposed_comm_s": self.exposed_comm_s,
            "bottleneck": self.bottleneck, "epoch_s": self.epoch_s, "peak_bytes": self.peak_bytes,
            "memory_bytes": self.memory, "host_peak_bytes": self.host_bytes, "host_memory_bytes": self.host_memory,
            "comm_bytes": self.comm_bytes,
            "phases": [p.__dict__ for p in self.phases],
            "layers": [{"name": n, "flops": f, "seconds": s} for n, f, s in self.layer_seconds],
            "notes": self.notes,
        }


def plan_step(cost: ModelCost, shape: InputShape, rates: Rates, *, world: int, nodes: int, batch: int,
              sharding: ShardingOption, cache_bytes: float, chunk_rows: int,
              sparse: SparseTime | None = None, parts: MeasuredParts | None = None) -> StepPlan:
    """The step of one of ``world`` processes (``nodes`` nodes) at global ``batch``, tables placed as
    ``sharding`` says; ``cache_bytes``: the encoded rows this process keeps in memory; ``sparse``: the model's own
    embedding step timed on this machine (:mod:`shoal.plan.sparse_step`), used for the native tables; ``parts``:
    the input and Adam timed on this machine (:mod:`shoal.plan.measured`)."""
    b = batch // world
    fused = world == 1 and not rates.gpu and sharding.name == "data_parallel"
    torchrec_timed = (sparse is not None and sparse.placement == sharding.name != "data_parallel"
                      and sparse.world == world)  # TorchRec's own step, its all-to-alls included
    if sparse is not None and not torchrec_timed and (sharding.name != "data_parallel" or sparse.fused != fused
                                                      or sparse.placement != "data_parallel" or not cost.tables):
        sparse = None  # timed for another path: untimed TorchRec placements keep the per-id rates
    t = 0.0
    compute: list[Phase] = []

    def add(name: str, seconds: float, kind: str) -> None:
        nonlocal t
        compute.append(Phase(name, "compute", t, seconds, kind))
        t += seconds

    timed_ops = (sparse.ops if sparse else 0) + (parts.adam_ops + parts.layer_ops if parts else 0)  # in their time
    ops = max(cost.ops.get("fused" if fused else "unfused", 0) - timed_ops, 0)
    add(f"overhead ({ops} ops)" if rates.op_s > 0 and ops else "overhead", _overhead_s(cost, rates, fused, timed_ops),
        "overhead")
    add("input", parts.input_s if parts else rates.memory_s(3 * shape.encoded_bytes_per_row * b), "input")

    def layer_s(flops: float, layer_kind: str, width: int, act_bytes: float) -> float:
        if layer_kind == "elementwise":
            return rates.memory_s(2 * act_bytes * b)
        if layer_kind == "interaction":
            return flops * b / rates.interaction_flops
        if layer_kind == "conv":
            return rates.conv_s(flops * b, width)
        return rates.matmul_s(flops * b, width)

    footprint = _footprint(cost, fused) * sharding.table_share
    if sparse is not None:  # timed on this machine, the tables' cache misses included
        emb_s = sparse.seconds
    else:
        emb_s = sum(rates.embedding_s(tc.lookups * b, tc.unique * b, tc.dim, footprint, fused)
                    for tc in cost.tables) * sharding.lookup_share
    fwd_share = 1 / 3  # the forward reads rows once; the backward sums gradients and updates rows (2 passes)
    timed = parts.layer_s if parts else {}  # a timed layer's forward and backward, split as their FLOPs

    def pass_s(la: LayerCost, flops: float) -> float:
        if la.name in timed:
            return timed[la.name] * flops / (la.fwd_flops + la.bwd_flops)
        return layer_s(flops, la.kind, la.width, la.act_bytes)

    fwd = [(la.name, la.fwd_flops * b, pass_s(la, la.fwd_flops)) for la in cost.layers]
    bwd = [(la.name, la.bwd_flops * b, pass_s(la, la.bwd_flops)) for la in cost.layers]
    if cost.tables:
        add("TorchRec lookups + all-to-alls (timed)" if torchrec_timed else "embedding lookups", emb_s * fwd_share,
            "embedding")
    comm_fwd = 0.0 if torchrec_timed else sharding.forward_comm_s(b, cost, rates, world, nodes)
    if comm_fwd > 0:
        add("all-to-all (ids, pooled)", comm_fwd, "comm")
    add("forward (dense)", sum(s for _, _, s in fwd), "dense")
    backward_start = t
    backward_dense = sum(s for _, _, s in bwd)
    add("backward (dense)", backward_dense, "dense")
    comm_bwd = 0.0 if torchrec_timed else sharding.backward_comm_s(b, cost, rates, world, nodes)
    if comm_bwd > 0:
        add("all-to-all (gradients)", comm_bwd, "comm")
    if cost.tables:
        exchange = "all-to-all + fused Adagrad" if torchrec_timed else "row exchange + Adagrad"
        add(f"embedding backward + {exchange}" + (" + dense all-reduce" if sparse.dense_all_reduce else "")
            if sparse is not None and sparse.world > 1 else "embedding backward + Adagrad", emb_s * (1 - fwd_share),
            "embedding")

    # the dense gradients' all-reduce, started as the backward produces them (DDP buckets)
    link = rates.link(nodes)
    dense_bytes = cost.dense_params * 4
    ar = all_reduce_s(dense_bytes, world, link.bandwidth, link.latency)
    network = [Phase("all-reduce (dense grads)", "network", backward_start, ar, "comm")] if ar > 0 else []
    hidden = min(ar, rates.overlap * backward_dense)
    exposed = ar - hidden
    if sparse is not None and sparse.world > 1 and sparse.dense_all_reduce:  # in the ranks' timed step (emb_s)
        exposed, network = 0.0, []
    if exposed > 0:
        add("all-reduce (exposed)", exposed, "comm")
    # the native tables' touched rows, all-gathered once the backward has accumulated them
    gather_bytes = 0.0
    if world > 1 and sharding.name == "data_parallel" and cost.tables:
        rows = sum(tc.unique for tc in cost.tables) * b
        dim = max(tc.dim for tc in cost.tables)
        gather_bytes = rows * (8 + 4 * dim)
        if sparse is None or sparse.world == 1:  # else the exchange was timed with the ranks' steps (emb_s)
            gather = all_gather_s(gather_bytes, world, link.bandwidth, link.latency) + all_gather_s(
                8, world, link.bandwidth, link.latency)
            add("all-gather (sparse rows)", gather, "comm")
            exposed += gather
            union = min(sum(tc.unique for tc in cost.tables) * b * world, sum(tc.rows for tc in cost.tables))
            add("coalesce + Adagrad (all ranks' rows)",
                rates.embedding_s(0, union - rows, dim, _footprint(cost, fused=False), fused=False), "embedding")
    add("Adam (dense)", parts.adam_s if parts else rates.memory_s(ADAM_BYTES_PER_PARAM * cost.dense_params),
        "optimizer")

    memory, host = _memory(cost, shape, rates, b, sharding, fused, cache_bytes, chunk_rows)
    comm = {"all_reduce": all_reduce_bytes(dense_bytes, world), "sparse_all_gather": gather_bytes * (world - 1),
            "all_to_all": sharding.bytes_per_step(b, cost, world)}
    gathered = torchrec_gather_bytes(cost) if sharding.name != "data_parallel" and world > 1 else 0.0
    return StepPlan(world=world, nodes=nodes, batch=batch, rank_batch=b, phases=compute + network, step_s=t,
                    gather_bytes=gathered,
                    exposed_comm_s=exposed + comm_fwd + comm_bwd, comm_bytes=comm, memory=memory,
                    host_memory=host,
                    layer_seconds=[(n, f + fb, s + sb) for (n, f, s), (_, fb, sb) in zip(fwd, bwd, strict=True)])


def _overhead_s(cost: ModelCost, rates: Rates, fused: bool, timed_ops: int) -> float:
    """A step's fixed cost: per op dispatched where calibrated (less the ``timed_ops`` of the parts timed whole,
    whose time holds them), else per layer and embedding feature."""
    ops = cost.ops.get("fused" if fused else "unfused")
    if rates.op_s > 0 and ops:
        return rates.step_s + rates.loop_s + rates.op_s * max(ops - timed_ops, 0)
    layers_run = [la for la in cost.layers if la.kind != "elementwise"]
    return rates.step_s + rates.layer_s * len(layers_run) + rates.feature_s * cost.features


def _footprint(cost: ModelCost, fused: bool) -> float:
    """Bytes a step's random row reads and writes range over: every table (one weight holds them all), its row-wise
    Adagrad accumulators (4 bytes a row) and, fused, the step's row slots (4 bytes a row)."""
    return sum(tc.bytes + tc.rows * (8 if fused else 4) for tc in cost.tables)


def walked_bytes(cost: ModelCost, b: int, fused: bool) -> dict[str, float]:
    """Bytes one step of ``b`` rows walks in each part: ``activations`` (kept for the backward, and their
    gradients), ``dense`` (weights, gradients, Adam's moments) and ``rows`` (the distinct embedding rows touched,
    read and written with their accumulators). A part timed alone is timed after the others' bytes are walked
    (:func:`~shoal.plan.calibrate.evictor`)."""
    pooled = sum(tc.dim for tc in cost.tables) * b * 4
    return {"activations": 2 * (cost.act_bytes * b + pooled) * (1 if fused else 2),
            "dense": 16.0 * cost.dense_params,
            "rows": sum(tc.unique * b * (tc.dim * 4 * 2 + 8) for tc in cost.tables)}


def _memory(cost: ModelCost, shape: InputShape, rates: Rates, b: int, sharding: ShardingOption, fused: bool,
            cache_bytes: float, chunk_rows: int) -> tuple[dict[str, float], dict[str, float]]:
    """(the device's bytes, the host's beside a GPU): on a CPU all in the first, the second empty (module
    docstring)."""
    table_rows = sum(tc.rows for tc in cost.tables) * sharding.table_share
    table_bytes = sum(tc.bytes for tc in cost.tables) * sharding.table_share
    walked = walked_bytes(cost, b, fused)
    raw_row = 8 * shape.dense_dim / 2 + 16 * sum(shape.ids_per_row)  # an Arrow row: float64s, short strings
    state = {
        "tables": table_bytes,
        "Adagrad accumulators": 4 * table_rows,
        "fused step row slots": 4 * table_rows if fused else 0.0,
        "dense weights, grads, Adam": walked["dense"],
        "activations + grads": walked["activations"],
    }
    if sharding.name != "data_parallel" and sharding.world > 1:
        # shoal's TorchRec tables are written in the native layout: each checkpoint, best weights and bundle
        # gathers them whole on every rank (weights and accumulators), and the copy kept or serialized doubles it
        state["TorchRec gathers (whole tables, twice)"] = 2 * torchrec_gather_bytes(cost)
    data = {  # numpy batches in host RAM: the trainer copies each mini-batch to the device at its step
        "cached rows": cache_bytes,
        "passing (first pass)": (max(chunk_rows, shape.read_rows) * raw_row
                                 + 2 * chunk_rows * shape.encoded_bytes_per_row),
    }
    if rates.gpu:
        return ({"CUDA context": rates.base_bytes, **state},
                {"baseline (process)": rates.host_base_bytes, **data})
    return {"baseline (process)": rates.base_bytes, **state, **data}, {}


def torchrec_gather_bytes(cost: ModelCost) -> float:
    """Bytes of the whole tables and their row-wise accumulators, as shoal's TorchRec backend gathers them on every
    rank for a checkpoint, the best weights or the bundle (:meth:`TorchRecSparseArch.native_weight`)."""
    return float(sum(tc.bytes + 4 * tc.rows for tc in cost.tables))


def gather_seconds(step: StepPlan, rates: Rates) -> float:
    """Seconds of one TorchRec gather of ``step.gather_bytes``: every rank of a node filling a fresh tensor of the
    whole tables at once (first-touch memory, shared by the node's processes), then their ring all-reduce."""
    if not step.gather_bytes:
        return 0.0
    link = rates.link(step.nodes)
    per_node = max(step.world // max(step.nodes, 1), 1)
    return (step.gather_bytes * per_node / rates.fresh_bw
            + all_reduce_s(step.gather_bytes, step.world, link.bandwidth, link.latency))


def checkpoint_in_epoch(step: StepPlan, rows: int) -> bool:
    """Whether an epoch of ``rows`` rows ends with a checkpoint: always with several processes; with one, when the
    epoch is longer than the checkpoint interval."""
    return step.world > 1 or math.ceil(rows / step.batch) * step.step_s >= CHECKPOINT_EVERY_EPOCH_S


def epoch_seconds(step: StepPlan, rows: int, checkpoint_bytes: float, rates: Rates) -> float:
    """Seconds of one epoch of ``rows`` rows: its steps, and the epoch-end checkpoint where one is written
    (:func:`checkpoint_in_epoch`)."""
    train = math.ceil(rows / step.batch) * step.step_s + rates.first_step_s
    if checkpoint_in_epoch(step, rows):
        train += checkpoint_bytes / rates.disk_bw + gather_seconds(step, rates)
    return train
