"""Training on W processes: data-parallel dense layers (DDP), replicated or sharded embedding tables.

Each rank runs the same :class:`~shoal.training.loop.Trainer` loop, given a :class:`DistributedStrategy`:

* **First pass.** Rank 0 reads the whole file (encoder statistics, counts, bad rows, the validation split) and
  sends its encoder, summary and (CSV/TSV/JSONL) the byte range of every chunk; the other ranks read only their
  own chunks: Parquet row groups or byte ranges.
* **Input sharding.** Rank r trains on every W-th chunk, cut into steps of ``batch_size / W`` rows that every
  rank takes together (:mod:`shoal.distributed.shards`).
* **Gradients.** The global batch is ``batch_size`` rows (W ranks x ``batch_size / W``). Dense parameters are
  wrapped in DistributedDataParallel, which averages their gradients over the ranks: the gradient of the mean
  loss over the global batch, as one process with that batch computes. The native embedding table is left out
  of DDP; its sparse gradient (the rows a rank's batch touched) is all-gathered, summed and divided by W in a
  hook that runs when the backward has accumulated it, before the row-wise Adagrad step. With
  ``embeddings.backend: torchrec`` the tables are sharded instead (:mod:`shoal.models.torchrec_backend`).
* **Validation** is rank 0's: it scores the validation and test rows; the metrics are broadcast, so early
  stopping decides the same on every rank, and they equal what one process computes with the same weights.
  TorchRec's sharded lookups need every rank in every forward: rank 0 sends each forward's number of rows and
  the other ranks run a forward on as many rows of missing values, whose outputs they drop.
* **Files and registry.** Rank 0 writes the checkpoint (atomically), the best weights and the bundle in the
  run folder, and only rank 0 writes the registry. The other ranks work in a scratch folder. Every epoch end
  is checkpointed. Resuming, rank 0 sends its checkpoint and best weights to the other ranks
  (:meth:`DistributedStrategy.share_run_files`), so the ranks need no shared file system.
* **Devices.** CUDA: each rank uses ``cuda:LOCAL_RANK`` (nccl), the training forward runs under bf16
  autocast, the model takes CPU inputs and returns float32 CPU logits (so the trainer's loss, metrics and
  files are as on CPU).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from shoal.config import RunConfig
from shoal.data.batch import Batch
from shoal.data.encoder import Encoder
from shoal.data.readers import BadRowSink, Chunk
from shoal.distributed.context import RankContext
from shoal.distributed.shards import RankRows, StepPlan
from shoal.training.callbacks import Callbacks
from shoal.training.checkpoints import BEST_FILE, CHECKPOINT_FILE, Checkpointer
from shoal.training.data import BatchCache, EvalSet, FileRows, TrainingData
from shoal.training.evaluation import SCORE_BATCH, Scores, scores

__all__ = ["DistributedStrategy", "all_reduce_sparse_grad"]

log = logging.getLogger(__name__)


def all_reduce_sparse_grad(weight: torch.Tensor, ctx: RankContext) -> None:
    """Replace ``weight.grad`` (sparse, the rows this rank's batch touched) by the mean over the ranks.

    Each rank's (U_r,) row ids and (U_r, dim) row gradients travel as one (U_r, 2 + dim) int32 buffer (the
    int64 ids and float32 values bit-cast to int32) in one all-gather, padded to the largest U_r (a first all-gather
    of the counts); then the rows are summed per id and divided by W: the gradient one process computes with
    the global batch, coalesced. Every rank sums in rank order, so the replicas stay bitwise equal.
    """
    grad = weight.grad
    if grad is None or ctx.world == 1:
        return
    assert grad.is_sparse, "the native embedding table's gradient must be sparse"
    grad = grad.coalesce()
    rows, values = grad.indices()[0], grad.values()  # (U,), (U, dim)
    count = torch.tensor([rows.shape[0]], dtype=torch.int64, device=rows.device)
    counts = [torch.zeros_like(count) for _ in range(ctx.world)]
    dist.all_gather(counts, count, group=ctx.sparse_group)
    sizes = [int(c) for c in counts]
    dim = values.shape[1]
    # bit-casts to int32 (never conversions): integer copies keep every bit, whatever the float modes
    packed = torch.zeros(max(sizes), 2 + dim, dtype=torch.int32, device=rows.device)  # (max U_r, 2 + dim)
    packed[:rows.shape[0], :2] = rows.contiguous().view(torch.int32).view(-1, 2)
    packed[:rows.shape[0], 2:] = values.float().contiguous().view(torch.int32)
    gathered = [torch.empty_like(packed) for _ in range(ctx.world)]
    dist.all_gather(gathered, packed, group=ctx.sparse_group)
    every = torch.cat([g[:n] for g, n in zip(gathered, sizes, strict=True)])  # (sum U_r, 2 + dim)
    all_rows = every[:, :2].contiguous().view(torch.int64).view(-1)  # (sum U_r,)
    all_values = every[:, 2:].contiguous().view(torch.float32) / ctx.world  # (sum U_r, dim)
    weight.grad = torch.sparse_coo_tensor(all_rows.unsqueeze(0), all_values, grad.shape,
                                          check_invariants=False).coalesce()


def _missing_rows(encoder: Encoder, rows: int) -> Batch:
    """``rows`` encoded rows whose every value is missing: zeros, and the reserved id 0 once per sparse feature."""
    ids = [np.zeros(rows, dtype=np.int64) for _ in encoder.buckets]
    offsets = [np.arange(rows + 1, dtype=np.int64)] * len(ids)
    return Batch(dense=np.zeros((rows, encoder.dense_dim), dtype=np.float32), ids=ids, offsets=offsets,
                 label=np.zeros((rows, encoder.outputs) if encoder.multilabel or encoder.multitask else rows,
                                dtype=np.float32),
                 lines=np.arange(rows, dtype=np.int64))


def _stand_in(encoder: Encoder) -> Scores:
    """(labels, logits) of 2 rows (one per class, all logits 0) for a rank whose scores are not used."""
    if encoder.multilabel or encoder.multitask:  # (2, T): no tags (every task 0), every tag (every task 1)
        return np.array([[0.0], [1.0]], dtype=np.float32).repeat(encoder.outputs, axis=1), np.zeros(
            (2, encoder.outputs), dtype=np.float32)
    classes = max(encoder.outputs, 2)
    labels = np.arange(classes, dtype=np.float32)
    logits = np.zeros(classes if encoder.outputs == 1 else (classes, classes), dtype=np.float32)
    return labels, logits


class _Replica(nn.Module):
    """The training forward: DDP (or the bare model), under bf16 autocast on CUDA, float32 logits out."""

    def __init__(self, module: nn.Module, bf16: bool) -> None:
        super().__init__()
        self.module = module
        self.bf16 = bf16

    def forward(self, *inputs: Any) -> torch.Tensor:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.bf16):
            out = self.module(*inputs)
        return out.float()


def _to_device(device: torch.device) -> Any:
    def pre_hook(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        dense, ids, offsets = args
        return (dense.to(device, non_blocking=True), [i.to(device, non_blocking=True) for i in ids],
                [o.to(device, non_blocking=True) for o in offsets])

    return pre_hook


def _to_cpu(module: nn.Module, args: tuple[Any, ...], out: torch.Tensor) -> torch.Tensor:
    return out.float().cpu()


class DistributedStrategy:
    """The :class:`~shoal.training.strategy.Strategy` of one rank of a torch.distributed job (see the module
    docstring)::

        strategy = DistributedStrategy(config, ctx)
        Trainer(config, run_dir, callbacks, strategy=strategy).fit()

    ``config.train.batch_size`` is the global batch: it must be a multiple of the world size.
    """

    fuse_sparse_step = False  # the embedding rows' sparse gradients are all-gathered before the optimizer step

    def __init__(self, config: RunConfig, ctx: RankContext) -> None:
        t = config.train
        if t.batch_size % ctx.world:
            raise ValueError(f"train.batch_size {t.batch_size} is the global batch and must be a multiple of the "
                             f"{ctx.world} processes; use e.g. {t.batch_size - t.batch_size % ctx.world + ctx.world}")
        self.config = config
        self.ctx = ctx
        self.torchrec = t.embeddings.backend == "torchrec"
        self._arches: list[Any] = []  # TorchRecSparseArch modules, when torchrec

    @property
    def is_main(self) -> bool:
        return self.ctx.is_main

    # -- data ------------------------------------------------------------------------------------------------
    def prepare(self, config: RunConfig, run_dir: Path, callbacks: Callbacks) -> TrainingData:
        """Rank 0's first pass, shared with every rank; each rank's training rows are its shard."""
        ctx = self.ctx
        data: TrainingData | None = None
        shared: list[dict[str, Any] | None] = [None]
        if ctx.is_main:
            data = TrainingData.scan(config, run_dir, callbacks)
            spans = RankRows.byte_ranges(config, data.chunk_spans)
            assert isinstance(data.train, FileRows)
            cached = data.train.cached
            data.train = RankRows(config, ctx, data.encoder, spans,
                                  None if cached is None else cached[ctx.rank::ctx.world])  # chunk ci at index ci
            shared = [{"encoder": data.encoder.to_dict(), "summary": data.summary, "spans": spans}]
        dist.broadcast_object_list(shared, src=0)
        if data is None:
            data = self._from_rank_zero(config, shared[0] or {})
        rows = data.train
        assert isinstance(rows, RankRows)
        counts = [torch.zeros(1, dtype=torch.int64) for _ in range(ctx.world)]
        dist.all_gather(counts, torch.tensor([rows.count()], dtype=torch.int64))
        rows.plan = StepPlan([int(c) for c in counts], config.train.batch_size // ctx.world, ctx.rank)
        if min(rows.plan.rank_rows) == 0:
            raise ValueError(f"{config.data.train}: a process has no training rows (fewer chunks of "
                             f"data.chunk_rows={config.data.chunk_rows} rows than the {ctx.world} processes); "
                             "lower data.chunk_rows or use fewer processes")
        data.summary.update({"world_size": ctx.world, "rank_batch_size": rows.plan.rank_batch,
                             "steps_per_epoch": rows.plan.steps, "input_shards": rows.input_shards()})
        return data

    def _from_rank_zero(self, config: RunConfig, shared: dict[str, Any]) -> TrainingData:
        """A rank other than 0: rank 0's first pass over the whole file (``shared``: its fitted encoder, run
        summary and chunk byte ranges) instead of its own; this rank reads and encodes only its chunks, in memory
        when they fit ``train.cache_mb``. Validation and test rows stay with rank 0, which scores them
        (:meth:`scores`): here they are counted, never read."""
        encoder = Encoder.from_dict(shared["encoder"])
        summary = dict(shared["summary"])
        rows = RankRows(config, self.ctx, encoder, shared["spans"], None)
        cache = BatchCache(config.train.cache_mb << 20)
        silent = BadRowSink("count")  # rank 0 reports the bad rows
        cached: list[Batch] | None = []
        for _, chunk in rows.own_chunks():
            cached = cache.keep(cached, encoder.encode(chunk, silent))
            if cached is None:
                break  # too large: streamed from the file at every epoch
        rows.cached = cached

        def rank_zero_reads(sink: BadRowSink) -> Iterator[Chunk]:
            raise RuntimeError(f"rank {self.ctx.rank} has no validation or test rows: rank 0 scores them")

        valid = EvalSet("valid", rank_zero_reads, summary["valid_rows"]) if summary["valid_rows"] else None
        test = EvalSet("test", rank_zero_reads, summary["test_rows"]) if summary["test_rows"] else None
        return TrainingData(config, encoder, rows, valid, test, summary, [])

    # -- model -----------------------------------------------------------------------------------------------
    def setup(self, model: nn.Module) -> nn.Module:
        """Move the model to this rank's device (CPU inputs in, float32 CPU logits out); shard its tables with
        TorchRec."""
        ctx, t = self.ctx, self.config.train
        model.to(ctx.device)
        if ctx.device.type == "cuda":
            model.register_forward_pre_hook(_to_device(ctx.device))
            model.register_forward_hook(_to_cpu)
        if self.torchrec:
            from shoal.models.torchrec_backend import replace_sparse_arches

            self._arches = replace_sparse_arches(
                model, t.embeddings.sharding,
                {"lr": t.embedding_lr, "weight_decay": t.embedding_weight_decay}, ctx.device)
        return model

    def training_module(self, model: nn.Module) -> nn.Module:
        """The module the training steps call: DDP over the dense parameters, the sparse all-reduce hooked on the
        native tables, bf16 autocast on CUDA."""
        ctx = self.ctx
        sparse = {f"{name}.weight": m.weight for name, m in model.named_modules()
                  if isinstance(m, nn.EmbeddingBag) and m.sparse}
        for weight in sparse.values():
            weight.register_post_accumulate_grad_hook(lambda w: all_reduce_sparse_grad(w, ctx))
        if ctx.world == 1 or not any(p.requires_grad for n, p in model.named_parameters() if n not in sparse):
            return _Replica(model, bf16=ctx.device.type == "cuda")
        DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, list(sparse))
        ddp = DistributedDataParallel(model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None,
                                      forward_sync_buffers=False, gradient_as_bucket_view=True)
        return _Replica(ddp, bf16=ctx.device.type == "cuda")

    # -- validation ------------------------------------------------------------------------------------------
    def scores(self, model: nn.Module, data: TrainingData, rows: EvalSet) -> Scores:
        """Rank 0 scores the validation/test rows. Another rank's scores would be thrown away (every rank takes
        rank 0's metrics, see :meth:`agree`), so it returns a stand-in of 2 rows. With native tables it leaves
        the cores to rank 0; with TorchRec every rank must join every forward (its shards serve the lookups)."""
        if self.torchrec:
            return self._joined_scores(model, data, rows)
        if self.ctx.is_main:
            return scores(model, data.eval_batches(rows))
        return _stand_in(data.encoder)

    def _joined_scores(self, model: nn.Module, data: TrainingData, rows: EvalSet) -> Scores:
        """Before each forward rank 0 sends the number of rows, and the others run a forward on as many rows of
        missing values; 0 rows ends the set."""
        size = torch.zeros(1, dtype=torch.int64)
        if self.ctx.is_main:
            def announced(batches: Iterable[Batch]) -> Iterator[Batch]:
                for batch in batches:
                    for s in range(0, len(batch), SCORE_BATCH):
                        part = batch.slice(s, s + SCORE_BATCH)
                        size[0] = len(part)
                        dist.broadcast(size, src=0)
                        yield part
                size[0] = 0
                dist.broadcast(size, src=0)  # done

            return scores(model, announced(data.eval_batches(rows)))
        was_training = model.training
        model.eval()
        with torch.no_grad():
            while True:
                dist.broadcast(size, src=0)
                if not int(size[0]):
                    break
                model(*_missing_rows(data.encoder, int(size[0])).inputs())
        model.train(was_training)
        return _stand_in(data.encoder)

    def agree(self, metrics: dict[str, float]) -> dict[str, float]:
        """Rank 0's validation metrics, on every rank: every rank decides early stopping on the same numbers, so
        no rank can stop alone (and hang the others) over a last-bit difference."""
        shared = [metrics if self.ctx.is_main else None]
        dist.broadcast_object_list(shared, src=0)
        return dict(shared[0] or {})

    # -- files -----------------------------------------------------------------------------------------------
    def checkpointer(self, run_dir: Path) -> Checkpointer:
        """Rank 0 writes; every epoch end is checkpointed, the same on every rank (with TorchRec, saving is a
        collective that every rank must join)."""
        return Checkpointer(run_dir, writes=self.ctx.is_main, every_epoch=True, copy_best=self.torchrec, extras=self)

    def checkpoint_state(self) -> dict[str, Any]:
        """The checkpoint's TorchRec optimizer states and the number of processes."""
        return {"torchrec_optimizers": [a.optimizer_state() for a in self._arches], "world_size": self.ctx.world}

    def restore_checkpoint_state(self, state: dict[str, Any]) -> None:
        saved_world = state.get("world_size", 1)
        if saved_world != self.ctx.world:
            raise ValueError(f"this run was checkpointed with {saved_world} processes; resume it with "
                             f"--nproc {saved_world} (the input shards depend on the number of processes)")
        for arch, acc in zip(self._arches, state.get("torchrec_optimizers", []), strict=False):
            arch.load_optimizer_state(acc.to(self.ctx.device))

    def share_run_files(self, run_dir: Path) -> None:
        """Resuming: send rank 0's checkpoint and best weights to the other ranks' scratch folders."""
        files = [CHECKPOINT_FILE, BEST_FILE]
        payload: list[Any] = [None]
        if self.ctx.is_main:
            payload = [{n: (run_dir / n).read_bytes() for n in files if (run_dir / n).is_file()}]
        dist.broadcast_object_list(payload, src=0)
        if not self.ctx.is_main:
            for name, data in (payload[0] or {}).items():
                (run_dir / name).write_bytes(data)
