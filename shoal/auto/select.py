"""Which trial a search keeps: the best on validation, unless it beats the starter config by less than the
validation rows' noise.

    leaderboard[0] ──┐                      paired bootstrap over the validation rows
                     ├─ both scored on the ─> d = metric(best) - metric(starter) (in the better direction)
    starter trial ───┘  same rows             se = standard deviation of d over resamples
                                              d > se: keep the best   else: keep the starter

The best of many trials on one validation set is partly the best by luck: on a few hundred rows one row is
tenths of a point, and thirty trials give the luckiest plenty of chances. The starter config is the default that
holds across data sets, so a search must show it does better than the noise before it replaces it: the
one-standard-error rule (Breiman et al. 1984; Hastie, Tibshirani and Friedman, *The Elements of Statistical
Learning*, 7.10), with the standard error of the *paired* difference (both models on the same rows, resampled
together: their shared hard rows cancel), so a large validation set keeps a small real gain.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shoal.artifacts.registry import Registry
from shoal.auto.report import TrialRow
from shoal.auto.space import STARTER
from shoal.auto.trial import Metric
from shoal.config import DataConfig, FileSpec

__all__ = ["RESAMPLES", "Choice", "choose", "paired_difference"]

RESAMPLES = 200  # bootstrap resamples of the validation rows
MAX_ROWS = 50_000  # rows resampled at most (a random subset beyond: a larger standard error, never a smaller one)


@dataclass(frozen=True)
class Choice:
    """The trial a search keeps and why (``details`` goes to the auto run's summary as ``auto.selection``)."""

    row: TrialRow
    details: dict[str, Any]


def paired_difference(labels: np.ndarray, first: np.ndarray, second: np.ndarray, score: Any,
                      maximize: bool, seed: int = 0, resamples: int = RESAMPLES) -> tuple[float, float]:
    """``(d, se)``: how much better ``first``'s outputs score than ``second``'s on these rows (``score(labels,
    outputs)``; positive = better in the metric's direction) and the bootstrap standard error of that difference,
    both resampled with the same rows each time."""
    sign = 1.0 if maximize else -1.0
    rng = np.random.default_rng(seed)
    n = len(labels)
    if n > MAX_ROWS:
        keep = rng.choice(n, MAX_ROWS, replace=False)
        labels, first, second, n = labels[keep], first[keep], second[keep], MAX_ROWS
    d = sign * (score(labels, first) - score(labels, second))
    diffs = []
    for _ in range(resamples):
        idx = rng.integers(0, n, n)
        a, b = score(labels[idx], first[idx]), score(labels[idx], second[idx])
        if np.isfinite(a) and np.isfinite(b):  # e.g. AUC of a resample with one class only
            diffs.append(sign * (a - b))
    se = float(np.std(diffs, ddof=1)) if len(diffs) > 1 else float("inf")
    return float(d), se


def choose(registry: Registry, board: list[TrialRow], metric: Metric, valid: Path | FileSpec | None,
           data: DataConfig, seed: int = 0) -> Choice | None:
    """The trial to keep of a leaderboard (best first): its first row, or the starter trial when the first beats
    it by no more than one standard error on the validation rows. None when no trial completed."""
    done = [r for r in board if r.state == "complete" and r.run_id is not None]
    if not done:
        return None
    best = done[0]
    starter = next((r for r in done if r.family == STARTER), None)
    if starter is None or starter is best:
        why = "no starter trial completed" if starter is None else "the starter config is the best on validation"
        return Choice(best, {"rule": "one standard error", "chosen": best.number, "reason": why})
    base = {"rule": "one standard error", "best": best.number, "starter": starter.number}
    from shoal.auto.ensemble import rows_key

    if rows_key(registry.get(str(best.run_id)).config) != rows_key(registry.get(str(starter.run_id)).config):
        return Choice(best, {**base, "chosen": best.number, "reason": "the starter validated on other rows"})
    try:
        labels, outputs, prior = _validation_outputs(registry, [str(best.run_id), str(starter.run_id)], valid, data)
    except (ValueError, FileNotFoundError, KeyError) as err:  # e.g. a bundle removed by hand: keep the best
        return Choice(best, {**base, "chosen": best.number, "reason": f"could not compare on validation: {err}"})
    from shoal.training.evaluation import report

    def score(y: np.ndarray, z: np.ndarray) -> float:
        return float(report(y, z, prior).get(metric.name, float("nan")))

    if not np.isfinite(score(labels, outputs[0])):
        return Choice(best, {**base, "chosen": best.number, "reason": f"no {metric.name} on the validation rows"})
    d, se = paired_difference(labels, outputs[0], outputs[1], score, metric.maximize, seed)
    keep_best = d > se
    details = {**base, "rows": int(len(labels)), "difference": round(d, 6), "standard_error": round(se, 6),
               "chosen": best.number if keep_best else starter.number,
               "reason": (f"trial {best.number} beats the starter by {d:.4f} {metric.name}, more than one standard "
                          f"error ({se:.4f}) over {len(labels):,} validation rows" if keep_best else
                          f"trial {best.number} beats the starter by {d:.4f} {metric.name}, within one standard "
                          f"error ({se:.4f}) over {len(labels):,} validation rows: the starter is kept")}
    return Choice(best if keep_best else starter, details)


def _validation_outputs(registry: Registry, runs: list[str], valid: Path | FileSpec | None,
                        data: DataConfig) -> tuple[np.ndarray, list[np.ndarray], Any]:
    """The labels of the validation rows every run scored, each run's outputs on them, and the first's prior."""
    from shoal.auto.ensemble import scored_together
    from shoal.training.runs import load

    bundles = [load(r, registry.home) for r in runs]
    labels, outputs = scored_together(registry, runs, bundles, valid, data, "the trials share no validation rows")
    return labels, outputs, bundles[0].prior
