"""Runs: train, resume and evaluate, with every result recorded in the registry.

These are the functions behind ``shoal train``, ``shoal train --resume`` and ``shoal eval``; they are the
public Python API too (re-exported from :mod:`shoal`)::

    import shoal
    run = shoal.train("configs/synthetic.yaml", home="shoal-runs")
    print(run.run_id, run.metrics["valid_auc"])
"""

from __future__ import annotations

import logging
import traceback
from pathlib import Path
from typing import Any

from shoal.artifacts.bundle import Bundle, load_bundle
from shoal.artifacts.registry import Registry, RunRecord
from shoal.config import DataConfig, RunConfig, load_config, parse_config
from shoal.data.readers import BadRowSink
from shoal.data.stream import chunks
from shoal.metrics import confusion_matrix, probabilities
from shoal.training.callbacks import Callbacks
from shoal.training.loop import NO_ROWS, BatchLoss, Trainer, report, scores

__all__ = ["evaluate_file", "load", "resume", "train"]

log = logging.getLogger(__name__)


def _fit(registry: Registry, record: RunRecord, cfg: RunConfig, callbacks: Callbacks | None,
         resume: bool, loss: BatchLoss | None = None) -> RunRecord:
    try:
        result = Trainer(cfg, record.artifact_dir, callbacks, loss=loss).fit(resume=resume)
    except KeyboardInterrupt:
        registry.update(record.run_id, status="killed", finished=True)
        raise
    except Exception as err:
        registry.update(record.run_id, status="failed", finished=True,
                        summary={"error": f"{type(err).__name__}: {err}",
                                 "traceback": traceback.format_exc(limit=20)})
        raise
    return registry.update(record.run_id, status="completed", finished=True, metrics=result.metrics,
                           summary={**result.summary, "bundle": str(result.bundle)})


def train(config: RunConfig | str | Path, home: str | Path = "shoal-runs",
          callbacks: Callbacks | None = None) -> RunRecord:
    """Train a config (a :class:`RunConfig` or a YAML path) as a new run; returns the finished record."""
    cfg = config if isinstance(config, RunConfig) else load_config(config)
    registry = Registry(Path(home))
    record = registry.create_run(cfg.name, cfg.resolved(), kind="train")
    log.info("run %s: training %s in %s", record.run_id, cfg.model.name, record.artifact_dir)
    return _fit(registry, record, cfg, callbacks, resume=False)


def resume(ref: str, home: str | Path = "shoal-runs", callbacks: Callbacks | None = None) -> RunRecord:
    """Continue a killed or failed run from its last checkpoint, with the config it was started with."""
    registry = Registry(Path(home))
    record = registry.get(ref)
    if record.status == "completed":
        raise ValueError(f"run {record.run_id} already completed; nothing to resume (start a new run instead)")
    if record.kind == "distill":  # a student: resumed with its teacher's outputs and its distillation loss
        from shoal.distill import resume_distill

        return resume_distill(registry, record, callbacks)
    cfg = parse_config(record.config, source=f"run {record.run_id}")
    record = registry.update(record.run_id, status="running")
    return _fit(registry, record, cfg, callbacks, resume=True)


def load(ref: str | Path, home: str | Path = "shoal-runs") -> Bundle:
    """A bundle by run id (or prefix, or ``latest``), or by the path of a bundle folder."""
    path = Path(ref)
    if (path / "bundle.json").is_file():
        return load_bundle(path)
    record = Registry(Path(home)).get(str(ref))
    bundle = record.artifact_dir / "bundle"
    if not (bundle / "bundle.json").is_file():
        raise FileNotFoundError(
            f"run {record.run_id} has no bundle (status {record.status}); "
            f"finish it with `shoal train --resume {record.run_id}`"
        )
    return load_bundle(bundle)


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
    training base rate (class frequencies), as in training. A multiclass model's report also holds
    ``classes`` and ``confusion`` (rows: true class, columns: predicted).
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
    return result
