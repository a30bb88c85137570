"""Serving: latency of one row and the servers a QPS target needs, from a measured or a predicted per-row cost.

With a trained RUN, its bundle is measured here (:func:`shoal.runtime.latency.bench_bundle`, PyTorch, 1
thread): p50/p99 at batch 1 and rows/s at batch 256, on real rows of its training file. Without one, the forward
of the model is predicted like a training step's forward (one thread, batch 1 and 256), and p99 is taken as
``P99_OVER_P50`` x p50 (a typical tail of an idle server; measure to know). A server of C cores serves
``C x rows/s (batch 256, 1 thread) x UTILIZATION`` rows/s with micro-batching.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from shoal.plan.cost import ModelCost
from shoal.plan.rates import Rates

__all__ = ["P99_OVER_P50", "UTILIZATION", "ServingPlan", "measure_serving", "predict_serving"]

P99_OVER_P50 = 1.5
UTILIZATION = 0.6  # the load a server is planned at, leaving room for bursts
BATCH = 256


@dataclass(frozen=True)
class ServingPlan:
    p50_ms: float
    p99_ms: float
    rows_per_s_per_core: float
    cores_per_server: int
    qps: float | None
    servers: int | None
    measured: bool
    unit: str = "core"  # what a server is counted in, and rows_per_s_per_core is per: a CPU core, or a GPU

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _forward_s(cost: ModelCost, rates: Rates, rows: int) -> float:
    layers = [la for la in cost.layers if la.kind != "elementwise"]
    dense = sum(rates.matmul_s(la.fwd_flops * rows, la.width) for la in layers)
    lookups = sum(rates.embedding_s(t.lookups * rows, 0, t.dim, t.bytes, True) for t in cost.tables) / 3
    return rates.layer_s / 3 * len(layers) + rates.feature_s * cost.features + dense + lookups


def _servers(qps: float | None, rows_per_s_per_core: float, cores: int) -> int | None:
    if qps is None:
        return None
    return max(1, math.ceil(qps / (rows_per_s_per_core * cores * UTILIZATION)))


def predict_serving(cost: ModelCost, rates: Rates, cores: int, qps: float | None, unit: str = "core") -> ServingPlan:
    """Batch-1 latency and per-core throughput predicted from the model's forward (``rates``: one thread; or, with
    ``unit="GPU"``, one GPU's rates, ``cores`` the GPUs of a server)."""
    one = _forward_s(cost, rates, 1)
    per_core = BATCH / _forward_s(cost, rates, BATCH)
    return ServingPlan(one * 1e3, one * 1e3 * P99_OVER_P50, per_core, cores, qps, _servers(qps, per_core, cores),
                       False, unit)


def measure_serving(bundle_dir: Path, cores: int, qps: float | None, seconds: float = 1.0) -> ServingPlan:
    """p50/p99 and rows/s of ``bundle_dir`` measured here on the first rows of its training file."""
    from shoal.artifacts.bundle import load_bundle
    from shoal.data.readers import BadRowSink
    from shoal.data.stream import chunks
    from shoal.runtime.latency import bench_bundle

    bundle = load_bundle(bundle_dir)
    sink = BadRowSink("count")
    first = next(iter(chunks(Path(bundle.config.data.train), bundle.config.data, bundle.encoder.columns(False),
                             sink)), None)
    if first is None:
        raise ValueError(f"{bundle.config.data.train}: no rows to measure the bundle on")
    rows = bundle.encoder.encode(first, sink, with_label=False)
    (result,) = bench_bundle(bundle_dir, rows, systems=["torch"], batch=BATCH, threads=1, seconds=seconds,
                             isolate=False)
    return ServingPlan(result.p50_ms, result.p99_ms, result.rows_per_s, cores, qps,
                       _servers(qps, result.rows_per_s, cores), True)
