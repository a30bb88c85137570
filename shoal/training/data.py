"""A run's data: the first pass over the training file, the training mini-batches, the validation and test sets.

The first pass (:meth:`TrainingData.scan`) fits the encoder (dense statistics, class names), counts rows and
labels, reports bad rows (error or quarantine), writes the held-out validation rows to the split file
(:class:`~shoal.data.split.HeldOutSplit`) unless ``data.valid`` names a file, and checks the validation and test
files. Encoded rows stay in memory while they fit ``train.cache_mb`` (:class:`BatchCache`); a larger set is read
from disk again at each use.

Each epoch, :meth:`TrainingData.minibatches` shuffles every chunk of training rows with a generator seeded by
(seed, epoch, chunk) and cuts it into mini-batches::

    chunk ci of the training rows:  r0 r1 r2 r3 r4 r5 r6 r7 r8 r9        (data.chunk_rows rows)
    shuffled by (seed, epoch, ci):  r6 r2 r9 r0 r4 r7 r1 r8 r3 r5
    mini-batches (batch_size 4):    [r6 r2 r9 r0] [r4 r7 r1 r8] [r3 r5]
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from shoal.config import RunConfig
from shoal.data.batch import Batch
from shoal.data.encoder import Encoder
from shoal.data.readers import BadRowSink, Chunk
from shoal.data.split import HeldOutSplit, valid_mask
from shoal.data.stream import chunks
from shoal.metrics import TaskPrior
from shoal.training.callbacks import Callbacks

__all__ = ["BatchCache", "EvalSet", "FileRows", "Prior", "TrainRows", "TrainingData"]

Prior = float | list[float] | dict[str, float] | list[TaskPrior]
# training base rate (binary), class frequencies (multiclass), tag rates (multilabel), {"mean", "std"} of the label
# (regression), each task's base rate or mean (multitask)


class BatchCache:
    """Encoded batches kept in memory while they fit in ``budget`` bytes (shared by all the sets of a run).

    A small data set is read and encoded once instead of once per epoch and evaluation; a large one streams
    from disk. Adding a batch that does not fit empties the list: a set is cached whole or not at all.
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


class TrainRows(Protocol):
    """The training rows of this process, chunk by chunk (a distributed rank has its own shard)."""

    def chunks(self, epoch: int, skip: int) -> Iterator[tuple[int, Batch]]:
        """(chunk index, encoded rows) in training order, from chunk ``skip`` on."""
        ...

    def rows_in_step(self, index: int, batch: Batch) -> int:
        """Rows a step on ``batch`` (from chunk ``index``) trained on: the run summary's ``rows_trained``."""
        ...


@dataclass
class FileRows:
    """The whole training file less its held-out rows: from memory when the first pass cached every chunk
    (``cached[ci]`` is chunk ci), else read and encoded again each epoch."""

    config: RunConfig
    encoder: Encoder
    cached: list[Batch] | None

    def chunks(self, epoch: int, skip: int) -> Iterator[tuple[int, Batch]]:
        if self.cached is not None:
            yield from enumerate(self.cached[skip:], start=skip)
            return
        cfg = self.config
        silent = BadRowSink("count")  # bad rows were reported in the first pass
        for ci, chunk in enumerate(chunks(cfg.data.train, cfg.data, self.encoder.columns(), silent)):
            if ci < skip:
                continue
            if cfg.data.holds_out:
                chunk = chunk.rows(~valid_mask(chunk.lines, cfg.data.valid_fraction, cfg.train.seed))
            yield ci, self.encoder.encode(chunk, silent)

    def rows_in_step(self, index: int, batch: Batch) -> int:
        return batch.trained_rows


