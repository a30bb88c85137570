"""Runs: train, resume and evaluate, with every result recorded in the registry.

These are the functions behind ``shoal train`` and ``shoal eval``; they are the public Python API too
(re-exported from :mod:`shoal`)::

    import shoal
    run = shoal.train("configs/synthetic.yaml", home="shoal-runs")
    print(run.run_id, run.metrics["valid_auc"])

:func:`fit_run` trains a run already in the registry; distillation trains its students through it too. Resuming a
run of either kind is :func:`shoal.distill.resume`, the lowest layer that knows both.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from shoal.artifacts.bundle import Bundle, load_bundle
from shoal.artifacts.disk import DiskFullError
from shoal.artifacts.lineage import file_lineage
from shoal.artifacts.refs import resolve
from shoal.artifacts.registry import Registry, RunKind, RunRecord
from shoal.config import DataConfig, RunConfig, apply_overrides, check_memory, load_config, parse_config
from shoal.data.readers import BadRowSink, is_multi
from shoal.data.stream import chunks
from shoal.metrics import confusion_matrix, probabilities
from shoal.training.callbacks import Callbacks
from shoal.training.evaluation import NO_ROWS, report, scores
from shoal.training.loop import BatchLoss, Trainer

__all__ = ["evaluate_file", "fit_run", "load", "resume_training", "train"]

log = logging.getLogger(__name__)


def fit_run(registry: Registry, record: RunRecord, cfg: RunConfig, callbacks: Callbacks | None = None, *,
            resume: bool = False, loss: BatchLoss | None = None) -> RunRecord:
    """Train the registered run ``record`` with ``cfg`` in its folder (``resume``: from its last checkpoint);
    the registry records how it ends. ``loss`` replaces the label loss (distillation). Returns the final record."""
    with registry.recording(record.run_id):
        lineage = {split: file_lineage(found[0]) for split in ("train", "valid", "test")
                   if (found := cfg.data.file(split)) is not None and (Path(found[0]).exists() or is_multi(found[0]))}
        result = Trainer(cfg, record.artifact_dir, callbacks, loss=loss).fit(resume=resume)
    summary = {**result.summary, "bundle": str(result.bundle), "lineage": {"data": lineage}}
    try:
        return registry.complete(record.run_id, result.metrics, summary)
    except DiskFullError as full:  # the registry's disk filled up at the very end
        raise DiskFullError(f"{full}. Run {record.run_id} trained to the end (bundle {result.bundle}) but is not "
                            f"recorded completed; it reads `killed`: once there is room, `shoal train --resume "
                            f"{record.run_id}` records it (training again from its last checkpoint)") from full


def train(config: RunConfig | str | Path, home: str | Path = "shoal-runs",
          callbacks: Callbacks | None = None, overrides: Mapping[str, Any] | Sequence[str] = ()) -> RunRecord:
    """Train a config (a :class:`RunConfig` or a YAML path) as a new run; returns the finished record.

    ``overrides``: dotted keys set before validation (``{"train.epochs": 3}``, as ``shoal train --set``), recorded
    in the run's resolved config.
    """
    if isinstance(config, RunConfig):
        cfg = parse_config(apply_overrides(config.model_dump(mode="json"), overrides)) if overrides else config
    else:
        cfg = load_config(config, overrides)
    # tables that cannot fit this machine are refused before anything is allocated (not at parse time: `shoal
    # plan` describes jobs for bigger machines)
    check_memory(cfg, str(config) if not isinstance(config, RunConfig) else f"config {cfg.name!r}")
    registry = Registry(Path(home))
    record = registry.create_run(cfg.name, cfg.resolved(), kind=RunKind.TRAIN)
    log.info("run %s: training %s in %s", record.run_id, cfg.model.name, record.artifact_dir)
    return fit_run(registry, record, cfg, callbacks)


def resume_training(registry: Registry, record: RunRecord, callbacks: Callbacks | None = None) -> RunRecord:
    """Continue a killed or failed training run from its last checkpoint, with the config it was started with."""
    record = registry.reopen(record.run_id)
    with registry.recording(record.run_id):
        cfg = parse_config(record.config, source=f"run {record.run_id}")
    return fit_run(registry, record, cfg, callbacks, resume=True)


def load(ref: str | os.PathLike[str], home: str | os.PathLike[str] = "shoal-runs") -> Bundle:
    """A bundle by run id (or prefix, or ``latest``), or by the path of a bundle folder."""
    return load_bundle(resolve(ref, home).folder)


def _read_options(bundle: Bundle, path: Path) -> DataConfig:
    """How to read ``path``: as the run's validation or test file when it is one of them, else as training."""
    for split in ("valid", "test"):
        found = bundle.config.data.file(split)
        if found is not None and found[0].resolve() == path.resolve():
            return found[1]
    return bundle.config.data


def evaluate_file(ref: str | Path, data: str | Path, home: str | Path = "shoal-runs",
                  quarantine: Path | None = None) -> dict[str, Any]:
    """Metrics of a trained model on a labelled file read like its training data.

    The file is read with the run's reading options (those of its validation or test file when it is one of
    them). Bad rows raise (or, with ``quarantine`` given, are written there and counted). NE is relative to the
    training base rate (class frequencies), as in training. A multiclass or binary model's report also holds
    ``classes`` and ``confusion`` (rows: true class, columns: predicted; binary: negative, positive at p >= 0.5).
    """
    bundle = load(ref, home)
    sink = BadRowSink("quarantine", quarantine) if quarantine is not None else BadRowSink("error")
    batches = (bundle.encoder.encode(c, sink) for c in chunks(Path(data), _read_options(bundle, Path(data)),
                                                                bundle.encoder.columns(), sink))
    try:
        labels, logits = scores(bundle.model, (b for b in batches if len(b)))
    except ValueError as err:
        if str(err) != NO_ROWS:
            raise
        raise ValueError(f"{data}: no usable rows to evaluate") from None
    finally:
        sink.close()
    result: dict[str, Any] = {**report(labels, logits, bundle.prior), "quarantined_rows": sink.count}
    if bundle.classes:
        result["classes"] = bundle.classes
        result["confusion"] = confusion_matrix(labels, probabilities(logits)).tolist()
    elif bundle.config.label.kind == "binary":  # predicted positive at p >= 0.5, as accuracy counts it
        p = probabilities(logits)
        label = bundle.config.label
        result["classes"] = [f"negative ({label.negative[0]})", f"positive ({label.positive[0]})"]
        truth = np.asarray(labels).astype(np.int64)
        result["confusion"] = np.bincount(truth * 2 + (p >= 0.5), minlength=4).reshape(2, 2).tolist()
    return result
