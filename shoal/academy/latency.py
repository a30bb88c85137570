"""Grading latency work done by hand: a p99 timed by the learner, and a pick within a latency budget.

:func:`check_p99_by_hand` runs the learner's ``p99_latency_ms(predict, rows)`` on :class:`FakeModel`, whose calls
take known times (1 ms typically, every 20th 5 ms, ten cold first calls of 30 ms, one 60 ms hiccup), so each
usual mistake lands on its own value and gets its own hint (:func:`p99_hint`): the median, the mean, the maximum,
cold calls timed, seconds or microseconds. :func:`check_pick_cases` tries ``pick_within_budget`` on hand-made
candidates where the rule (:func:`pick_rule`) and its usual misreadings differ.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import numpy as np

import shoal.runtime.latency
from shoal.academy.checks import CheckFailed
from shoal.academy.guard import without
from shoal.data.batch import Batch

__all__ = ["FakeModel", "check_p99_by_hand", "check_pick_cases", "fake_rows", "p99_hint", "pick_rule"]


class FakeModel:
    """A predict function with a known latency profile: 1 ms calls, every 20th 5 ms, cold first calls, one hiccup.

    So p50 and p90 are ~1 ms, the mean ~1.4 ms, p99 ~5 ms, the maximum 60 ms: each mistake lands apart."""

    def __init__(self) -> None:
        self.calls = 0
        self.sizes: list[int] = []

    def __call__(self, batch: Batch) -> np.ndarray:
        k = self.calls
        self.calls += 1
        self.sizes.append(len(batch))
        if k < 10:
            time.sleep(0.030)  # cold: caches, lazy initialisation, the first ONNX Runtime run
        elif k == 230:
            time.sleep(0.060)  # one hiccup (another process took the core): p99 must not be this
        elif k % 20 == 0:
            time.sleep(0.005)  # 5 % of the calls: what p99 is about
        else:
            time.sleep(0.001)  # the typical call
        return np.zeros(len(batch), np.float32)


def fake_rows(n: int = 64) -> Batch:
    rng = np.random.default_rng(0)
    return Batch(dense=rng.normal(size=(n, 3)).astype(np.float32), ids=[], offsets=[],
                 label=(rng.random(n) < 0.3).astype(np.float32), lines=np.arange(1, n + 1))


def p99_hint(p99: float) -> str | None:
    """The mistake a value points at, on the fake model (p50, p90 ~1 ms; mean ~1.4; p99 ~5; cold 30; max 60)."""
    percentile = ("is it the median, the p90 or the mean? those are ~1 ms here; the 99th percentile is what only 1 % "
                  "of calls exceed: np.percentile(times_ms, 99)")
    for scale, unit, fix in ((1.0, "ms", ""), (1e-3, "seconds", "seconds * 1e3"), (1e3, "microseconds", "us / 1e3")):
        v = p99 / scale
        if 3 <= v <= 15:
            return None if scale == 1.0 else f"p99 = {p99:.4g}: in {unit}? return milliseconds ({fix})"
        if 0.5 <= v < 3:
            twice = "" if scale == 1.0 else f"; and it is in {unit}: return milliseconds ({fix})"
            return f"p99 = {p99:.4g}: {percentile}{twice}"
        if 45 < v <= 100:
            return (f"p99 = {p99:.4g}: that is a single 60 ms hiccup, the maximum, not the 99th percentile: take "
                    "np.percentile(times_ms, 99) over at least 100 calls")
        if 15 < v <= 45:
            return (f"p99 = {p99:.4g}: the first, cold calls were timed (30 ms each here); make warm-up calls before "
                    "timing, and leave them out")
    return (f"p99 = {p99:.4g}: expected ~5 ms on a model whose calls take 1 ms and whose slowest 5 % take 5 ms; time "
            "each call with time.perf_counter() and return np.percentile(times_ms, 99)")


def check_p99_by_hand(lab: ModuleType) -> str:
    """``lab.p99_latency_ms(predict, rows)`` on :class:`FakeModel`, with shoal's own timer unavailable."""
    fake = FakeModel()
    timers = [(shoal.runtime.latency, name) for name in ("latency", "time_calls", "percentiles")]
    with without(lab, {"shoal.runtime.latency": timers},
                 "time each call yourself with time.perf_counter() and take the percentile of the times"):
        p99 = lab.p99_latency_ms(fake, fake_rows())
    if not isinstance(p99, int | float | np.floating) or not math.isfinite(float(p99)):
        raise CheckFailed(f"p99_latency_ms should return a float (milliseconds), got {p99!r}")
    p99 = float(p99)
    if fake.calls < 120:
        raise CheckFailed(f"p99_latency_ms called predict {fake.calls} times: a 99th percentile needs many timed calls "
                          "(at least 100, e.g. 500) after the warm-up")
    if max(fake.sizes) != 1:
        raise CheckFailed(f"predict was called on {max(fake.sizes)} rows at once: latency is measured one row per call "
                          "(rows.slice(i, i + 1)), as a server answers one request")
    hint = p99_hint(p99)
    if hint is not None:
        raise CheckFailed(hint)
    return f"{fake.calls} calls, one row each; p99 {p99:.1f} ms on a model whose slowest 5 % take 5 ms"


