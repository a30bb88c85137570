"""The Trainer on W processes: data-parallel dense layers (DDP), replicated or sharded embedding tables.

Each rank runs the same :class:`~shoal.training.loop.Trainer` loop on its own shard of the training rows:

* **First pass.** Rank 0 reads the whole file (encoder statistics, counts, bad rows, the validation split) and
  sends its encoder, summary and (CSV/TSV/JSONL) the byte range of every chunk; the other ranks read only their
  own chunks: Parquet row groups or byte ranges.
* **Input sharding.** Rank r trains on the chunks ``ci`` (``data.chunk_rows`` rows each, in file order) with
  ``ci % W == r``. Each epoch, every chunk is shuffled with the generator seeded by (seed, epoch, ci), as in one
  process, and the rank's shuffled rows are cut into mini-batches of exactly ``batch_size / W`` rows (a chunk's
  remainder carries over to the next chunk). Every rank runs the same number of steps per epoch,
  ``ceil(max_r rows_r / (batch_size / W))``: a rank with fewer rows goes on from its first rows again, as
  torch's DistributedSampler pads, so an epoch trains at most ``W * (chunk_rows + batch_size)`` repeated rows.
  Collectives never wait on a rank that has run out, and every step is a full batch on every rank (TorchRec's
  row-wise sharding needs equal batch sizes).
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
  is checkpointed. Resuming, rank 0 sends its checkpoint and best weights to the other ranks, so the ranks need
  no shared file system.
* **Devices.** CUDA: each rank uses ``cuda:LOCAL_RANK`` (nccl), the training forward runs under bf16
  autocast, the model takes CPU inputs and returns float32 CPU logits (so the trainer's loss, metrics and
  files are as on CPU).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
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
from shoal.data.readers import BadRowSink, ByteRange, Chunk, byte_ranges, detect_format, read_parquet_chunks
from shoal.data.stream import chunk_at, chunks, valid_mask
from shoal.training.callbacks import Callbacks
from shoal.training.loop import SCORE_BATCH, BatchCache, EvalSet, Position, Trainer, scores

__all__ = ["DistributedTrainer", "RankContext", "all_reduce_sparse_grad"]

log = logging.getLogger(__name__)


@dataclass
class RankContext:
    """This process's place in the job: rank, world size, device, and a second group for sparse gradients."""

    rank: int
    world: int
    local_rank: int
    device: torch.device
    sparse_group: dist.ProcessGroup | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0


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
                 label=np.zeros(rows, dtype=np.float32), lines=np.arange(rows, dtype=np.int64))


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


class _RankCallbacks(Callbacks):
    """Rank 0 reports (rows and rows/s of all ranks); every rank takes rank 0's validation metrics."""

    def __init__(self, inner: Callbacks, ctx: RankContext) -> None:
        self.inner = inner
        self.ctx = ctx

    def on_scan(self, rows: int) -> None:
        if self.ctx.is_main:
            self.inner.on_scan(rows)

    def on_start(self, rows_per_epoch: int, epochs: int, resumed_rows: int) -> None:
        if self.ctx.is_main:
            self.inner.on_start(rows_per_epoch, epochs, resumed_rows)  # the trainer counts every rank's rows

    def on_step(self, rows: int, loss: float, rows_per_s: float) -> None:
        if self.ctx.is_main:
            self.inner.on_step(rows, loss, rows_per_s)

    def on_eval(self, epoch: int, step: int, metrics: dict[str, float]) -> None:
        # The trainer decides early stopping from this dict after this call: every rank decides on rank 0's
        # numbers, so no rank can stop alone (and hang the others) over a last-bit difference.
        shared = [metrics if self.ctx.is_main else None]
        dist.broadcast_object_list(shared, src=0)
        received = dict(shared[0] or {})  # on rank 0, shared[0] is ``metrics`` itself
        metrics.clear()
        metrics.update(received)
        if self.ctx.is_main:
            self.inner.on_eval(epoch, step, metrics)

    def on_end(self, stopped_early: bool) -> None:
        if self.ctx.is_main:
            self.inner.on_end(stopped_early)


