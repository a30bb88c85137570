"""Scale benchmark: one process against two (torchrun + DDP), and TorchRec's sharded tables, on CPU.

    python benchmarks/scale.py --json bench-scale.json [--quick]

Data: ``shoal synth`` with 2,000,000 rows (200,000 with ``--quick``), 13 dense and 26 sparse features whose ids
go up to 10M (``max_cardinality=10_000_000``), hashed to 1,000,000 buckets per feature: 26M embedding rows of
dimension 16 (1.66 GB of float32 weights per replica). DLRM (bottom MLP [64, 32], top MLP [128, 64]), one epoch,
global batch 1024, 10% validation split (evaluated once at the end of the epoch), one checkpoint at the end of
the epoch.

Systems (each in a fresh process tree):

* ``shoal-1proc``: ``shoal train`` (the one-process Trainer), 2 threads;
* ``shoal-2proc``: ``shoal train --nproc 2``: 2 processes x 1 thread, DDP + the native sparse all-reduce;
* ``shoal-torchrec``: ``--nproc 2`` with ``embeddings: {backend: torchrec, sharding: table_wise}`` (the
  ``scale`` extra; left out when TorchRec does not import).

Metrics, one JSON row each (``{"bench": "scale", "dataset", "system", "metric", "value"}``):

* ``train_rows_per_s``: rows trained / seconds of the training loop, as the run summary reports it (all ranks'
  rows; the loop includes reading the cached chunks, the steps, the end-of-epoch validation and checkpoint,
  not the first pass over the file);
* ``peak_rss_mb``: the largest peak resident memory of any one process of the system (MiB; ``ru_maxrss`` of the
  finished children, so every rank and torchrun's agent are covered);
* ``wall_s``: seconds of the whole command (start-up, first pass, training, bundle write).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

try:  # run as ``python benchmarks/scale.py`` (script folder on sys.path) or imported as ``benchmarks.scale``
    from benchmarks.common import markdown_table, row, write_json
except ImportError:  # pragma: no cover - depends on how the file is run
    from common import markdown_table, row, write_json  # type: ignore[no-redef]

BENCH = "scale"
SYSTEMS = ("shoal-1proc", "shoal-2proc", "shoal-torchrec")
METRICS = ("train_rows_per_s", "peak_rss_mb", "wall_s")
ROWS, QUICK_ROWS = 2_000_000, 200_000
BUCKETS, MAX_ID, DENSE, SPARSE, DIM = 1_000_000, 10_000_000, 13, 26, 16


def config(data: Path, threads: int, torchrec: bool, buckets: int = BUCKETS,
           chunk_rows: int = 65_536) -> dict[str, Any]:
    features: list[dict[str, Any]] = [{"name": f"d{i}", "kind": "dense", "transform": "log1p"} for i in range(DENSE)]
    features += [{"name": f"s{i}", "kind": "sparse", "buckets": buckets, **({"separator": "|"} if i == SPARSE - 1
                                                                             else {})} for i in range(SPARSE)]
    train: dict[str, Any] = {"epochs": 1, "batch_size": 1024, "seed": 0, "threads": threads,
                             "checkpoint_every": 1_000_000, "cache_mb": 4096}
    if torchrec:
        train["embeddings"] = {"backend": "torchrec", "sharding": "table_wise"}
    return {"name": "scale", "data": {"train": str(data), "valid_fraction": 0.1, "chunk_rows": chunk_rows},
            "label": {"column": "label"}, "features": features,
            "model": {"name": "dlrm", "embedding_dim": DIM, "bottom_mlp": [64, 32], "top_mlp": [128, 64]},
            "train": train}


def run_system(system: str, data: Path, work: Path, buckets: int, rows: int) -> dict[str, float]:
    """Train ``system`` in a child process tree; its metrics."""
    nproc = None if system == "shoal-1proc" else 2
    cfg = work / f"{system}.yaml"
    chunk_rows = 65_536 if rows >= 20 * 65_536 else max(rows // 20, 1)  # >= 20 chunks: 10 per rank
    cfg.write_text(yaml.safe_dump(config(data, 2 if nproc is None else 1, system == "shoal-torchrec", buckets,
                                         chunk_rows)), encoding="utf-8")
    home = work / f"home-{system}"
    # a fresh interpreter per system: RUSAGE_CHILDREN then holds this system's processes only
    code = ("import json, resource, sys; from shoal.cli.main import app; "
            "sys.argv = ['shoal', 'train', sys.argv[1], '--home', sys.argv[2], '--device', 'cpu'] + sys.argv[3:]\n"
            "try:\n    app()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "print('PEAK', json.dumps([resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "
            "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss]))")
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "2" if nproc is None else "1"}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code, str(cfg), str(home), *(["--nproc", "2"] if nproc else [])],
                          env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{system} failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}")
    peak_self, peak_children = json.loads(done.stdout.rsplit("PEAK", 1)[1])
    from shoal.artifacts.registry import Registry

    record = Registry(home).list()[0]
    s = record.summary
    # 1 process: the trainer ran in the interpreter itself; 2 processes: in its grandchildren (the ranks)
    peak = peak_self if nproc is None else peak_children
    shutil.rmtree(home, ignore_errors=True)  # checkpoint, best weights and bundle: about 5 GB at full size
    return {"train_rows_per_s": float(s["train_rows_per_s"]), "peak_rss_mb": peak / 1024, "wall_s": wall,
            "valid_auc": float(record.metrics["valid_auc"]), "rows_trained": float(s["rows_trained"])}


def run(work: Path, quick: bool, systems: Sequence[str], rows: int | None = None, buckets: int = BUCKETS,
        log: Any = print) -> list[dict[str, Any]]:
    from shoal.data.synthetic import SynthSpec, generate
    from shoal.models.torchrec_backend import unavailable

    n = rows or (QUICK_ROWS if quick else ROWS)
    dataset = f"synthetic-{n // 1000}k-{SPARSE}x{buckets // 1000}k"
    data = work / f"synthetic-{n}.parquet"
    if not data.exists():
        log(f"synthesize {n:,} rows ({DENSE} dense, {SPARSE} sparse, ids up to {MAX_ID:,})")
        generate(data, SynthSpec(rows=n, dense=DENSE, sparse=SPARSE, max_cardinality=MAX_ID, seed=0))
    out: list[dict[str, Any]] = []
    for system in systems:
        if system == "shoal-torchrec" and unavailable():
            log(f"{system}: skipped ({unavailable()})")
            continue
        log(f"{system} ...")
        got = run_system(system, data, work, buckets, n)
        log(f"{system}: {got['train_rows_per_s']:,.0f} rows/s, peak RSS {got['peak_rss_mb']:,.0f} MiB per process, "
            f"{got['wall_s']:.0f} s, valid AUC {got['valid_auc']:.4f}")
        out += [row(BENCH, dataset, system, m, got[m]) for m in METRICS]
    return out


def ratio_lines(rows: list[dict[str, Any]]) -> list[tuple[str, float, str, bool]]:
    """(comparison, ratio, target, met) for the issue's targets."""
    speed = {r["system"]: r["value"] for r in rows if r["metric"] == "train_rows_per_s"}
    out = []
    if "shoal-1proc" in speed and "shoal-2proc" in speed:
        q = speed["shoal-2proc"] / speed["shoal-1proc"]
        out.append(("train_rows_per_s: shoal-2proc / shoal-1proc", q, ">= 0.9", q >= 0.9))
    if "shoal-2proc" in speed and "shoal-torchrec" in speed:
        q = speed["shoal-2proc"] / speed["shoal-torchrec"]
        out.append(("train_rows_per_s: shoal-2proc / shoal-torchrec", q, "<= 1.5", q <= 1.5))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", required=True, type=Path, help="where to write the result rows (a JSON array)")
    ap.add_argument("--quick", action="store_true", help=f"{QUICK_ROWS:,} rows instead of {ROWS:,}")
    ap.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=SYSTEMS)
    ap.add_argument("--rows", type=int, default=None, help="override the number of rows")
    ap.add_argument("--buckets", type=int, default=BUCKETS, help="hash buckets per sparse feature")
    ap.add_argument("--keep", type=Path, default=None, help="keep the work folder (data, runs) here")
    args = ap.parse_args(argv)
    work = args.keep or Path(tempfile.mkdtemp(prefix="shoal-bench-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    import torch

    print(f"# scale benchmark ({'quick' if args.quick else 'full'}) on {platform.node()}, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}",
          flush=True)
    try:
        rows = run(work, args.quick, args.systems, args.rows, args.buckets, log=lambda s: print(s, flush=True))
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    write_json(rows, args.json)
    print()
    print(markdown_table(rows, ["dataset", "system"], "metric", column_order=METRICS))
    print()
    print("| comparison | ratio | target | met |\n|---|---:|---|---|")
    for name, q, target, met in ratio_lines(rows):
        print(f"| {name} | {q:.3f} | {target} | {'yes' if met else 'no'} |")
    print(f"\n{len(rows)} rows -> {args.json}; {time.perf_counter() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
