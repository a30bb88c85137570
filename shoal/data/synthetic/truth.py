"""The truth of a log: what the true probabilities achieve on its labels, and the JSON file that keeps it.

No model can beat the true probabilities in expectation, so these numbers tell how much of the learnable signal a
trained model has captured.  ``bayes_auc`` is ``roc_auc_score(labels, p)`` over all rows, ``bayes_logloss`` the
mean log loss of ``p`` and ``bayes_ne = bayes_logloss / H(q)`` with ``q`` the observed positive rate and
``H(q) = -(q ln q + (1 - q) ln(1 - q))``.  With a single class among the labels (tiny ``rows``) the AUC and the
NE are undefined and stored as ``nan`` (``NaN`` in the JSON, as Python's :mod:`json` writes it).

With several tasks (``SynthSpec.tasks``) the top-level numbers are the first task's (the click), and ``tasks``
holds one :class:`TaskTruth` per task, in order, each computed the same way from that task's label as written
and its true probability over all rows (for a post-click event, ``p * cvr``: :mod:`.tasks`).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from shoal.data.synthetic.spec import SynthSpec

__all__ = ["SynthTruth", "TaskTruth", "load_truth", "truth_path"]


@dataclass(frozen=True)
class TaskTruth:
    """The Bayes-optimal metrics of one task's label column (``nan`` with a single class)."""

    name: str
    """The task's column."""
    base_rate: float
    """Observed positive rate over all rows."""
    bayes_auc: float
    """ROC AUC of the true probabilities against the labels."""
    bayes_logloss: float
    """Mean log loss of the true probabilities."""
    bayes_ne: float
    """``bayes_logloss / H(base_rate)``."""

    def to_json(self) -> dict[str, Any]:
        """A JSON-serializable dict."""
        return {"name": self.name, "base_rate": float(self.base_rate), "bayes_auc": float(self.bayes_auc),
                "bayes_logloss": float(self.bayes_logloss), "bayes_ne": float(self.bayes_ne)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TaskTruth:
        """Inverse of :meth:`to_json`."""
        return cls(name=str(data["name"]), base_rate=float(data["base_rate"]), bayes_auc=float(data["bayes_auc"]),
                   bayes_logloss=float(data["bayes_logloss"]), bayes_ne=float(data["bayes_ne"]))


@dataclass(frozen=True)
class SynthTruth:
    """What a model can at best achieve on the generated log, computed from the true probabilities."""

    rows: int
    """Rows written."""
    base_rate: float
    """Observed positive rate of the sampled labels."""
    bayes_auc: float
    """ROC AUC of the true probabilities against the labels (``nan`` with a single class)."""
    bayes_logloss: float
    """Mean log loss of the true probabilities."""
    bayes_ne: float
    """``bayes_logloss / H(base_rate)`` (``nan`` when the observed rate is 0 or 1)."""
    spec: dict[str, Any]
    """The :class:`SynthSpec` as a dict."""
    target_rmse: float | None = None
    """With a numeric target: the RMSE of predicting its noise-free value, i.e. the noise floor (else None)."""
    target_r2: float | None = None
    """With a numeric target: the R^2 of its noise-free value, the best any model can reach (else None)."""
    tasks: tuple[TaskTruth, ...] = ()
    """With several tasks: each task's truth, in the order of ``SynthSpec.tasks`` (else empty)."""

    def task(self, name: str) -> TaskTruth:
        """The truth of the task called ``name``."""
        for task in self.tasks:
            if task.name == name:
                return task
        raise KeyError(f"no task {name!r} in this truth; its tasks are {[t.name for t in self.tasks]}")

    def to_json(self) -> dict[str, Any]:
        """A JSON-serializable dict (``nan`` for undefined metrics)."""
        return {
            "rows": int(self.rows),
            "base_rate": float(self.base_rate),
            "bayes_auc": float(self.bayes_auc),
            "bayes_logloss": float(self.bayes_logloss),
            "bayes_ne": float(self.bayes_ne),
            "spec": dict(self.spec),
            **({} if self.target_rmse is None else {"target_rmse": float(self.target_rmse),
                                                    "target_r2": float(self.target_r2 or math.nan)}),
            **({"tasks": [task.to_json() for task in self.tasks]} if self.tasks else {}),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SynthTruth:
        """Inverse of :meth:`to_json`."""
        names = {f.name for f in fields(cls)} - {"target_rmse", "target_r2", "tasks"}  # absent from older files
        missing = names - set(data)
        if missing:
            raise ValueError(f"truth JSON lacks the keys {sorted(missing)}")
        return cls(
            rows=int(data["rows"]),
            base_rate=float(data["base_rate"]),
            bayes_auc=float(data["bayes_auc"]),
            bayes_logloss=float(data["bayes_logloss"]),
            bayes_ne=float(data["bayes_ne"]),
            spec=dict(data["spec"]),
            target_rmse=None if data.get("target_rmse") is None else float(data["target_rmse"]),
            target_r2=None if data.get("target_r2") is None else float(data["target_r2"]),
            tasks=tuple(TaskTruth.from_json(task) for task in data.get("tasks", [])),
        )


def truth_path(path: str | Path) -> Path:
    """Where :func:`generate` writes the truth of the log at ``path``: ``"<path>.truth.json"``."""
    p = Path(path)
    return p.with_name(p.name + ".truth.json")


def load_truth(path: str | Path) -> SynthTruth:
    """Read the truth written next to the log at ``path`` (pass the log's path, not the JSON's)."""
    with open(truth_path(path), encoding="utf-8") as fh:
        return SynthTruth.from_json(json.load(fh))


def _entropy(q: float) -> float:
    if not 0.0 < q < 1.0:
        return 0.0
    return -(q * math.log(q) + (1.0 - q) * math.log(1.0 - q))


def _task_truth(name: str, labels: np.ndarray, probs: np.ndarray, loss_sum: float) -> TaskTruth:
    """The truth of one label column given its true ``probs`` and the summed log loss (taken from the logits)."""
    from sklearn.metrics import roc_auc_score

    q = float(labels.mean())
    logloss = float(loss_sum) / labels.shape[0]
    h = _entropy(q)
    auc = float(roc_auc_score(labels, probs)) if 0.0 < q < 1.0 else math.nan
    return TaskTruth(name=name, base_rate=q, bayes_auc=auc, bayes_logloss=logloss,
                     bayes_ne=logloss / h if h > 0.0 else math.nan)


def _bayes_truth(spec: SynthSpec, labels: np.ndarray, probs: np.ndarray, loss_sum: np.ndarray,
                 signal: np.ndarray | None = None) -> SynthTruth:
    """The truth of all ``labels`` (``(T, rows)``, one row per task) given their true ``probs`` (same shape) and
    the summed log loss of each task; ``signal``: (rows, sum, sum of squares) of a numeric target's noise-free
    values."""
    tasks = [_task_truth(name, labels[t], probs[t], loss_sum[t]) for t, name in enumerate(spec.label_names)]
    first = tasks[0]
    return SynthTruth(
        rows=spec.rows,
        base_rate=first.base_rate,
        bayes_auc=first.bayes_auc,
        bayes_logloss=first.bayes_logloss,
        bayes_ne=first.bayes_ne,
        spec={**asdict(spec), "tasks": None if spec.tasks is None else list(spec.tasks)},  # as JSON reads it back
        **_target_truth(spec, signal),
        tasks=tuple(tasks) if spec.tasks is not None else (),
    )


def _target_truth(spec: SynthSpec, signal: np.ndarray | None) -> dict[str, float]:
    """The noise floor of a numeric target and its R^2 ceiling: var(signal) / (var(signal) + noise^2)."""
    if spec.target is None or signal is None or signal[0] == 0:
        return {}
    n, total, squares = (float(v) for v in signal)
    var = max(squares / n - (total / n) ** 2, 0.0)
    noise = float(spec.target_noise)
    return {"target_rmse": noise, "target_r2": var / (var + noise * noise)}


def _write_truth(path: Path, truth: SynthTruth) -> None:
    """Write ``truth`` next to the log at ``path``, through a temporary name so a reader never sees half of it."""
    tpath = truth_path(path)
    ttmp = tpath.with_name(tpath.name + ".tmp")
    with open(ttmp, "w", encoding="utf-8") as fh:
        json.dump(truth.to_json(), fh, indent=2, sort_keys=True)
        fh.write("\n")
    os.replace(ttmp, tpath)
