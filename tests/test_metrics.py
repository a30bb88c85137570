"""Tests for shoal.metrics: reference values (sklearn, hand arithmetic), properties, validation."""

from __future__ import annotations

import json
import math
import random
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from shoal.metrics import (
    accuracy,
    auc,
    binary_report,
    calibration,
    entropy,
    log_loss,
    normalized_entropy,
)

PROPERTY_SETTINGS = settings(max_examples=60, deadline=None, database=None)


@st.composite
def labels(draw: st.DrawFn, min_size: int = 2, max_size: int = 200) -> list[int]:
    """Binary label lists containing at least one positive and one negative."""
    ys = draw(st.lists(st.integers(0, 1), min_size=min_size, max_size=max_size))
    if 0 < sum(ys) < len(ys):
        return ys
    return [0, 1, *ys]


@st.composite
def labelled_predictions(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    """(y, p) with both classes present and p strictly inside (0, 1)."""
    ys = draw(labels())
    ps = draw(st.lists(st.floats(0.001, 0.999), min_size=len(ys), max_size=len(ys)))
    return np.asarray(ys, dtype=float), np.asarray(ps, dtype=float)


# ---------------------------------------------------------------------------- hand-computed example

# Tiny example, every number worked out by hand:
#   y = [1,   0,   0,    0   ]      base rate q = 1/4
#   p = [0.5, 0.5, 0.25, 0.25]
# per-row log loss:  -ln 0.5 = ln 2,  -ln(1-0.5) = ln 2,  -ln(1-0.25) = ln(4/3),  ln(4/3)
#   logloss = (2 ln 2 + 2 ln(4/3)) / 4 = (ln 2 + ln(4/3)) / 2 = ln(8/3) / 2        = 0.490414626505863
# entropy(1/4) = -(1/4 ln 1/4 + 3/4 ln 3/4) = 1/4 ln 4 + 3/4 ln(4/3)              = 0.562335144618808
#   NE (base rate from y)        = 0.490414626505863 / 0.562335144618808           = 0.872103817801219
#   NE (training base rate 1/2)  = (ln(8/3)/2) / ln 2 = (3 - log2 3) / 2           = 0.707518749639422
# calibration = mean(p) / mean(y) = (1.5/4) / (1/4) = 1.5                          (over-predicts by 50%)
# AUC: the one positive (0.5) vs negatives 0.5 (tie -> 1/2), 0.25 (win), 0.25 (win) = 2.5/3 = 0.8333...
# accuracy @0.5 (p >= 0.5 predicts 1): predictions [1, 1, 0, 0] vs y [1, 0, 0, 0] -> 3/4 correct
HAND_Y = [1, 0, 0, 0]
HAND_P = [0.5, 0.5, 0.25, 0.25]


def test_hand_computed_log_loss() -> None:
    assert log_loss(HAND_Y, HAND_P) == pytest.approx(math.log(8 / 3) / 2, rel=1e-12)
    assert log_loss(HAND_Y, HAND_P) == pytest.approx(0.490414626505863, rel=1e-12)


def test_hand_computed_entropy() -> None:
    assert entropy(0.25) == pytest.approx(0.25 * math.log(4) + 0.75 * math.log(4 / 3), rel=1e-12)
    assert entropy(0.25) == pytest.approx(0.562335144618808, rel=1e-12)
    assert entropy(0.5) == pytest.approx(math.log(2), rel=1e-15)


def test_hand_computed_ne() -> None:
    assert normalized_entropy(HAND_Y, HAND_P) == pytest.approx(0.872103817801219, rel=1e-12)
    assert normalized_entropy(HAND_Y, HAND_P, base_rate=0.5) == pytest.approx(
        (3 - math.log2(3)) / 2, rel=1e-12
    )
    assert normalized_entropy(HAND_Y, HAND_P, base_rate=0.5) == pytest.approx(0.707518749639422, rel=1e-12)


def test_hand_computed_calibration_auc_accuracy() -> None:
    assert calibration(HAND_Y, HAND_P) == pytest.approx(1.5, rel=1e-15)
    assert auc(HAND_Y, HAND_P) == pytest.approx(2.5 / 3, rel=1e-12)
    assert accuracy(HAND_Y, HAND_P) == 0.75
    # With a higher threshold the tied 0.5 rows become negatives: predictions [0,0,0,0] -> 3/4.
    assert accuracy(HAND_Y, HAND_P, threshold=0.6) == 0.75
    # Threshold 0.25 predicts everything positive -> only the one positive is right.
    assert accuracy(HAND_Y, HAND_P, threshold=0.25) == 0.25


def test_calibration_example_under_prediction() -> None:
    # Observed CTR 2/5 = 0.4; predicted mean (0.1+0.2+0.3+0.2+0.2)/5 = 0.2 -> calibration 0.5.
    assert calibration([1, 1, 0, 0, 0], [0.1, 0.2, 0.3, 0.2, 0.2]) == pytest.approx(0.5, rel=1e-12)


def test_binary_report_hand_example() -> None:
    report = binary_report(HAND_Y, HAND_P, base_rate=0.5)
    assert set(report) == {"auc", "logloss", "ne", "calibration", "accuracy", "rows", "positive_rate"}
    assert report["rows"] == 4.0
    assert report["positive_rate"] == 0.25
    assert report["ne"] == pytest.approx(0.707518749639422, rel=1e-12)
    assert report["logloss"] == pytest.approx(0.490414626505863, rel=1e-12)
    assert report["calibration"] == pytest.approx(1.5)
    assert report["auc"] == pytest.approx(2.5 / 3)
    assert report["accuracy"] == 0.75
    assert all(type(v) is float for v in report.values())
    json.dumps(report)  # plain floats, storable in the registry


# ---------------------------------------------------------------------------- against sklearn


@pytest.mark.parametrize("seed", range(5))
def test_matches_sklearn_on_random_data(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 2000
    p = rng.uniform(0.001, 0.999, size=n)
    y = (rng.uniform(size=n) < p).astype(np.int64)
    assert log_loss(y, p) == pytest.approx(skm.log_loss(y, p), rel=1e-10)
    assert auc(y, p) == pytest.approx(skm.roc_auc_score(y, p), rel=1e-12)
    assert accuracy(y, p) == pytest.approx(skm.accuracy_score(y, (p >= 0.5).astype(int)), rel=1e-12)
    expected_ne = skm.log_loss(y, p) / entropy(float(y.mean()))
    assert normalized_entropy(y, p) == pytest.approx(expected_ne, rel=1e-10)


def test_auc_with_ties_matches_sklearn() -> None:
    rng = np.random.default_rng(7)
    p = rng.integers(0, 5, size=500) / 4.0  # heavy ties, including exact 0 and 1
    y = rng.integers(0, 2, size=500)
    assert auc(y, p) == pytest.approx(skm.roc_auc_score(y, p), rel=1e-12)


def test_accepts_bool_labels_lists_and_column_vectors() -> None:
    y = np.array([True, False, True, False])
    p = np.array([[0.9], [0.1], [0.8], [0.3]])
    assert log_loss(y, p) == pytest.approx(skm.log_loss(y.astype(int), p.ravel()))
    assert auc([1, 0, 1, 0], [0.9, 0.1, 0.8, 0.3]) == 1.0


# ---------------------------------------------------------------------------- properties


@PROPERTY_SETTINGS
@given(labels())
def test_ne_of_predicting_the_base_rate_is_one(ys: list[int]) -> None:
    y = np.asarray(ys, dtype=float)
    rate = float(y.mean())
    p = np.full_like(y, rate)
    assert normalized_entropy(y, p) == pytest.approx(1.0, rel=1e-9)
    assert normalized_entropy(y, p, base_rate=rate) == pytest.approx(1.0, rel=1e-9)


@PROPERTY_SETTINGS
@given(labels(), st.floats(0.0, 1.0))
def test_constant_prediction_never_beats_the_base_rate(ys: list[int], c: float) -> None:
    # Gibbs' inequality: among constant predictors, the empirical rate minimises log loss -> NE >= 1.
    y = np.asarray(ys, dtype=float)
    assert normalized_entropy(y, np.full_like(y, c)) >= 1.0 - 1e-9


@PROPERTY_SETTINGS
@given(labels())
def test_perfect_predictions_have_ne_near_zero(ys: list[int]) -> None:
    y = np.asarray(ys, dtype=float)
    assert log_loss(y, y) == pytest.approx(-math.log1p(-1e-7), rel=1e-6)  # only the eps clipping remains
    assert 0.0 < normalized_entropy(y, y) < 1e-5
    assert auc(y, y) == 1.0
    assert accuracy(y, y) == 1.0
    assert calibration(y, y) == 1.0


@PROPERTY_SETTINGS
@given(labelled_predictions(), st.randoms(use_true_random=False), st.integers(2, 4))
def test_ne_invariant_to_row_order_and_replication(
    data: tuple[np.ndarray, np.ndarray], rnd: random.Random, k: int
) -> None:
    y, p = data
    base = normalized_entropy(y, p)
    order = list(range(len(y)))
    rnd.shuffle(order)
    assert normalized_entropy(y[order], p[order]) == pytest.approx(base, rel=1e-9)
    assert normalized_entropy(np.tile(y, k), np.tile(p, k)) == pytest.approx(base, rel=1e-9)
    assert calibration(np.tile(y, k), np.tile(p, k)) == pytest.approx(calibration(y, p), rel=1e-9)


@PROPERTY_SETTINGS
@given(labelled_predictions(), st.floats(0.001, 0.999))
def test_ne_is_log_loss_over_base_rate_entropy(data: tuple[np.ndarray, np.ndarray], rate: float) -> None:
    y, p = data
    assert normalized_entropy(y, p, base_rate=rate) == pytest.approx(
        log_loss(y, p) / entropy(rate), rel=1e-12
    )


@PROPERTY_SETTINGS
@given(labelled_predictions())
def test_log_loss_matches_sklearn_property(data: tuple[np.ndarray, np.ndarray]) -> None:
    y, p = data
    assert log_loss(y, p) == pytest.approx(skm.log_loss(y, p, labels=[0, 1]), rel=1e-9)


@PROPERTY_SETTINGS
@given(labels(), st.data())
def test_auc_invariant_to_monotone_transform_and_flips(ys: list[int], data: st.DataObject) -> None:
    y = np.asarray(ys)
    # Scores on a 1/100 grid so a strictly monotone transform cannot merge distinct values.
    grid = data.draw(st.lists(st.integers(0, 100), min_size=len(ys), max_size=len(ys)))
    p = np.asarray(grid) / 100.0
    a = auc(y, p)
    assert a == pytest.approx(auc(y, np.sqrt(p)), abs=1e-12)
    assert auc(y, 1.0 - p) == pytest.approx(1.0 - a, abs=1e-12)
    assert auc(1 - y, p) == pytest.approx(1.0 - a, abs=1e-12)


@PROPERTY_SETTINGS
@given(st.floats(0.0, 1.0))
def test_entropy_symmetric_and_bounded(q: float) -> None:
    h = entropy(q)
    assert 0.0 <= h <= math.log(2) + 1e-15
    assert h == pytest.approx(entropy(1.0 - q), abs=1e-12)


# ---------------------------------------------------------------------------- edge cases


def test_degenerate_cases_return_nan_not_errors() -> None:
    assert math.isnan(auc([1, 1, 1], [0.2, 0.5, 0.9]))
    assert math.isnan(auc([0, 0], [0.2, 0.5]))
    assert math.isnan(calibration([0, 0, 0], [0.1, 0.2, 0.3]))
    assert math.isnan(normalized_entropy([0, 0, 0], [0.1, 0.2, 0.3]))  # entropy of base rate 0 is 0
    report = binary_report([0, 0], [0.1, 0.2])
    assert math.isnan(report["auc"]) and math.isnan(report["calibration"]) and math.isnan(report["ne"])
    # ...but a training base rate makes NE defined even on a one-class evaluation set.
    assert normalized_entropy([0, 0], [0.1, 0.2], base_rate=0.1) == pytest.approx(
        log_loss([0, 0], [0.1, 0.2]) / entropy(0.1)
    )


def test_entropy_endpoints() -> None:
    assert entropy(0.0) == 0.0
    assert entropy(1.0) == 0.0


def test_log_loss_clipping() -> None:
    # A confident miss costs -ln(eps) instead of infinity.
    assert log_loss([1], [0.0]) == pytest.approx(-math.log(1e-7), rel=1e-9)
    assert log_loss([1], [0.0], eps=1e-3) == pytest.approx(-math.log(1e-3), rel=1e-9)
    assert log_loss([1], [0.0], eps=0.0) == math.inf
    # eps=0 must not produce 0 * -inf = nan for correct certain predictions.
    assert log_loss([0, 1], [0.0, 1.0], eps=0.0) == 0.0


# ---------------------------------------------------------------------------- validation messages


def test_nan_predictions_message() -> None:
    p = np.full(40, 0.5)
    p[[17, 20, 33]] = np.nan
    with pytest.raises(ValueError) as info:
        log_loss(np.zeros(40), p)
    assert str(info.value) == (
        "p contains 3 NaN values (first at index 17); predictions must be finite probabilities in [0, 1]"
    )


@pytest.mark.parametrize(
    ("y", "p", "message"),
    [
        ([0, 1, 0], [0.1, 0.2], "y has 3 rows but p has 2; they must be the same length"),
        ([], [], "y and p are empty; metrics need at least one row"),
        (
            [0, 1, 2, 2],
            [0.1, 0.2, 0.3, 0.4],
            "y contains 2 values other than 0 and 1 (first at index 2: 2.0); labels must be binary 0/1",
        ),
        ([0, 0.5], [0.1, 0.2], "y contains 1 values other than 0 and 1 (first at index 1: 0.5)"),
        ([0, float("nan")], [0.1, 0.2], "y contains 1 values other than 0 and 1 (first at index 1: nan)"),
        (
            [0, 1, 1],
            [0.1, 1.5, -0.2],
            "p contains 2 values outside [0, 1] (first at index 1: 1.5); "
            "predictions must be finite probabilities in [0, 1]",
        ),
        ([0, 1], [0.1, float("inf")], "p contains 1 infinite values (first at index 1: inf)"),
        ([0, 1], [[0.1, 0.2], [0.3, 0.4]], "p has shape (2, 2); expected a 1-D array"),
        (1, [0.5], "y is a scalar, not an array"),
        (["a", "b"], [0.1, 0.2], "y could not be converted to numbers"),
    ],
)
def test_validation_messages(y: Any, p: Any, message: str) -> None:
    for fn in (log_loss, normalized_entropy, calibration, auc, accuracy, binary_report):
        with pytest.raises(ValueError) as info:
            fn(y, p)
        assert message in str(info.value), fn.__name__


@pytest.mark.parametrize("bad", [-0.1, 1.1, float("nan"), float("inf")])
def test_rate_arguments_validated(bad: float) -> None:
    with pytest.raises(ValueError, match=r"rate must be a finite probability in \[0, 1\]"):
        entropy(bad)
    with pytest.raises(ValueError, match=r"base_rate must be a finite probability in \[0, 1\]"):
        normalized_entropy([0, 1], [0.2, 0.8], base_rate=bad)
    with pytest.raises(ValueError, match=r"threshold must be a finite probability in \[0, 1\]"):
        accuracy([0, 1], [0.2, 0.8], threshold=bad)


@pytest.mark.parametrize("bad", [-1e-9, 0.5, float("nan")])
def test_log_loss_eps_validated(bad: float) -> None:
    with pytest.raises(ValueError, match=r"eps must be in \[0, 0.5\)"):
        log_loss([0, 1], [0.2, 0.8], eps=bad)


def test_probabilities_are_sigmoid_for_binary_and_softmax_for_classes() -> None:
    from shoal.metrics import probabilities

    np.testing.assert_allclose(probabilities(np.array([0.0, 2.0])), [0.5, 1 / (1 + np.exp(-2.0))])
    p = probabilities(np.array([[1000.0, 1000.0, 0.0], [0.0, 1.0, 2.0]]))  # large logits stay finite
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    np.testing.assert_allclose(p[0], [0.5, 0.5, 0.0], atol=1e-12)
    np.testing.assert_allclose(p[1], np.exp([0.0, 1.0, 2.0]) / np.exp([0.0, 1.0, 2.0]).sum())
