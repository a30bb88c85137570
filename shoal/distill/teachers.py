"""The teacher's side of distillation: its outputs on every training row, scored once and keyed by line number.

A teacher and its student may encode rows differently, so they meet on raw rows: :func:`teacher_outputs` scores
each training row once with the teacher (or averages an ensemble, :func:`ensemble_logits`) and
:class:`TeacherOutputs` keeps the logits by line of the training file for the student's loss to look up.
:func:`with_transfer` adds unlabeled rows that the teacher labels.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from shoal.artifacts.bundle import Bundle
from shoal.config import FileSpec, RunConfig
from shoal.data.readers import BadRowSink, Chunk, detect_format
from shoal.data.stream import chunks, valid_mask
from shoal.distill.augment import Augmentation, augment_rows, column_kinds

log = logging.getLogger(__name__)


@dataclass
class TeacherOutputs:
    """The teacher's logits for the rows of one training file, keyed by line number (sorted).

    ``labelled`` is False for transfer rows: their label is the teacher's own guess, so the student learns them
    from the soft targets only.
    """

    lines: np.ndarray  # (N,) int64, increasing
    logits: np.ndarray  # (N,) or (N, C) float32
    labelled: np.ndarray  # (N,) bool

    def __len__(self) -> int:
        return len(self.lines)

    def lookup(self, lines: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(logits, labelled) of the rows at ``lines`` (any order). Raises when a line was never scored."""
        pos = np.minimum(np.searchsorted(self.lines, lines), max(len(self.lines) - 1, 0))
        missing = len(self.lines) == 0 or bool((self.lines[pos] != lines).any())
        if missing:
            lost = lines if len(self.lines) == 0 else lines[self.lines[pos] != lines]
            raise ValueError(
                f"no teacher output for line(s) {lost[:5].tolist()} of the training file ({len(lost)} rows of this "
                "batch): the student reads rows the teacher did not score. Does the student read the teacher's "
                "training file with the same options? (delete teacher-logits.npz to score the rows again)"
            )
        return self.logits[pos], self.labelled[pos]

    def save(self, path: Path) -> Path:
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, lines=self.lines, logits=self.logits, labelled=self.labelled)
        tmp.replace(path)
        return path

    @staticmethod
    def load(path: Path) -> TeacherOutputs:
        with np.load(path) as z:
            return TeacherOutputs(z["lines"], z["logits"], z["labelled"])


# -- the teacher's pass -----------------------------------------------------------------------------------------
def _logsumexp(x: np.ndarray, axis: int, keepdims: bool = False) -> np.ndarray:
    m = np.max(x, axis=axis, keepdims=True)
    out = m + np.log(np.exp(x - m).sum(axis=axis, keepdims=True))
    return out if keepdims else np.squeeze(out, axis=axis)


def ensemble_logits(logits: Sequence[np.ndarray], regression: bool = False,
                    kinds: Sequence[str] | None = None) -> np.ndarray:
    """The logits of the mean of several teachers' probabilities, float32.

    ``logits`` holds one array per teacher for the same rows in the same order: (N,) binary logits or (N, C)
    multiclass ones. Binary: ``logit(mean_k sigmoid(z_k))``; multiclass: ``log(mean_k softmax(z_k))`` (logits up
    to a constant per row, which softmax ignores). Averaging probabilities, not logits, is Hinton et al.'s
    arithmetic mean: a teacher that is unsure pulls the mean toward uncertainty instead of being outvoted by one
    confident logit. It is computed in log space (``log mean_k p_k = logsumexp_k log p_k - log K``), so very
    confident teachers still give finite logits. ``regression``: the outputs are values, and their mean is the
    ensemble's. ``kinds``: a multitask label's task kinds, one per column of (N, T) outputs, each combined as its
    kind says.
    """
    if len(logits) == 0:
        raise ValueError("no teacher logits to average; give at least one teacher")
    shapes = sorted({np.shape(z) for z in logits})
    if len(shapes) != 1:
        raise ValueError(f"the teachers' logits have different shapes {shapes}: an ensemble's teachers must score "
                         "the same rows and predict the same label")
    if kinds is not None:
        return np.stack([ensemble_logits([x[:, t] for x in logits], regression=kind == "regression")
                         for t, kind in enumerate(kinds)], axis=1)  # (N, T)
    z = np.stack([np.asarray(x, np.float64) for x in logits])  # (K, N) or (K, N, C)
    if regression:
        return z.mean(axis=0).astype(np.float32)  # (N,)
    log_k = np.log(len(logits))
    if z.ndim == 2:
        log_p = _logsumexp(-np.logaddexp(0.0, -z), axis=0) - log_k  # (N,) log mean sigmoid(z)
        log_q = _logsumexp(-np.logaddexp(0.0, z), axis=0) - log_k  # (N,) log mean sigmoid(-z) = log(1 - p)
        return (log_p - log_q).astype(np.float32)
    log_softmax = z - _logsumexp(z, axis=2, keepdims=True)  # (K, N, C)
    return (_logsumexp(log_softmax, axis=0) - log_k).astype(np.float32)  # (N, C)