@dataclass
class TrainingData:
    """What the loop trains and validates on, and the first pass's part of the run summary."""

    config: RunConfig
    encoder: Encoder
    train: TrainRows
    valid: EvalSet | None
    test: EvalSet | None
    summary: dict[str, Any]
    chunk_spans: list[tuple[int, int, int]]  # (first line, last line, rows) of each training chunk (first pass)

    @property
    def prior(self) -> Prior:
        if self.encoder.multitask:
            return [TaskPrior.of(t) for t in self.summary["tasks"]]
        if self.encoder.regression:
            return {"mean": float(self.summary["train_label_mean"]), "std": float(self.summary["train_label_std"])}
        if self.encoder.multilabel:
            return list(self.summary["train_tag_prior"])
        return self.summary["train_class_prior"] if self.encoder.multiclass else float(self.summary["train_base_rate"])

    def minibatches(self, epoch: int, chunk: int, batch: int) -> Iterator[tuple[int, int, Batch]]:
        """(chunk index, batch index, mini-batch) of ``epoch``, from mini-batch ``batch`` of chunk ``chunk`` on."""
        t = self.config.train
        skip = batch  # a resumed epoch skips the batches its first chunk already trained
        for ci, rows in self.train.chunks(epoch, chunk):
            order = np.random.default_rng([t.seed, epoch, ci]).permutation(len(rows))
            shuffled = rows.take(order)  # one gather per chunk; the mini-batches are views of it
            for bi, start in enumerate(range(0, len(rows), t.batch_size)):
                if bi >= skip:
                    yield ci, bi, shuffled.slice(start, start + t.batch_size)
            skip = 0

    def eval_batches(self, rows: EvalSet) -> Iterable[Batch]:
        """The encoded rows of a validation/test set: from memory when cached, else read again."""
        if rows.cached is not None:
            return rows.cached
        silent = BadRowSink("count")  # bad rows were reported when the set was prepared
        return (self.encoder.encode(c, silent) for c in rows.read(silent))

    # -- the first pass ----------------------------------------------------------------------------------------
    @classmethod
    def scan(cls, config: RunConfig, run_dir: Path, callbacks: Callbacks) -> TrainingData:
        """The first pass over the training file (see the module docstring); writes the quarantine and split
        files in ``run_dir`` and reports progress to ``callbacks.on_scan``."""
        cfg = config
        cache = BatchCache(cfg.train.cache_mb << 20)
        train_cache: list[Batch] | None = []
        held_cache: list[Batch] | None = []
        spans: list[tuple[int, int, int]] = []
        encoder = Encoder(cfg.features, cfg.label)
        qpath = run_dir / "quarantine.jsonl"
        qpath.unlink(missing_ok=True)
        sink = BadRowSink(cfg.data.on_bad_rows, qpath)
        _fit(encoder, cfg)
        rows = held_rows = truncated = 0
        counts = np.zeros(max(encoder.outputs, 2), dtype=np.int64)  # rows per class (binary: negatives, positives)
        moments = np.zeros(3, dtype=np.float64)  # regression: rows, sum and sum of squares of the label
        task_moments = np.zeros((encoder.outputs, 3))  # multitask: per task the same, over the rows that know it
        split = HeldOutSplit(run_dir, cfg.data.format)
        try:
            with split:
                for chunk in chunks(cfg.data.train, cfg.data, encoder.columns(), sink):
                    spans.append((int(chunk.lines[0]), int(chunk.lines[-1]), len(chunk)))
                    if cfg.data.holds_out:
                        mask = valid_mask(chunk.lines, cfg.data.valid_fraction, cfg.train.seed)
                        held, chunk = chunk.rows(mask), chunk.rows(~mask)
                        if len(held):
                            good = encoder.encode(held, sink)  # reports the held-out bad rows too
                            split.write(held.rows(np.isin(held.lines, good.lines)))
                            held_cache = cache.keep(held_cache, good)
                            held_rows += len(good)
                            truncated += good.truncated
                    batch = encoder.encode(chunk, sink)
                    train_cache = cache.keep(train_cache, batch)
                    truncated += batch.truncated
                    assert batch.label is not None
                    rows += len(batch)
                    if encoder.multitask:
                        task_moments += _task_moments(batch.label)
                    elif encoder.regression:
                        moments += _moments(batch.label)
                    elif encoder.multilabel:
                        counts[:encoder.outputs] += batch.label.sum(axis=0).astype(np.int64)  # rows per tag
                    else:
                        counts += np.bincount(batch.label.astype(np.int64), minlength=len(counts))
                    callbacks.on_scan(rows + held_rows + sink.count)
        finally:
            sink.close()
        if rows == 0:
            raise ValueError(f"{cfg.data.train}: no usable training rows (all rows were bad or held out)")
        label = (_tasks(encoder, task_moments) if encoder.multitask else _target(encoder, moments)
                 if encoder.regression else _label_counts(encoder, counts, rows))
        summary: dict[str, Any] = {"train_rows": rows, **sink.summary(), **label}
        if encoder.text_features:
            summary["text_truncated_rows"] = truncated  # texts longer than max_bytes, cut (training file)
        valid = None
        if cfg.data.holds_out and held_rows:
            def read_split(sink: BadRowSink) -> Iterator[Chunk]:
                return split.chunks(cfg.data.chunk_rows, str(cfg.data.train))

            valid = EvalSet("valid", read_split, held_rows, held_cache)
        elif cfg.data.valid is not None:
            valid = _checked_file(cfg, run_dir, "valid", encoder, cache, summary)
        test = _checked_file(cfg, run_dir, "test", encoder, cache, summary) if cfg.data.test is not None else None
        summary["valid_rows"] = 0 if valid is None else valid.rows
        summary["test_rows"] = 0 if test is None else test.rows
        return cls(cfg, encoder, FileRows(cfg, encoder, train_cache), valid, test, summary, spans)


