"""PyTorch, ONNX Runtime and ``--backend auto`` on the same exported bundles: batch 1 p50, batch 256 rows/s.

    python benchmarks/backends.py --json bench-backends.json [--quick]

Two tiny models are trained on synthetic data in a temporary folder and exported with ``shoal export --onnx``:

* ``bag-text``: a fastText-style bag (``bag``, 32-d) over one text feature (8 to 30 words a row, about SST-2's
  100 bytes; the default byte 1-4-grams + word bigrams: a few hundred ids a row) and one id;
* ``dlrm``: the demo's DLRM shape, small (13 dense, 26 sparse of up to 10k ids, one of them a list).

Each is scored on its held-out split (encoded rows; encoding is not timed) by three predictors from
:func:`shoal.runtime.predictor.select_predictor`: ``torch``, ``onnx`` (fp32) and ``auto`` (measured at batch 1 and
256, routed by batch size; its decision, how long deciding took and how long a cached start takes are reported).
Metrics per system: ``latency_ms_p50`` and ``latency_ms_p99`` (batch 1, cycling through 256 rows),
``infer_rows_per_s`` (batch 256). Systems take turns, ``--rounds`` rounds; each figure is the median over rounds.
``--threads`` (default 1) caps torch; ONNX Runtime runs its default single thread.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

try:  # run as ``python benchmarks/backends.py`` (script folder on sys.path) or imported as ``benchmarks.backends``
    from benchmarks.common import markdown_table, row, write_json
except ImportError:  # pragma: no cover
    from common import markdown_table, row, write_json  # type: ignore[no-redef]

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the shoal command does: spinning threads on shared cores

WORDS = ["the", "a", "film", "movie", "story", "actor", "plot", "great", "dull", "funny", "slow", "warm", "cold",
         "bright", "dark", "long", "short", "quiet", "loud", "charming", "tedious", "clever", "silly", "moving",
         "flat", "witty", "bland", "sharp", "messy", "tender", "brutal", "fresh", "stale"]


def bag_data(path: Path, rows: int, seed: int = 0) -> None:
    """Short reviews: 8 to 30 random words (about 100 bytes), a label that follows a few of them, an id."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(8, 31, rows)
    words = np.asarray(WORDS)
    texts = [" ".join(words[rng.integers(0, len(words), n)]) for n in lengths]
    positive = np.array([t.count("great") + t.count("funny") + t.count("witty") - t.count("dull") - t.count("bland")
                         for t in texts])
    label = (positive + rng.normal(0, 1, rows) > 0).astype(np.int64)
    pq.write_table(pa.table({"text": texts, "user": [f"u{i}" for i in rng.integers(0, 500, rows)],
                             "label": label}), path)


def configs(folder: Path, quick: bool) -> dict[str, dict[str, Any]]:
    from shoal.data.synthetic import SynthSpec, generate

    rows = 4000 if quick else 20_000
    texts, clicks = folder / "texts.parquet", folder / "clicks.parquet"
    bag_data(texts, rows)
    generate(clicks, SynthSpec(rows=rows, dense=13, sparse=26, base_rate=0.2, max_cardinality=10_000, seed=1))
    train = {"epochs": 1, "batch_size": 256, "threads": 1}
    return {
        "bag-text": {"name": "bench-bag", "data": {"train": str(texts), "valid_fraction": 0.1},
                     "label": {"column": "label"},
                     "features": [{"name": "text", "kind": "text", "buckets": 100_000},
                                  {"name": "user", "kind": "sparse", "buckets": 1000}],
                     "model": {"name": "bag", "embedding_dim": 32}, "train": train},
        "dlrm": {"name": "bench-dlrm", "data": {"train": str(clicks), "valid_fraction": 0.1},
                 "label": {"column": "label"},
                 "features": [{"name": f"d{i}", "kind": "dense", "transform": "log1p"} for i in range(13)]
                 + [{"name": f"s{i}", "kind": "sparse", "buckets": 10_000} for i in range(25)]
                 + [{"name": "s25", "kind": "sparse", "buckets": 10_000, "separator": "|"}],
                 "model": {"name": "dlrm", "embedding_dim": 16, "bottom_mlp": [64, 16], "top_mlp": [64]},
                 "train": train},
    }


