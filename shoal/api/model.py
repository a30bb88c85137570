"""``shoal.fit(data, label=...)`` -> :class:`Model`: train from a data frame, predict on data frames.

The command line works on files; a notebook holds data frames. :func:`fit` writes the rows it is given to a
Parquet file in the registry (named by its content hash, so the run's lineage points at the exact rows), profiles
it as ``shoal inspect`` does, applies the caller's overrides to the starter config and trains it as ``shoal train``
does. :class:`Model` wraps the trained bundle with ``predict``, ``predict_proba`` and ``evaluate`` that take a
pandas DataFrame, a pyarrow Table, a list of row dicts or one dict::

    m = shoal.fit(df, label="clicked", model="dlrm", train__epochs=3)   # or overrides={"train.epochs": 3}
    p = m.predict_proba(new_rows)     # (N,) P(positive), or (N, C) for a multiclass label
    m.evaluate(labelled_rows)         # AUC, NE, calibration, ... as `shoal eval`
    r = shoal.fit(df, label="watch_seconds", task="regression")      # a number: r.predict(rows) -> values
    m = shoal.load_model(m.run_id)    # later, from the registry (backend="raw": the exported raw graph)
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from shoal.artifacts.bundle import Bundle, load_bundle
from shoal.artifacts.refs import resolve
from shoal.artifacts.registry import RunRecord, resolve_home
from shoal.config import apply_overrides, parse_config
from shoal.data.readers import BadRowSink, Chunk
from shoal.data.rows import rows_table
from shoal.inspect import inspect_file, starter_config
from shoal.inspect.starter import REGRESSION_TRAIN
from shoal.metrics import probabilities
from shoal.training.callbacks import Callbacks
from shoal.training.evaluation import report
from shoal.training.runs import load, train

if TYPE_CHECKING:
    from shoal.export.raw_runtime import EndToEndPredictor

__all__ = ["Model", "as_table", "fit", "load_model"]

DATA_DIR = "data"  # under the registry home: the Parquet files fit() trained on, named by content hash


def as_table(data: Any) -> pa.Table:
    """Rows as an Arrow table: a pandas DataFrame, a pyarrow Table or RecordBatch, a list of dicts, one dict, or a
    mapping of column name -> values."""
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    if type(data).__module__.startswith("pandas") and hasattr(data, "columns"):
        return pa.Table.from_pandas(data, preserve_index=False)
    if isinstance(data, Mapping):
        values = list(data.values())
        if values and all(isinstance(v, list | tuple | np.ndarray) for v in values):
            return pa.table({str(k): list(v) for k, v in data.items()})
        return rows_table([data])
    if isinstance(data, Sequence) and not isinstance(data, str | bytes):
        if not all(isinstance(r, Mapping) for r in data):
            raise TypeError("rows must be dicts of column -> value (a list of dicts)")
        return rows_table(data)
    raise TypeError(f"expected a pandas DataFrame, a pyarrow Table, a list of dicts or a dict, "
                    f"not {type(data).__name__}")


def _home(home: str | os.PathLike[str] | None) -> Path:
    return resolve_home(home, os.environ)


def _as_file(data: Any, home: Path) -> Path:
    """A path as given; rows written to ``home/data/<content hash>.parquet`` (written once per content)."""
    if isinstance(data, str | os.PathLike):
        path = Path(data)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file")
        return path
    table = as_table(data)
    if table.num_rows == 0:
        raise ValueError("no rows to train on")
    folder = home / DATA_DIR
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=folder, suffix=".parquet.tmp", delete=False) as tmp:
        pq.write_table(table, tmp.name)
    digest = hashlib.sha256(Path(tmp.name).read_bytes()).hexdigest()[:16]
    path = folder / f"{digest}.parquet"
    os.replace(tmp.name, path)
    return path


def _dotted(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword overrides: ``train__epochs=3`` is ``train.epochs``."""
    return {k.replace("__", "."): v for k, v in overrides.items()}