def _fit(encoder: Encoder, cfg: RunConfig) -> None:
    """Fit the class names, the dense statistics and the sparse vocabularies (bad rows are skipped here, reported
    in the first pass)."""
    if encoder.needs_classes:
        encoder.fit_classes(chunks(cfg.data.train, cfg.data, cfg.label.columns, BadRowSink("count")))
    if encoder.needs_fit:
        encoder.fit(chunks(cfg.data.train, cfg.data, encoder.columns(), BadRowSink("count")),
                    BadRowSink("count"), max_rows=2**62)
    else:
        encoder.fitted_ = True


def _moments(label: np.ndarray) -> np.ndarray:
    """(rows, sum, sum of squares) of a regression label, in float64."""
    x = label.astype(np.float64)
    return np.array([len(x), x.sum(), np.square(x).sum()])


def _target(encoder: Encoder, moments: np.ndarray) -> dict[str, Any]:
    """A regression label's training mean and standard deviation; sets ``encoder.target_`` (the model's output
    scale). A constant label has nothing to learn and is refused."""
    n, total, squares = (float(v) for v in moments)
    mean = total / n
    var = max(squares / n - mean * mean, 0.0)
    std = var ** 0.5
    assert encoder.label is not None
    if std <= 1e-12 * max(1.0, abs(mean)):
        raise ValueError(f"regression label {encoder.label.column!r} has the same value ({mean:g}) in every training "
                         "row: there is nothing to learn; is it the right column?")
    encoder.target_ = (mean, std)
    return {"train_label_mean": mean, "train_label_std": std}


def _task_moments(labels: np.ndarray) -> np.ndarray:
    """Per task (column of (N, T) ``labels``): (rows that know it, sum, sum of squares), in float64."""
    x = labels.astype(np.float64)
    known = ~np.isnan(x)
    x = np.where(known, x, 0.0)
    return np.stack([known.sum(axis=0), x.sum(axis=0), np.square(x).sum(axis=0)], axis=1)  # (T, 3)


def _tasks(encoder: Encoder, moments: np.ndarray) -> dict[str, Any]:
    """The run summary's ``tasks``: per task its rows and base rate (binary) or mean and standard deviation
    (regression); sets ``encoder.targets_``. A task no training row knows, or that never varies, is refused."""
    assert encoder.label is not None and encoder.label.tasks is not None
    tasks, targets = [], []  # type: tuple[list[dict[str, Any]], list[tuple[float, float] | None]]
    for task, (n, total, squares) in zip(encoder.label.tasks, moments.tolist(), strict=True):
        if n == 0:
            raise ValueError(f"task {task.column!r}: no training row has a label (every cell is empty or missing)")
        mean = total / n
        std = max(squares / n - mean * mean, 0.0) ** 0.5
        if std <= 1e-12 * max(1.0, abs(mean)):
            raise ValueError(f"task {task.column!r} has the same label ({mean:g}) in every training row that has "
                             "one: there is nothing to learn; is it the right column?")
        entry: dict[str, Any] = {"name": task.column, "kind": task.kind, "train_rows": int(n)}
        if task.kind == "binary":
            entry.update(train_positives=int(round(total)), train_base_rate=mean)
            targets.append(None)
        else:
            entry.update(train_label_mean=mean, train_label_std=std)
            targets.append((mean, std))
        tasks.append(entry)
    encoder.targets_ = targets
    return {"tasks": tasks}


def _label_counts(encoder: Encoder, counts: np.ndarray, rows: int) -> dict[str, Any]:
    """The run summary's label counts: the classes and their frequencies, or the positives and the base rate."""
    if encoder.multilabel:
        tags = counts[:encoder.outputs]
        return {"tags": encoder.classes_, "train_tag_counts": tags.tolist(), "train_tag_prior": (tags / rows).tolist()}
    if encoder.multiclass:
        return {"classes": encoder.classes_, "train_class_counts": counts.tolist(),
                "train_class_prior": (counts / rows).tolist()}
    return {"train_positives": int(counts[1]), "train_base_rate": int(counts[1]) / rows}


def _checked_file(cfg: RunConfig, run_dir: Path, split: Literal["valid", "test"], encoder: Encoder,
                  cache: BatchCache, summary: dict[str, Any]) -> EvalSet:
    """Check a validation/test file once (bad rows reported and counted in ``summary``), then stream it at each
    use (from ``cache`` when it fits)."""
    columns = encoder.columns()
    found = cfg.data.file(split)
    assert found is not None
    path, options = found

    def read(sink: BadRowSink) -> Iterator[Chunk]:
        return chunks(path, options, columns, sink)

    sink = BadRowSink(cfg.data.on_bad_rows, run_dir / f"quarantine-{split}.jsonl")
    rows, cached = 0, []  # type: tuple[int, list[Batch] | None]
    for c in read(sink):
        batch = encoder.encode(c, sink)
        rows += len(batch)
        cached = cache.keep(cached, batch)
    sink.close()
    summary[f"{split}_quarantined_rows"] = sink.count
    return EvalSet(split, read, rows, cached)