def _score(teachers: Sequence[Bundle], chunk: Chunk, sink: BadRowSink,
           with_label: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(lines, logits) of a chunk's rows: one teacher's logits; an ensemble's (:func:`ensemble_logits`) on the
    rows every teacher could encode, in the first teacher's order."""
    scored = []
    for t in teachers:
        batch = t.encoder.encode(chunk, sink, with_label=with_label)
        scored.append((batch.lines, t.predict_logits(batch)))
    if len(scored) == 1:
        return scored[0][0], scored[0][1].astype(np.float32)
    lines = scored[0][0]
    for other, _ in scored[1:]:
        lines = lines[np.isin(lines, other)]  # a row one teacher rejected as bad has no ensemble output
    aligned = []
    for own, z in scored:
        order = np.argsort(own, kind="stable")
        aligned.append(z[order[np.searchsorted(own, lines, sorter=order)]])
    kinds = teachers[0].task_kinds or (["binary"] * len(teachers[0].tags or []) or None)  # a tag: a binary task
    return lines, ensemble_logits(aligned, regression=teachers[0].task == "regression", kinds=kinds)


def _training_chunks(columns: list[str], cfg: RunConfig, path: Path | None = None) -> Iterator[Chunk]:
    """The raw rows the student trains on (held-out rows left out), read as ``cfg`` says."""
    source = Path(path or cfg.data.train)
    data = cfg.data if path is None else cfg.data.model_copy(update={"format": "parquet"})
    split = path is None and cfg.data.holds_out
    for chunk in chunks(source, data, columns, BadRowSink("count")):  # bad rows are the student trainer's to report
        if split:
            keep = ~valid_mask(chunk.lines, cfg.data.valid_fraction, cfg.train.seed)
            chunk = chunk.rows(keep)
        if len(chunk):
            yield chunk


def _as_teachers(teacher: Bundle | Sequence[Bundle]) -> list[Bundle]:
    teachers = [teacher] if isinstance(teacher, Bundle) else list(teacher)
    if not teachers:
        raise ValueError("no teacher given; give a teacher bundle or a list of them (an ensemble)")
    classes = {tuple(t.classes or ()) for t in teachers}
    if len(classes) > 1:
        raise ValueError(f"the teachers' classes differ ({sorted(classes)}): an ensemble's teachers must predict "
                         "the same classes in the same order (train them on the same data and label)")
    return teachers


def _columns_of(teachers: Sequence[Bundle]) -> list[str]:
    return list(dict.fromkeys(c for t in teachers for c in t.encoder.columns()))


def teacher_outputs(teacher: Bundle | Sequence[Bundle], cfg: RunConfig, path: Path | None = None,
                    labelled_rows: int | None = None) -> TeacherOutputs:
    """Score once every training row of ``cfg`` (``path`` instead: a Parquet file, all rows) with the teacher.

    ``teacher`` is a bundle or a list of bundles, an ensemble: the logits of the mean of their probabilities
    (:func:`ensemble_logits`), on the rows all of them could encode. ``labelled_rows``: rows after this line
    number are transfer rows (``labelled`` False).
    """
    teachers = _as_teachers(teacher)
    silent = BadRowSink("count")
    lines, logits = [], []
    started, scored = time.perf_counter(), 0
    for chunk in _training_chunks(_columns_of(teachers), cfg, path):
        chunk_lines, chunk_logits = _score(teachers, chunk, silent)
        lines.append(chunk_lines)
        logits.append(chunk_logits)
        scored += len(chunk_lines)
        log.info("the teacher scored %d rows (%.0f rows/s)", scored, scored / max(time.perf_counter() - started,
                                                                                   1e-9))
    if not lines:
        raise ValueError(f"{path or cfg.data.train}: the teacher found no training rows to score")
    all_lines = np.concatenate(lines).astype(np.int64)
    order = np.argsort(all_lines, kind="stable")
    all_lines = all_lines[order]
    labelled = np.ones(len(all_lines), bool) if labelled_rows is None else all_lines <= labelled_rows
    return TeacherOutputs(all_lines, np.concatenate(logits)[order], labelled)


# -- a transfer set ---------------------------------------------------------------------------------------------
def _strings(table: pa.Table) -> pa.Table:
    return pa.table({c: pc.cast(table.column(c), pa.string()) for c in table.column_names})


def _label_names(bundle: Bundle, logits: np.ndarray) -> pa.Array:
    """The teacher's hard guess of each transfer row, written as the label column says it (``bundle``: the first
    teacher; an ensemble's teachers share the label and classes)."""
    label = bundle.config.label
    if bundle.task == "regression":
        return pa.array([repr(float(v)) for v in logits], pa.string())
    if logits.ndim == 2:
        classes = bundle.encoder.classes_
        return pa.array([classes[i] for i in logits.argmax(axis=1)], pa.string())
    return pa.array(np.where(logits > 0, label.positive[0], label.negative[0]), pa.string())


def _file_spec(cfg: RunConfig, split: Literal["valid", "test"]) -> FileSpec | None:
    """The ``split`` file with all its reading options spelled out (they no longer follow ``data``)."""
    found = cfg.data.file(split)
    if found is None:
        return None
    path, o = found
    return FileSpec.model_validate({"path": path, "format": detect_format(path, o.format), "header": o.header,
                                    "columns": o.columns, "delimiter": o.delimiter, "quoting": o.quoting})


def with_transfer(teacher: Bundle | Sequence[Bundle], cfg: RunConfig, transfer: Path | None,
                  run_dir: Path, augment: Augmentation | None = None) -> tuple[RunConfig, TeacherOutputs]:
    """The student's training rows plus the transfer rows (labelled by the teacher, or the ensemble: a list of
    bundles) in one Parquet file.

    Writes ``train+transfer.parquet`` (training rows, held-out rows left out, then the rows of ``transfer``,
    then, with ``augment``, the rows made from the training rows by :func:`~shoal.distill.augment.augment_rows`,
    seeded by ``cfg.train.seed``) and, when the teacher held rows out of its training file, ``valid.parquet``
    (those rows); returns the student config that reads them (its test file unchanged) and the teacher's
    outputs keyed by line of the new file. The rows of ``transfer`` take the teacher's hard guess as their label,
    the augmented rows the label of the row each came from; the student learns both from the soft term only.
    """
    teachers = _as_teachers(teacher)
    if transfer is None and (augment is None or augment.copies == 0):
        raise ValueError("with_transfer needs a transfer file or an augmentation with copies >= 1")
    student_cols = set(_columns(cfg))
    columns = list(dict.fromkeys([*_columns_of(teachers), *_columns(cfg)]))
    kinds = column_kinds([*(t.config for t in teachers), cfg])
    train_path, valid_path = run_dir / "train+transfer.parquet", run_dir / "valid.parquet"
    augmented_path = run_dir / "augmented.tmp.parquet"
    writers: dict[str, pq.ParquetWriter] = {}

    def write(path: Path, table: pa.Table) -> None:
        table = _strings(table.select(columns))
        if str(path) not in writers:
            writers[str(path)] = pq.ParquetWriter(path, table.schema)
        writers[str(path)].write_table(table)

    rows, added, made = 0, 0, 0
    try:
        for i, chunk in enumerate(chunks(cfg.data.train, cfg.data, columns, BadRowSink("count"))):
            held = (valid_mask(chunk.lines, cfg.data.valid_fraction, cfg.train.seed) if cfg.data.holds_out
                    else np.zeros(len(chunk), bool))
            if held.any():
                write(valid_path, chunk.table.filter(pa.array(held)))
            own = chunk.table.filter(pa.array(~held))  # the student's training rows: never a held-out one
            write(train_path, own)
            rows += own.num_rows
            if augment is not None and augment.copies and own.num_rows:
                started = time.perf_counter()
                new_rows = augment_rows(own, kinds, augment, cfg.train.seed, chunk=i)
                write(augmented_path, new_rows)
                made += new_rows.num_rows
                log.info("augmented chunk %d: %d training rows -> %d new rows (%.1f s)", i + 1, own.num_rows,
                         new_rows.num_rows, time.perf_counter() - started)
        if transfer is not None:
            added = _add_transfer(teachers, cfg, transfer, columns, lambda t: write(train_path, t))
        if made:
            _close(writers, augmented_path)
            for batch in pq.ParquetFile(augmented_path).iter_batches(batch_size=cfg.data.chunk_rows):
                write(train_path, pa.Table.from_batches([batch]))
    finally:
        for w in writers.values():
            w.close()
        augmented_path.unlink(missing_ok=True)
    if transfer is not None and added == 0:
        raise ValueError(f"{transfer}: no usable transfer rows (the file needs the feature columns "
                         f"{sorted(student_cols - {cfg.label.column})})")
    if transfer is not None:
        log.info("transfer set %s: %d rows added to %d training rows", transfer, added, rows)
    if made:
        log.info("augmented transfer set: %d rows (%d per training row) added to %d training rows; the teacher "
                 "scores them next", made, augment.copies if augment else 0, rows)
    data: dict[str, Any] = {"train": train_path, "format": "parquet", "valid_fraction": 0.0,
                            "valid": _file_spec(cfg, "valid") if cfg.data.valid is not None
                            else FileSpec(path=valid_path, format="parquet") if valid_path.exists() else None,
                            "test": _file_spec(cfg, "test")}
    student = cfg.model_copy(update={"data": cfg.data.model_copy(update=data)})
    return student, teacher_outputs(teachers, student, train_path, labelled_rows=rows)


def _close(writers: dict[str, pq.ParquetWriter], path: Path) -> None:
    writer = writers.pop(str(path), None)
    if writer is not None:
        writer.close()


def _add_transfer(teachers: Sequence[Bundle], cfg: RunConfig, transfer: Path, columns: list[str],
                  write: Callable[[pa.Table], None]) -> int:
    """Write the rows of a transfer file with the teacher's hard guess as their label; returns how many."""
    fmt = detect_format(transfer, None)
    options = cfg.data.model_copy(update={"format": fmt}) if fmt == detect_format(Path(cfg.data.train),
                                                                                  cfg.data.format) else \
        cfg.data.model_copy(update={"format": fmt, "header": True, "columns": None})
    features = [c for c in columns if c != cfg.label.column]
    added = 0
    for chunk in chunks(transfer, options, features, BadRowSink("count")):
        lines, logits = _score(teachers, chunk, BadRowSink("count"), with_label=False)
        good = np.isin(chunk.lines, lines)
        table = chunk.table.filter(pa.array(good))
        table = table.append_column(cfg.label.column, _label_names(teachers[0], logits))
        write(table)
        added += len(table)
    return added


def _columns(cfg: RunConfig) -> list[str]:
    return list(dict.fromkeys([*(f.source for f in cfg.features), cfg.label.column]))