def fit(data: Any, label: str, *, model: str | None = None, task: str | None = None, valid: Any = None,
        name: str | None = None, home: str | os.PathLike[str] | None = None,
        overrides: Mapping[str, Any] | None = None, callbacks: Callbacks | None = None, progress: bool = False,
        **keyword_overrides: Any) -> Model:
    """Train a model on ``data`` (a data frame, table, list of dicts or a file path) to predict ``label``.

    The config is the starter config ``shoal inspect`` writes for these rows; ``model`` picks another model
    family (``dlrm``, ``dcn_v2``, ``mlp``, ``logistic``, ``bag``, ``bytecnn``: its defaults); ``task`` (``binary``,
    ``multiclass`` or ``regression``) overrides the label kind the profile finds; ``overrides`` /
    keyword overrides set any value by its dotted key (``train__epochs=3`` = ``{"train.epochs": 3}``). ``valid``:
    validation rows (else 10% of ``data`` is held out). ``home``: the registry (else ``$SHOAL_HOME`` or
    ``./shoal-runs``). ``progress``: a progress bar (rows/s, loss, validation metrics), drawn by rich in a
    terminal or a notebook; ``callbacks`` receive every step and validation instead.
    """
    h = _home(home)
    path = _as_file(data, h)
    with tempfile.TemporaryDirectory() as tmp:
        cfg_path = Path(tmp) / "starter.yaml"
        text = starter_config(inspect_file(path, label=label), cfg_path)
    raw = yaml.safe_load(text)
    raw["data"]["train"] = str(path.resolve())
    if task is not None:
        if task not in ("binary", "multiclass", "regression", "multilabel"):
            raise ValueError(f"task must be 'binary', 'multiclass', 'regression' or 'multilabel', not {task!r}")
        if raw["label"].get("kind", "binary") != task:
            raw["label"] = {"column": label, "kind": task}
            if task == "regression":  # the settings a regression starter gets (inspect saw another kind)
                raw.setdefault("train", {}).update(REGRESSION_TRAIN)
    if model is not None:
        raw["model"] = {"name": model}
    if name is not None:
        raw["name"] = name
    if valid is not None:
        raw["data"]["valid"] = str(_as_file(valid, h).resolve())
        raw["data"].pop("valid_fraction", None)
    raw = apply_overrides(raw, {**dict(overrides or {}), **_dotted(keyword_overrides)})
    cfg = parse_config(raw, source=f"shoal.fit(label={label!r})")
    if progress and callbacks is None:
        from shoal.training.progress import RichCallbacks, progress_bar

        with progress_bar() as bar:
            record = train(cfg, h, RichCallbacks(bar))
    else:
        record = train(cfg, h, callbacks)
    return Model(load(record.run_id, h), record)


def load_model(ref: str, home: str | os.PathLike[str] | None = None, backend: str = "auto") -> Model:
    """A trained model by model reference (``ctr-feed@production``, ``ctr-feed@v3``), run id (or unique prefix, or
    ``latest``) or bundle folder.

    ``backend``: what ``predict`` and ``predict_proba`` run. ``auto`` (default, as ``shoal serve`` and ``shoal
    predict``): where the bundle was exported, each batch size to the path measured fastest end to end (the choice
    is cached beside the export); else the Python encoder and PyTorch. ``torch``: the Python encoder and PyTorch.
    ``raw``: the self-contained graph ``bundle/onnx/model.raw.onnx`` (``shoal export RUN --raw``), one ONNX Runtime
    call per call, preprocessing inside; ValueError naming the reason and the fix when the bundle has no usable
    one. Either way, rows the graph cannot take (an id past the export's ``max_bytes``, a cell that is not a
    number) take the encoder's path, which answers or names the bad row. ``evaluate`` always runs the encoder and
    PyTorch."""
    found = resolve(ref, _home(home))
    bundle = load_bundle(found.folder)
    if backend == "torch":
        return Model(bundle, found.record)
    if backend not in ("raw", "auto"):
        raise ValueError(f"backend must be 'torch', 'raw' or 'auto', not {backend!r}")
    from shoal.export.raw_runtime import select_end_to_end

    return Model(bundle, found.record, select_end_to_end(bundle, Path(found.folder), backend))