def pick_rule(candidates: Sequence[Any], budget_ms: float) -> tuple[Any, Any]:
    """The grader's rule: the most accurate within the budget (ties: faster), and the fastest."""
    within = [c for c in candidates if c.p99_ms <= budget_ms]
    best = max(within, key=lambda c: (c.auc, -c.p99_ms)) if within else None
    return best, min(candidates, key=lambda c: (c.p99_ms, -c.auc))


def check_pick_cases(pick: Callable[[list[Any], float], Any], make: Callable[[str, float, float], Any]) -> None:
    """``pick(candidates, budget)`` on six hand-made cases and the empty list; ``make(name, auc, p99_ms)`` builds a
    candidate."""
    a, b, c, d = make("a", 0.71, 0.08), make("b", 0.74, 0.4), make("c", 0.73, 0.2), make("d", 0.76, 3.0)
    slow, fast = make("slow", 0.73, 0.3), make("fast", 0.73, 0.1)
    cases = [  # (candidates, budget, expected best, expected fastest, what the case is about)
        ([a, b, c, d], 0.3, c, a, "the most accurate within the budget, not the fastest"),
        ([a, b, c, d], 10.0, d, a, "everything fits: the most accurate"),
        ([a, b, c, d], 0.4, b, a, "a p99 exactly at the budget meets it (p99 <= budget)"),
        ([d, b], 0.1, None, b, "nothing fits: None, and the fastest as the nearest"),
        ([slow, fast], 1.0, fast, fast, "a tie in AUC goes to the faster"),
        ([a], 0.05, None, a, "one candidate, over the budget"),
    ]
    for cands, budget, best, fastest, what in cases:
        before = list(cands)
        got = pick(cands, budget)
        if not isinstance(got, tuple) or len(got) != 2:
            raise CheckFailed(f"pick_within_budget should return a pair (best within the budget or None, the fastest), "
                              f"got {got!r}")
        if cands != before:
            raise CheckFailed("pick_within_budget changed the list it was given: do not sort or remove in place")
        names = [x.name for x in cands]
        if got[0] != best:
            mine = "None" if got[0] is None else got[0].name
            raise CheckFailed(f"{what}: for {names} (AUC, p99 ms: "
                              f"{[(x.auc, x.p99_ms) for x in cands]}) and a budget of {budget} ms you picked {mine}, "
                              f"expected {'None' if best is None else best.name}")
        if got[1] != fastest:
            raise CheckFailed(f"the second value should be the fastest candidate ({fastest.name} for {names}), the "
                              f"nearest to the budget when nothing meets it; got {got[1]!r}")
    try:
        pick([], 1.0)
    except ValueError:
        pass
    else:
        raise CheckFailed("pick_within_budget([], budget) should raise ValueError: there is nothing to pick from")
