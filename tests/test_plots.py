"""The run pictures: learning curve, ROC / precision-recall / calibration, drawn from real numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from shoal.plots import binary_curves_png, learning_curve_png


def _png(path: Path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5_000


def test_learning_curve_with_and_without_training_loss(tmp_path: Path) -> None:
    history = [{"step": 100.0 * i, "logloss": 0.5 - 0.01 * i, "auc": 0.7 + 0.01 * i, "train_loss": 0.6 - 0.02 * i}
               for i in range(1, 6)]
    assert _png(learning_curve_png(history, tmp_path / "a.png", "run"))
    old = [{"step": 10.0, "logloss": 0.9, "accuracy": 0.5}, {"step": 20.0, "logloss": 0.8, "accuracy": 0.6}]
    assert _png(learning_curve_png(old, tmp_path / "b.png", "run"))  # a multiclass run from before train_loss


def test_binary_curves_also_for_one_class(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    p = rng.random(3000)
    y = (rng.random(3000) < p).astype(int)
    assert _png(binary_curves_png(y, p, tmp_path / "c.png", "run: valid"))
    assert _png(binary_curves_png(np.zeros(50, int), p[:50], tmp_path / "d.png", "one class"))  # no ROC: no crash
