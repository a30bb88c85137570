"""Batch scoring of a file (``shoal predict``): the server's encoder and predictor, streamed chunk by chunk.

The file is read with the reading options of the training data (header, delimiter, missing markers; the format
follows the file's extension) and scored by the path the server would take
(:func:`~shoal.export.raw_runtime.select_end_to_end`): each chunk through the raw graph (``model.raw.onnx``) where it
answers chunks of that size, else encoded by the bundle's encoder and scored by the encoded predictor. A chunk the
raw graph cannot take (a cell that is not a number, an id over the export's max_bytes) takes the encoder's path,
which quarantines its bad rows; so a row gets the same probabilities here as from ``POST /predict``. Output
columns, Parquet or CSV by the extension of ``out``::

    line          the row's line (CSV/TSV, header counted) or 1-based row number (Parquet, JSONL) in the input
    <kept>        columns copied from the input (``keep``), e.g. an id to join on
    probability   binary label: the positive class's probability
    prediction    regression label: the predicted value
    class, p_<c>  multiclass label: the most probable class, then one probability column per class
    tags, p_<t>   multilabel label: the tags at p >= 0.5 joined by the label's separator ("" for none), then
                  one probability column per tag
    p_<t>, predicted_<t>  multitask label: one column per task: ``p_<t>`` the probability of binary task t,
                  ``predicted_<t>`` the value of regression task t (so the label columns themselves can be kept)

Rows the encoder refuses go to a quarantine file (JSONL: file, line, column, value, reason) and are counted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from shoal.artifacts.bundle import Bundle, load_bundle, positive_class
from shoal.artifacts.refs import resolve
from shoal.data.readers import BadInputError, BadRow, BadRowSink, detect_format
from shoal.data.stream import chunks
from shoal.export.raw_runtime import EndToEndPredictor, select_end_to_end
from shoal.serving.model import backend_choice

__all__ = ["PredictSummary", "output_schema", "predict_file"]

log = logging.getLogger(__name__)

_OUTPUTS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}


@dataclass
class PredictSummary:
    """What ``shoal predict`` did."""

    rows_read: int
    rows_predicted: int
    quarantined: int
    out: Path
    quarantine_file: Path | None
    seconds: float
    by_reason: dict[str, int] = field(default_factory=dict)
    backend: str = ""  # the predictor's name; ``auto`` with an export: which backend scored which chunk sizes
    backend_choice: dict[str, Any] | None = None  # ``auto``'s measured decision (see GET /model)
    positive: str | None = None  # a binary label's column and the values its probability is of, said by the CLI


def output_schema(classes: list[str] | None, kept: list[tuple[str, pa.DataType]], task: str = "binary") -> pa.Schema:
    fields = [pa.field("line", pa.int64()), *(pa.field(n, t) for n, t in kept)]
    if classes is None:
        return pa.schema([*fields, pa.field("prediction" if task == "regression" else "probability", pa.float64())])
    if task == "multitask":
        return pa.schema([*fields, *(pa.field(t, pa.float64()) for t in classes)])  # classes: the column names
    first = "tags" if task == "multilabel" else "class"
    return pa.schema([*fields, pa.field(first, pa.string()), *(pa.field(f"p_{c}", pa.float64()) for c in classes)])


def _output_format(out: Path) -> str:
    fmt = _OUTPUTS.get(out.suffix.lower())
    if fmt is None:
        raise ValueError(f"{out}: cannot tell the output format from {out.suffix!r}; "
                         f"name the output file *.parquet or *.csv")
    return fmt


def _task_columns(bundle: Bundle) -> list[str] | None:
    """A multitask bundle's output columns: ``p_<task>`` (binary) or ``predicted_<task>`` (regression)."""
    if bundle.tasks is None or bundle.task_kinds is None:
        return None
    return [f"{'p' if k == 'binary' else 'predicted'}_{t}" for t, k in zip(bundle.tasks, bundle.task_kinds,
                                                                           strict=True)]


