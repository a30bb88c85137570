"""Validation of ``shoal plan``: predicted training rows/s and peak memory against real ``shoal train`` runs.

    python benchmarks/plan.py --json bench-plan.json [--quick] [--home HOME]

This machine is calibrated first (``shoal plan --calibrate``, stored in HOME; ``--reuse-profile`` keeps an
existing one), with OpenMP's idle threads asleep (``OMP_WAIT_POLICY=PASSIVE``) as in the runs. Data:
``shoal synth`` with 13 dense and 26 sparse features whose ids go up to 10M (200,000 rows; 60,000 with
``--quick``). Each configuration is one epoch, no validation split (the loop's time is the steps and,
with 2 processes, the epoch-end checkpoint), ``checkpoint_every`` beyond the epoch, every row cached; 1 process
with 2 threads or 2 processes (torchrun, gloo) with 1 thread each, each run started after ``os.sync()`` (the
previous run's gigabytes of checkpoint and bundle written out, not slowing this run's epoch-end checkpoint).

Rows ``{"bench": "plan", "dataset": <configuration>, "system": "shoal-plan", "metric", "value"}``, metrics
``rows_per_s_predicted``, ``rows_per_s_measured`` (the run summary's ``train_rows_per_s``), ``peak_mb_predicted``,
``peak_mb_measured`` (MiB: the trainer process's VmHWM with 1 process, the largest rank's ``ru_maxrss`` with 2).
Targets (issue 21): median absolute error <= 15% (rows/s) and <= 10% (memory), worst <= 35%.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

# before torch starts its threads: calibrate under the policy ``shoal train`` runs with (idle threads sleep)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

try:  # run as ``python benchmarks/plan.py`` (script folder on sys.path) or imported as ``benchmarks.plan``
    from benchmarks.common import markdown_table, row, write_json
except ImportError:  # pragma: no cover - depends on how the file is run
    from common import markdown_table, row, write_json  # type: ignore[no-redef]

BENCH, SYSTEM = "plan", "shoal-plan"
METRICS = ("rows_per_s_predicted", "rows_per_s_measured", "peak_mb_predicted", "peak_mb_measured")
ROWS, QUICK_ROWS, DENSE, SPARSE, MAX_ID = 200_000, 60_000, 13, 26, 10_000_000

# name: (model, sparse features [(count, buckets)], batch, processes)
CASES: dict[str, tuple[dict[str, Any], list[tuple[int, int]], int, int]] = {
    "logistic-26x100k-b1024": ({"name": "logistic"}, [(26, 100_000)], 1024, 1),
    "mlp-d16-26x100k-b1024": ({"name": "mlp", "embedding_dim": 16, "hidden": [256, 128]}, [(26, 100_000)], 1024, 1),
    "dlrm-d16-26x100k-b256": ({"name": "dlrm", "embedding_dim": 16}, [(26, 100_000)], 256, 1),
    "dlrm-d16-26x100k-b4096": ({"name": "dlrm", "embedding_dim": 16}, [(26, 100_000)], 4096, 1),
    "dlrm-d64-8x1M-b1024": ({"name": "dlrm", "embedding_dim": 64, "bottom_mlp": [128, 64],
                             "top_mlp": [256, 128]}, [(8, 1_000_000)], 1024, 1),
    "dlrm-d8-10M+12x10k-b2048": ({"name": "dlrm", "embedding_dim": 8}, [(1, 10_000_000), (12, 10_000)], 2048, 1),
    "bag-d32-26x10k-b512": ({"name": "bag", "embedding_dim": 32}, [(26, 10_000)], 512, 1),
    "dcn-d16-26x100k-b1024": ({"name": "dcn_v2", "embedding_dim": 16, "cross_layers": 3, "hidden": [256, 128]},
                              [(26, 100_000)], 1024, 1),
    "dlrm-d16-26x100k-b1024-2p": ({"name": "dlrm", "embedding_dim": 16}, [(26, 100_000)], 1024, 2),
    "mlp-d32-13x1M-b2048-2p": ({"name": "mlp", "embedding_dim": 32, "hidden": [256, 128]}, [(13, 1_000_000)],
                               2048, 2),
    "logistic-26x10k-b512-2p": ({"name": "logistic"}, [(26, 10_000)], 512, 2),
    "dlrm-d16-26x100k-b1024-2p-torchrec-tw": ({"name": "dlrm", "embedding_dim": 16}, [(26, 100_000)], 1024, 2),
    "mlp-d32-13x1M-b2048-2p-torchrec-rw": ({"name": "mlp", "embedding_dim": 32, "hidden": [256, 128]},
                                           [(13, 1_000_000)], 2048, 2),
}
# the cases trained with TorchRec's sharded tables (train.embeddings); run where torchrec imports (make install-scale)
TORCHREC = {"dlrm-d16-26x100k-b1024-2p-torchrec-tw": {"backend": "torchrec", "sharding": "table_wise"},
            "mlp-d32-13x1M-b2048-2p-torchrec-rw": {"backend": "torchrec", "sharding": "row_wise"}}


def config(data: Path, model: dict[str, Any], tables: list[tuple[int, int]], batch: int,
           nproc: int, rows: int, embeddings: dict[str, str] | None = None) -> dict[str, Any]:
    features: list[dict[str, Any]] = [{"name": f"d{i}", "kind": "dense", "transform": "log1p"} for i in range(DENSE)]
    k = 0
    for count, buckets in tables:
        for _ in range(count):
            features.append({"name": f"s{k}", "kind": "sparse", "buckets": buckets,
                             **({"separator": "|"} if k == SPARSE - 1 else {})})
            k += 1
    chunk_rows = max(rows // 8, 1024)  # 8 chunks: 4 a rank with 2 processes
    return {"name": "plan-bench", "data": {"train": str(data), "valid_fraction": 0.0, "chunk_rows": chunk_rows},
            "label": {"column": "label"}, "features": features, "model": model,
            "train": {"epochs": 1, "batch_size": batch, "seed": 0, "threads": 2 if nproc == 1 else 1,
                      "checkpoint_every": 1_000_000, "cache_mb": 4096,
                      **({"embeddings": embeddings} if embeddings else {})}}


def default_cases() -> list[str]:
    """Every case, the TorchRec ones only where torchrec imports (it is in the ``scale`` extra)."""
    import importlib.util

    has_torchrec = importlib.util.find_spec("torchrec") is not None
    return [name for name in CASES if has_torchrec or name not in TORCHREC]


TRAIN_CODE = (
    "import json, resource, sys; from shoal.cli.main import app; "
    "sys.argv = ['shoal', 'train', sys.argv[1], '--home', sys.argv[2], '--device', 'cpu'] + sys.argv[3:]\n"
    "try:\n    app()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
    "hwm = [int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
    "print('PEAK', json.dumps([hwm, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss]))")


def measure(cfg: Path, home: Path, nproc: int) -> dict[str, float]:
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "2" if nproc == 1 else "1"}
    os.sync()  # the last run's files written out: their write-back would slow this run's checkpoint
    done = subprocess.run([sys.executable, "-c", TRAIN_CODE, str(cfg), str(home),
                           *(["--nproc", str(nproc)] if nproc > 1 else [])],
                          env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{cfg} failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}")
    own, children = json.loads(done.stdout.rsplit("PEAK", 1)[1])
    from shoal.artifacts.registry import Registry

    record = Registry(home).list()[0]
    shutil.rmtree(home, ignore_errors=True)
    return {"rows_per_s": float(record.summary["train_rows_per_s"]),
            "peak_mb": (own if nproc == 1 else children) / 1024}


def predict(cfg_path: Path, nproc: int, profile: dict[str, Any], rows: int) -> dict[str, float]:
    from shoal.config import load_config
    from shoal.plan.planner import make_plan
    from shoal.plan.rates import local_cluster

    cfg = load_config(cfg_path)
    plan = make_plan(cfg, local_cluster(profile), profile=profile, nproc=nproc, rows=rows)
    assert plan.epoch_s is not None
    return {"rows_per_s": rows / plan.epoch_s, "peak_mb": plan.step.peak_bytes / 2**20}


MLPERF = Path(__file__).resolve().parent / "plan_mlperf_dlrm_dcnv2.yaml"
A100 = Path(__file__).resolve().parents[1] / "configs" / "clusters" / "1xa100.yaml"


def mlperf_reference(shape_file: Path = MLPERF, cluster_file: Path = A100) -> dict[str, float]:
    """Predicted training rows/s of MLPerf's DLRM-DCNv2 on one A100, from its public shape (no data, no GPU):
    the layers' FLOPs from shoal.plan.cost, every id assumed to touch its own row (the worst case)."""
    from shoal.plan.cluster import load_cluster
    from shoal.plan.cost import LayerCost, ModelCost, TableCost, cross_flops, linear_flops
    from shoal.plan.inputs import InputShape
    from shoal.plan.rates import rates_for
    from shoal.plan.sharding import placement
    from shoal.plan.step import plan_step

    spec = yaml.safe_load(shape_file.read_text(encoding="utf-8"))
    d, b = spec["embedding_dim"], spec["batch_per_gpu"]
    layers: list[LayerCost] = []

    def linear(name: str, i: int, o: int) -> None:
        f = linear_flops(i, o)
        layers.append(LayerCost(name, "linear", i * o + o, f, 2 * f, 4 * o, min(i, o)))

    sizes = [spec["dense_features"], *spec["bottom_mlp"]]
    for k, (i, o) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        linear(f"bottom_mlp.{k}", i, o)
    width = d * (len(spec["tables"]) + 1)  # DCN-v2 crosses the concatenated vectors
    for k in range(spec["dcn"]["layers"]):
        r = spec["dcn"]["low_rank"]
        f = cross_flops(width, r)
        layers.append(LayerCost(f"dcn.{k}", "linear", 2 * width * r + width, f, 2 * f, 4 * width, r))
    sizes = [width, *spec["top_mlp"]]
    for k, (i, o) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        linear(f"top_mlp.{k}", i, o)
    tables = [TableCost(f"t{k}", rows, d, n, float(n)) for k, (rows, n) in enumerate(zip(spec["tables"],
                                                                                        spec["multi_hot"],
                                                                                        strict=True))]
    cost = ModelCost(spec["name"], layers, tables, len(tables))
    shape = InputShape(dense_dim=spec["dense_features"], buckets=spec["tables"], outputs=1, sequences=[],
                       ids_per_row=[float(n) for n in spec["multi_hot"]], unique_fraction=[1.0] * len(tables),
                       seq_len=0.0, batch=b)
    cluster = load_cluster(cluster_file)
    rates = rates_for(cluster, 1)
    step = plan_step(cost, shape, rates, world=1, nodes=1, batch=b, sharding=placement("data_parallel", cost, 1),
                     cache_bytes=0, chunk_rows=0)
    return {"rows_per_s_predicted": step.rows_per_s,
            "rows_per_s_published": float(spec["published_rows_per_s_per_a100"]),
            "fwd_gflops_per_row": cost.fwd_flops / 1e9, "step_ms": step.step_s * 1e3,
            "table_gib": cost.table_params * 4 / 2**30}


