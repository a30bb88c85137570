"""A served model version: the bundle, its predictor and request schema, and where it came from.

A version is named by the content of its bundle (a hash of ``bundle.json`` and the weights), so reloading an
unchanged bundle keeps the version and retraining into the same folder changes it.

Validated rows take one of two paths (:class:`~shoal.export.raw_runtime.EndToEndPredictor` says which, per batch size):
the raw graph (``bundle/onnx/model.raw.onnx``: raw rows -> one ONNX Runtime call), or the Python encoder then
the encoded predictor. The encoded path also answers every batch the raw graph cannot take, so a bad row gets the
encoder's report, the same 422 as without a raw graph.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from pydantic import BaseModel

from shoal.artifacts.bundle import Bundle, load_bundle, positive_class
from shoal.artifacts.refs import resolve
from shoal.data.batch import Batch
from shoal.data.readers import BadRow, BadRowSink, Chunk
from shoal.export.raw_feed import FAST_ROWS
from shoal.export.raw_runtime import EndToEndPredictor, select_end_to_end
from shoal.runtime.choice import BackendChoice
from shoal.runtime.refs import content_version
from shoal.serving.schema import MAX_MEDIA_BYTES, RequestSchema

__all__ = ["RowsRejected", "ServedModel", "backend_choice", "load_served"]

log = logging.getLogger(__name__)


class RowsRejected(ValueError):
    """Rows the encoder refused (the request model let them through): the first one's field and reason."""

    def __init__(self, rows: list[BadRow]) -> None:
        first = rows[0]
        super().__init__(f"row {first.line}: field {first.column!r}: {first.reason}")
        self.rows = rows


@dataclass(frozen=True, eq=False)
class ServedModel:
    """One loaded version. Immutable: a reload builds a new one and swaps the reference."""

    bundle: Bundle
    predictor: EndToEndPredictor
    schema: RequestSchema
    folder: Path
    version: str
    run: str | None  # the run id, when the bundle lives in a registry run folder
    loaded_at: float = field(default_factory=time.time)

    @property
    def name(self) -> str:
        return f"{self.bundle.config.name}/{self.bundle.config.model.name}"

    @property
    def classes(self) -> list[str] | None:
        """The class names (multiclass), tag names (multilabel) or task names (multitask) of the outputs, in
        order; None otherwise."""
        return self.bundle.classes or self.bundle.tags or self.bundle.tasks

    @property
    def task(self) -> str:
        return self.bundle.task

    def predict_rows(self, rows: list[BaseModel]) -> np.ndarray:
        """Validated request rows -> probabilities (or values), through the raw graph or the bundle's encoder
        (from a worker thread)."""
        proba = self._predict_raw(rows)
        if proba is None:
            chunk = Chunk(self.schema.table(rows), np.arange(len(rows), dtype=np.int64), "request")
            sink = BadRowSink("keep")  # serving has no quarantine file: rejected rows answer the request
            batch = self.bundle.encoder.encode(chunk, sink, with_label=False)
            if sink.rows:
                raise RowsRejected(sink.rows)
            proba = self.predict_batch(batch)
        finite = np.isfinite(proba).reshape(len(proba), -1).all(axis=1)
        if not finite.all():  # the last guard: NaN never leaves the server, whatever overflowed inside the model
            raise RowsRejected([BadRow("request", int(i), _largest_dense(self.schema, rows[i]), None,
                                       "the model's output is not a finite number for this row: its dense values "
                                       "overflow the model's float32 arithmetic; send smaller numbers")
                                for i in np.flatnonzero(~finite)])
        return proba

    def predict_batch(self, batch: Batch) -> np.ndarray:
        return self.predictor.predict_proba(batch)

    def _predict_raw(self, rows: list[BaseModel]) -> np.ndarray | None:
        """The raw graph's answer, or None where the encoded path answers: a batch size routed to it, or rows the
        graph cannot take (an id over the export's max_bytes, ...: the encoder then reports the row, or answers)."""
        raw = self.predictor.raw_for(len(rows))
        if raw is None:
            return None
        # a few rows as dicts (raw_feed's plain-Python path, the one-row feed for one); more, or a float in a column
        # read both as a number and as ids, as the table the encoder would read
        small = len(rows) <= FAST_ROWS and self.schema.as_dicts_safe(rows)
        try:
            # warnings=False: an uploaded file is bytes in a field typed for base64 text, as intended
            return raw.predict_rows([r.model_dump(by_alias=True, warnings=False) for r in rows] if small
                                    else self.schema.table(rows))
        except (ValueError, KeyError, pa.ArrowException) as err:
            log.debug("raw graph refused a batch of %d rows (%s): the encoded path answers", len(rows), err)
            return None

    def describe(self) -> dict[str, Any]:
        """What ``GET /model`` shows."""
        meta = self.bundle.meta
        return {
            "name": self.name, "version": self.version, "run": self.run, "folder": str(self.folder),
            "backend": self.predictor.backend, "backend_choice": backend_choice(self.predictor),
            "loaded_at": self.loaded_at,
            "model": self.bundle.config.model.model_dump(mode="json"),
            "output": {"kind": "multitask", "field": "tasks",
                       "tasks": [{"name": t["name"], "kind": t["kind"]} for t in meta["tasks"]]}
            if self.task == "multitask"
            else {"kind": "regression", "field": "prediction"} if self.task == "regression"
            else {"kind": "multilabel", "tags": self.classes, "threshold": 0.5} if self.task == "multilabel"
            else {"kind": "binary", "field": "probability", "of": positive_class(self.bundle)} if self.classes is None
            else {"kind": "multiclass", "classes": self.classes},
            "fields": self.schema.describe(), "metrics": meta.get("metrics", {}),
        }


