"""PNG plots saved next to a run (matplotlib, headless)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from shoal.metrics import auc

__all__ = ["binary_curves_png", "confusion_png", "frontier_png", "learning_curve_png", "ranked_counts"]


def confusion_png(cm: np.ndarray, classes: list[str], path: Path, title: str) -> Path:
    """A confusion matrix (rows: true class, columns: predicted) as a heat map with counts; returns ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(classes)
    size = max(4.0, 0.6 * n + 2.5)
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    rates = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), classes, rotation=45, ha="right")
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if n <= 30:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, str(int(cm[i, j])), ha="center", va="center",
                        color="white" if rates[i, j] > 0.5 else "black", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def frontier_png(candidates: Sequence[Any], chosen: Any | None, budget_ms: float, path: Path, title: str) -> Path:
    """Quality against p99 latency of ``shoal compress``'s candidates (``.p99_ms``, ``.quality``, ``.name``,
    ``.on_frontier``, ``.metric``): the Pareto frontier as a step line, the budget as a vertical line, the chosen
    candidate circled; returns ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    families = sorted({c.student for c in candidates})
    colors = {f: plt.get_cmap("tab10")(i % 10) for i, f in enumerate(families)}
    markers = {"torch-fp32": "o", "torch-int8": "s", "onnx-fp32": "^", "onnx-int8": "D"}
    for c in candidates:
        ax.scatter(c.p99_ms, c.quality, color=colors[c.student], marker=markers.get(c.system, "o"),
                   alpha=1.0 if c.on_frontier else 0.45, s=36)
    front = sorted((c for c in candidates if c.on_frontier), key=lambda c: c.p99_ms)
    if front:
        ax.step([c.p99_ms for c in front], [c.quality for c in front], where="post", color="black", lw=1,
                label="frontier")
    ax.axvline(budget_ms, color="red", ls="--", lw=1, label=f"budget {budget_ms:g} ms")
    if chosen is not None:
        ax.scatter(chosen.p99_ms, chosen.quality, s=260, facecolors="none", edgecolors="red", lw=2,
                   label=f"chosen: {chosen.name}")
    for f in families:
        ax.scatter([], [], color=colors[f], label=f)
    for system, marker in markers.items():
        ax.scatter([], [], color="gray", marker=marker, label=system)
    ax.set_xscale("log")
    ax.set_xlabel("p99 latency, ms per row (batch 1, 1 thread)")
    ax.set_ylabel(f"validation {candidates[0].metric if candidates else 'quality'}")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    plt = _pyplot()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def learning_curve_png(history: Sequence[dict[str, float]], path: Path, title: str) -> Path:
    """Training loss (smoothed, where recorded) and validation log loss by step, and the validation AUC or
    accuracy on a second axis: one point per validation; returns ``path``."""
    plt = _pyplot()
    steps = [h.get("step", i + 1) for i, h in enumerate(history)]
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    if any("train_loss" in h for h in history):
        pts = [(s, h["train_loss"]) for s, h in zip(steps, history, strict=True) if h.get("train_loss") is not None]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color="tab:gray", label="training loss (smoothed)")
    loss, name = (("logloss", "log loss") if all("logloss" in h for h in history)
                  else ("mean_ne", "mean NE / NMSE of the tasks") if all("mean_ne" in h for h in history)
                  else ("nmse", "normalised MSE"))
    ax.plot(steps, [h[loss] for h in history], "o-", color="tab:blue", label=f"validation {name}")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(name)
    metric = next((m for m in ("auc", "accuracy", "rmse", "mean_task_score") if all(m in h for h in history)), None)
    lines, labels = ax.get_legend_handles_labels()
    if metric is not None:
        right = ax.twinx()
        right.plot(steps, [h[metric] for h in history], "s--", color="tab:orange", label=f"validation {metric}")
        right.set_ylabel(f"validation {metric}")
        more = right.get_legend_handles_labels()
        lines, labels = lines + more[0], labels + more[1]
    best = int(np.argmin([h[loss] for h in history]))
    ax.axvline(steps[best], color="tab:green", lw=0.8, ls=":")
    ax.legend(lines, labels, loc="best", fontsize=8)
    ax.set_title(f"{title}: learning curve (kept: step {int(steps[best]):,}, the lowest validation {name})",
                 fontsize=9)
    return _save(fig, path)


def ranked_counts(labels: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(true positives, false positives) (K,) above each of the K distinct scores of ``p``, highest first: the
    points of the ROC and precision-recall curves (scikit-learn's ``_binary_clf_curve``, without importing it:
    ~1.5 s of a run's end)."""
    order = np.argsort(-p, kind="stable")
    ranked, y = p[order], np.asarray(labels)[order]
    last = np.r_[np.flatnonzero(ranked[1:] != ranked[:-1]), len(ranked) - 1]  # the last row of each score
    tps = np.cumsum(y, dtype=np.float64)[last]
    return tps, (last + 1) - tps


