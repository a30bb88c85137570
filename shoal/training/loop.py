"""The Trainer: streaming batches, sparse-aware optimizers, validation, early stopping, checkpoints, resume.

One training run, step by step:

1. A first pass over the training file fits the encoder (dense statistics), counts rows and the base rate,
   reports bad rows (error or quarantine) and sets aside the validation rows (``data.valid_fraction`` of the
   lines, chosen by a stable hash of the line number) unless ``data.valid`` names a file.
2. Each epoch streams the file again in chunks (or reuses the encoded chunks of pass 1 when they fit in
   ``train.cache_mb``); each chunk is shuffled with a generator seeded by (seed, epoch, chunk), cut into
   mini-batches, and trained on: Adagrad on the embedding rows a batch touches (sparse gradients), Adam on the
   dense parameters.
3. Every ``checkpoint_every`` steps (and at the end of an epoch when the last checkpoint is older than 30 s)
   the model, both optimizers and the position (epoch, chunk, batch) are written atomically to
   ``checkpoint.pt``. Resuming re-reads the file up to that position and continues, so a killed run that is
   resumed ends where an uninterrupted run ends.
4. After each epoch (or every ``eval_every`` steps) the validation log loss decides early stopping; the best
   weights are kept (in memory, and in ``best.safetensors`` by every checkpoint) and become the bundle.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from shoal.artifacts.bundle import save_bundle
from shoal.config import RunConfig
from shoal.data.batch import Batch
from shoal.data.encoder import Encoder
from shoal.data.readers import BadRowSink, Chunk
from shoal.data.stream import chunks, valid_mask
from shoal.metrics import binary_report, confusion_matrix, multiclass_report, probabilities
from shoal.models import build
from shoal.models.embeddings import SparseArch
from shoal.plots import confusion_png
from shoal.training.callbacks import Callbacks
from shoal.training.optimizers import RowWiseAdagrad

__all__ = ["Callbacks", "TrainResult", "Trainer", "report", "scores"]

log = logging.getLogger(__name__)

NO_ROWS = "no rows to evaluate"
BEST_IN_MEMORY_BYTES = 512 << 20  # best weights up to this size wait in memory for the next checkpoint
EPOCH_CHECKPOINT_SECONDS = 30.0  # an epoch end is checkpointed when the last checkpoint is older than this
_LINE = "__shoal_line__"  # the split file's column holding each row's line in the training file


@dataclass
class Position:
    """Where training stands; saved in every checkpoint."""

    epoch: int = 0
    chunk: int = 0
    batch: int = 0  # next batch to train within the chunk
    step: int = 0
    rows: int = 0
    best_loss: float = float("inf")
    bad_evals: int = 0
    stopped_early: bool = False
    history: list[dict[str, float]] = field(default_factory=list)
    train_seconds: float = 0.0


@dataclass
class TrainResult:
    metrics: dict[str, Any]
    summary: dict[str, Any]
    bundle: Path


Prior = float | list[float]  # the training base rate (binary) or class frequencies (multiclass)


SCORE_BATCH = 8192  # rows per forward when scoring a validation/test set


@torch.no_grad()
def scores(model: nn.Module, batches: Iterable[Batch], batch_size: int = SCORE_BATCH) -> tuple[np.ndarray, np.ndarray]:
    """(labels (N,), logits (N,) or (N, C)) of ``model`` over encoded batches; raises NO_ROWS when empty.

    Only the labels and logits are kept (4 bytes + 4 per output a row), so a set of any size streams through.
    """
    was_training = model.training
    model.eval()
    labels, logits = [], []
    for batch in batches:
        assert batch.label is not None
        labels.append(batch.label)
        for s in range(0, len(batch), batch_size):
            part = batch if len(batch) <= batch_size else batch.slice(s, s + batch_size)
            logits.append(model(*part.inputs()).numpy())
    model.train(was_training)
    if not labels:
        raise ValueError(NO_ROWS)
    return np.concatenate(labels), np.concatenate(logits)


def report(labels: np.ndarray, logits: np.ndarray, prior: Prior) -> dict[str, float]:
    """Binary metrics (AUC, NE against the training base rate, ...) or multiclass ones (accuracy, macro-F1, ...)."""
    if logits.ndim == 1:
        assert isinstance(prior, float | int)
        return binary_report(labels, probabilities(logits), base_rate=float(prior))
    return multiclass_report(labels, probabilities(logits), prior=prior)


def _training_loss(logits: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """The mean loss of a mini-batch: cross-entropy ((B, C) logits) or binary cross-entropy ((B,) logits), each
    row weighted by ``weight`` when given (the distributed trainer's padding rows weigh 0)."""
    reduction = "mean" if weight is None else "none"
    if logits.ndim == 2:
        loss = nn.functional.cross_entropy(logits, labels.long(), reduction=reduction)
    else:
        loss = nn.functional.binary_cross_entropy_with_logits(logits, labels, reduction=reduction)
    return loss if weight is None else (loss * weight).mean()


class BatchCache:
    """Encoded batches kept in memory while they fit in ``budget`` bytes (shared by all the sets of a run).

    A small data set is read and encoded once instead of once per epoch and evaluation; a large one streams
    from disk as before. Adding a batch that does not fit empties the list: a set is cached whole or not at all.
    """

    def __init__(self, budget: int) -> None:
        self.left = budget

    def keep(self, batches: list[Batch] | None, batch: Batch) -> list[Batch] | None:
        if batches is None:
            return None
        if batch.nbytes > self.left:
            self.left += sum(b.nbytes for b in batches)
            return None
        self.left -= batch.nbytes
        batches.append(batch)
        return batches


@dataclass
class EvalSet:
    """Rows to evaluate on: encoded in memory when they fit the cache, else re-read from disk at each use."""

    name: str
    read: Callable[[BadRowSink], Iterator[Chunk]]
    rows: int
    cached: list[Batch] | None = None


def _with_lines(table: pa.Table, lines: np.ndarray, fmt: str | None) -> pa.Table:
    """The held-out rows as written to the split file: JSONL columns as text (their types may vary by block)."""
    if fmt == "jsonl":
        table = pa.table({c: pc.cast(table.column(c), pa.string()) for c in table.column_names})
    return table.append_column(_LINE, pa.array(lines, pa.int64()))


def _split_reader(path: Path, chunk_rows: int, source: str) -> Callable[[BadRowSink], Iterator[Chunk]]:
    """Chunks of the split file, carrying the line numbers of the original training file."""

    def read(sink: BadRowSink) -> Iterator[Chunk]:
        for rb in pq.ParquetFile(path).iter_batches(batch_size=chunk_rows):
            table = pa.Table.from_batches([rb])
            yield Chunk(table.drop_columns([_LINE]), table.column(_LINE).to_numpy(), source)

    return read


BatchLoss = Callable[[torch.Tensor, Batch], torch.Tensor]  # (logits of a mini-batch, the mini-batch) -> loss


class Trainer:
    """Trains ``config`` into ``run_dir`` (checkpoint, best weights, quarantine file, bundle).

    ``loss`` replaces the training loss (cross-entropy on the labels); it gets each mini-batch with its rows'
    line numbers, e.g. to look up a teacher's outputs (:mod:`shoal.distill`). Validation is unchanged.
    """

    fuse_sparse_step = True  # embedding rows updated inside the backward (SparseArch.fuse); DDP needs the .grad

    def __init__(self, config: RunConfig, run_dir: Path, callbacks: Callbacks | None = None,
                 loss: BatchLoss | None = None) -> None:
        self.config = config
        self.run_dir = Path(run_dir)
        self.callbacks = callbacks or Callbacks()
        self.loss = loss
        self.checkpoint_path = self.run_dir / "checkpoint.pt"
        self.best_path = self.run_dir / "best.safetensors"
        self._best: dict[str, torch.Tensor] | None = None  # best weights not yet written (see _keep_best)
        self._last_checkpoint = time.perf_counter()

    # -- pass 1: fit the encoder, count, split --------------------------------------------------------------
    def _prepare(self) -> tuple[Encoder, EvalSet | None, EvalSet | None, dict[str, Any]]:
        cfg = self.config
        cache = self.cache = BatchCache(cfg.train.cache_mb << 20)
        self.train_cache: list[Batch] | None = []
        self.chunk_spans: list[tuple[int, int, int]] = []  # (first line, last line, rows) of each training chunk
        held_cache: list[Batch] | None = []
        encoder = Encoder(cfg.features, cfg.label)
        qpath = self.run_dir / "quarantine.jsonl"
        qpath.unlink(missing_ok=True)
        sink = BadRowSink(cfg.data.on_bad_rows, qpath)
        use_split = cfg.data.holds_out

        if encoder.needs_classes:
            encoder.fit_classes(chunks(cfg.data.train, cfg.data, [cfg.label.column], BadRowSink("count")))
        if encoder.needs_fit:
            # statistics for standardization and bins (bad rows are skipped here, reported in the pass below)
            encoder.fit(chunks(cfg.data.train, cfg.data, encoder.columns(), BadRowSink("count")),
                        BadRowSink("count"), max_rows=2**62)
        else:
            encoder.fitted_ = True
        # One pass to report bad rows (once), count labels and write the held-out rows to a split file.
        rows = held_rows = truncated = 0
        counts = np.zeros(max(encoder.outputs, 2), dtype=np.int64)  # rows per class (binary: negatives, positives)
        split_path = self.run_dir / "valid-split.parquet"
        split_path.unlink(missing_ok=True)
        writer: pq.ParquetWriter | None = None
        try:
            for chunk in chunks(cfg.data.train, cfg.data, encoder.columns(), sink):
                self.chunk_spans.append((int(chunk.lines[0]), int(chunk.lines[-1]), len(chunk)))
                if use_split:
                    mask = valid_mask(chunk.lines, cfg.data.valid_fraction, cfg.train.seed)
                    held, chunk = chunk.rows(mask), chunk.rows(~mask)
                    if len(held):
                        good = encoder.encode(held, sink)  # reports the held-out bad rows too
                        keep = np.isin(held.lines, good.lines)
                        table = _with_lines(held.table.filter(pa.array(keep)), held.lines[keep], cfg.data.format)
                        writer = writer or pq.ParquetWriter(split_path, table.schema)
                        writer.write_table(table.cast(writer.schema))
                        held_cache = cache.keep(held_cache, good)
                        held_rows += len(good)
                        truncated += good.truncated
                batch = encoder.encode(chunk, sink)
                self.train_cache = cache.keep(self.train_cache, batch)
                truncated += batch.truncated
                assert batch.label is not None
                rows += len(batch)
                counts += np.bincount(batch.label.astype(np.int64), minlength=len(counts))
                self.callbacks.on_scan(rows + held_rows + sink.count)
        finally:
            if writer is not None:
                writer.close()
            sink.close()
        if rows == 0:
            raise ValueError(f"{cfg.data.train}: no usable training rows (all rows were bad or held out)")
        summary: dict[str, Any] = {"train_rows": rows, **sink.summary()}
        if encoder.multiclass:
            summary["classes"] = encoder.classes_
            summary["train_class_counts"] = counts.tolist()
            summary["train_class_prior"] = (counts / rows).tolist()
        else:
            summary["train_positives"] = int(counts[1])
            summary["train_base_rate"] = int(counts[1]) / rows
        if encoder.text_features:
            summary["text_truncated_rows"] = truncated  # texts longer than max_bytes, cut (training file)
        valid = None
        if use_split and held_rows:
            valid = EvalSet("valid", _split_reader(split_path, cfg.data.chunk_rows, str(cfg.data.train)), held_rows,
                            held_cache)
        elif cfg.data.valid is not None:
            valid = self._eval_file("valid", encoder, summary)
        test = self._eval_file("test", encoder, summary) if cfg.data.test is not None else None
        summary["valid_rows"] = 0 if valid is None else valid.rows
        summary["test_rows"] = 0 if test is None else test.rows
        return encoder, valid, test, summary

    def _eval_file(self, split: Literal["valid", "test"], encoder: Encoder, summary: dict[str, Any]) -> EvalSet:
        """Check a validation/test file once (bad rows reported and counted), then stream it at each use."""
        cfg = self.config
        columns = encoder.columns()
        found = cfg.data.file(split)
        assert found is not None
        path, options = found

        def read(sink: BadRowSink) -> Iterator[Chunk]:
            return chunks(path, options, columns, sink)

        sink = BadRowSink(cfg.data.on_bad_rows, self.run_dir / f"quarantine-{split}.jsonl")
        rows, cached = 0, []  # type: tuple[int, list[Batch] | None]
        for c in read(sink):
            batch = encoder.encode(c, sink)
            rows += len(batch)
            cached = self.cache.keep(cached, batch)
        sink.close()
        summary[f"{split}_quarantined_rows"] = sink.count
        return EvalSet(split, read, rows, cached)

    @staticmethod
    def _scores(model: nn.Module, encoder: Encoder, data: EvalSet) -> tuple[np.ndarray, np.ndarray]:
        return scores(model, Trainer._eval_batches(encoder, data))

    @staticmethod
    def _eval_batches(encoder: Encoder, data: EvalSet) -> Iterable[Batch]:
        """The encoded rows of a validation/test set: from memory when cached, else read again."""
        if data.cached is not None:
            return data.cached
        silent = BadRowSink("count")  # bad rows were reported when the set was prepared
        return (encoder.encode(c, silent) for c in data.read(silent))

    def _train_batches(self, encoder: Encoder, skip: int) -> Iterator[tuple[int, Batch]]:
        """(chunk index, encoded training rows of the chunk) from chunk ``skip`` on: from memory when cached."""
        if self.train_cache is not None:
            yield from enumerate(self.train_cache[skip:], start=skip)
            return
        cfg, t = self.config, self.config.train
        use_split = cfg.data.holds_out
        silent = BadRowSink("count")  # bad rows were reported in the first pass
        for ci, chunk in enumerate(chunks(cfg.data.train, cfg.data, encoder.columns(), silent)):
            if ci < skip:
                continue
            if use_split:
                keep = ~valid_mask(chunk.lines, cfg.data.valid_fraction, t.seed)
                chunk = chunk.rows(keep)
            yield ci, encoder.encode(chunk, silent)

    def _rows_in_step(self, index: int, batch: Batch) -> int:
        """Rows a step on ``batch`` (item ``index`` of :meth:`_train_batches`) trained on: the run summary's
        ``rows_trained`` (distributed: over all ranks)."""
        return batch.trained_rows

    # -- optimisation ----------------------------------------------------------------------------------------
    def _setup_model(self, model: nn.Module) -> nn.Module:
        """The model just built, before its optimizers exist: a subclass may move or re-shard it."""
        return model

    def _training_module(self, model: nn.Module) -> nn.Module:
        """The module the training steps call (:mod:`shoal.distributed` returns a DDP wrapper)."""
        return model

    def _optimizers(self, model: nn.Module) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer | None]:
        t = self.config.train
        sparse_ids = {id(m.weight) for m in model.modules() if isinstance(m, nn.EmbeddingBag) and m.sparse}
        sparse = [p for p in model.parameters() if id(p) in sparse_ids]
        dense = [p for p in model.parameters() if id(p) not in sparse_ids]
        opt_dense = torch.optim.Adam(dense, lr=t.lr, weight_decay=t.weight_decay)
        opt_sparse = (RowWiseAdagrad(sparse, lr=t.embedding_lr, weight_decay=t.embedding_weight_decay)
                      if sparse else None)
        if self.fuse_sparse_step and opt_sparse is not None:
            for m in model.modules():
                if isinstance(m, SparseArch):
                    m.fuse(opt_sparse)  # the Adagrad step inside the backward: no sparse .grad, rows gathered once
        return opt_dense, opt_sparse

    def _keep_best(self, model: nn.Module) -> None:
        """Remember the current weights as the best so far: in memory when small (written to ``best.safetensors``
        with the next checkpoint), else straight to disk. A checkpoint never refers to best weights not on disk."""
        state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
        if sum(v.nbytes for v in state.values()) <= BEST_IN_MEMORY_BYTES:
            self._best = state
        else:
            self._best = None
            save_file(state, str(self.best_path))

    def _flush_best(self) -> None:
        if self._best is not None:
            save_file(self._best, str(self.best_path))

    def _save_checkpoint(self, model: nn.Module, opts: list[torch.optim.Optimizer | None],
                         pos: Position) -> None:
        self._flush_best()
        self._last_checkpoint = time.perf_counter()
        state = {
            "model": model.state_dict(),
            "optimizers": [None if o is None else o.state_dict() for o in opts],
            "position": {k: v for k, v in asdict(pos).items() if k != "history"},
            "history": [list(h.items()) for h in pos.history],
        }
        tmp = self.checkpoint_path.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.checkpoint_path)  # atomic: a kill never leaves half a checkpoint

    def _load_checkpoint(self, model: nn.Module, opts: list[torch.optim.Optimizer | None]) -> Position:
        state = torch.load(self.checkpoint_path, weights_only=True)  # tensors and plain data only, no code
        model.load_state_dict(state["model"])
        for o, s in zip(opts, state["optimizers"], strict=True):
            if o is not None and s is not None:
                o.load_state_dict(s)
        pos = Position(**state["position"])
        pos.history = [dict(h) for h in state["history"]]
        return pos

    # -- the loop --------------------------------------------------------------------------------------------
    def fit(self, resume: bool = False) -> TrainResult:
        cfg, t = self.config, self.config.train
        if t.threads:
            torch.set_num_threads(t.threads)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        encoder, valid, test, summary = self._prepare()
        prior: Prior = summary["train_class_prior"] if encoder.multiclass else float(summary["train_base_rate"])
        torch.manual_seed(t.seed)
        model = build(cfg.model, encoder.dense_dim, encoder.buckets, encoder.outputs, encoder.sequence_slots)
        model = self._setup_model(model)
        opt_dense, opt_sparse = self._optimizers(model)
        opts = [opt_dense, opt_sparse]
        pos = Position()
        if resume and self.checkpoint_path.exists():
            pos = self._load_checkpoint(model, opts)
            log.info("resuming at epoch %d chunk %d batch %d (step %d)",
                     pos.epoch, pos.chunk, pos.batch, pos.step)
        elif resume:
            log.warning("no checkpoint in %s; starting from the beginning", self.run_dir)
        if valid is None:
            log.warning("no validation rows: early stopping is off and the last weights are kept")
        self.callbacks.on_start(int(summary["train_rows"]), t.epochs, pos.rows)
        model.train()
        net = self._training_module(model)  # what the steps call: the model itself, or its DDP wrapper
        started = time.perf_counter() - pos.train_seconds
        running = None

        def do_eval() -> bool:
            """Validate; keep the best weights; return True when training should stop."""
            if valid is None:
                return False
            m = report(*self._scores(model, encoder, valid), prior)
            m = {**m, "epoch": pos.epoch, "step": pos.step}
            pos.history.append(m)
            self.callbacks.on_eval(pos.epoch, pos.step, m)
            if m["logloss"] < pos.best_loss - 1e-6:
                pos.best_loss, pos.bad_evals = m["logloss"], 0
                self._keep_best(model)
            else:
                pos.bad_evals += 1
            return pos.bad_evals >= t.early_stopping_patience

        while pos.epoch < t.epochs and not pos.stopped_early:
            for ci, batch in self._train_batches(encoder, pos.chunk):
                order = np.random.default_rng([t.seed, pos.epoch, ci]).permutation(len(batch))
                shuffled = batch.take(order)  # one gather per chunk; the mini-batches are views of it
                starts = range(0, len(batch), t.batch_size)
                for bi, s in enumerate(starts):
                    if bi < pos.batch:
                        continue
                    mb = shuffled.slice(s, s + t.batch_size)
                    assert mb.label is not None
                    for o in opts:
                        if o is not None:
                            o.zero_grad(set_to_none=True)
                    out = net(*mb.inputs())
                    if self.loss is not None:
                        loss = self.loss(out, mb)
                    else:
                        loss = _training_loss(out, torch.from_numpy(mb.label),
                                              None if mb.weight is None else torch.from_numpy(mb.weight))
                    loss.backward()
                    for o in opts:
                        if o is not None:
                            o.step()
                    pos.step += 1
                    pos.rows += self._rows_in_step(ci, mb)
                    pos.batch = bi + 1
                    lv = float(loss.detach())
                    running = lv if running is None else 0.98 * running + 0.02 * lv
                    pos.train_seconds = time.perf_counter() - started
                    self.callbacks.on_step(pos.rows, running, pos.rows / max(pos.train_seconds, 1e-9))
                    stop = False
                    if t.eval_every and pos.step % t.eval_every == 0:
                        stop = do_eval()
                    if pos.step % t.checkpoint_every == 0 or stop:
                        self._save_checkpoint(model, opts, pos)
                    if stop:
                        pos.stopped_early = True
                        break
                if pos.stopped_early:
                    break
                pos.chunk, pos.batch = ci + 1, 0
            if pos.stopped_early:
                break
            pos.epoch, pos.chunk, pos.batch = pos.epoch + 1, 0, 0
            if not t.eval_every:
                pos.stopped_early = do_eval()
            if time.perf_counter() - self._last_checkpoint >= EPOCH_CHECKPOINT_SECONDS:
                self._save_checkpoint(model, opts, pos)  # short epochs are cheaper to redo than to save

        pos.train_seconds = time.perf_counter() - started
        self.callbacks.on_end(pos.stopped_early)
        if self._best is not None:
            model.load_state_dict(self._best)
        elif self.best_path.exists():
            model.load_state_dict(load_file(str(self.best_path)))
        metrics: dict[str, Any] = {}
        for data in (valid, test):
            if data is None:
                continue
            labels, logits = self._scores(model, encoder, data)
            metrics.update({f"{data.name}_{k}": v for k, v in report(labels, logits, prior).items()})
            if encoder.multiclass:
                cm = confusion_matrix(labels, probabilities(logits))
                summary[f"{data.name}_confusion"] = cm.tolist()
                summary[f"{data.name}_confusion_png"] = str(confusion_png(
                    cm, encoder.classes_, self.run_dir / f"confusion-{data.name}.png", f"{cfg.name}: {data.name}"))
        summary.update({
            "steps": pos.step, "rows_trained": pos.rows, "epochs_run": pos.epoch,
            "stopped_early": pos.stopped_early, "train_seconds": round(pos.train_seconds, 3),
            "train_rows_per_s": round(pos.rows / max(pos.train_seconds, 1e-9), 1),
            "history": pos.history,
        })
        bundle = save_bundle(self.run_dir / "bundle", model, encoder, cfg,
                             {**({"classes": encoder.classes_, "train_class_prior": prior} if encoder.multiclass
                                 else {"train_base_rate": prior}), "metrics": metrics,
                              "summary": {k: v for k, v in summary.items() if k != "history"}})
        return TrainResult(metrics=metrics, summary=summary, bundle=bundle)