def backend_choice(predictor: object) -> dict[str, Any] | None:
    """``auto``'s measured decision (routes by batch size, median ms per call), None for an explicit backend."""
    choice = getattr(predictor, "choice", None)
    return choice.to_dict() if isinstance(choice, BackendChoice) else None


def _largest_dense(schema: RequestSchema, row: BaseModel) -> str:
    """The dense field of ``row`` with the largest magnitude: the likeliest cause of an overflow."""
    table = schema.table([row])
    best, name = -1.0, "*"
    for f in schema.fields:
        try:
            magnitude = abs(float(table.column(f.column)[0].as_py())) if f.kind == "dense" else -1.0
        except (TypeError, ValueError):  # null
            continue
        if magnitude > best:
            best, name = magnitude, f.column
    return name


def load_served(ref: str | Path, home: Path, max_rows: int, max_text_bytes: int, backend: str = "auto", *,
                max_id_bytes: int = 2048, max_list_ids: int = 1024, max_batch_rows: int = 256,
                max_media_bytes: int = MAX_MEDIA_BYTES) -> ServedModel:
    """Load and warm up a bundle for serving (slow: call it off the event loop). ``auto`` times the backends at
    batches of 1 and ``max_batch_rows`` rows (once per bundle, export and machine: the decision is cached); with
    a raw graph beside the bundle, end to end (:func:`~shoal.export.raw_runtime.select_end_to_end`)."""
    found = resolve(ref, home)
    folder, run = found.folder, found.run_id
    bundle = load_bundle(folder)  # checks the files first (no symlink out, no device): then hashing them is safe
    version = content_version(folder)
    predictor = select_end_to_end(bundle, folder, backend, batch_sizes=(1, max_batch_rows), version=version)
    served = ServedModel(bundle=bundle, predictor=predictor,
                         schema=RequestSchema(bundle.encoder, max_rows, max_text_bytes,
                                              max_id_bytes=max_id_bytes, max_list_ids=max_list_ids,
                                              max_media_bytes=max_media_bytes),
                         folder=folder.resolve(), version=version, run=run)
    served.predict_rows([served.schema.placeholder()])  # first call allocates; not on a request's time (media:
    # a tiny valid image or silent sound of the feature's kind, so the encoder and the CNN run too)
    if predictor.raw_for(1) is not None:  # the raw graph answered that row: warm the encoded fallback too
        chunk = Chunk(served.schema.table([served.schema.placeholder()]), np.zeros(1, np.int64), "warm-up")
        served.predict_batch(bundle.encoder.encode(chunk, BadRowSink("keep"), with_label=False))
    return served