def bench_dataset(name: str, config: dict[str, Any], folder: Path, rounds: int, seconds: float) -> list[dict[str, Any]]:
    from shoal.artifacts.bundle import load_bundle
    from shoal.config import parse_config
    from shoal.export.onnx import export_onnx
    from shoal.runtime.choice import CHOICE_FILE, timing_rows
    from shoal.runtime.latency import latency, throughput
    from shoal.runtime.predictor import OnnxRuntimePredictor, Predictor, RoutedPredictor, select_predictor
    from shoal.training.loop import Trainer

    bundle_dir = Path(Trainer(parse_config(config, source=name), folder / name).fit().bundle)
    export_onnx(bundle_dir, parity_rows=500)
    bundle = load_bundle(bundle_dir)
    rows, source = timing_rows(bundle, bundle_dir, OnnxRuntimePredictor(bundle_dir, "fp32").onnx.layout, 256)
    started = time.perf_counter()
    auto = select_predictor(bundle, bundle_dir, "auto", batch_sizes=(1, 256))
    decide_s = time.perf_counter() - started
    started = time.perf_counter()
    cached = select_predictor(bundle, bundle_dir, "auto", batch_sizes=(1, 256))
    cached_s = time.perf_counter() - started
    assert isinstance(auto, RoutedPredictor) and isinstance(cached, RoutedPredictor) and cached.choice.cached
    systems: dict[str, Predictor] = {"torch": select_predictor(bundle, bundle_dir, "torch"),
                                     "onnx": select_predictor(bundle, bundle_dir, "onnx"), "auto": auto}
    ones = [rows.slice(i, i + 1) for i in range(min(len(rows), 256))]
    big = rows.take(np.arange(256) % len(rows))
    per: dict[tuple[str, str], list[float]] = {}
    for _ in range(rounds):  # systems take turns: a neighbour's load falls on all of them alike
        for system, p in systems.items():
            cycle = itertools.cycle(ones)
            stats = latency(lambda p=p, cycle=cycle: p.predict_proba(next(cycle)), seconds=seconds)
            rps = throughput(lambda p=p: p.predict_proba(big), len(big), seconds=seconds)
            for metric, value in (("latency_ms_p50", stats.p50_ms), ("latency_ms_p99", stats.p99_ms),
                                  ("infer_rows_per_s", rps)):
                per.setdefault((system, metric), []).append(value)
    out = [row("backends", name, system, metric, statistics.median(values)) for (system, metric), values in per.items()]
    choice = auto.choice
    ids_per_row = sum(len(i) for i in rows.ids) / len(rows)
    print(f"{name}: {len(rows)} timing rows from {source} ({ids_per_row:.0f} ids a row); {choice.describe()}; "
          f"measured ms {json.dumps(choice.measured_ms)}; deciding took {decide_s:.2f} s, a cached start "
          f"{cached_s * 1e3:.0f} ms ({bundle_dir / 'onnx' / CHOICE_FILE})", flush=True)
    out += [row("backends", name, "auto", "decide_s", decide_s), row("backends", name, "auto", "cached_start_ms",
                                                                      cached_s * 1e3)]
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", required=True, type=Path, help="where to write the result rows (a JSON array)")
    ap.add_argument("--quick", action="store_true", help="4k training rows, 2 rounds of 0.3 s (about 1 minute)")
    ap.add_argument("--rounds", type=int, default=None, help="rounds per system (default 3; --quick 2)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (ONNX Runtime: 1)")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    rounds = args.rounds or (2 if args.quick else 3)
    seconds = 0.3 if args.quick else 1.0
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="shoal-backends-") as tmp:
        for name, config in configs(Path(tmp), args.quick).items():
            results += bench_dataset(name, config, Path(tmp), rounds, seconds)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    results.append(row("backends", "machine", "all", "load_avg_1m", load))
    write_json(results, args.json)
    shown = [r for r in results if r["metric"] in ("latency_ms_p50", "latency_ms_p99", "infer_rows_per_s")]
    print(markdown_table(shown, ["dataset", "system"], "metric"))
    print(f"load average (1 min) after the run: {load:.2f} on {os.cpu_count()} cores; wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