def binary_curves_png(labels: np.ndarray, p: np.ndarray, path: Path, title: str, bins: int = 10) -> Path:
    """ROC, precision-recall and calibration (reliability) curves of P(positive) ``p`` against 0/1 ``labels``,
    side by side; returns ``path``."""
    plt = _pyplot()
    y = np.asarray(labels).astype(int)
    p = np.asarray(p, dtype=np.float64)
    fig, (roc, pr, cal) = plt.subplots(1, 3, figsize=(13.5, 4.3))
    if 0 < y.sum() < len(y):
        tps, fps = ranked_counts(y, p)
        roc.plot(np.r_[0.0, fps / fps[-1]], np.r_[0.0, tps / tps[-1]], color="tab:blue", label=f"AUC {auc(y, p):.4f}")
        precision, recall = tps / (tps + fps), tps / tps[-1]
        ap = float(np.sum(np.diff(recall, prepend=0.0) * precision))  # scikit-learn's average precision
        keep = np.unique(np.linspace(0, len(recall) - 1, min(len(recall), 400)).astype(int))  # enough for the eye
        pr.plot(recall[keep], precision[keep], color="tab:blue", label=f"average precision {ap:.4f}")
    roc.plot([0, 1], [0, 1], color="tab:gray", ls=":", label="chance")
    roc.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    pr.axhline(y.mean(), color="tab:gray", ls=":", label=f"base rate {y.mean():.3f}")
    pr.set(xlabel="recall", ylabel="precision", title="precision-recall", ylim=(0, 1.02))
    # calibration: rows in equal-count bins of predicted probability; mean predicted vs observed rate
    order = np.argsort(p, kind="stable")
    groups = [g for g in np.array_split(order, min(bins, len(p))) if len(g)]
    mean_p = [float(p[g].mean()) for g in groups]
    rate = [float(y[g].mean()) for g in groups]
    top = max(max(mean_p, default=1.0), max(rate, default=1.0), 1e-3) * 1.05
    cal.plot([0, top], [0, top], color="tab:gray", ls=":", label="perfectly calibrated")
    cal.plot(mean_p, rate, "o-", color="tab:blue", label=f"model ({len(groups)} equal-count bins)")
    cal.set(xlabel="mean predicted probability", ylabel="observed positive rate", title="calibration",
            xlim=(0, top), ylim=(0, top))
    for ax in (roc, pr, cal):
        ax.legend(loc="best", fontsize=8)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def regression_png(labels: np.ndarray, pred: np.ndarray, path: Path, title: str, points: int = 5000) -> Path:
    """Predicted against actual values (a sample of ``points`` rows, the diagonal is perfect) and the
    distribution of the residuals, side by side; returns ``path``."""
    plt = _pyplot()
    y = np.asarray(labels, dtype=np.float64)
    p = np.asarray(pred, dtype=np.float64)
    if len(y) > points:
        keep = np.random.default_rng(0).choice(len(y), points, replace=False)
        ys, ps = y[keep], p[keep]
    else:
        ys, ps = y, p
    fig, (sc, hist) = plt.subplots(1, 2, figsize=(10.5, 4.3))
    sc.scatter(ys, ps, s=6, alpha=0.4, color="tab:blue")
    lo, hi = float(min(ys.min(), ps.min())), float(max(ys.max(), ps.max()))
    sc.plot([lo, hi], [lo, hi], color="tab:gray", lw=0.8, ls="--", label="perfect")
    sc.set_xlabel("actual")
    sc.set_ylabel("predicted")
    sc.set_title(f"predicted vs actual ({len(ys):,} of {len(y):,} rows)", fontsize=9)
    sc.legend(loc="best", fontsize=8)
    hist.hist(p - y, bins=50, color="tab:orange")
    hist.set_xlabel("residual (predicted - actual)")
    hist.set_ylabel("rows")
    rmse = float(np.sqrt(np.mean((p - y) ** 2)))
    hist.set_title(f"residuals (RMSE {rmse:.4g})", fontsize=9)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)
