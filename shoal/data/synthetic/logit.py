"""The click probability: the true logit of a row, and the bias that sets the base rate.

The logit is a function of what is observed only (a missing value counts as 0), so ``sigmoid(bias + logit)`` is
the Bayes-optimal predictor and its metrics on the sampled labels are the truth (:mod:`.truth`).  The terms, each
of which can be switched off for tests and ablations, are listed in the package docstring.
"""

from __future__ import annotations

import numpy as np

from shoal.data.synthetic.ids import _U64, _decay, _rank_gauss, _tag
from shoal.data.synthetic.params import _Params
from shoal.data.synthetic.sampling import _Sample, _sample
from shoal.data.synthetic.spec import _TAG_PILOT, SynthSpec

PILOT_ROWS = 65_536
"""Rows of the pilot sample used to calibrate the bias."""

_DENSE_X_SPARSE_SCALE = 0.3
_PAIR_TOP = 32
_PAIR_SCALE = 0.8


def _logit(
    sample: _Sample,
    params: _Params,
    *,
    dense: bool = True,
    sparse: bool = True,
    dense_x_sparse: bool = True,
    sparse_x_sparse: bool = True,
) -> np.ndarray:
    """The true logit *without* the bias; the flags switch groups of terms off (for tests/ablations)."""
    n = sample.rows
    out = np.zeros(n, dtype=np.float64)
    logd = np.log1p(np.nan_to_num(sample.dense, nan=0.0))  # a missing count contributes nothing
    if dense and logd.shape[1]:
        out += logd @ params.dense_w
    if sparse:
        for j in range(sample.ranks.shape[1]):
            if params.sigma[j] == 0.0:
                continue
            r = sample.ranks[:, j]
            eff = params.sigma[j] * _rank_gauss(_tag(1, j), r) * _decay(r)
            out += np.where(r > 0, eff, 0.0)
        last = sample.ranks.shape[1]
        if params.sigma[last] != 0.0:
            lr = sample.list_ranks
            eff = params.sigma[last] * _rank_gauss(_tag(1, last), lr) * _decay(lr)
            total = np.where(lr > 0, eff, 0.0).sum(axis=1)
            out += total / np.maximum(sample.list_len, 1)
    if dense_x_sparse and logd.shape[1]:
        r0 = sample.ranks[:, 0]
        coef = _DENSE_X_SPARSE_SCALE * _rank_gauss(_tag(2, 0), r0) * _decay(r0)
        out += np.where(r0 > 0, coef, 0.0) * logd[:, 0]
    if sparse_x_sparse:
        r1 = sample.ranks[:, 1]
        r2 = sample.ranks[:, 2]
        hit = (r1 > 0) & (r1 <= _PAIR_TOP) & (r2 > 0) & (r2 <= _PAIR_TOP)
        pair = r1.astype(np.uint64) * _U64(_PAIR_TOP + 1) + r2.astype(np.uint64)
        out += np.where(hit, _PAIR_SCALE * _rank_gauss(_tag(3, 1, 2), pair), 0.0)
    return out


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _calibrate_bias(logit0: np.ndarray, base_rate: float, weight: np.ndarray | None = None) -> float:
    """The ``b`` with ``mean(sigmoid(b + logit0)) == base_rate``, by bisection; with ``weight``, the weighted mean
    (a further task's rate among clicks: the weight of a row is its click probability)."""
    lo, hi = -40.0, 40.0
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        if float(np.average(_sigmoid(mid + logit0), weights=weight)) < base_rate:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def _pilot(spec: SynthSpec, params: _Params) -> _Sample:
    """The pilot sample the biases are calibrated on, from its own stream (``[seed, 2]``)."""
    return _sample(np.random.default_rng([spec.seed, _TAG_PILOT]), spec, params, PILOT_ROWS)


def _bias(spec: SynthSpec, params: _Params) -> float:
    """The bias for ``spec.base_rate``, calibrated on the pilot sample."""
    return _calibrate_bias(_logit(_pilot(spec, params), params), spec.base_rate)