def _columns(proba: np.ndarray, classes: list[str] | None, separator: str | None = None,
             task: str = "") -> list[pa.Array]:
    """The predicted columns; ``separator`` set: a multilabel label's tags at p >= 0.5, joined by it."""
    if classes is None:
        return [pa.array(proba, pa.float64())]
    if task == "multitask":
        return [pa.array(proba[:, k], pa.float64()) for k in range(len(classes))]
    if separator is not None:
        names = np.asarray(classes, dtype=object)
        tags = pa.array([separator.join(names[row]) for row in proba >= 0.5], pa.string())
        return [tags, *(pa.array(proba[:, k], pa.float64()) for k in range(len(classes)))]
    best = pa.array(np.asarray(classes, dtype=object)[proba.argmax(axis=1)], pa.string())
    return [best, *(pa.array(proba[:, k], pa.float64()) for k in range(len(classes)))]


class _Writer:
    """Parquet or CSV, written to ``out.tmp`` and renamed at the end, so a failed run leaves no half file."""

    def __init__(self, out: Path, schema: pa.Schema) -> None:
        self.out = out
        self.tmp = out.with_name(out.name + ".tmp")
        self.schema = schema
        out.parent.mkdir(parents=True, exist_ok=True)
        self._w: Any = (pq.ParquetWriter(self.tmp, schema) if _output_format(out) == "parquet"
                        else pacsv.CSVWriter(self.tmp, schema))

    def write(self, table: pa.Table) -> None:
        self._w.write_table(table)

    def close(self, ok: bool) -> None:
        self._w.close()
        if ok:
            self.tmp.replace(self.out)
        else:
            self.tmp.unlink(missing_ok=True)


SMALL_FILE_BYTES = 16 << 20  # a file up to this size has its lines counted (a few ms) to size the timed batches
_COUNTED = (".csv", ".tsv", ".txt", ".jsonl", ".json", ".ndjson", ".parquet")  # not compressed: lines are rows


def _batch_size(data: Path, chunk_rows: int) -> int:
    """The rows of the batches ``predict_file`` will score: ``chunk_rows``, or for a small file (one file, at most
    :data:`SMALL_FILE_BYTES`) with fewer lines, its line count rounded up to a power of two (files of similar
    sizes share the timed decision)."""
    suffix = data.suffix.lower()
    if not data.is_file() or data.stat().st_size > SMALL_FILE_BYTES or suffix not in _COUNTED:
        return chunk_rows
    # text: lines bound the rows (a header, quoted line breaks and a last line without its newline add to them)
    rows = pq.ParquetFile(data).metadata.num_rows if suffix == ".parquet" else data.read_bytes().count(b"\n") + 1
    return min(chunk_rows, 1 << max(rows - 1, 0).bit_length())


