"""What one training process can do per second: from this machine's calibration profile, or from a cluster
description and the devices' datasheets.

The step model (:mod:`shoal.plan.step`) asks only these questions, so the same formulas serve a calibrated
laptop and a described GPU cluster:

* ``matmul_s(flops, width)``: seconds of dense FLOPs in matmuls whose smallest dimension is ``width``;
  ``conv_s(flops, width)`` the same for convolutions (their own calibrated rates, else the matmul ones);
* ``embedding_s(lookups, unique, dim, table_bytes, fused)``: seconds of an embedding forward + backward with
  the row-wise Adagrad update, ``lookups`` ids and ``unique`` distinct rows, whose random reads and writes range
  over ``table_bytes`` (whether they hit the cache: every table a step touches, with its accumulators);
* ``memory_s(bytes)``: seconds of streaming memory (inputs, elementwise layers, Adam);
* the fixed overheads: calibrated, per step and per op dispatched (:mod:`shoal.plan.ops`); from a cluster file,
  per step, layer and embedding feature; the links (bandwidth, latency).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from shoal.plan.cluster import ClusterSpec, Link

__all__ = ["CUDA_CONTEXT_BYTES", "Rates", "local_cluster", "rates_for"]

CUDA_CONTEXT_BYTES = 600 * 2**20  # a CUDA context and PyTorch's kernels on a GPU
CPU_BASE_BYTES = 450 * 2**20  # a Python process with torch and shoal loaded, when no calibration measured it
GPU_EMBEDDING_BYTES_PER_S = 0.6  # achievable fraction of HBM bandwidth for random rows (see Efficiency.memory)


@dataclass(frozen=True)
class Rates:
    """One process's rates (see the module docstring). ``embedding``: calibrated costs per path and table size
    (``"fused/small"``: [a, b, c, e], seconds = lookups (a + b d) + distinct rows (c + e d)); None: from bytes."""

    matmul_points: tuple[tuple[int, float], ...]  # (width, FLOP/s), increasing width
    interaction_flops: float  # FLOP/s of the dot interaction's small batched matmuls
    memory_bw: float
    embedding: dict[str, list[float]] | None
    embedding_bw: float
    llc_bytes: float
    step_s: float
    layer_s: float
    feature_s: float
    intra: Link
    inter: Link | None
    device_memory: float  # bytes one process may use: a GPU's HBM, else its share of the node's RAM
    base_bytes: float  # what a process holds before any model (on a GPU, its CUDA context there)
    disk_bw: float
    overlap: float
    gpu: bool
    calibrated: bool
    first_step_s: float = 0.0  # what a run's first step costs beyond the others (compiled code loaded, ...)
    loop_s: float = 0.0  # what the training loop adds to each step (calibrated: cutting the batch, callbacks)
    op_s: float = 0.0  # per op a step dispatches (calibrated); 0: the per-layer and per-feature overheads instead
    conv_points: tuple[tuple[int, float], ...] = ()  # (width, FLOP/s) of convolutions; empty: the matmul rates
    host_memory: float | None = None  # beside a GPU: the process's share of the node's RAM; None: device_memory
    host_base_bytes: float = 0.0  # beside a GPU: the process in host RAM (interpreter, torch, shoal)
    fresh_bw: float = 1e9  # bytes/s one process fills memory it has just allocated (first touch: page faults)

    def matmul_flops(self, width: int) -> float:
        """Achieved FLOP/s of a matmul of this width (interpolated in log width between the measured points; below
        the narrowest, bounded by streaming the wide operand from memory)."""
        return self._flops(self.matmul_points, width)

    def conv_s(self, flops: float, width: int) -> float:
        """Seconds of a convolution's FLOPs whose GEMM's inner width is ``width``: at the calibrated convolution
        rates, else (a cluster file, an older profile) at the matmul rates of that width."""
        return flops / self._flops(self.conv_points or self.matmul_points, width)

    def _flops(self, pts: tuple[tuple[int, float], ...], width: int) -> float:
        w = max(width, 1)
        if w <= pts[0][0]:
            # narrower than measured, e.g. Linear(i, 1): a w-column product streams its wide operand (4 bytes an
            # element, 2 w FLOPs an element), so it runs at the narrowest measured rate or as fast as memory allows
            return min(pts[0][1], w * self.memory_bw / 2)
        for (w0, f0), (w1, f1) in zip(pts[:-1], pts[1:], strict=True):
            if w <= w1:
                x = (math.log(w) - math.log(w0)) / (math.log(w1) - math.log(w0))
                return f0 + x * (f1 - f0)
        return pts[-1][1]

    def matmul_s(self, flops: float, width: int) -> float:
        return flops / self.matmul_flops(width)

    def memory_s(self, nbytes: float) -> float:
        return nbytes / self.memory_bw

    def embedding_s(self, lookups: float, unique: float, dim: int, table_bytes: float, fused: bool) -> float:
        if self.embedding is None:
            return (lookups * dim * 4 * 2 + unique * (2 * dim * 4 + 8)) / self.embedding_bw
        path = "fused" if fused else "unfused"
        small, large = self.embedding[f"{path}/small"], self.embedding[f"{path}/large"]
        # in cache below a quarter of the last-level cache, out of it above 4x; log-interpolated between
        lo, hi = math.log(self.llc_bytes / 4), math.log(self.llc_bytes * 4)
        x = min(max((math.log(max(table_bytes, 1.0)) - lo) / (hi - lo), 0.0), 1.0)
        a, b, c, e = (s + x * (g - s) for s, g in zip(small, large, strict=True))
        return lookups * max(a + b * dim, 0.0) + unique * max(c + e * dim, 0.0)

    def link(self, nodes: int) -> Link:
        """The link a ring over all processes is bounded by: with several nodes the ring crosses both links, so the
        slower bandwidth and the longer latency of the two."""
        if nodes <= 1 or self.inter is None:
            return self.intra
        return Link(bandwidth_gbs=min(self.intra.bandwidth_gbs, self.inter.bandwidth_gbs),
                    latency_us=max(self.intra.latency_us, self.inter.latency_us))


def _derated(link: Link, fraction: float) -> Link:
    return Link(bandwidth_gbs=link.bandwidth_gbs * fraction, latency_us=link.latency_us)


def _near(table: dict[str, Any], threads: int) -> Any:
    """The entry of ``table`` (keyed by thread counts) measured with the nearest number of threads."""
    key = min(table, key=lambda k: abs(int(k) - threads))
    return table[key]


def local_cluster(profile: dict[str, Any]) -> ClusterSpec:
    """This machine, as its calibration profile describes it: one node of its cores, loopback between processes."""
    from shoal.plan.cluster import parse_cluster

    cores = int(profile["cores"])
    best = max(f for points in profile["matmul"].values() for _, f in points)
    ar = profile["allreduce"]
    mem_gib = 16.0
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            mem_gib = int(f.readline().split()[1]) / 2**20
    except OSError:
        pass
    return parse_cluster({
        "name": f"local ({profile.get('host', 'this machine')}, calibrated {profile.get('created', '?')})",
        "node": {"cpu": {"cores": cores, "gflops_per_core": best / cores / 1e9,
                         "memory_bw_gbs": max(profile["memory_bw"].values()) / 1e9, "memory_gib": mem_gib},
                 # a ring of 2 moves each byte once each way, and takes 2 (W - 1) = 2 latencies
                 "intra": {"bandwidth_gbs": ar["bandwidth"] / 1e9, "latency_us": ar["latency_s"] / 2 * 1e6}},
    }, "calibration profile")


def rates_for(cluster: ClusterSpec, processes_per_node: int, profile: dict[str, Any] | None = None) -> Rates:
    """The rates of one of ``processes_per_node`` processes on a node of ``cluster`` (from ``profile`` when
    given: the local, calibrated machine)."""
    node, eff, over = cluster.node, cluster.efficiency, cluster.overheads
    if profile is not None:
        threads = max(1, int(profile["cores"]) // processes_per_node)
        o = _near(profile["overhead"], threads)
        return Rates(
            matmul_points=tuple((int(w), float(f)) for w, f in _near(profile["matmul"], threads)),
            interaction_flops=float(_near(profile["interaction"], threads)),
            memory_bw=float(_near(profile["memory_bw"], threads)), embedding=_near(profile["embedding"], threads),
            embedding_bw=float(_near(profile["memory_bw"], threads)), llc_bytes=float(profile["llc_bytes"]),
            step_s=o["op_step_s"], layer_s=o["layer_s"], feature_s=o["feature_s"], op_s=o["op_s"], intra=node.intra,
            inter=cluster.inter,
            device_memory=node.cpu.memory_gib * 2**30 / processes_per_node,
            base_bytes=float(profile["train_rss"] if processes_per_node == 1 else profile["base_rss"]),
            disk_bw=float(profile["disk_bw"]), overlap=0.5, gpu=False, calibrated=True,
            first_step_s=float(profile.get("first_step_s", 0.0)),
            loop_s=float(profile.get("loop_s", 0.0)), fresh_bw=float(profile.get("fresh_bw", 1e9)),
            conv_points=tuple((int(w), float(f)) for w, f in _near(profile["conv"], threads)) if "conv" in profile
            else ())
    # a cluster file's links are peaks: the achievable fraction of each (a calibration's were measured)
    intra = _derated(node.intra, eff.network)
    inter = None if cluster.inter is None else _derated(cluster.inter, eff.network)
    if node.gpu is not None:
        dev = node.gpu.spec
        peak = dev.flops[cluster.dtype] if cluster.dtype in dev.flops else dev.flops["fp32"]
        points = tuple((w, peak * eff.matmul * w / (w + 64)) for w in (16, 64, 256, 1024, 4096))
        return Rates(
            matmul_points=points, interaction_flops=points[1][1], memory_bw=dev.memory_bw * eff.memory, embedding=None,
            embedding_bw=dev.memory_bw * eff.memory, llc_bytes=50 * 2**20,
            step_s=over.step_us * 1e-6, layer_s=over.layer_us * 1e-6, feature_s=over.feature_us * 1e-6,
            intra=intra, inter=inter, device_memory=dev.memory_gib * 2**30,
            base_bytes=CUDA_CONTEXT_BYTES, disk_bw=2e9, overlap=eff.overlap, gpu=True, calibrated=False,
            host_memory=node.cpu.memory_gib * 2**30 / processes_per_node, host_base_bytes=CPU_BASE_BYTES)
    threads = max(1, node.cpu.cores // processes_per_node)
    peak = node.cpu.gflops_per_core * 1e9 * threads * eff.matmul
    share = node.cpu.memory_bw_gbs * 1e9 / processes_per_node * eff.memory
    return Rates(
        matmul_points=tuple((w, peak * w / (w + 64)) for w in (16, 64, 256, 1024)),
        interaction_flops=peak * 16 / (16 + 64), memory_bw=share, embedding=None,
        embedding_bw=share, llc_bytes=32 * 2**20, step_s=over.step_us * 1e-6, layer_s=over.layer_us * 1e-6,
        feature_s=over.feature_us * 1e-6, intra=intra, inter=inter,
        device_memory=node.cpu.memory_gib * 2**30 / processes_per_node, base_bytes=CPU_BASE_BYTES, disk_bw=1e9,
        overlap=eff.overlap, gpu=False, calibrated=False)