def errors(rows: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Relative errors (predicted / measured - 1) of each metric, over the configurations."""
    value = {(r["dataset"], r["metric"]): r["value"] for r in rows}
    out: dict[str, list[float]] = {"rows_per_s": [], "peak_mb": []}
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        for m in out:
            p, q = value.get((dataset, f"{m}_predicted")), value.get((dataset, f"{m}_measured"))
            if p is not None and q:
                out[m].append(p / q - 1)
    return out


def run(work: Path, quick: bool, cases: Sequence[str], profile: dict[str, Any], log: Any = print,
        repeats: int = 1, measured: dict[tuple[str, str], float] | None = None) -> list[dict[str, Any]]:
    """Predict and measure each case; with ``measured`` ({(case, metric): value} of an earlier run), predict only."""
    from shoal.data.synthetic import SynthSpec, generate

    n = QUICK_ROWS if quick else ROWS
    data = work / f"synthetic-{n}.parquet"
    if not data.exists():
        log(f"synthesize {n:,} rows ({DENSE} dense, {SPARSE} sparse, ids up to {MAX_ID:,})")
        generate(data, SynthSpec(rows=n, dense=DENSE, sparse=SPARSE, max_cardinality=MAX_ID, seed=0))
    out: list[dict[str, Any]] = []
    for name in cases:
        model, tables, batch, nproc = CASES[name]
        cfg = work / f"{name}.yaml"
        cfg.write_text(yaml.safe_dump(config(data, model, tables, batch, nproc, n, TORCHREC.get(name))),
                       encoding="utf-8")
        preds, got = [], []
        for i in range(repeats):  # prediction and measurement interleaved: both time this machine
            preds.append(predict(cfg, nproc, profile, n))
            if measured is None:
                got.append(measure(cfg, work / f"home-{name}-{i}", nproc))
            if repeats > 1:
                log(f"  {name} #{i + 1}: rows/s predicted {preds[-1]['rows_per_s']:,.0f}"
                    + (f" measured {got[-1]['rows_per_s']:,.0f}" if got else ""))
        pred = {k: statistics.median(p[k] for p in preds) for k in ("rows_per_s", "peak_mb")}
        if measured is not None:
            meas = {k: measured[name, f"{k}_measured"] for k in ("rows_per_s", "peak_mb")}
        else:
            meas = {k: statistics.median(g[k] for g in got) for k in ("rows_per_s", "peak_mb")}
        log(f"{name}: rows/s predicted {pred['rows_per_s']:,.0f} measured {meas['rows_per_s']:,.0f} "
            f"({pred['rows_per_s'] / meas['rows_per_s'] - 1:+.0%}); peak MiB predicted {pred['peak_mb']:,.0f} "
            f"measured {meas['peak_mb']:,.0f} ({pred['peak_mb'] / meas['peak_mb'] - 1:+.0%}); load "
            f"{os.getloadavg()[0]:.1f}")
        for m in ("rows_per_s", "peak_mb"):
            out += [row(BENCH, name, SYSTEM, f"{m}_predicted", pred[m]), row(BENCH, name, SYSTEM, f"{m}_measured",
                                                                             meas[m])]
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", required=True, type=Path, help="where to write the result rows (a JSON array)")
    ap.add_argument("--quick", action="store_true", help=f"{QUICK_ROWS:,} rows instead of {ROWS:,}")
    ap.add_argument("--cases", nargs="+", default=None, choices=list(CASES),
                    help="default: every case (the TorchRec ones where torchrec is installed: make install-scale)")
    ap.add_argument("--home", type=Path, default=None, help="where the calibration profile is (default: a temp dir)")
    ap.add_argument("--reuse-profile", action="store_true", help="use the profile in --home instead of measuring")
    ap.add_argument("--repeats", type=int, default=1,
                    help="predictions and runs per configuration, interleaved (the medians are reported)")
    ap.add_argument("--keep", type=Path, default=None, help="keep the work folder (data, configs) here")
    ap.add_argument("--measured", type=Path, default=None,
                    help="predict only, against the measured rows of an earlier --json (the model's iterations)")
    args = ap.parse_args(argv)
    from shoal.plan.calibrate import calibrate, load_profile

    work = args.keep or Path(tempfile.mkdtemp(prefix="shoal-bench-plan-"))
    work.mkdir(parents=True, exist_ok=True)
    home = args.home or work
    started = time.perf_counter()
    print(f"# plan benchmark ({'quick' if args.quick else 'full'}) on {platform.node()}, {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.1f}", flush=True)
    try:
        profile = load_profile(home) if args.reuse_profile else calibrate(home)
        measured = None
        if args.measured is not None:
            earlier = json.loads(args.measured.read_text(encoding="utf-8"))
            measured = {(r["dataset"], r["metric"]): r["value"] for r in earlier if r["metric"].endswith("_measured")}
        rows = run(work, args.quick, args.cases or default_cases(), profile, log=lambda s: print(s, flush=True),
                   repeats=args.repeats, measured=measured)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    write_json(rows, args.json)
    print()
    print(markdown_table(rows, ["dataset"], "metric", column_order=METRICS))
    print()
    print("| metric | median abs error | worst abs error | target |\n|---|---:|---:|---|")
    for m, errs in errors(rows).items():
        if errs:
            target = "<= 15% median" if m == "rows_per_s" else "<= 10% median"
            print(f"| {m} | {statistics.median(abs(e) for e in errs):.1%} | {max(abs(e) for e in errs):.1%} | "
                  f"{target}, <= 35% worst |")
    ref = mlperf_reference()
    ratio = ref["rows_per_s_predicted"] / ref["rows_per_s_published"]
    print(f"\nMLPerf DLRM-DCNv2 on one A100 (public shape, datasheet rates): predicted "
          f"{ref['rows_per_s_predicted']:,.0f} rows/s against the published ~{ref['rows_per_s_published']:,.0f} "
          f"({ratio:.2f}x; target within 2x: {'met' if 0.5 <= ratio <= 2 else 'not met'})")
    rows.append(row(BENCH, "mlperf-dlrm-dcnv2-1xa100", SYSTEM, "rows_per_s_predicted", ref["rows_per_s_predicted"]))
    write_json(rows, args.json)
    print(f"\n{len(rows)} rows -> {args.json}; {time.perf_counter() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
