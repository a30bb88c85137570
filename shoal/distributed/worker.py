"""One rank of a distributed run: ``python -m shoal.distributed [CONFIG | --resume RUN] --home DIR``.

Started by torch.distributed.run (which sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT). Rank 0 reads the
config (or the run to resume) and creates (or reopens) the run in the registry; it sends the resolved config and
the run folder to the other ranks, so only rank 0 needs the registry and the config file (every rank reads
the data files, at the same path). Only rank 0 writes the registry.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from shoal.artifacts.registry import Registry, RunKind, RunRecord
from shoal.config import load_config, parse_config
from shoal.distributed.context import RankContext
from shoal.distributed.strategy import DistributedStrategy
from shoal.training.callbacks import Callbacks
from shoal.training.loop import Trainer

__all__ = ["main", "resolve_device"]

log = logging.getLogger(__name__)


def resolve_device(device: str, local_rank: int) -> torch.device:
    """``auto``: this rank's GPU when CUDA is available, else the CPU."""
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"--device must be auto, cpu or cuda, not {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda, but torch sees no CUDA device (a CPU build of torch, or no GPU); "
                         "use --device cpu")
    if device == "cuda" or (device == "auto" and torch.cuda.is_available()):
        return torch.device("cuda", local_rank % max(torch.cuda.device_count(), 1))
    return torch.device("cpu")


def _open_run(args: argparse.Namespace, registry: Registry) -> tuple[RunRecord, dict[str, Any]]:
    if args.resume is not None:
        record = registry.reopen(args.resume)
        return record, record.config
    cfg = load_config(args.config)
    return registry.create_run(cfg.name, cfg.resolved(), kind=RunKind.TRAIN), cfg.resolved()


@contextlib.contextmanager
def _callbacks(progress: bool) -> Iterator[Callbacks]:
    if not progress:
        yield Callbacks()
        return
    from shoal.training.progress import RichCallbacks, progress_bar

    with progress_bar() as bar:
        yield RichCallbacks(bar)


def _train(args: argparse.Namespace, ctx: RankContext) -> str | None:
    registry = record = None
    payload: list[Any] = [None]
    if ctx.is_main:
        try:
            registry = Registry(Path(args.home))
            record, doc = _open_run(args, registry)
            # a resume without --nproc finds the process count here (the input shards depend on it)
            registry.update(record.run_id, summary={"world_size": ctx.world})
            payload = [{"config": doc, "run_dir": str(record.artifact_dir), "run_id": record.run_id}]
        except Exception as err:
            payload = [{"error": f"{type(err).__name__}: {err}"}]
            dist.broadcast_object_list(payload, src=0)
            raise
    dist.broadcast_object_list(payload, src=0)
    job = payload[0]
    if "error" in job:
        raise SystemExit(f"rank {ctx.rank}: rank 0 could not open the run: {job['error']}")
    cfg = parse_config(job["config"], source=f"run {job['run_id']}")
    run_dir = Path(job["run_dir"]) if ctx.is_main else Path(tempfile.mkdtemp(prefix=f"shoal-rank{ctx.rank}-"))
    try:
        with _callbacks(args.progress and ctx.is_main) as callbacks:
            strategy = DistributedStrategy(cfg, ctx)
            if args.resume is not None:
                strategy.share_run_files(run_dir)
            result = Trainer(cfg, run_dir, callbacks, strategy=strategy).fit(resume=args.resume is not None)
    except BaseException as err:
        if registry is not None and record is not None:
            registry.fail(record.run_id, err)
        raise
    finally:
        if not ctx.is_main:
            shutil.rmtree(run_dir, ignore_errors=True)
    if registry is None or record is None:
        return None
    s = result.summary  # rows_trained: the real rows of every rank (the trainer counts them per step)
    registry.complete(record.run_id, result.metrics, {**s, "bundle": str(result.bundle)})
    return record.run_id


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m shoal.distributed", description=__doc__)
    p.add_argument("config", nargs="?", help="YAML run config (read by rank 0)")
    p.add_argument("--resume", help="continue this run (id or prefix) from its last checkpoint")
    p.add_argument("--home", required=True, help="registry folder (rank 0)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--result-file", help="rank 0 writes {\"run_id\": ...} here at the end")
    p.add_argument("--progress", action="store_true", help="rank 0 draws a progress bar")
    args = p.parse_args(argv)
    if (args.config is None) == (args.resume is None):
        p.error("give a CONFIG file or --resume RUN")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s rank %(process)d %(name)s: %(message)s")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(args.device, local_rank)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend, device_id=device if device.type == "cuda" else None)
    try:
        ctx = RankContext(rank=dist.get_rank(), world=dist.get_world_size(), local_rank=local_rank, device=device,
                          sparse_group=dist.new_group(backend=backend))
        run_id = _train(args, ctx)
        if run_id is not None and args.result_file:
            Path(args.result_file).write_text(json.dumps({"run_id": run_id}), encoding="utf-8")
        gc.collect()  # no DDP reducer or pending gloo work left for interpreter shutdown (it can abort there)
        dist.barrier()  # every rank is done before any tears the group down
    finally:
        dist.destroy_process_group()
    return 0