def predict_file(ref: str | Path, data: Path, out: Path, home: Path = Path("shoal-runs"),
                 quarantine: Path | None = None, keep: list[str] | None = None,
                 progress: Callable[[int, int | None], None] | None = None, backend: str = "auto") -> PredictSummary:
    """Score every row of ``data`` with the bundle ``ref``; write ``out`` (Parquet or CSV).

    ``quarantine`` (default ``<out stem>.quarantine.jsonl`` beside ``out``) receives the rows that cannot be
    encoded; it is overwritten. ``progress(rows_done, total_rows_or_None)`` is called after every chunk.
    """
    started = time.perf_counter()
    data, out = Path(data), Path(out)
    _output_format(out)
    folder = resolve(ref, home).folder
    bundle = load_bundle(folder)
    encoder, classes = bundle.encoder, bundle.classes or bundle.tags or _task_columns(bundle)
    separator = encoder.label.separator if bundle.task == "multilabel" and encoder.label is not None else None
    fmt: str | None
    try:  # the file's own format when its name says it (x.parquet, x.csv.gz, a folder of parts), else training's
        fmt = detect_format(data, None)
    except BadInputError:
        fmt = bundle.config.data.format
    reading = bundle.config.data.model_copy(update={"format": fmt})
    # every call scores one chunk: ``auto`` times the backends at that size (capped, see shoal.runtime.choice), or
    # at the file's rows when it has fewer (300 long texts were timed at 1,024: 48 s for a 10 s file)
    predictor = select_end_to_end(bundle, folder, backend, batch_sizes=(_batch_size(data, reading.chunk_rows),))
    keep = [c for c in (keep or []) if c not in ("line",)]
    quarantine = quarantine or out.with_name(f"{out.name.split('.')[0]}.quarantine.jsonl")
    quarantine.unlink(missing_ok=True)
    sink = BadRowSink("quarantine", quarantine)
    total = pq.ParquetFile(data).metadata.num_rows if fmt == "parquet" and data.is_file() else None
    features = encoder.columns(with_label=False)
    columns = list(dict.fromkeys([*features, *keep]))
    writer: _Writer | None = None
    read = predicted = 0
    ok = False
    try:
        for chunk in chunks(data, reading, columns, sink):
            scored = _score_raw(predictor, chunk.table.select(features), chunk.lines)
            if scored is None:
                batch = encoder.encode(chunk, sink, with_label=False)
                proba = predictor.predict_proba(batch) if len(batch) else np.zeros((0,) if classes is None
                                                                                    else (0, len(classes)))
                scored = batch.lines, proba
            lines, proba = _finite(*scored, chunk.file, sink)
            kept = chunk.table.select(keep)
            if len(lines) < len(chunk):
                kept = kept.filter(pa.array(np.isin(chunk.lines, lines)))
            if writer is None:
                writer = _Writer(out, output_schema(classes, [(c, kept.schema.field(c).type) for c in keep],
                                                         bundle.task))
            answers = _columns(proba, classes, separator, bundle.task)
            writer.write(pa.Table.from_arrays([pa.array(lines, pa.int64()), *kept.columns, *answers],
                                              schema=writer.schema))
            read += len(chunk)
            predicted += len(lines)
            if progress is not None:
                progress(read, total)
        ok = True
    finally:
        sink.close()
        if writer is not None:
            writer.close(ok)
    if writer is None:  # pragma: no cover - chunks() raises on a file without rows
        raise BadInputError(f"{data}: no rows to predict")
    return PredictSummary(rows_read=read + _reader_rejects(sink, predicted, read), rows_predicted=predicted,
                          quarantined=sink.count, out=out, quarantine_file=quarantine if sink.count else None,
                          seconds=time.perf_counter() - started, by_reason=dict(sink.by_reason),
                          backend=predictor.backend, backend_choice=backend_choice(predictor),
                          positive=positive_class(bundle))


def _score_raw(predictor: EndToEndPredictor, table: pa.Table,
               lines: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(lines, outputs) of a chunk scored by the raw graph, or None where the encoded path scores it (a chunk
    size not routed to the graph, or a chunk holding a row the graph cannot take: the encoder reports it)."""
    raw = predictor.raw_for(len(table))
    if raw is None or len(table) == 0:
        return None
    try:
        return lines, raw.predict_rows(table)
    except (ValueError, KeyError, pa.ArrowException) as err:
        log.debug("raw graph refused a chunk (%s): encoding it in Python", err)
        return None


def _finite(lines: np.ndarray, proba: np.ndarray, file: str, sink: BadRowSink) -> tuple[np.ndarray, np.ndarray]:
    """The lines whose outputs are all finite numbers; each other row is quarantined (never a NaN written)."""
    ok = np.isfinite(proba) if proba.ndim == 1 else np.isfinite(proba).all(axis=1)
    if ok.all():
        return lines, proba
    for line in lines[~ok]:
        sink.add(BadRow(file, int(line), None, None, "the model's output is not a finite number (NaN or inf): "
                                                     "a value far outside what the model saw in training?"))
    keep = np.flatnonzero(ok)
    return lines[keep], proba[keep]


def _reader_rejects(sink: BadRowSink, predicted: int, read: int) -> int:
    """Rows the reader dropped before chunking (wrong column count): quarantined but never in a chunk."""
    return max(0, sink.count - (read - predicted))