@dataclass
class Model:
    """A trained model: predicts on data frames, tables and row dicts, with the encoder it was trained with."""

    bundle: Bundle
    record: RunRecord | None = None
    predictor: EndToEndPredictor | None = None  # load_model(backend="raw" | "auto"): the raw graph where it answers

    @property
    def backend(self) -> str:
        """What ``predict`` runs: ``torch``, or the end-to-end choice (``onnxruntime-raw``, ``auto: ...``)."""
        return "torch" if self.predictor is None else self.predictor.backend

    @property
    def run_id(self) -> str | None:
        return self.record.run_id if self.record is not None else None

    @property
    def metrics(self) -> dict[str, Any]:
        """The run's metrics (validation, and test when it had a test file)."""
        return dict(self.record.metrics) if self.record is not None else {}

    @property
    def classes(self) -> list[str] | None:
        """Class names in column order of ``predict_proba`` for a multiclass label; None for a binary one."""
        return self.bundle.classes

    @property
    def task(self) -> str:
        """What the model predicts: ``binary``, ``multiclass``, ``regression``, ``multilabel`` or ``multitask``."""
        return self.bundle.task

    def _batch(self, data: Any, with_label: bool) -> Any:
        table = as_table(data)
        chunk = Chunk(table, np.arange(1, table.num_rows + 1, dtype=np.int64), "rows")
        return self.bundle.encoder.encode(chunk, BadRowSink("error"), with_label=with_label)

    def predict_proba(self, data: Any) -> np.ndarray:
        """(N,) probability of the positive class (binary label), or (N, C) class probabilities; for a multitask
        label (N, T), per task (``bundle.tasks`` order) the probability of a binary task, the value of a regression
        one. A bad row (a value that cannot be read) raises :class:`~shoal.data.readers.BadInputError` naming its
        row (1-based) and field."""
        if self.task == "regression":
            raise TypeError("this model predicts a number (a regression label), not probabilities: use predict()")
        return self._answer(data)

    def _answer(self, data: Any) -> np.ndarray:
        """Probabilities (values for a regression label): the raw graph's where it answers these rows, else the
        encoder's path."""
        if self.predictor is None:
            return self.bundle.predict_proba(self._batch(data, with_label=False))
        table = as_table(data)
        raw = self.predictor.raw_for(table.num_rows)
        if raw is not None:
            try:
                return raw.predict_rows(table)
            except (ValueError, KeyError, pa.ArrowException):
                pass  # rows the graph cannot take: the encoder answers, or names the bad row
        return self.predictor.predict_proba(self._batch(table, with_label=False))

    def predict(self, data: Any, threshold: float = 0.5) -> np.ndarray:
        """Predicted labels: 1/0 for a binary label (P >= ``threshold``), class names for a multiclass one, the
        values (N,) float64 for a regression label, (N, T) 1/0 per tag (``bundle.tags`` order) for a multilabel
        one; for a multitask label (N, T), 1/0 for a binary task, the value of a regression one."""
        if self.task == "regression":
            return self._answer(data)
        p = self.predict_proba(data)
        if self.task == "multitask":
            binary = np.array([k == "binary" for k in self.bundle.task_kinds or []])
            return np.where(binary, (p >= threshold).astype(np.float64), p)
        if self.classes:
            return np.asarray(self.classes, dtype=object)[p.argmax(axis=1)]
        return (p >= threshold).astype(np.int64)

    def evaluate(self, data: Any) -> dict[str, Any]:
        """Metrics on labelled rows, as ``shoal eval``: AUC, NE, log loss, calibration (binary), accuracy,
        macro-F1 (multiclass) or RMSE, MAE, R^2, NMSE (regression); NE (NMSE) relative to the training base rate
        (label mean)."""
        batch = self._batch(data, with_label=True)
        logits = self.bundle.predict_logits(batch)
        result: dict[str, Any] = dict(report(batch.label, logits, self.bundle.prior))
        if self.classes:
            from shoal.metrics import confusion_matrix

            result["confusion"] = confusion_matrix(batch.label, probabilities(logits)).tolist()
        return result
