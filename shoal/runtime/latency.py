"""Latency and throughput measurement, and the bench of a bundle: PyTorch eager vs ONNX Runtime fp32/int8/fp16.

The helpers are generic (any ``fn()``)::

    stats = latency(lambda: predictor.predict_logits(one_row))      # warmup, then timed calls
    stats.p50_ms, stats.p99_ms
    rows_per_s = throughput(lambda: predictor.predict_logits(batch), rows=len(batch))

:func:`bench_bundle` measures every system of a bundle (``torch`` and each exported ONNX variant), by default
each in a fresh process so that its peak RSS is its own: p50/p99 latency at batch 1 (one encoded row per call,
cycling through real rows), rows/s at batch 256, size on disk. Encoding is not timed; the conversion of a
batch to each system's inputs is (jagged tensors for torch, the padded form for ONNX): the model call alone.

:func:`~shoal.export.raw_runtime.bench_end_to_end` times what a request costs in process: a raw row (a dict, as a
JSON request becomes) -> answer, encoder included. Its systems are ``e2e-torch`` and ``e2e-onnx-fp32`` (the Python
encoder, then the model) and ``e2e-raw`` (the self-contained graph, ``model.raw.onnx``).
"""

from __future__ import annotations

import itertools
import math
import multiprocessing
import resource
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["BenchResult", "LatencyStats", "bench_bundle", "bench_rows", "latency", "peak_rss_mib", "percentiles",
           "throughput", "time_calls", "time_system"]

SYSTEMS = {"torch": None, "onnx-fp32": "fp32", "onnx-int8": "int8", "onnx-fp16": "fp16"}  # system -> ONNX variant


@dataclass(frozen=True)
class LatencyStats:
    """Per-call wall-clock latency in milliseconds over ``calls`` timed calls (after warmup)."""

    p50_ms: float
    p99_ms: float
    mean_ms: float
    calls: int


def time_calls(fn: Callable[[], Any], *, warmup: int = 20, min_calls: int = 50, max_calls: int = 100_000,
               seconds: float = 1.0) -> np.ndarray:
    """Seconds of each timed call of ``fn``: ``warmup`` untimed calls, then calls until ``seconds`` have
    passed and at least ``min_calls`` were made (at most ``max_calls``)."""
    if min_calls < 1 or max_calls < min_calls:
        raise ValueError(f"need 1 <= min_calls <= max_calls, got min_calls={min_calls}, max_calls={max_calls}")
    for _ in range(warmup):
        fn()
    times: list[float] = []
    clock = time.perf_counter
    deadline = clock() + seconds
    while len(times) < max_calls and (len(times) < min_calls or clock() < deadline):
        start = clock()
        fn()
        times.append(clock() - start)
    return np.asarray(times)


def percentiles(seconds: np.ndarray) -> LatencyStats:
    """p50, p99 and mean of per-call times (seconds) in milliseconds."""
    if len(seconds) == 0:
        raise ValueError("no timings to summarize")
    ms = np.asarray(seconds, np.float64) * 1e3
    return LatencyStats(float(np.percentile(ms, 50)), float(np.percentile(ms, 99)), float(ms.mean()), len(ms))


def latency(fn: Callable[[], Any], **kwargs: Any) -> LatencyStats:
    """:func:`time_calls` summarized by :func:`percentiles`."""
    return percentiles(time_calls(fn, **kwargs))


