"""``shoal plan --calibrate``: measure this machine once, so that ``--cluster local`` predicts from its own rates.

Each measurement takes a second or two and is the median of repeated calls (the machine may be shared):

* ``matmul``: FP32 FLOP/s of a ``Linear(w, w)`` + ReLU forward and backward on 1024 rows for a few widths w,
  with 1 thread and with every core; ``interaction``: the same for DLRM's dot interaction (batched small matmuls);
* ``conv``: the same for a ``Conv2d(c, c, 3)`` + ReLU on 64 images of 14 x 14, for c in 16, 32, 64 (a CNN's
  convolutions; priced by their GEMM's inner width, :mod:`shoal.plan.cost`);
* ``memory_bw``: bytes/s of a 128 MiB copy (read + write);
* ``embedding``: seconds per id looked up and per distinct row updated by shoal's own embedding step
  (:class:`~shoal.models.embeddings.SparseArch` forward + backward with row-wise Adagrad), fused (one process)
  and unfused (a distributed rank: sparse gradient, then ``step()``), for a table in cache and one far larger
  than the last-level cache, at dimensions 8 and 64 (the cost is linear in the dimension between them);
* ``overhead``: seconds of a whole training step of tiny models (batch 8): a fixed part per step, per layer and
  per embedding feature, the part FLOPs and bytes do not see; and the same per op the step dispatches
  (:mod:`shoal.plan.ops`), which the planner multiplies by a model's own count of ops;
* ``allreduce``: gloo all-reduce and all-gather between 2 processes on loopback: a latency and a bandwidth;
* ``base_rss``, ``first_step_s``: the resident memory of a fresh process that has loaded the training stack and
  taken a few steps, and how much longer its first step took (compiled code loaded, first calls); ``train_rss``:
  the peak of ``shoal train`` of a tiny model on a tiny file (one process's baseline: command line, registry,
  reader, bundle writer); ``loop_s``: what that run's loop spends a step beyond the step itself (cutting the
  mini-batch, the position, the progress callbacks), its mean step less the same model's step timed alone;
* ``disk_bw``: bytes/s of ``torch.save`` of a 64 MiB tensor, the slowest of three, each after the page cache is
  written out (``os.sync``: the write-back of whatever ran before must not be what is measured). The slowest,
  because a checkpoint's pages are often fresh memory that a virtual machine must first map: on this VM the same
  1.6 GB save took 9.7 s once and 0.7 s right after.

The profile is JSON (:func:`profile_path`: ``<registry home>/plan-profile.json``). It records the OpenMP wait
policy it was measured under: ``shoal train`` lets idle threads sleep (``OMP_WAIT_POLICY=PASSIVE``), so every
parallel kernel wakes them; spinning threads (OpenMP's default) measure multi-threaded kernels faster than
training runs them. ``shoal plan --calibrate`` sets the training's policy; a program calling :func:`calibrate`
must set it before torch starts its threads.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shoal.config import TrainConfig
from shoal.plan.ops import count_ops, training_step

__all__ = ["PROFILE_FILE", "TRAINING_OMP_WAIT_POLICY", "Evictor", "calibrate", "call_seconds", "evictor",
           "interaction_step", "load_profile", "mean_seconds", "median_seconds", "profile_path"]

log = logging.getLogger(__name__)

PROFILE_FILE = "plan-profile.json"
PROFILE_VERSION = 3  # 3: per-op overhead, OpenMP wait policy (2 was an unmerged experiment's)
TRAINING_OMP_WAIT_POLICY = "PASSIVE"  # what ``shoal train`` runs OpenMP's threads with (shoal.cli.main sets it)
WIDTHS = (16, 64, 256, 1024)
CONV_WIDTHS = (16, 32, 64)  # channels of the calibrated convolutions
MAX_EVICT_LLC = 2  # an evictor walks at most this many last-level caches (beyond it, nothing is left to evict)


def profile_path(home: Path) -> Path:
    return Path(home) / PROFILE_FILE


def load_profile(home: Path) -> dict[str, Any]:
    """The profile ``shoal plan --calibrate`` stored in ``home``."""
    path = profile_path(home)
    if not path.is_file():
        raise FileNotFoundError(f"no calibration profile at {path}; measure this machine first: "
                                f"shoal plan --calibrate --home {home}")
    profile: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    if profile.get("version") != PROFILE_VERSION:
        raise ValueError(f"{path}: profile version {profile.get('version')} is not {PROFILE_VERSION}; "
                         "measure again: shoal plan --calibrate")
    return profile


def call_seconds(fn: Callable[[], object], seconds: float, warmup: int = 2, min_calls: int = 5,
                 before: Callable[[], object] | None = None) -> list[float]:
    """The seconds of each call of ``fn`` over ``seconds`` of calls (at least ``min_calls``, at most 1000), after
    ``warmup`` calls; ``before`` (e.g. an :func:`evictor`) runs before each call, untimed."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while len(times) < min_calls or time.perf_counter() < deadline:
        if before is not None:
            before()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
        if len(times) >= 1000:
            break
    return times


