"""PNG plots saved next to a run (matplotlib, headless)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["confusion_png", "frontier_png"]


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
