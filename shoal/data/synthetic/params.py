"""The model parameters, drawn once from the seed: cardinalities, which features matter and how much.

Drawn from their own stream (``[seed, 0]``), so they depend on the seed and the feature layout only, never on
``rows`` or ``chunk_rows``: two logs of different sizes with the same seed come from the same model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from shoal.data.synthetic.spec import _TAG_PARAMS, SynthSpec

_MIN_CARDINALITY = 10
_INFORMATIVE_SHARE = 0.6
_SIGMA_RANGE = (0.2, 0.55)
_D0_LOG_MEAN = 2.0


@dataclass(frozen=True)
class _Params:
    """Model parameters drawn once from the seed."""

    cards: np.ndarray  # (S,) int64
    sigma: np.ndarray  # (S,) float64, 0 for noise features
    dense_mean: np.ndarray  # (D,)
    dense_load: np.ndarray  # (D,)
    dense_noise: np.ndarray  # (D,)
    dense_w: np.ndarray  # (D,)


def _cardinalities(spec: SynthSpec, rng: np.random.Generator) -> np.ndarray:
    lo = min(_MIN_CARDINALITY, spec.max_cardinality)
    cards = np.rint(np.logspace(math.log10(lo), math.log10(spec.max_cardinality), spec.sparse))
    cards = np.clip(cards.astype(np.int64), lo, spec.max_cardinality)
    return cards[rng.permutation(spec.sparse)]


def _params(spec: SynthSpec) -> _Params:
    """Draw the parameters (the order of draws is part of the determinism contract)."""
    rng = np.random.default_rng([spec.seed, _TAG_PARAMS])
    cards = _cardinalities(spec, rng)
    informative = rng.random(spec.sparse) < _INFORMATIVE_SHARE
    informative[0] = True
    sigma = np.where(informative, rng.uniform(*_SIGMA_RANGE, size=spec.sparse), 0.0)
    d = spec.dense
    dense_mean = rng.uniform(-0.5, 4.0, size=d)
    dense_load = rng.uniform(0.2, 1.0, size=d)
    dense_noise = rng.uniform(0.3, 0.8, size=d)
    dense_w = rng.normal(0.0, 0.12, size=d)
    if d:
        dense_mean[0] = _D0_LOG_MEAN  # fixed size of the dense x sparse interaction whatever the seed
    return _Params(cards, sigma, dense_mean, dense_load, dense_noise, dense_w)


def cardinalities(spec: SynthSpec) -> list[int]:
    """The cardinality of each sparse feature ``s0..`` (how many distinct ids it can take)."""
    return [int(c) for c in _params(spec).cards]
