"""Raw row -> probability for a text bag model: the raw ONNX graph (text n-grams hashed in the graph) against the
Python encoder + the exported graph (today's serving path), end to end, one ONNX Runtime thread.

    python benchmarks/raw_text.py [--json OUT] [--rounds 3] [--calls 1000] [--seconds 1.5]
                                  [--save-raw FILE] [--baseline FILE] [--model ready|student]

The model (``--model``) is configs/sst2.yaml's bag (``ready``: byte 3..5-grams + word 1..2-grams in 2M buckets,
dim 16) or the text student of benchmarks/distill.py (``student``: byte 3..4-grams + words in 200k buckets, dim 8,
what SST-2's teacher is distilled into), with random weights (speed does not depend on them; parity is checked on
the rows), fed SST-2 test sentences
(../shared/data/sst2/test.tsv; generated texts when absent) as row dicts, as the server receives them. Rounds
alternate the systems; the median round is reported: batch 1 p50 / p99 ms (one row per call, cycling), and
rows/s at batch 256. ``--save-raw`` keeps the raw graph this code wrote; ``--baseline`` times such a file (written
by another version of shoal: the same model, as the weights are seeded) as a third system in the same rounds, so
two versions compare under the same load.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import markdown_table, row, write_json  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SST2_TEST = ROOT.parent / "shared" / "data" / "sst2" / "test.tsv"
FEATURE = {"name": "sentence", "kind": "text", "buckets": 2_000_000, "max_bytes": 1024, "ngram_min": 3,
           "ngram_max": 5, "word_ngrams": 2}
MODELS = {"ready": (FEATURE, {"name": "bag", "embedding_dim": 16})}  # + "student", from benchmarks/distill.py


def model_spec(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(text feature, model) of ``--model``."""
    if name == "student":
        from distill import STUDENT_BAG, STUDENT_NGRAMS

        return {"name": "sentence", **STUDENT_NGRAMS}, dict(STUDENT_BAG)
    return MODELS[name]


def sentences(limit: int = 2000) -> tuple[list[str], str]:
    if SST2_TEST.is_file():
        with SST2_TEST.open(encoding="utf-8", newline="") as f:
            reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            next(reader)
            texts = [r[1] for r in reader if len(r) > 1][:limit]
        return texts, "sst2-test"
    from shoal.export.raw_text import synthetic_texts

    return [t or "" for t in synthetic_texts(np.random.default_rng(0), limit, 200)], "generated"


def build(folder: Path, model_name: str = "ready") -> Any:
    import torch

    from shoal.artifacts.bundle import load_bundle, save_bundle
    from shoal.config import parse_config
    from shoal.data.encoder import Encoder
    from shoal.models import build as build_model

    feature, model_cfg = model_spec(model_name)
    cfg = parse_config({"data": {"train": "unused.tsv"}, "label": {"column": "label"}, "features": [feature],
                        "model": model_cfg})
    encoder = Encoder(cfg.features, cfg.label)
    torch.manual_seed(0)
    model = build_model(cfg.model, encoder.dense_dim, encoder.buckets, encoder.outputs, encoder.sequence_slots)
    save_bundle(folder / "bundle", model, encoder, cfg, {"train_base_rate": 0.5})
    return load_bundle(folder / "bundle")


def p50_p99(fn: Callable[[int], Any], calls: int) -> tuple[float, float]:
    times = np.empty(calls)
    for i in range(calls):
        t0 = time.perf_counter()
        fn(i)
        times[i] = time.perf_counter() - t0
    return float(np.percentile(times, 50) * 1e3), float(np.percentile(times, 99) * 1e3)


def rows_per_s(fn: Callable[[int], Any], rows: int, seconds: float) -> float:
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn(n)
        n += 1
    return n * rows / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=1.5)
    parser.add_argument("--save-raw", type=Path, default=None, help="copy the raw graph written here")
    parser.add_argument("--baseline", type=Path, default=None, help="a raw graph to time as a third system")
    parser.add_argument("--model", choices=("ready", "student"), default="ready",
                        help="configs/sst2.yaml's bag, or benchmarks/distill.py's text student")
    args = parser.parse_args()

    from shoal.data.readers import BadRowSink, Chunk
    from shoal.export.onnx import export_onnx
    from shoal.export.raw import RawOnnxModel, export_raw_onnx, parity
    from shoal.runtime.onnx import OnnxPredictor

    texts, dataset = sentences()
    dataset += "-student" if args.model == "student" else ""
    rows = [{"sentence": t} for t in texts]
    with tempfile.TemporaryDirectory(prefix="shoal-bench-raw-text-") as tmp:
        bundle = build(Path(tmp), args.model)
        folder = Path(tmp) / "bundle"
        export_onnx(folder, Path(tmp) / "encoded", parity_rows=200)
        report = export_raw_onnx(folder, Path(tmp) / "raw")
        encoded = OnnxPredictor(Path(tmp) / "encoded")
        raw = RawOnnxModel(report.path)
        diff = parity(bundle, raw, pa.Table.from_pylist(rows[:512]))
        if args.save_raw:
            shutil.copy(report.path, args.save_raw)
        sink = BadRowSink("error")

        def python_path(batch: list[dict[str, Any]]) -> np.ndarray:
            table = pa.Table.from_pylist(batch)
            return encoded.predict_proba(bundle.encoder.encode(Chunk(table, np.arange(1, len(batch) + 1), "r"),
                                                               sink, with_label=False))

        batches = [rows[i: i + 256] for i in range(0, len(rows) - 255, 256)]
        systems: dict[str, Callable[[list[dict[str, Any]]], np.ndarray]] = {
            "python-encoder+onnx": python_path, "raw-onnx": raw.predict_proba}
        baseline_diff = 0.0
        if args.baseline:
            baseline = RawOnnxModel(args.baseline)
            systems["raw-onnx-baseline"] = baseline.predict_proba
            baseline_diff = parity(bundle, baseline, pa.Table.from_pylist(rows[:512]))
        results: dict[str, list[tuple[float, float, float]]] = {s: [] for s in systems}
        for _ in range(args.rounds):
            for name, fn in systems.items():
                fn(rows[:1])
                p50, p99 = p50_p99(lambda i, fn=fn: fn([rows[i % len(rows)]]), args.calls)
                rps = rows_per_s(lambda i, fn=fn: fn(batches[i % len(batches)]), 256, args.seconds)
                results[name].append((p50, p99, rps))
    out = []
    for name, rounds in results.items():
        median = sorted(rounds, key=lambda r: r[0])[len(rounds) // 2]
        out += [row("raw_text", dataset, name, "latency_ms_p50", median[0]),
                row("raw_text", dataset, name, "latency_ms_p99", median[1]),
                row("raw_text", dataset, name, "infer_rows_per_s", statistics.median(r[2] for r in rounds))]
    out.append(row("raw_text", dataset, "raw-onnx", "max_abs_proba_diff", diff))
    if args.baseline:
        out.append(row("raw_text", dataset, "raw-onnx-baseline", "max_abs_proba_diff", baseline_diff))
    mean_bytes = float(np.mean([len(t.encode("utf-8")) for t in texts]))
    print(f"{dataset}, {args.model} bag: {len(texts)} texts, mean {mean_bytes:.0f} bytes; raw graph vs Python path "
          f"max |dp| {diff:.1e}; "
          f"load average {os.getloadavg()[0]:.2f} at the end")
    print(markdown_table(out, index=["system"], columns="metric"))
    if args.json:
        write_json(out, args.json)


if __name__ == "__main__":
    main()
