"""benchmarks/distill.py's pure parts: what the ensemble teacher serves, and the targets' verdicts.

The benchmark itself needs ../shared/data and minutes of training (``make bench-distill``); these run anywhere.
"""

from __future__ import annotations

import numpy as np

from benchmarks import distill as bench
from shoal.distill import ensemble_logits
from shoal.metrics import probabilities


def test_served_ensemble_is_the_mean_probability_distillation_learns() -> None:
    """The teacher's served answer (the mean of its members' probabilities) is the probability of the logits
    the student is distilled from, for binary and multiclass members, confident ones included."""
    rng = np.random.default_rng(0)
    binary = [rng.normal(0, 3, 7).astype(np.float32) for _ in range(2)] + [np.full(7, 30, np.float32)]
    multi = [rng.normal(0, 3, (5, 4)).astype(np.float32) for _ in range(3)]
    for members in (binary, multi):
        served = bench.mean_probability(members)
        np.testing.assert_allclose(served, probabilities(ensemble_logits(members)), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(served, np.mean([probabilities(z) for z in members], axis=0), rtol=1e-12)
    assert bench.mean_probability(binary[:1]).shape == (7,)


def _rows(figures: dict[str, dict[str, float]]) -> list[dict[str, object]]:
    return [{"bench": "distill", "dataset": "d", "system": s, "metric": m, "value": v}
            for s, got in figures.items() for m, v in got.items()]


def test_targets_say_met_and_not_met_from_the_figures() -> None:
    rows = _rows({"student-alone": {"gain_kept": 0.97}, "student-distilled": {"gain_kept": 0.98, "speedup_p99": 12.0}})
    lines = bench.targets(rows)
    assert "keeps 98.0% of the teacher's gain (target >= 95%: met) at 12.0x lower p99 (target >= 10x: met)" in lines[0]
    assert "distillation helps (+1.0%)" in lines[0] and lines[-1].startswith("distilled beats alone on 1 of 1")
    rows = _rows({"student-alone": {"gain_kept": 0.99}, "student-distilled": {"gain_kept": 0.94, "speedup_p99": 5.0}})
    lines = bench.targets(rows)
    assert "(target >= 95%: NOT met) at 5.0x lower p99 (target >= 10x: NOT met)" in lines[0]
    assert "does not help (-5.0%)" in lines[0]
    assert lines[-1] == "distilled beats alone on 0 of 1 sets (target: >= 3 of 4)"
    rows = _rows({"student-alone": {"gain_kept": 0.97},
                  "student-distilled": {"gain_kept": 0.98, "speedup_p99": 12.0, "vs_alone": 0.004,
                                        "vs_alone_low": -0.001, "vs_alone_high": 0.009}})
    lines = bench.targets(rows)
    assert lines[0].endswith("on the test file +0.0040, 95% interval -0.0010 .. +0.0090")
    assert lines[-1].endswith("1 of 1 sets (target: >= 3 of 4); beyond the test file's noise (interval above 0) on 0")


def test_paired_bootstrap_separates_a_real_difference_from_noise() -> None:
    """A model that is better on most rows gets an interval above 0; two models equal up to noise get one that
    holds 0; the first number is the difference on the rows as they are."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(1)
    y = (rng.random(2000) < 0.3).astype(np.int64)
    signal = y * 1.0 + rng.normal(0, 1, 2000)
    good, worse = signal * 2, signal + rng.normal(0, 1.5, 2000)
    diff, low, high = bench.paired_bootstrap(y, good, worse, "auc", resamples=300)
    assert diff == roc_auc_score(y, good) - roc_auc_score(y, worse)
    assert 0 < low < diff < high
    twin = good + rng.normal(0, 1e-3, 2000)
    diff, low, high = bench.paired_bootstrap(y, good, twin, "auc", resamples=300)
    assert low <= 0 <= high and abs(diff) < 1e-3
    classes = rng.integers(0, 4, 500)
    right = np.eye(4)[classes] + rng.normal(0, 0.1, (500, 4))  # always right
    coin = rng.normal(0, 1, (500, 4))  # right about a quarter of the time
    diff, low, high = bench.paired_bootstrap(classes, right, coin, "accuracy", resamples=300)
    assert diff == 1.0 - float((coin.argmax(axis=1) == classes).mean()) and 0.6 < low <= diff <= high <= 0.85


def test_interleaved_serving_takes_the_median_of_rotated_rounds() -> None:
    """Every system is timed once per round, in a rotated order, and each figure is the median of its rounds:
    one slow spell (here: system a's first round) does not move it."""
    import time

    order: list[str] = []
    slow = {"a": 1}

    def one(name: str):
        def call() -> None:
            if slow.get(name):
                time.sleep(0.002)
        return call

    def batch(name: str):
        def call() -> None:
            if len(order) == 0 or order[-1] != name:
                order.append(name)
            if slow.get(name):
                slow[name] = 0  # only its first round is slow
        return call

    servers = {n: {"": (one(n), batch(n))} for n in ("a", "b", "c")}
    got = bench.serve_interleaved(servers, seconds=0.25, rounds=3)
    assert order == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert set(got) == {"a", "b", "c"} and set(got["a"]) == {"latency_ms_p99", "infer_rows_per_s"}
    assert got["a"]["latency_ms_p99"] < 1.0  # the median round, not the 2 ms first one


def test_over_seeds_gives_means_and_an_interval_over_the_seeds() -> None:
    """Each figure is its mean over the seeds; vs_alone's interval is the t-interval of the mean over the seeds
    (not the bootstrap one of a seed), wins are counted, the per-seed (T, a) picks are left out."""
    from scipy import stats

    def seed_rows(auc: float, diff: float, temperature: float) -> list[dict[str, object]]:
        return [bench.row("distill", "d", "teacher", "auc", 0.9), bench.row("distill", "d", "teacher", "members", 2),
                bench.row("distill", "d", "student-distilled", "auc", auc),
                bench.row("distill", "d", "student-distilled", "vs_alone", diff),
                bench.row("distill", "d", "student-distilled", "vs_alone_low", diff - 1),
                bench.row("distill", "d", "student-distilled", "vs_alone_high", diff + 1),
                bench.row("distill", "d", "student-distilled", "temperature", temperature)]

    diffs = [0.002, 0.001, -0.0005]
    got = {(r["system"], r["metric"]): r["value"]
           for r in bench.over_seeds([seed_rows(0.8 + d, d, t) for d, t in zip(diffs, (1, 2, 4), strict=True)])}
    half = stats.t.ppf(0.975, 2) * np.std(diffs, ddof=1) / np.sqrt(3)
    assert got[("teacher", "seeds")] == 3 and got[("teacher", "members")] == 2
    assert np.isclose(got[("student-distilled", "auc")], 0.8 + np.mean(diffs))
    assert np.isclose(got[("student-distilled", "vs_alone_low")], np.mean(diffs) - half)
    assert np.isclose(got[("student-distilled", "vs_alone_high")], np.mean(diffs) + half)
    assert got[("student-distilled", "vs_alone_wins")] == 2
    assert ("student-distilled", "temperature") not in got


def test_targets_speak_of_seeds_when_the_rows_are_means_over_seeds() -> None:
    rows = _rows({"teacher": {"seeds": 4.0},
                  "student-alone": {"gain_kept": 0.97},
                  "student-distilled": {"gain_kept": 0.98, "speedup_p99": 12.0, "vs_alone": 0.002,
                                        "vs_alone_low": 0.001, "vs_alone_high": 0.003, "vs_alone_wins": 4.0}})
    lines = bench.targets(rows)
    assert lines[0].endswith("over 4 seeds: mean +0.0020, 95% interval +0.0010 .. +0.0030, won on 4 of 4 seeds")
    assert lines[-1].endswith("beyond the seeds' spread (interval above 0) on 1")
