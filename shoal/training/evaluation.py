"""Evaluation: scoring a set of rows, its metrics, and validation during training (early stopping, best weights).

During training, every validation (each epoch end, or every ``train.eval_every`` steps) appends its metrics to
the run's history; a log loss below the best so far keeps the current weights as the best
(:meth:`~shoal.training.checkpoints.Checkpointer.keep_best`), and ``train.early_stopping_patience`` validations
in a row without one stop the run. At the end the best weights are scored on the validation and test sets.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from shoal.data.batch import Batch
from shoal.metrics import (
    TaskPrior,
    binary_report,
    confusion_matrix,
    multiclass_report,
    multilabel_report,
    multitask_report,
    probabilities,
    regression_report,
    sigmoid,
    tag_aucs,
)
from shoal.plots import binary_curves_png, confusion_png, learning_curve_png, regression_png
from shoal.training.callbacks import Callbacks
from shoal.training.checkpoints import Checkpointer, Position
from shoal.training.data import EvalSet, Prior, TrainingData

__all__ = ["NO_ROWS", "SCORE_BATCH", "Evaluator", "Scorer", "Scores", "report", "scores", "selection_loss"]

NO_ROWS = "no rows to evaluate"
SCORE_BATCH = 8192  # rows per forward when scoring a validation/test set
IMPROVEMENT = 1e-6  # a validation log loss must beat the best by more than this to count as better

Scores = tuple[np.ndarray, np.ndarray]  # (labels (N,), logits (N,) binary or (N, C) multiclass; (N, T) both multilabel)


@torch.no_grad()
def scores(model: nn.Module, batches: Iterable[Batch], batch_size: int = SCORE_BATCH) -> Scores:
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
    """Binary metrics (AUC, NE against the training base rate, ...), multiclass ones (accuracy, macro-F1, ...)
    or, when ``prior`` is a regression label's ``{"mean", "std"}``, regression ones (RMSE, MAE, R^2, NMSE);
    multilabel ones (micro/macro-F1, mean AUC, log loss) when ``labels`` are (N, T) tags; each task's and their
    means when ``prior`` lists the tasks of a multitask label (:func:`~shoal.metrics.multitask_report`)."""
    if isinstance(prior, dict):
        return regression_report(labels, logits, train_mean=prior["mean"])
    if isinstance(prior, float | int):
        return binary_report(labels, probabilities(logits), base_rate=float(prior))
    tasks = [p for p in prior if isinstance(p, TaskPrior)]
    if tasks:
        return multitask_report(labels, logits, tasks)
    rates = [float(p) for p in prior if not isinstance(p, TaskPrior)]
    if labels.ndim == 2:
        return multilabel_report(labels, sigmoid(logits), prior=rates)
    return multiclass_report(labels, probabilities(logits), prior=rates)


def selection_loss(metrics: dict[str, float]) -> float:
    """What validation minimises to keep the best weights: the log loss, a regression label's NMSE, or the mean
    of a multitask label's NE and NMSE (each task's loss over its prior's: tasks of any scale count alike)."""
    for key in ("logloss", "nmse", "mean_ne"):
        if key in metrics:
            return float(metrics[key])
    raise KeyError(f"no loss to select weights by in metrics {sorted(metrics)}")


class Scorer(Protocol):
    """How this process scores a set and agrees on its metrics (a :class:`~shoal.training.strategy.Strategy`)."""

    @property
    def is_main(self) -> bool: ...

    def scores(self, model: nn.Module, data: TrainingData, rows: EvalSet) -> Scores: ...

    def agree(self, metrics: dict[str, float]) -> dict[str, float]: ...


class Evaluator:
    """Validates during training (``evaluator(model, pos)`` -> stop?) and scores the final weights."""

    def __init__(self, data: TrainingData, scorer: Scorer, checkpoints: Checkpointer, callbacks: Callbacks,
                 patience: int) -> None:
        self.data = data
        self.scorer = scorer
        self.checkpoints = checkpoints
        self.callbacks = callbacks
        self.patience = patience

    def __call__(self, model: nn.Module, pos: Position, train_loss: float | None = None) -> bool:
        """Validate; keep the best weights; return True when training should stop. ``train_loss``: the smoothed
        training loss at this step, recorded in the history beside the validation metrics."""
        if self.data.valid is None:
            return False
        m = report(*self.scorer.scores(model, self.data, self.data.valid), self.data.prior)
        m = self.scorer.agree({**m, "epoch": pos.epoch, "step": pos.step})
        m["seconds"] = round(pos.train_seconds, 3)  # the loop's seconds so far (earlier validations included)
        if train_loss is not None:
            m["train_loss"] = float(train_loss)
        pos.history.append(m)
        self.callbacks.on_eval(pos.epoch, pos.step, m)
        if selection_loss(m) < pos.best_loss - IMPROVEMENT:
            pos.best_loss, pos.bad_evals = selection_loss(m), 0
            self.checkpoints.keep_best(model)
        else:
            pos.bad_evals += 1
        return pos.bad_evals >= self.patience

    def final(self, model: nn.Module, run_dir: Path, title: str, history: list[dict[str, float]] | None = None,
              pictures: bool = True) -> tuple[dict[str, Any], dict[str, Any]]:
        """The run's metrics on the validation and test sets, and its pictures in ``run_dir`` (paths in the
        summary): ``learning-curve.png`` from ``history``; per set, ``curves-{set}.png`` (ROC, precision-recall,
        calibration) for a binary label, or the confusion matrix and ``confusion-{set}.png`` for a multiclass one.
        Without ``pictures``: the metrics and confusion matrices, no PNG."""
        metrics: dict[str, Any] = {}
        summary: dict[str, Any] = {}
        encoder = self.data.encoder
        draw = pictures and self.scorer.is_main
        if history and draw:
            summary["learning_curve_png"] = str(learning_curve_png(history, run_dir / "learning-curve.png", title))
        for rows in (self.data.valid, self.data.test):
            if rows is None:
                continue
            labels, logits = self.scorer.scores(model, self.data, rows)
            metrics.update({f"{rows.name}_{k}": v for k, v in report(labels, logits, self.data.prior).items()})
            if encoder.multitask:
                continue
            if encoder.multilabel:
                aucs = tag_aucs(labels, sigmoid(logits)) if len(labels) else []
                summary[f"{rows.name}_tag_auc"] = {t: (None if a != a else a) for t, a in  # nan -> null in JSON
                                                   zip(encoder.classes_, aucs, strict=False)}
                continue
            if encoder.regression:
                if draw and len(labels):
                    summary[f"{rows.name}_regression_png"] = str(regression_png(
                        labels, logits, run_dir / f"regression-{rows.name}.png", f"{title}: {rows.name}"))
                continue
            if not encoder.multiclass and draw and len(labels):
                summary[f"{rows.name}_curves_png"] = str(binary_curves_png(
                    labels, probabilities(logits), run_dir / f"curves-{rows.name}.png", f"{title}: {rows.name}"))
            if encoder.multiclass:
                cm = confusion_matrix(labels, probabilities(logits))
                summary[f"{rows.name}_confusion"] = cm.tolist()
                if draw:
                    summary[f"{rows.name}_confusion_png"] = str(confusion_png(
                        cm, encoder.classes_, run_dir / f"confusion-{rows.name}.png", f"{title}: {rows.name}"))
        return metrics, summary
