"""``shoal export-mlflow RUN``: a run written in MLflow's file-store format, for teams that already run MLflow.

MLflow's file store (``mlruns/``) is a folder per experiment and a folder per run of plain files; writing it needs
no MLflow install. For a run this writes::

    OUT/<experiment id>/meta.yaml                      the experiment (named after the run's ``name``)
    OUT/<experiment id>/<run uuid>/meta.yaml            the run: start/end times, status, name
    OUT/<experiment id>/<run uuid>/params/<key>         the resolved config, flattened to dotted keys
    OUT/<experiment id>/<run uuid>/metrics/<key>        final metrics, and validation metrics by step
                                                        ("valid_history_<name>"), one "<ms> <value> <step>" line each
    OUT/<experiment id>/<run uuid>/tags/<key>           mlflow.runName, shoal.run_id, shoal.kind, shoal.parent
    OUT/<experiment id>/<run uuid>/artifacts/           the bundle, the pictures, the config as JSON

``mlflow ui --backend-store-uri OUT`` then shows it. The run uuid is derived from the shoal run id, so exporting
again overwrites the same MLflow run.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import yaml

from shoal.artifacts.registry import Registry
from shoal.artifacts.run import RunStatus

__all__ = ["export_mlflow"]

_STATUS = {RunStatus.RUNNING: 1, RunStatus.COMPLETED: 3, RunStatus.FAILED: 4, RunStatus.KILLED: 5}
_PARAM_MAX = 6000  # MLflow's limit on a parameter value
_PICTURES = ("learning_curve_png", "valid_curves_png", "test_curves_png", "valid_confusion_png", "test_confusion_png")


def _flatten(value: Any, prefix: str = "") -> dict[str, str]:
    if isinstance(value, dict):
        out: dict[str, str] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(value, list) and value and all(isinstance(v, dict) and "name" in v for v in value):
        out = {}
        for v in value:  # features: by name
            out.update(_flatten({k: x for k, x in v.items() if k != "name"}, f"{prefix}.{v['name']}"))
        return out
    return {prefix: json.dumps(value) if isinstance(value, list | dict) else str(value)}


def _key(name: str) -> str:
    """An MLflow key: letters, digits, ``_ - . /`` and spaces; anything else becomes ``_``."""
    return re.sub(r"[^A-Za-z0-9_\-. /]", "_", name)[:250]


def _id(text: str, digits: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:digits]


def export_mlflow(ref: str, home: str | os.PathLike[str], out: str | os.PathLike[str] = "mlruns") -> Path:
    """Write run ``ref`` (id, prefix, ``latest``) of the registry at ``home`` into the MLflow file store ``out``;
    returns the MLflow run folder."""
    record = Registry(home).get(ref)
    root = Path(out).resolve()
    exp_id = str(int(_id(record.name, 12), 16) % 10**15)  # numeric, as MLflow's file store makes them
    exp_dir = root / exp_id
    exp_dir.mkdir(parents=True, exist_ok=True)
    now_ms = int(time.time() * 1000)
    if not (exp_dir / "meta.yaml").is_file():
        (exp_dir / "meta.yaml").write_text(yaml.safe_dump({
            "artifact_location": exp_dir.as_uri(), "creation_time": now_ms, "experiment_id": exp_id,
            "last_update_time": now_ms, "lifecycle_stage": "active", "name": record.name}), encoding="utf-8")
    uuid = _id(record.run_id, 32)
    run_dir = exp_dir / uuid
    if run_dir.exists():
        shutil.rmtree(run_dir)
    for sub in ("params", "metrics", "tags", "artifacts"):
        (run_dir / sub).mkdir(parents=True)
    start_ms = int(record.created_at * 1000)
    end_ms = int((record.finished_at or record.updated_at) * 1000)
    (run_dir / "meta.yaml").write_text(yaml.safe_dump({
        "artifact_uri": (run_dir / "artifacts").as_uri(), "end_time": end_ms, "entry_point_name": "",
        "experiment_id": exp_id, "lifecycle_stage": "active", "run_id": uuid, "run_name": record.name,
        "run_uuid": uuid, "source_name": "", "source_type": 4, "source_version": "", "start_time": start_ms,
        "status": _STATUS.get(record.status, 4), "tags": [], "user_id": os.environ.get("USER", "shoal")}),
        encoding="utf-8")
    for key, value in _flatten(record.config).items():
        (run_dir / "params" / _key(key)).write_text(value[:_PARAM_MAX], encoding="utf-8")
    for key, value in record.metrics.items():
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(float(value)):
            (run_dir / "metrics" / _key(key)).write_text(f"{end_ms} {float(value)} 0\n", encoding="utf-8")
    history = record.summary.get("history") or []
    series: dict[str, list[str]] = {}
    for k, h in enumerate(history):
        step = int(h.get("step", k))
        at = start_ms + (int(1000 * h["seconds"]) if "seconds" in h else k)  # runs from before seconds: k ms
        for name, value in h.items():
            if name not in ("step", "epoch", "seconds") and isinstance(value, int | float) \
                    and math.isfinite(float(value)):
                series.setdefault(name, []).append(f"{at} {float(value)} {step}")
    for name, lines in series.items():
        target = "train_loss" if name == "train_loss" else f"valid_history_{name}"
        (run_dir / "metrics" / _key(target)).write_text("\n".join(lines) + "\n", encoding="utf-8")
    tags = {"mlflow.runName": record.name, "shoal.run_id": record.run_id, "shoal.kind": str(record.kind),
            "shoal.status": str(record.status), "mlflow.source.type": "LOCAL"}
    if record.parent:
        tags["shoal.parent"] = record.parent
    for key, value in tags.items():
        (run_dir / "tags" / key).write_text(value, encoding="utf-8")
    artifacts = run_dir / "artifacts"
    (artifacts / "config.json").write_text(json.dumps(record.config, indent=2, default=str), encoding="utf-8")
    bundle = record.artifact_dir / "bundle"
    if bundle.is_dir():
        shutil.copytree(bundle, artifacts / "bundle", symlinks=False)
    summary: dict[str, Any] = dict(record.summary)
    for key in _PICTURES:
        picture = summary.get(key)
        if isinstance(picture, str) and Path(picture).is_file():
            shutil.copy2(picture, artifacts / Path(picture).name)
    return run_dir