def median_seconds(fn: Callable[[], object], seconds: float, warmup: int = 2, min_calls: int = 5) -> float:
    """The median seconds of a call of ``fn`` (:func:`call_seconds`): a rate of this machine, robust to a slow
    call."""
    return float(np.median(call_seconds(fn, seconds, warmup, min_calls)))


def mean_seconds(fn: Callable[[], object], seconds: float, warmup: int = 2, min_calls: int = 5,
                 before: Callable[[], object] | None = None) -> float:
    """The mean seconds of a call of ``fn`` (:func:`call_seconds`): what a run of such calls pays, the slow ones
    too (a training run's rows/s is its rows over the sum of its steps)."""
    return float(np.mean(call_seconds(fn, seconds, warmup, min_calls, before)))


class Evictor:
    """Reads and writes its buffer, as the rest of a training step walks its activations, weights and rows
    between two calls of a part timed alone (:func:`evictor`)."""

    def __init__(self, nbytes: int) -> None:
        self.buffer = torch.zeros(nbytes // 4)

    def __call__(self) -> None:
        self.buffer.add_(1.0)


def evictor(nbytes: float, llc_bytes: float) -> Evictor | None:
    """An :class:`Evictor` of ``nbytes`` (at most :data:`MAX_EVICT_LLC` last-level caches): a part timed back to
    back finds its data in the cache, inside a step it does not (the dlrm step's embedding part of 1.25 ms took
    1.55 ms after 16 MiB were walked, 1.85 ms after 32). None under 64 KiB."""
    size = int(min(nbytes, MAX_EVICT_LLC * llc_bytes))
    return Evictor(size) if size >= 64 << 10 else None


def _with_threads(threads: int, fn: Callable[[], Any]) -> Any:
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return fn()
    finally:
        torch.set_num_threads(saved)


def _matmul(widths: tuple[int, ...], seconds: float) -> list[list[float]]:
    """FLOP/s of a training layer of each width: ``relu(Linear(w, w))`` forward and backward on 1024 rows (3 x
    the forward's FLOPs), autograd included, as a training step runs it."""
    out = []
    for w in widths:
        layer, x = torch.nn.Linear(w, w), torch.randn(1024, w, requires_grad=True)

        def step(layer: torch.nn.Linear = layer, x: torch.Tensor = x) -> None:
            torch.relu(layer(x)).sum().backward()
        t = median_seconds(step, seconds)
        out.append([w, 3 * 2 * 1024 * w * w / t])
    return out


def _conv(widths: tuple[int, ...], seconds: float, rows: int = 64, size: int = 14) -> list[list[float]]:
    """FLOP/s of a training convolution of each width c: ``relu(Conv2d(c, c, 3, padding=1))`` forward and
    backward on ``rows`` images of c x size x size (3 x the forward's 2 c 9 c size^2 FLOPs an image). A
    convolution's GEMM has ``rows x size^2`` rows, 50x a Linear's 1024 here: its per-call costs are spread far
    thinner, so the Linear rates of the same inner width under-price it several times at small widths."""
    out = []
    for w in widths:
        conv, x = torch.nn.Conv2d(w, w, 3, padding=1), torch.randn(rows, w, size, size, requires_grad=True)

        def step(conv: torch.nn.Conv2d = conv, x: torch.Tensor = x) -> None:
            torch.relu(conv(x)).sum().backward()
        out.append([w, 3 * 2 * w * 9 * w * size * size * rows / median_seconds(step, seconds)])
    return out


def interaction_step(rows: int, vectors: int, dim: int) -> Callable[[], None]:
    """DLRM's dot interaction forward and backward on ``rows`` rows of ``vectors`` vectors of ``dim``: small
    batched matmuls and the gather of the upper triangle (3 x the forward's 2 F F d FLOPs a row)."""
    upper, cols = torch.triu_indices(vectors, vectors, offset=1)
    x = torch.randn(rows, vectors, dim, requires_grad=True)

    def step() -> None:
        z = torch.bmm(x, x.transpose(1, 2))  # (B, F, F)
        z[:, upper, cols].sum().backward()
    return step


def _interaction(seconds: float, vectors: int = 27, dim: int = 16) -> float:
    """FLOP/s of :func:`interaction_step` on 1024 rows."""
    return 3 * 2 * vectors * vectors * dim * 1024 / median_seconds(interaction_step(1024, vectors, dim), seconds)


def _memory_bw(mib: int, seconds: float) -> float:
    src = torch.ones(mib << 18)  # float32: mib MiB
    dst = torch.empty_like(src)
    return 2 * src.nbytes / median_seconds(lambda: dst.copy_(src), seconds)


def _embedding_step(rows: int, dim: int, ids: torch.Tensor, fused: bool) -> Callable[[], None]:
    from shoal.models.embeddings import SparseArch
    from shoal.training.optimizers import RowWiseAdagrad

    arch = SparseArch([rows], dim)
    opt = RowWiseAdagrad([arch.bag.weight], lr=0.01)
    if fused:
        arch.fuse(opt)
    offsets = [torch.arange(len(ids))]

    def step() -> None:
        arch([ids], offsets).sum().backward()
        if not fused:
            opt.step()
            arch.bag.weight.grad = None
    return step


def _embedding(threads: int, table_rows: dict[str, int], ids_per_step: int, seconds: float) -> dict[str, Any]:
    """Per (path, table size): [a, b, c, e] with seconds = lookups (a + b d) + distinct rows (c + e d)."""
    gen = torch.Generator().manual_seed(0)
    found: dict[str, Any] = {}
    for path in ("fused", "unfused"):
        for size, rows in table_rows.items():
            t: dict[tuple[int, str], float] = {}
            for dim in (8, 64):
                n = rows if dim == 8 else max(rows // 8, 1 << 14)  # the same bytes at both dimensions
                for kind in ("repeat", "distinct"):
                    ids = (torch.randint(1, 17, (ids_per_step,), generator=gen) if kind == "repeat"
                           else torch.randperm(n - 1, generator=gen)[:ids_per_step] + 1)
                    step = _embedding_step(n, dim, ids, path == "fused")
                    t[dim, kind] = float(_with_threads(threads, partial(median_seconds, step, seconds)))
            per_lookup = {d: t[d, "repeat"] / ids_per_step for d in (8, 64)}
            per_row = {d: max(t[d, "distinct"] - t[d, "repeat"], 0.0) / ids_per_step for d in (8, 64)}
            b = (per_lookup[64] - per_lookup[8]) / 56
            e = (per_row[64] - per_row[8]) / 56
            found[f"{path}/{size}"] = [per_lookup[8] - 8 * b, b, per_row[8] - 8 * e, e]
    return found


def _tiny_step(layers: int, features: int) -> Callable[[], None]:
    """A training step of a tiny MLP (``layers`` layers, ``features`` tables) on 8 rows, as the trainer takes it."""
    from shoal.config import MLPConfig
    from shoal.models import build

    model = build(MLPConfig(name="mlp", embedding_dim=4, hidden=[8] * (layers - 1)), 2, [100] * features)
    return _step_on(model, features, 100, TrainConfig())


def _step_on(model: torch.nn.Module, features: int, buckets: int, train: TrainConfig,
             rows: int = 8) -> Callable[[], None]:
    """A training step of ``model`` (2 dense inputs, ``features`` tables of ``buckets`` rows) on ``rows`` made-up
    rows (so few that its FLOPs and bytes are negligible), as the trainer takes it."""
    from shoal.training.loop import training_loss

    dense = torch.randn(rows, 2)
    ids = [torch.randint(1, buckets, (rows,)) for _ in range(features)]
    offsets = [torch.arange(rows)] * features
    label = torch.zeros(rows)
    return training_step(model, (dense, ids, offsets), train, fused=True,
                         loss=lambda out: training_loss(out, label, None))


def _overhead(threads: int, seconds: float) -> dict[str, Any]:
    """A step's fixed cost, from tiny models of 1 or 7 layers and 1 or 9 features: per step, layer and feature
    (``t(layers, features) = step + layers x layer + features x feature``), and per op dispatched
    (``t = op_step + ops x op``, least squares over the three models' op counts, :mod:`shoal.plan.ops`)."""
    times, ops = [], []
    for layers, features in ((1, 1), (7, 1), (1, 9)):
        step = _tiny_step(layers, features)
        ops.append(count_ops(step))
        times.append(float(_with_threads(threads, partial(median_seconds, step, seconds, 5))))
    base, more_layers, more_features = times
    layer = max((more_layers - base) / 6, 0.0)
    feature = max((more_features - base) / 8, 0.0)
    op = max(float(np.polyfit(ops, times, 1)[0]), 0.0)
    return {"step_s": max(base - layer - feature, 0.0), "layer_s": layer, "feature_s": feature, "op_s": op,
            "op_step_s": max(float(np.mean(times)) - op * float(np.mean(ops)), 0.0), "ops": ops, "times": times}


def _collectives(rank: int, world: int, port: int, sizes: list[int], seconds: float, out: str) -> None:
    """One of 2 processes: median seconds of all_reduce and all_gather of each size (bytes)."""
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    result: dict[str, list[list[float]]] = {"all_reduce": [], "all_gather": []}
    calls = max(int(seconds * 100), 10)  # the same number of calls on both ranks (a time limit could differ)
    for size in sizes:
        x = torch.ones(max(size // 4, 1))
        parts = [torch.empty_like(x) for _ in range(world)]
        for name, fn in (("all_reduce", lambda x=x: dist.all_reduce(x)),
                         ("all_gather", lambda x=x, parts=parts: dist.all_gather(parts, x))):
            dist.barrier()
            times = []
            for i in range(calls + 3):
                start = time.perf_counter()
                fn()
                if i >= 3:  # after the warmup
                    times.append(time.perf_counter() - start)
            result[name].append([size, float(np.median(times))])
    if rank == 0:
        Path(out).write_text(json.dumps(result), encoding="utf-8")
    dist.destroy_process_group()


def _allreduce(seconds: float) -> dict[str, float]:
    """Latency and bandwidth of gloo between 2 processes on loopback, fitted to t = latency + bytes / bw (a ring
    of 2 moves each byte once each way)."""
    import torch.multiprocessing as mp

    from shoal.runtime.http_load import free_port

    sizes = [4 << 10, 4 << 20]
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "collectives.json")
        mp.start_processes(_collectives, args=(2, free_port(), sizes, seconds, out), nprocs=2, join=True,
                           start_method="spawn")
        result = json.loads(Path(out).read_text(encoding="utf-8"))
    (small, t_small), (large, t_large) = result["all_reduce"]
    bw = (large - small) / max(t_large - t_small, 1e-9)
    (_, g_small), (_, g_large) = result["all_gather"]
    return {"latency_s": max(t_small - small / bw, 1e-6), "bandwidth": bw,
            "gather_bandwidth": (large - small) / max(g_large - g_small, 1e-9), "measured": result}


# the peak RSS of this process alone: VmHWM (ru_maxrss also counts the parent's pages at fork time)
BASE_RSS_CODE = """
import torch
import shoal.cli.main, shoal.training.runs, shoal.distributed.strategy, pyarrow.parquet
from shoal.data.hash_kernel import hash_rows
from shoal.plan.calibrate import _tiny_step
import numpy, time
hash_rows(numpy.zeros(1, numpy.uint8), numpy.zeros(1), numpy.ones(1), (0, 0), (1, 1), (1, 1))  # numba loaded
step = _tiny_step(2, 2)
times = []
for _ in range(5):
    start = time.perf_counter()
    step()
    times.append(time.perf_counter() - start)
print(times[0] - min(times[1:]))
print([line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM")][0])
"""


def _fresh_process() -> tuple[float, float]:
    """(peak RSS in bytes, seconds the first step takes beyond the others) of a fresh interpreter that loads the
    training stack and numba (the first pass hashes ids with it before any step) and takes a few steps (the
    compiled step loaded from numba's cache, torch's first calls)."""
    done = subprocess.run([sys.executable, "-c", BASE_RSS_CODE], capture_output=True, text=True, check=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    first, hwm = done.stdout.split()[-2:]
    return float(hwm) * 1024, max(float(first), 0.0)


TRAIN_RSS_CODE = """
import sys
from shoal.cli.main import app
sys.argv = ["shoal", "train", sys.argv[1], "--home", sys.argv[2]]
try:
    app()
except SystemExit as e:
    assert not e.code, e.code
from shoal.artifacts.registry import Registry
summary = Registry(sys.argv[4]).list()[0].summary  # sys.argv is the command line set above
hwm = [line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM")][0]
print(hwm, summary["train_seconds"], summary["rows_trained"])
"""
LOOP_ROWS, LOOP_BATCH = 4096, 8  # the tiny run: 512 steps of a tiny model


def _train_run(folder: Path, first_step_s: float) -> tuple[float, float]:
    """(peak RSS in bytes, loop seconds a step) of ``shoal train`` on a tiny file and model: what one training
    process holds beyond its model and rows (the command line, the registry, the first pass's reader, the bundle
    writer), and what its loop adds to each step (its mean step, less the first step's extra and the model's step
    timed alone in this process, one thread as there)."""
    import yaml

    from shoal.config import parse_config
    from shoal.data.synthetic import SynthSpec, generate
    from shoal.models import build

    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        data = Path(tmp) / "tiny.parquet"
        generate(data, SynthSpec(rows=LOOP_ROWS, dense=2, sparse=4, max_cardinality=100, seed=0))
        config = {"name": "calibrate", "data": {"train": str(data), "valid_fraction": 0.0},
                  "label": {"column": "label"},
                  "features": [{"name": "d0", "kind": "dense"}, *({"name": f"s{i}", "kind": "sparse", "buckets": 16}
                                                                  for i in range(3))],
                  "model": {"name": "logistic"}, "train": {"epochs": 1, "batch_size": LOOP_BATCH}}
        path = Path(tmp) / "tiny.yaml"
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        done = subprocess.run([sys.executable, "-c", TRAIN_RSS_CODE, str(path), str(Path(tmp) / "home")],
                              capture_output=True, text=True, check=False, env={**os.environ, "OMP_NUM_THREADS": "1"})
        if done.returncode != 0:
            tail = "\n".join(done.stderr.strip().splitlines()[-8:])
            raise RuntimeError(f"the calibration's probe run of `shoal train` (a tiny model) failed with code "
                               f"{done.returncode}:\n{tail}")
        hwm, seconds, rows = (float(v) for v in done.stdout.split()[-3:])
        cfg = parse_config(config)
    # a dense value and its missing flag; 3 tables
    step = _step_on(build(cfg.model, 2, [16] * 3), 3, 16, cfg.train, LOOP_BATCH)
    alone = float(_with_threads(1, partial(median_seconds, step, 0.3)))
    steps = max(rows / LOOP_BATCH, 1.0)
    return hwm * 1024, max((seconds - first_step_s) / steps - alone, 0.0)


def _disk_bw(folder: Path, mib: int) -> float:
    """Bytes/s of a checkpoint's write: ``torch.save`` of ``mib`` MiB of weights."""
    data = {"weight": torch.ones(mib << 18)}
    path = folder / "plan-disk-probe.pt"
    rates = []
    try:
        for _ in range(3):
            os.sync()  # what ran before is written out: its write-back would slow this one
            start = time.perf_counter()
            torch.save(data, path)
            rates.append((mib << 20) / (time.perf_counter() - start))
            path.unlink()
    finally:
        path.unlink(missing_ok=True)
    return min(rates)


def _fresh_bw(mib: int) -> float:
    """Bytes/s of filling memory just allocated (``torch.zeros`` then a fill: the first touch of every page), as a
    gather of whole tables into a new tensor pays it: the median of 3 (on a VM the first touch moves from call to
    call, 0.9-1.4 GB/s here for 1 GiB)."""
    rates = []
    for _ in range(3):
        start = time.perf_counter()
        fresh = torch.zeros(mib << 18)
        fresh.fill_(1.0)
        rates.append((mib << 20) / (time.perf_counter() - start))
        del fresh
    return float(np.median(rates))


def _llc_bytes() -> int:
    for index in (3, 2):
        f = Path(f"/sys/devices/system/cpu/cpu0/cache/index{index}/size")
        if f.is_file():
            text = f.read_text().strip().upper()
            scale = {"K": 1 << 10, "M": 1 << 20}.get(text[-1], 1)
            return int(text.rstrip("KM")) * scale
    return 32 << 20


def calibrate(home: Path, quick: bool = False, processes: bool = True) -> dict[str, Any]:
    """Measure this machine and store the profile in ``home`` (:func:`profile_path`); returns it.

    ``quick``: smaller sizes and shorter timings (tests); ``processes``: also the 2-process gloo collectives and
    the base RSS of a fresh process (a few seconds each to start); without them, conservative stand-ins.
    """
    home = Path(home).resolve()  # the probe run's config names its data absolutely (a relative home doubled it)
    home.mkdir(parents=True, exist_ok=True)
    cores = os.cpu_count() or 1
    seconds = 0.05 if quick else 0.3
    threads = sorted({1, cores})
    llc = _llc_bytes()
    big_rows = (1 << 18) if quick else max(8 * llc // 32, 1 << 20)  # dimension 8: 32 bytes a row, 8 x the LLC
    started = time.perf_counter()
    if os.environ.get("OMP_WAIT_POLICY", "").upper() != TRAINING_OMP_WAIT_POLICY:
        log.warning("calibrating with OMP_WAIT_POLICY=%r, training runs with %s: multi-threaded rates will be "
                    "too fast; set OMP_WAIT_POLICY=%s before torch starts", os.environ.get("OMP_WAIT_POLICY", ""),
                    TRAINING_OMP_WAIT_POLICY, TRAINING_OMP_WAIT_POLICY)
    profile: dict[str, Any] = {
        "version": PROFILE_VERSION, "host": platform.node(), "machine": platform.machine(), "cores": cores,
        "torch": torch.__version__, "created": time.strftime("%Y-%m-%d %H:%M:%S"), "llc_bytes": llc,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""),
        "table_rows": {"small": 1 << 14, "large": big_rows},
    }
    profile["matmul"] = {str(t): _with_threads(t, lambda: _matmul(WIDTHS[1:3] if quick else WIDTHS, seconds))
                         for t in threads}
    profile["conv"] = {str(t): _with_threads(t, lambda: _conv(CONV_WIDTHS[:2] if quick else CONV_WIDTHS, seconds))
                       for t in threads}
    profile["interaction"] = {str(t): _with_threads(t, lambda: _interaction(seconds)) for t in threads}
    profile["memory_bw"] = {str(t): _with_threads(t, lambda: _memory_bw(16 if quick else 128, seconds))
                            for t in threads}
    profile["embedding"] = {str(t): _embedding(t, profile["table_rows"], 2048 if quick else 8192, seconds)
                            for t in threads}
    profile["overhead"] = {str(t): _overhead(t, seconds) for t in threads}
    if processes:
        profile["allreduce"] = _allreduce(seconds)
        profile["base_rss"], profile["first_step_s"] = _fresh_process()
        profile["train_rss"], profile["loop_s"] = _train_run(home, profile["first_step_s"])
    else:
        profile["first_step_s"] = 0.1
        profile["train_rss"], profile["loop_s"] = 500 * 2**20, 1e-4
        profile["allreduce"] = {"latency_s": 1e-4, "bandwidth": 1e9, "gather_bandwidth": 1e9, "measured": {}}
        profile["base_rss"] = 450 * 2**20
    profile["disk_bw"] = _disk_bw(home, 8 if quick else 64)
    profile["fresh_bw"] = _fresh_bw(16 if quick else 512)
    profile["seconds"] = round(time.perf_counter() - started, 1)
    profile_path(home).write_text(json.dumps(profile, indent=1) + "\n", encoding="utf-8")
    log.info("calibrated in %.1f s -> %s", profile["seconds"], profile_path(home))
    return profile