class DistributedTrainer(Trainer):
    """:class:`~shoal.training.loop.Trainer` for one rank of a torch.distributed job (see the module docstring).

    ``config.train.batch_size`` is the global batch: it must be a multiple of the world size.
    """

    fuse_sparse_step = False  # the embedding rows' sparse gradients are all-gathered before the optimizer step

    def __init__(self, config: RunConfig, run_dir: Path, ctx: RankContext, callbacks: Callbacks | None = None) -> None:
        t = config.train
        if t.batch_size % ctx.world:
            raise ValueError(f"train.batch_size {t.batch_size} is the global batch and must be a multiple of the "
                             f"{ctx.world} processes; use e.g. {t.batch_size - t.batch_size % ctx.world + ctx.world}")
        super().__init__(config, run_dir, _RankCallbacks(callbacks or Callbacks(), ctx))
        self.ctx = ctx
        self.rank_batch = t.batch_size // ctx.world
        self.steps_per_epoch = 0
        self.rank_rows: list[int] = []  # training rows of each rank (known after _prepare)
        self.torchrec = t.embeddings.backend == "torchrec"
        self._arches: list[Any] = []  # TorchRecSparseArch modules, when torchrec
        self._epoch = 0  # the epoch _train_batches serves next (for the shuffle seed)
        self._spans: list[ByteRange] | None = None  # where each chunk of a CSV/TSV/JSONL training file lies

    # The base trainer checkpoints an epoch end only when its last checkpoint is older than a few seconds, a
    # per-process clock; here every epoch end is checkpointed, the same on every rank (with TorchRec, saving is
    # a collective that every rank must join).
    @property
    def _last_checkpoint(self) -> float:
        return float("-inf")

    @_last_checkpoint.setter
    def _last_checkpoint(self, value: float) -> None:
        pass

    # -- data --------------------------------------------------------------------------------------------------
    def _prepare(self) -> tuple[Encoder, EvalSet | None, EvalSet | None, dict[str, Any]]:
        ctx = self.ctx
        if ctx.is_main:
            encoder, valid, test, summary = super()._prepare()
            if self.train_cache is not None:
                self.train_cache = self.train_cache[ctx.rank::ctx.world]  # chunk ci is cached at index ci
            self._spans = self._byte_ranges()
        shared: list[dict[str, Any] | None] = [
            {"encoder": encoder.to_dict(), "summary": summary, "spans": self._spans} if ctx.is_main else None]
        dist.broadcast_object_list(shared, src=0)
        if not ctx.is_main:
            self._spans = (shared[0] or {})["spans"]
            encoder, valid, test, summary = self._prepare_from(shared[0] or {})
        if self.train_cache is not None:
            own = sum(len(b) for b in self.train_cache)
        else:
            own = sum(len(c.lines) for _, c in self._own_chunks(encoder))
        counts = [torch.zeros(1, dtype=torch.int64) for _ in range(ctx.world)]
        dist.all_gather(counts, torch.tensor([own], dtype=torch.int64))
        self.rank_rows = [int(c) for c in counts]  # training rows of each rank: which steps pad, and where
        most, fewest = max(self.rank_rows), min(self.rank_rows)
        if fewest == 0:
            raise ValueError(f"{self.config.data.train}: a process has no training rows (fewer chunks of "
                             f"data.chunk_rows={self.config.data.chunk_rows} rows than the {ctx.world} processes); "
                             "lower data.chunk_rows or use fewer processes")
        self.steps_per_epoch = -(-most // self.rank_batch)
        summary.update({"world_size": ctx.world, "rank_batch_size": self.rank_batch,
                        "steps_per_epoch": self.steps_per_epoch, "input_shards": self._shard_kind()})
        return encoder, valid, test, summary

    def _prepare_from(self, shared: dict[str, Any]) -> tuple[Encoder, EvalSet | None, EvalSet | None,
                                                            dict[str, Any]]:
        """A rank other than 0: rank 0's first pass over the whole file (``shared``: its fitted
        encoder and run summary) instead of its own; this rank reads and encodes only its chunks (Parquet: only
        their row groups), in memory when they fit ``train.cache_mb``. Validation and test rows stay with rank 0,
        which scores them (:meth:`_scores`): here they are counted, never read."""
        encoder = Encoder.from_dict(shared["encoder"])
        summary = dict(shared["summary"])
        self.cache = BatchCache(self.config.train.cache_mb << 20)
        silent = BadRowSink("count")  # rank 0 reports the bad rows
        cached: list[Batch] | None = []
        for _, chunk in self._own_chunks(encoder):
            cached = self.cache.keep(cached, encoder.encode(chunk, silent))
            if cached is None:
                break  # too large: streamed from the file at every epoch
        self.train_cache = cached

        def rank_zero_reads(sink: BadRowSink) -> Iterator[Chunk]:
            raise RuntimeError(f"rank {self.ctx.rank} has no validation or test rows: rank 0 scores them")

        valid = EvalSet("valid", rank_zero_reads, summary["valid_rows"]) if summary["valid_rows"] else None
        test = EvalSet("test", rank_zero_reads, summary["test_rows"]) if summary["test_rows"] else None
        return encoder, valid, test, summary

    def _byte_ranges(self) -> list[ByteRange] | None:
        """After the first pass: where each training chunk of a CSV/TSV/JSONL file lies, so that a rank reads its
        chunks' bytes alone; None for Parquet (row groups instead) or a file whose lines are not its records."""
        path = Path(self.config.data.train)
        if detect_format(path, self.config.data.format) == "parquet":
            return None
        spans = byte_ranges(path, self.chunk_spans)
        if spans is None:
            log.warning("%s: its lines are not its records (a quoted line end, a lone \\r, a blank JSONL line or "
                        "bad rows at the end): every process parses the whole file to find its chunks", path)
        return spans

    def _shard_kind(self) -> str:
        """How a rank reads its chunks (the run summary's ``input_shards``)."""
        if detect_format(Path(self.config.data.train), self.config.data.format) == "parquet":
            return "parquet row groups"
        return "byte ranges" if self._spans is not None else "whole file, parsed by every process"

    def _own_chunks(self, encoder: Encoder) -> Iterator[tuple[int, Chunk]]:
        """(chunk index, training rows of the chunk) for this rank's chunks, streamed from the file.

        Parquet: only the row groups that hold this rank's chunks are read. CSV/TSV/JSONL: only the byte ranges of
        this rank's chunks, found by the first pass (:func:`~shoal.data.readers.byte_ranges`); where the file's
        lines are not its records, the whole file is parsed and the other ranks' chunks are skipped."""
        cfg, ctx = self.config, self.ctx
        use_split = cfg.data.holds_out
        path = Path(cfg.data.train)
        own: Iterator[tuple[int, Chunk]]
        columns = encoder.columns()
        if detect_format(path, cfg.data.format) == "parquet":
            own = read_parquet_chunks(path, columns=columns, chunk_rows=cfg.data.chunk_rows,
                                      select=lambda ci: ci % ctx.world == ctx.rank)
        elif self._spans is not None:
            spans = self._spans
            own = ((ci, chunk_at(path, cfg.data, columns, spans[ci])) for ci in range(ctx.rank, len(spans), ctx.world))
        else:
            own = ((ci, c) for ci, c in enumerate(chunks(path, cfg.data, columns, BadRowSink("count")))
                   if ci % ctx.world == ctx.rank)
        for ci, chunk in own:
            if use_split:
                keep = ~valid_mask(chunk.lines, cfg.data.valid_fraction, cfg.train.seed)
                chunk = chunk.rows(keep)
            yield ci, chunk

    def _shuffled(self, encoder: Encoder, epoch: int) -> Iterator[Batch]:
        """This rank's chunks, encoded, each shuffled by (seed, epoch, chunk index)."""
        seed = self.config.train.seed
        if self.train_cache is not None:
            own: Iterator[tuple[int, Batch]] = ((ci * self.ctx.world + self.ctx.rank, b)
                                                for ci, b in enumerate(self.train_cache))
        else:
            silent = BadRowSink("count")
            own = ((ci, encoder.encode(c, silent)) for ci, c in self._own_chunks(encoder))
        for ci, batch in own:
            if len(batch):
                yield batch.take(np.random.default_rng([seed, epoch, ci]).permutation(len(batch)))

    def _padding_weights(self, step: int) -> np.ndarray | None:
        """The loss weights of this rank's rows at ``step``, or None when no rank pads at that step.

        A rank that has run out of rows goes on with its first rows again (every rank must take every step), but
        those rows weigh 0: training on rows seen earlier in the epoch is the "one-epoch" overfitting of models
        with large embedding tables (Zhang et al. 2022), which cost 0.016 AUC on a 2M-row log when a few dozen
        such steps ended the epoch. The real rows weigh W * b / R, R the real rows of the step over all ranks,
        so the step is the mean over those R rows, as one process would take it."""
        real = self._real_rows(step)
        if sum(real) == self.ctx.world * self.rank_batch:
            return None
        weights = np.zeros(self.rank_batch, dtype=np.float32)
        weights[:real[self.ctx.rank]] = self.ctx.world * self.rank_batch / sum(real)  # real rows first (see below)
        return weights

    def _real_rows(self, step: int) -> list[int]:
        """The rows of each rank at ``step`` that are not padding."""
        return [min(max(rows - step * self.rank_batch, 0), self.rank_batch) for rows in self.rank_rows]

    def _rows_in_step(self, index: int, batch: Batch) -> int:
        return sum(self._real_rows(index))  # every rank's real rows (an item of _train_batches is a step)

    def _train_batches(self, encoder: Encoder, skip: int) -> Iterator[tuple[int, Batch]]:
        """(step in the epoch, this rank's mini-batch of ``batch_size / W`` rows), from step ``skip`` on.

        One item is one step: the trainer's loop cuts it with the global batch size, so it stays whole. The
        rows of step s are rows [s * b, (s + 1) * b) of the rank's stream, its shuffled chunks and then, as
        padding, the same again: so a step's real rows come first (:meth:`_padding_weights`).
        """
        epoch, self._epoch = self._epoch, self._epoch + 1
        b, total = self.rank_batch, self.steps_per_epoch
        step, pending, pending_rows = 0, [], 0  # type: tuple[int, list[Batch], int]
        while step < total:  # a second pass pads a rank that has fewer rows than the largest shard
            for batch in self._shuffled(encoder, epoch):
                pending.append(batch)
                pending_rows += len(batch)
                if pending_rows < b:
                    continue
                rows = Batch.concat(pending)
                start = 0
                while len(rows) - start >= b and step < total:
                    if step >= skip:
                        mb = rows.slice(start, start + b)
                        mb.weight = self._padding_weights(step)
                        yield step, mb
                    start, step = start + b, step + 1
                if step >= total:
                    return
                pending = [rows.slice(start, len(rows))] if start < len(rows) else []
                pending_rows = len(rows) - start

    def _scores(self, model: nn.Module, encoder: Encoder,  # type: ignore[override]  # base: a staticmethod
                data: EvalSet) -> tuple[np.ndarray, np.ndarray]:
        """Rank 0 scores the validation/test rows. Another rank's scores would be thrown away (every rank takes
        rank 0's metrics, see _RankCallbacks), so it returns a stand-in of 2 rows. With native tables it leaves
        the cores to rank 0; with TorchRec every rank must join every forward (its shards serve the lookups):
        before each forward rank 0 sends the number of rows, and the others run a forward on as many rows of
        missing values (:meth:`_joined_scores`)."""
        if self.torchrec:
            return self._joined_scores(model, encoder, data)
        if self.ctx.is_main:
            return Trainer._scores(model, encoder, data)
        return self._stand_in(encoder)

    def _joined_scores(self, model: nn.Module, encoder: Encoder, data: EvalSet) -> tuple[np.ndarray, np.ndarray]:
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

            return scores(model, announced(self._eval_batches(encoder, data)))
        was_training = model.training
        model.eval()
        with torch.no_grad():
            while True:
                dist.broadcast(size, src=0)
                if not int(size[0]):
                    break
                model(*_missing_rows(encoder, int(size[0])).inputs())
        model.train(was_training)
        return self._stand_in(encoder)

    @staticmethod
    def _stand_in(encoder: Encoder) -> tuple[np.ndarray, np.ndarray]:
        """(labels, logits) of 2 rows (one per class, all logits 0) for a rank whose scores are not used."""
        classes = max(encoder.outputs, 2)
        labels = np.arange(classes, dtype=np.float32)
        logits = np.zeros(classes if encoder.outputs == 1 else (classes, classes), dtype=np.float32)
        return labels, logits

    # -- model ---------------------------------------------------------------------------------------------------
    def _setup_model(self, model: nn.Module) -> nn.Module:
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

    def _training_module(self, model: nn.Module) -> nn.Module:
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

    # -- checkpoints -------------------------------------------------------------------------------------------
    def _keep_best(self, model: nn.Module) -> None:
        """Rank 0 keeps the best weights (the bundle's). Another rank needs them only with TorchRec, whose final
        evaluation is a collective over every rank's shards: it keeps them in memory, never on disk."""
        if self.ctx.is_main:
            super()._keep_best(model)
            return
        state = model.state_dict()  # with TorchRec, the gather that rank 0's state_dict() waits for
        self._best = {k: v.detach().clone() for k, v in state.items()} if self.torchrec else None

    def _save_checkpoint(self, model: nn.Module, opts: list[torch.optim.Optimizer | None], pos: Position) -> None:
        model_state = model.state_dict()  # with TorchRec, a gather every rank joins
        fused = [a.optimizer_state() for a in self._arches]
        if not self.ctx.is_main:
            return
        self._flush_best()
        state = {
            "model": model_state,
            "optimizers": [None if o is None else o.state_dict() for o in opts],
            "position": {k: v for k, v in asdict(pos).items() if k != "history"},
            "history": [list(h.items()) for h in pos.history],
            "torchrec_optimizers": fused,
            "world_size": self.ctx.world,
        }
        tmp = self.checkpoint_path.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.checkpoint_path)

    def _load_checkpoint(self, model: nn.Module, opts: list[torch.optim.Optimizer | None]) -> Position:
        pos = super()._load_checkpoint(model, opts)
        state = torch.load(self.checkpoint_path, weights_only=True)
        saved_world = state.get("world_size", 1)
        if saved_world != self.ctx.world:
            raise ValueError(f"this run was checkpointed with {saved_world} processes; resume it with "
                             f"--nproc {saved_world} (the input shards depend on the number of processes)")
        for arch, acc in zip(self._arches, state.get("torchrec_optimizers", []), strict=False):
            arch.load_optimizer_state(acc.to(self.ctx.device))
        self._epoch = pos.epoch
        return pos

    def share_run_files(self) -> None:
        """Resuming: send rank 0's checkpoint and best weights to the other ranks' scratch folders."""
        files = [self.checkpoint_path.name, self.best_path.name]
        payload: list[Any] = [None]
        if self.ctx.is_main:
            payload = [{n: (self.run_dir / n).read_bytes() for n in files if (self.run_dir / n).is_file()}]
        dist.broadcast_object_list(payload, src=0)
        if not self.ctx.is_main:
            for name, data in (payload[0] or {}).items():
                (self.run_dir / name).write_bytes(data)
