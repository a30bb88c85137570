"""A few training steps on W ranks, for tests/distributed/test_distributed.py (run by torch.distributed.run; not
a test).

    python -m torch.distributed.run --standalone --nproc-per-node 2 tests/distributed/distributed_steps.py \
        OUT BACKEND:SHARDING...

For each BACKEND:SHARDING (one process start for all: TorchRec takes seconds to import), every rank trains on
its slice of the same global batches with the DistributedStrategy's model, DDP wrapper and sparse all-reduce (or
TorchRec tables); rank 0 writes the weights (SparseArch layout) to OUT/BACKEND-SHARDING/weights.pt and every
rank writes the logits of its rows before training to OUT/BACKEND-SHARDING/logits-RANK.pt.
"""

from __future__ import annotations

import gc
import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from shoal.config import parse_config
from shoal.data.batch import Batch
from shoal.distributed.context import RankContext
from shoal.distributed.strategy import DistributedStrategy
from shoal.models import build
from shoal.training.strategy import build_optimizers

DENSE, BUCKETS, STEPS, GLOBAL_BATCH = 3, [50, 30, 40], 3, 64


def config(backend: str = "native", sharding: str = "table_wise") -> dict[str, object]:
    return {
        "data": {"train": "unused.parquet"},
        "label": {"column": "label"},
        "features": [{"name": f"d{i}", "kind": "dense"} for i in range(DENSE)]
        + [{"name": f"s{k}", "kind": "sparse", "buckets": b} for k, b in enumerate(BUCKETS)],
        "model": {"name": "dlrm", "embedding_dim": 4, "bottom_mlp": [8], "top_mlp": [8]},
        "train": {"batch_size": GLOBAL_BATCH, "seed": 3, "embedding_lr": 0.1, "lr": 0.01,
                  "embeddings": {"backend": backend, "sharding": sharding}},
    }


def batches() -> list[Batch]:
    """STEPS global batches; the last feature holds 1-3 ids per row."""
    rng = np.random.default_rng(0)
    out = []
    for _ in range(STEPS):
        n = GLOBAL_BATCH
        ids, offsets = [], []
        for k, b in enumerate(BUCKETS):
            lengths = rng.integers(1, 4, n) if k == len(BUCKETS) - 1 else np.ones(n, dtype=np.int64)
            off = np.zeros(n + 1, dtype=np.int64)
            np.cumsum(lengths, out=off[1:])
            ids.append(rng.integers(0, b, int(off[-1])).astype(np.int64))
            offsets.append(off)
        out.append(Batch(dense=rng.normal(size=(n, 2 * DENSE)).astype(np.float32), ids=ids, offsets=offsets,
                         label=(rng.random(n) < 0.3).astype(np.float32), lines=np.arange(n, dtype=np.int64)))
    return out


def model_for(cfg: object) -> torch.nn.Module:
    torch.manual_seed(3)
    return build(cfg.model, 2 * DENSE, BUCKETS)  # type: ignore[attr-defined]


def main(out: Path, specs: list[str]) -> None:
    dist.init_process_group("gloo")
    torch.set_num_threads(1)
    ctx = RankContext(dist.get_rank(), dist.get_world_size(), dist.get_rank(), torch.device("cpu"),
                      dist.new_group(backend="gloo"))
    for spec in specs:
        backend, sharding = spec.split(":")
        (out / f"{backend}-{sharding}").mkdir(parents=True, exist_ok=True)
        train_steps(out / f"{backend}-{sharding}", backend, sharding, ctx)
    gc.collect()  # no DDP reducer or pending gloo work left for interpreter shutdown (it can abort there)
    dist.barrier()  # every rank is done before any tears the group down
    dist.destroy_process_group()


def train_steps(out: Path, backend: str, sharding: str, ctx: RankContext) -> None:
    rank, world = ctx.rank, ctx.world
    cfg = parse_config(config(backend, sharding))
    strategy = DistributedStrategy(cfg, ctx)
    model = strategy.setup(model_for(cfg))
    opt_dense, opt_sparse = build_optimizers(model, cfg.train, strategy.fuse_sparse_step)
    net = strategy.training_module(model)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    per_rank = GLOBAL_BATCH // world
    for i, batch in enumerate(batches()):
        mine = batch.slice(rank * per_rank, (rank + 1) * per_rank)
        if i == 0:
            with torch.no_grad():
                torch.save(model(*mine.inputs()), out / f"logits-{rank}.pt")
        for o in (opt_dense, opt_sparse):
            if o is not None:
                o.zero_grad(set_to_none=True)
        loss_fn(net(*mine.inputs()), torch.from_numpy(mine.label)).backward()
        for o in (opt_dense, opt_sparse):
            if o is not None:
                o.step()
    state = model.state_dict()  # a collective with TorchRec tables
    if rank == 0:
        torch.save(state, out / "weights.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