def throughput(fn: Callable[[], Any], rows: int, **kwargs: Any) -> float:
    """Rows per second of ``fn`` processing ``rows`` rows per call (total rows / total time)."""
    times = time_calls(fn, **{"warmup": 3, "min_calls": 5, **kwargs})
    return rows * len(times) / float(times.sum())


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB (``ru_maxrss`` is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024


# -- the bench of a bundle --------------------------------------------------------------------------------------
@dataclass
class BenchResult:
    """One system of :func:`bench_bundle`: batch-1 latency, rows/s at ``batch``, size on disk, peak RSS."""

    system: str
    p50_ms: float
    p99_ms: float
    rows_per_s: float
    batch: int
    size_mib: float
    peak_rss_mib: float
    isolated: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def bench_bundle(bundle_dir: str | Path, rows: Any, onnx_dir: str | Path | None = None,
                 systems: Sequence[str] | None = None, *, batch: int = 256, threads: int = 1, seconds: float = 2.0,
                 isolate: bool = True) -> list[BenchResult]:
    """Measure ``systems`` (default: ``torch`` and every ONNX variant found in ``onnx_dir``) on encoded ``rows``.

    ``onnx_dir`` defaults to ``bundle_dir/onnx``. With ``isolate`` each system runs in a fresh process (a few
    seconds to start), so its peak RSS is its own (interpreter and libraries included); without it they share
    this process and the peak RSS column is cumulative. ``threads`` caps both torch and ONNX Runtime.
    """
    bundle_dir = Path(bundle_dir)
    onnx = Path(onnx_dir) if onnx_dir is not None else bundle_dir / "onnx"
    found = _exported(onnx)
    if systems is None:
        systems = ["torch", *(s for s, v in SYSTEMS.items() if v in found)]
    for s in systems:
        if s not in SYSTEMS:
            raise ValueError(f"unknown system {s!r}; choose from {', '.join(SYSTEMS)}")
        if SYSTEMS[s] is not None and SYSTEMS[s] not in found:
            raise FileNotFoundError(f"{onnx}: no {SYSTEMS[s]} export to bench {s}; run shoal export RUN --onnx"
                                    + {"int8": " --int8", "fp16": " --fp16-embeddings"}.get(str(SYSTEMS[s]), ""))
    if len(rows) == 0:
        raise ValueError("no rows to bench on")
    ones = [rows.slice(i, i + 1) for i in range(min(len(rows), 256))]  # batch 1: cycle through real rows
    big = rows.take(np.arange(batch) % len(rows))  # (batch,) rows, repeated when there are fewer
    jobs = [(s, str(bundle_dir), str(onnx), ones, big, threads, seconds) for s in systems]
    if not isolate:
        return [_measure(*job) for job in jobs]
    results = []
    for job in jobs:
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            results.append(pool.submit(_measure, *job).result())
    return results


def _exported(onnx: Path) -> dict[str, str]:
    import json

    doc = onnx / "export.json"
    return dict(json.loads(doc.read_text(encoding="utf-8")).get("files", {})) if doc.is_file() else {}


def _measure(system: str, bundle_dir: str, onnx_dir: str, ones: list[Any], big: Any, threads: int,
             seconds: float) -> BenchResult:
    """One system's figures (run in a child process when isolated)."""
    isolated = multiprocessing.parent_process() is not None
    variant = SYSTEMS[system]
    if variant is None:
        import torch

        from shoal.artifacts.bundle import load_bundle

        saved = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            predict = load_bundle(Path(bundle_dir)).predict_logits
            result = time_system(system, predict, ones, big, seconds)
        finally:
            torch.set_num_threads(saved)
        size = (Path(bundle_dir) / "model.safetensors").stat().st_size / 2**20
    else:
        from shoal.runtime.onnx import FILES, OnnxPredictor

        predict = OnnxPredictor(onnx_dir, variant=variant, threads=threads).predict_logits
        result = time_system(system, predict, ones, big, seconds)
        size = (Path(onnx_dir) / FILES[variant]).stat().st_size / 2**20
    return BenchResult(system, result[0].p50_ms, result[0].p99_ms, result[1], len(big), size, peak_rss_mib(), isolated)


def time_system(system: str, predict: Callable[[Any], Any], ones: list[Any], big: Any,
          seconds: float) -> tuple[LatencyStats, float]:
    cycle = itertools.cycle(ones)
    stats = latency(lambda: predict(next(cycle)), seconds=seconds)
    rps = throughput(lambda: predict(big), len(big), seconds=seconds)
    return stats, rps


def bench_rows(results: Sequence[BenchResult], dataset: str, bench: str = "bench") -> list[dict[str, Any]]:
    """JSON rows in the benchmarks' format (``benchmarks/common.py``): one ``{"bench", "dataset", "system",
    "metric", "value"}`` per figure; metrics ``latency_ms_p50`` and ``latency_ms_p99`` (batch 1),
    ``infer_rows_per_s`` (batch 256), ``size_mib``, ``peak_rss_mib``."""
    out = []
    for r in results:
        for metric, value in (("latency_ms_p50", r.p50_ms), ("latency_ms_p99", r.p99_ms),
                              ("infer_rows_per_s", r.rows_per_s), ("size_mib", r.size_mib),
                              ("peak_rss_mib", r.peak_rss_mib)):
            if not math.isfinite(value):
                raise ValueError(f"{bench}/{dataset}/{r.system}/{metric}: value {value!r} is not finite")
            out.append({"bench": bench, "dataset": dataset, "system": r.system, "metric": metric,
                        "value": float(value)})
    return out
