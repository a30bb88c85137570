"""Serving load test: `shoal serve` with and without micro-batching against a naive per-request FastAPI server.

    python benchmarks/serve.py --json bench-serve.json [--quick]

Everything runs on 127.0.0.1: each server is a subprocess (uvicorn with uvloop and httptools, one worker process,
``--threads`` torch threads, the heap frozen after loading: the same for every system), the load comes from this
process (one keep-alive connection per client, closed loop: each client sends its next request when the previous
one is answered). Every run is bounded both in requests and in seconds.

The load generator is :class:`Connection` (in ``benchmarks/serve_load.py``, with the closed loop itself), a minimal
HTTP/1.1 client written for this benchmark (about 0.03 ms of CPU per request); ``--client httpx`` uses
``httpx.AsyncClient`` instead (0.8 to 1.4 ms per request: on two cores it sets the pace itself), to cross-check.
This file holds the rest: the model, the servers, the runs and the report.

Model: the demo's DLRM config (13 dense, 26 sparse features, one of them a list) trained for one epoch on a small
``shoal synth`` log in a temporary folder. A request carries one row.

Systems (one JSON row per metric, ``{"bench": "serve", "dataset", "system", "metric", "value", "clients"}``):

* ``shoal-batched``: ``shoal serve --backend torch`` (micro-batching on: ``max_batch_rows`` 256, ``max_wait_ms`` 2);
* ``shoal-nobatch``: ``shoal serve --backend torch --no-batching`` (one request per model call, same worker thread);
* ``naive``: a plain FastAPI endpoint (``def``, so run in FastAPI's thread pool) that encodes the request's rows
  with the bundle's encoder and runs the PyTorch model once per request, served by the same uvicorn settings;
* ``shoal-batched-onnx``: ``shoal serve`` on the bundle exported with ``shoal export --onnx`` (ONNX Runtime);
  left out with ``--no-onnx``.
* ``shoal-raw``: ``shoal serve --backend raw`` on the same bundle with its raw graph (``shoal export --raw``): each
  micro-batch one ONNX Runtime call, preprocessing included, no Python encoder; left out with ``--no-onnx``;
  ``shoal-raw-2workers`` the same with ``--workers 2`` (two server processes on one port);
* ``naive-onnx``: the ``naive`` endpoint with ONNX Runtime on ``model.onnx`` instead of PyTorch (the Python encoder
  + ONNX Runtime: the design before the raw graph);
* ``bentoml``: the same encoder + ONNX Runtime call as a BentoML service (``serve_bentoml.py``, one worker, no
  adaptive batching), with ``--bentoml-python VENV/bin/python`` (``make install-bentoml`` makes ``.venv-bentoml``,
  BentoML on top of ``.venv``'s packages); the peers live in ``serve_peers.py``.

* ``shoal-e2e``: in process, no HTTP: a raw row (a dict, as a JSON request becomes) -> probability through the raw
  graph (``shoal export --raw``, :func:`shoal.export.raw_runtime.bench_end_to_end`), next to ``shoal-e2e-encoder``
  (the Python encoder + PyTorch) and ``shoal-e2e-encoder-onnx`` (the Python encoder + ``model.onnx``) in the same
  run: ``latency_ms_p50``/``latency_ms_p99`` at batch 1, ``infer_rows_per_s`` at batch 256 (``clients`` 1); left
  out with ``--no-onnx``.

At 1, 8 and 64 clients: ``requests_per_s`` (answered requests / seconds), ``latency_ms_p50``, ``latency_ms_p99``,
``errors_4xx``, ``errors_5xx`` (a 5xx or a connection error), and ``load_avg_1m``: the machine's 1-minute load
average after the run (the benchmark shares its cores with whatever else runs: read the other numbers with it).

Then, against ``shoal-batched`` (16 clients): a mixed load with 10% malformed requests (a wrong type, a missing
field, an unknown field, a body over the limit); every malformed one must get a 4xx, every valid one the same
probabilities as offline prediction (``shoal predict`` code path, tolerance 1e-6), and the server must stay up.
And a hot swap under load: reloads between two bundle versions (``POST /admin/reload``) while 16 clients send
requests; no request may fail and every answer must equal its version's offline prediction.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow.parquet as pq
import uvloop

try:  # run as ``python benchmarks/serve.py`` (script folder on sys.path) or imported as ``benchmarks.serve``
    from benchmarks.common import free_port, markdown_table, row, server_process, write_json
    from benchmarks.serve_load import CLIENT_KINDS, MIXED_CLIENTS, TOKEN, Budget, load, run_async, swap_under_load
    from benchmarks.serve_peers import THREADS, naive_app
except ImportError:  # pragma: no cover - depends on how the file is run
    from common import free_port, markdown_table, row, server_process, write_json  # type: ignore[no-redef]
    from serve_load import CLIENT_KINDS, MIXED_CLIENTS, TOKEN, Budget, load, run_async, swap_under_load  # type: ignore[no-redef]
    from serve_peers import THREADS, naive_app  # type: ignore[no-redef]

BENCH = "serve"
DATASET = "synthetic"
SYSTEMS = ("shoal-batched", "shoal-nobatch", "naive", "shoal-batched-onnx", "shoal-raw", "shoal-raw-2workers",
           "naive-onnx", "bentoml")
ONNX_SYSTEMS = ("shoal-batched-onnx", "shoal-raw", "shoal-raw-2workers", "naive-onnx", "bentoml")
CLIENTS = (1, 8, 64)
METRICS = ("requests_per_s", "latency_ms_p50", "latency_ms_p99", "errors_4xx", "errors_5xx", "load_avg_1m")
MALFORMED_SHARE = 0.10
TRAIN_ROWS, TRAIN_ROWS_QUICK = 50_000, 20_000


FULL = Budget(seconds=10.0, requests=20_000, warmup_s=1.0)
QUICK = Budget(seconds=3.0, requests=5_000, warmup_s=0.5)


# -- model and requests ---------------------------------------------------------------------------------------
def make_bundles(work: Path, rows: int) -> tuple[Path, Path, Path]:
    """Train the demo DLRM for one epoch on a fresh synthetic log; a second version with shifted weights."""
    import torch

    from shoal.artifacts.bundle import load_bundle, save_bundle
    from shoal.cli.demo import synthetic_config
    from shoal.config import parse_config
    from shoal.data.synthetic import SynthSpec, generate
    from shoal.training.loop import Trainer

    data = work / "clicks.parquet"
    generate(data, SynthSpec(rows=rows, seed=5))
    doc = synthetic_config(data).model_dump(mode="json")
    doc["train"].update(epochs=1, threads=2, checkpoint_every=100_000)
    v1 = Trainer(parse_config(doc, source="bench"), work / "run").fit().bundle
    b = load_bundle(v1)
    with torch.no_grad():
        for p in b.model.parameters():
            p.mul_(1.05)
    v2 = save_bundle(work / "v2" / "bundle", b.model, b.encoder, b.config, b.meta)
    return data, v1, v2


def request_rows(data: Path, n: int) -> list[dict[str, Any]]:
    """The last ``n`` rows of the log, as JSON rows (label left out)."""
    table = pq.read_table(data)
    return table.slice(table.num_rows - n).drop(["label"]).to_pylist()


def offline(bundle: Path, rows: list[dict[str, Any]], work: Path) -> np.ndarray:
    """What `shoal predict` gives for these rows."""
    import pyarrow as pa

    from shoal.serving.offline import predict_file

    src, out = work / f"rows-{bundle.parent.name}.parquet", work / f"pred-{bundle.parent.name}.parquet"
    pq.write_table(pa.Table.from_pylist(rows), src)
    predict_file(bundle, src, out)
    return np.asarray(pq.read_table(out).column("probability").to_numpy(), dtype=np.float64)


# -- servers --------------------------------------------------------------------------------------------------
@contextmanager
def server(system: str, bundle: Path, log: Path, bentoml_python: str | None = None) -> Iterator[str]:
    """Start a server subprocess on a free loopback port; yield its URL; stop it (SIGTERM, then SIGKILL)."""
    port = free_port()
    env = {"SHOAL_ADMIN_TOKEN": TOKEN}
    if system in ("naive", "naive-onnx"):
        cmd = [sys.executable, __file__, "--naive-server", str(bundle), "--port", str(port),
               "--naive-backend", "onnx" if system == "naive-onnx" else "torch"]
    elif system == "bentoml":
        if bentoml_python is None:
            raise ValueError("the bentoml system needs --bentoml-python (make install-bentoml)")
        here = Path(__file__).resolve().parent
        cmd = [str(Path(bentoml_python).parent / "bentoml"), "serve", "serve_bentoml:ShoalPeer", "--port", str(port),
               "--host", "127.0.0.1", "--working-dir", str(here)]
        env.update(SHOAL_BENCH_BUNDLE=str(bundle), OMP_NUM_THREADS=str(THREADS),
                   PYTHONPATH=os.pathsep.join([str(here), str(here.parent)]))
    else:
        backend = ("onnx" if system.endswith("-onnx") else "raw" if system.startswith("shoal-raw") else "torch")
        cmd = [sys.executable, "-m", "shoal.cli", "serve", str(bundle), "--port", str(port),
               "--threads", str(THREADS), "--backend", backend,
               *(["--no-batching"] if system == "shoal-nobatch" else []),
               *(["--workers", "2"] if system.endswith("-2workers") else [])]
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    with server_process(cmd, log, ready, env=env):
        yield url


def alive(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=5).status_code == 200
    except httpx.TransportError:
        return False


# -- the benchmark --------------------------------------------------------------------------------------------
E2E_SYSTEMS = {"e2e-raw": "shoal-e2e", "e2e-torch": "shoal-e2e-encoder", "e2e-onnx-fp32": "shoal-e2e-encoder-onnx"}


def end_to_end(exported: Path, rows: list[dict[str, Any]], budget: Budget) -> list[dict[str, Any]]:
    """Raw row -> probability in process: the raw graph (written here with ``--raw``) against the Python encoder."""
    import pyarrow as pa

    from shoal.export.raw import export_raw_onnx
    from shoal.export.raw_runtime import bench_end_to_end

    export_raw_onnx(exported)  # checks parity with the Python encoder + PyTorch on the way
    results = bench_end_to_end(exported, pa.Table.from_pylist(rows), threads=THREADS,
                               seconds=min(budget.seconds, 3.0))
    out: list[dict[str, Any]] = []
    for r in results:
        m = {"latency_ms_p50": r.p50_ms, "latency_ms_p99": r.p99_ms, "infer_rows_per_s": r.rows_per_s,
             "load_avg_1m": os.getloadavg()[0]}
        out += _rows(E2E_SYSTEMS[r.system], 1, m)
        print(f"{E2E_SYSTEMS[r.system]:24s} in process: p50 {r.p50_ms:.3f} ms  p99 {r.p99_ms:.3f} ms (batch 1)  "
              f"{r.rows_per_s:,.0f} rows/s (batch {r.batch})", flush=True)
    return out


def _rows(system: str, clients: int, metrics: dict[str, float]) -> list[dict[str, Any]]:
    return [{**row(BENCH, DATASET, system, k, v), "clients": clients} for k, v in metrics.items()]


def run(work: Path, budget: Budget, quick: bool, client: str = "raw", onnx: bool = True,
        systems: tuple[str, ...] = SYSTEMS, bentoml_python: str | None = None) -> list[dict[str, Any]]:
    data, v1, v2 = make_bundles(work, TRAIN_ROWS_QUICK if quick else TRAIN_ROWS)
    rows = request_rows(data, 2000)
    out: list[dict[str, Any]] = []
    log = work / "servers.log"
    bundles = {system: v1 for system in SYSTEMS}
    if onnx:
        import shutil

        from shoal.export.onnx import export_onnx

        exported = shutil.copytree(v1, work / "exported" / "bundle")
        bundles.update({system: exported for system in ONNX_SYSTEMS})
        export_onnx(exported)  # checks parity with PyTorch on the way
        out += end_to_end(exported, rows, budget)
    for system in systems:
        if system in ONNX_SYSTEMS and not onnx or system == "bentoml" and bentoml_python is None:
            continue
        with server(system, bundles[system], log, bentoml_python) as url:
            for clients in CLIENTS:
                run_async(load(url, clients, rows, budget, measure=False, client=client))
                tally = run_async(load(url, clients, rows, budget, client=client))
                m = {**tally.metrics(), "load_avg_1m": os.getloadavg()[0]}
                out += _rows(system, clients, m)
                print(f"{system:18s} {clients:3d} clients: {m['requests_per_s']:8.1f} req/s  "
                      f"p50 {m['latency_ms_p50']:6.1f} ms  p99 {m['latency_ms_p99']:6.1f} ms  "
                      f"4xx {tally.errors_4xx}  5xx {tally.errors_5xx}  load {m['load_avg_1m']:.1f}", flush=True)
    if "shoal-batched" not in systems:
        return out
    # mixed load with malformed requests, then a hot swap, on the batched server
    expected = {"v1": offline(v1, rows, work), "v2": offline(v2, rows, work)}
    with server("shoal-batched", v1, log) as url:
        version_of = {}
        for name, folder in (("v2", v2), ("v1", v1)):
            r = httpx.post(f"{url}/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"},
                           json={"ref": str(folder)}, timeout=60)
            version_of[r.json()["version"]] = name
        by_version = {v: expected[name] for v, name in version_of.items()}
        mixed = run_async(load(url, MIXED_CLIENTS, rows, budget, expected=by_version,
                               malformed_share=MALFORMED_SHARE, client=client))
        up = alive(url)
        out += _rows("shoal-batched-malformed", MIXED_CLIENTS, {
            "requests": len(mixed.latencies), "malformed_requests": mixed.malformed,
            "malformed_4xx": mixed.malformed_4xx, "valid_mismatches": mixed.mismatches,
            "errors_5xx": mixed.errors_5xx, "server_up": float(up)})
        print(f"malformed mix: {len(mixed.latencies)} requests, {mixed.malformed} malformed -> "
              f"{mixed.malformed_4xx} 4xx; {mixed.mismatches} valid answers differ from offline; "
              f"5xx {mixed.errors_5xx}; server up: {up}", flush=True)
        folders = {"v1": v1, "v2": v2}
        swap, swaps_ok, swaps = run_async(swap_under_load(url, rows, budget, folders, by_version, client))
        failed = swap.errors_4xx + swap.errors_5xx
        out += _rows("shoal-batched-hotswap", MIXED_CLIENTS, {
            "requests": len(swap.latencies), "swaps": swaps, "swaps_ok": swaps_ok, "failed_requests": failed,
            "answer_mismatches": swap.mismatches, "versions_seen": len(swap.answers),
            "requests_per_s": swap.metrics()["requests_per_s"], "latency_ms_p99": swap.metrics()["latency_ms_p99"]})
        print(f"hot swap: {swaps_ok}/{swaps} swaps, {len(swap.latencies)} requests, {failed} failed, "
              f"{swap.mismatches} answers differ from their version's offline prediction; "
              f"answers by version {swap.answers}", flush=True)
    return out


def report(rows: list[dict[str, Any]]) -> str:
    load_rows = [r for r in rows if r["system"] in SYSTEMS]
    for r in load_rows:
        r["clients_"] = r["clients"]
    table = markdown_table(load_rows, index=("system", "clients_"), columns="metric", column_order=METRICS)
    table = table.replace("| system | clients_ |", "| system | clients |", 1)
    lines = [table, ""]
    get = {(r["system"], r["clients"], r["metric"]): r["value"] for r in rows}
    naive = get.get(("naive", 64, "requests_per_s"))
    for system in ("shoal-batched", "shoal-nobatch", "shoal-batched-onnx", "shoal-raw", "shoal-raw-2workers"):
        rps = get.get((system, 64, "requests_per_s"))
        if naive and rps:
            lines.append(f"- {system} / naive requests/s at 64 clients: {rps / naive:.2f}x "
                         f"(p99 {get[(system, 64, 'latency_ms_p99')]:.1f} ms vs naive "
                         f"{get[('naive', 64, 'latency_ms_p99')]:.1f} ms)")
    raw_p50, batched_p50 = get.get(("shoal-raw", 1, "latency_ms_p50")), get.get(("shoal-batched", 1, "latency_ms_p50"))
    if raw_p50 and batched_p50:
        lines.append(f"- shoal-raw / shoal-batched over HTTP, one client: p50 {raw_p50:.2f} vs {batched_p50:.2f} ms "
                     f"({batched_p50 / raw_p50:.2f}x faster)")
    for peer in ("naive-onnx", "bentoml"):
        for clients in (1, 64):
            ours = get.get(("shoal-raw-2workers" if clients == 64 else "shoal-raw", clients, "requests_per_s"))
            theirs = get.get((peer, clients, "requests_per_s"))
            if ours and theirs:
                lines.append(f"- shoal-raw{'-2workers' if clients == 64 else ''} / {peer}, {clients} client(s): "
                             f"{ours / theirs:.2f}x the requests/s (p50 {get[(peer, clients, 'latency_ms_p50')]:.2f} "
                             f"ms for {peer})")
    e2e = {r["system"]: r["value"] for r in rows if r["system"] in E2E_SYSTEMS.values()
           and r["metric"] == "latency_ms_p99"}
    if "shoal-e2e" in e2e and "shoal-e2e-encoder" in e2e:
        lines.append(f"- shoal-e2e (raw graph) / shoal-e2e-encoder (Python encoder + PyTorch), raw row -> "
                     f"probability in process, batch-1 p99: {e2e['shoal-e2e-encoder'] / e2e['shoal-e2e']:.2f}x faster")
    extra = [r for r in rows if r["system"] not in SYSTEMS]
    if extra:
        lines.append("")
        lines.append(markdown_table(extra, index=("system",), columns="metric"))
    for r in load_rows:
        r.pop("clients_", None)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="write the result rows here")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK.seconds:.0f} s per run instead of "
                                                             f"{FULL.seconds:.0f} s, a smaller training log")
    parser.add_argument("--client", choices=sorted(CLIENT_KINDS), default="raw",
                        help="load generator: raw (serve_load.py's minimal HTTP/1.1 client) or httpx, to cross-check")
    parser.add_argument("--no-onnx", dest="onnx", action="store_false",
                        help="leave out shoal-batched-onnx (ONNX export and its server)")
    parser.add_argument("--systems", default=",".join(SYSTEMS),
                        help="the servers to load, comma-separated (default: all; bentoml needs --bentoml-python)")
    parser.add_argument("--bentoml-python", default=None,
                        help="the python of a virtual environment with BentoML (make install-bentoml makes "
                             ".venv-bentoml); without it the bentoml system is left out")
    parser.add_argument("--naive-server", type=Path, help=argparse.SUPPRESS)  # internal: run the baseline
    parser.add_argument("--naive-backend", default="torch", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=8000, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.naive_server is not None:
        import torch
        import uvicorn

        from shoal.serving.app import freeze_heap

        torch.set_num_threads(THREADS)
        app = naive_app(args.naive_server, args.naive_backend)
        freeze_heap()  # as `shoal serve` does: the same process and uvicorn settings for every system
        uvicorn.run(app, host="127.0.0.1", port=args.port, access_log=False, log_level="warning",
                    timeout_graceful_shutdown=30)
        return
    if args.json is None:
        parser.error("--json OUT.json is required")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="shoal-bench-serve-") as tmp:
        unknown = set(args.systems.split(",")) - set(SYSTEMS)
        if unknown:
            parser.error(f"unknown systems {', '.join(sorted(unknown))}; choose from {', '.join(SYSTEMS)}")
        rows = run(Path(tmp), QUICK if args.quick else FULL, args.quick, args.client, args.onnx,
                   tuple(args.systems.split(",")), args.bentoml_python)
    write_json(rows, args.json)
    print()
    print(report(rows))
    import uvicorn

    print(f"\n{platform.machine()} {os.cpu_count()} CPUs, python {platform.python_version()}, uvicorn "
          f"{uvicorn.__version__}, uvloop {uvloop.__version__}, client {args.client}; load average now "
          f"{os.getloadavg()[0]:.1f}; took {time.perf_counter() - started:.0f} s; wrote {args.json}")


if __name__ == "__main__":
    main()
