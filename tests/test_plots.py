"""The run pictures: learning curve, ROC / precision-recall / calibration, drawn from real numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoal.plots import binary_curves_png, learning_curve_png, ranked_counts


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


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 6)), min_size=2, max_size=60))
def test_curve_points_are_scikit_learns(rows: list[tuple[int, int]]) -> None:
    """The ROC and precision-recall points and the average precision, tied scores included, as scikit-learn
    computes them (the plots no longer import it)."""
    from sklearn.metrics import average_precision_score, precision_recall_curve, roc_curve

    y = np.array([r[0] for r in rows])
    p = np.array([r[1] for r in rows], dtype=np.float64) / 6
    if not 0 < y.sum() < len(y):
        return
    tps, fps = ranked_counts(y, p)
    fpr, tpr, _ = roc_curve(y, p, drop_intermediate=False)
    np.testing.assert_allclose(np.r_[0.0, fps / fps[-1]], fpr)
    np.testing.assert_allclose(np.r_[0.0, tps / tps[-1]], tpr)
    precision, recall, _ = precision_recall_curve(y, p)  # recall falling, then the (recall 0, precision 1) point
    np.testing.assert_allclose(tps / (tps + fps), precision[-2::-1])
    np.testing.assert_allclose(tps / tps[-1], recall[-2::-1])
    ap = float(np.sum(np.diff(tps / tps[-1], prepend=0.0) * tps / (tps + fps)))
    assert ap == pytest.approx(average_precision_score(y, p), abs=1e-12)
