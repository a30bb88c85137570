"""A realistic synthetic click log with a known ground truth.

:func:`generate` writes a Criteo-like log (``label``, dense counts ``d0..``, string ids ``s0..``) to Parquet
together with a small JSON file holding the *Bayes* metrics: the AUC, log loss and normalized entropy (NE)
that the true click probabilities achieve on the sampled labels.  No model can do better in expectation, so
these numbers tell how much of the learnable signal a trained model has captured.

Generative model (everything is vectorized numpy; each chunk of rows is drawn from its own seeded stream)
-------------------------------------------------------------------------------------------------------

*Model parameters* are drawn once from ``seed``:

* sparse feature ``j`` gets a cardinality ``c_j``; the values ``logspace(min(10, max_cardinality),
  max_cardinality, sparse)`` are assigned to the features in a seeded random order;
* a random ~60% of the sparse features (always including ``s0``) are *informative*, with an effect scale
  ``sigma_j ~ U(0.2, 0.55)``; the others are pure noise;
* dense feature ``k`` gets a log-mean ``m_k ~ U(-0.5, 4)`` (``m_0 = 2`` so that the interaction below has
  the same size whatever the seed), a loading ``a_k ~ U(0.2, 1)`` on a shared latent, a noise scale
  ``b_k ~ U(0.3, 0.8)`` and a logit weight ``w_k ~ N(0, 0.12^2)``.

*Rows*.  For every row:

* a latent ``z ~ N(0, 1)`` makes the dense features correlated:
  ``d_k ~ Poisson(exp(m_k + a_k z + b_k e_k))`` with ``e_k ~ N(0, 1)``, an over-dispersed count;
* the id of sparse feature ``j`` has a rank ``r`` drawn from a bounded Zipf law over ``1..c_j`` with
  exponent ``zipf_exponent``, sampled in O(1) by the inverse CDF of a continuous power law on
  ``[1, c_j + 1)`` and floored (no probability table, so ``c_j = 10^7`` costs nothing).  The last sparse
  feature is a *list*: 1..5 ranks are drawn, duplicates dropped, and the cell is the ``"|"``-joined ids;
* ~5% of dense values and ~3% of sparse cells are null.

The id string is ``"s{j}_" + 6 hex digits`` of a bijective 24-bit mix of the rank (multiply by odd
constants and xor-shift, modulo ``2^24 > 10^7``), so ids are unique per feature but their order says
nothing about their popularity.

*Click probability*.  With ``L(x) = log1p(x)``, a missing value counting as 0 (so the true probability is a
function of what is observed, and is therefore the Bayes-optimal predictor)::

    logit = bias
          + sum_k w_k L(d_k)                                   # dense main effects
          + sum_{j informative} E_j(r_j)                       # per-id effects (mean over the list cell)
          + L(d_0) * C(r_0)                                    # planted dense x sparse interaction
          + [r_1 <= 32 and r_2 <= 32] * P(r_1, r_2)            # planted sparse x sparse interaction

* ``E_j(r) = sigma_j * g(j, r) / sqrt(1 + (r - 1) / 20)`` where ``g`` is a standard normal derived from a
  stable 64-bit hash (SplitMix64) of ``(j, r)``: an id's effect is a deterministic function of its rank,
  so a table of 10M effects is never stored.  Popular ids carry most of the signal, rare ids little;
* ``C(r) = 0.3 * g(dense-x-sparse, r) / sqrt(1 + (r - 1) / 20)`` is a per-id *slope* on ``log1p(d0)``
  (absent when ``dense == 0``);
* ``P(r_1, r_2) = 0.8 * g(hash of the pair)`` is an effect of the *pair* of the 32 most popular ids of
  ``s1`` and ``s2`` that is unrelated to their own effects, so only a model with feature crosses,
  embedding products or deep layers can capture it.

``bias`` is found by bisection on a pilot sample (65,536 rows from a dedicated stream of the same seed) so
that the mean probability there equals ``base_rate``; labels are ``Bernoulli(sigmoid(logit))``.

*Truth*: ``bayes_auc`` is ``roc_auc_score(labels, p)`` over all rows, ``bayes_logloss`` the mean log loss of
``p`` and ``bayes_ne = bayes_logloss / H(q)`` with ``q`` the observed positive rate and
``H(q) = -(q ln q + (1 - q) ln(1 - q))``.  With a single class among the labels (tiny ``rows``) the AUC and
the NE are undefined and stored as ``nan`` (``NaN`` in the JSON, as Python's :mod:`json` writes it).

Determinism: the same :class:`SynthSpec` gives byte-identical data.  Chunk ``i`` uses the stream
``default_rng([seed, 1, i])``, so ``chunk_rows`` is part of what defines the data.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from shoal.data.hashing import mix64

__all__ = ["SynthSpec", "SynthTruth", "cardinalities", "generate", "load_truth", "truth_path"]

MAX_CARDINALITY_CAP = 10_000_000
"""Largest allowed ``max_cardinality`` (ids are 24-bit, ``2^24 > 10^7``)."""

DENSE_NULL_RATE = 0.05
"""Probability that a dense value is null."""

SPARSE_NULL_RATE = 0.03
"""Probability that a sparse cell (single id or list) is null."""

LIST_MAX_IDS = 5
"""Most ids in a cell of the list feature (the last sparse column)."""

MAX_CHUNK_ROWS = 10_000_000
"""Largest allowed ``chunk_rows`` (keeps a chunk's string bytes within 32-bit Arrow offsets)."""

PILOT_ROWS = 65_536
"""Rows of the pilot sample used to calibrate the bias."""

_MIN_CARDINALITY = 10
_RANK_SCALE = 20.0  # effects decay as 1/sqrt(1 + (rank - 1) / _RANK_SCALE)
_INFORMATIVE_SHARE = 0.6
_SIGMA_RANGE = (0.2, 0.55)
_DENSE_X_SPARSE_SCALE = 0.3
_D0_LOG_MEAN = 2.0
_PAIR_TOP = 32
_PAIR_SCALE = 0.8

_TAG_PARAMS = 0
_TAG_CHUNK = 1
_TAG_PILOT = 2

_ID_BITS = 24
_ID_MASK = (1 << _ID_BITS) - 1
_ID_HEX = _ID_BITS // 4
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)

_U64 = np.uint64
_GOLDEN = _U64(0x9E3779B97F4A7C15)


# ----------------------------------------------------------------------------------------------- spec


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _is_real(value: object) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


@dataclass(frozen=True)
class SynthSpec:
    """What to generate.  Validated on construction; a bad field raises :class:`ValueError` naming it."""

    rows: int = 200_000
    """Number of rows (>= 1)."""
    dense: int = 13
    """Dense columns ``d0..d{dense-1}``: non-negative counts as float64, ~5% null (>= 0)."""
    sparse: int = 26
    """Sparse columns ``s0..s{sparse-1}``: string ids, ~3% null; the last one is a ``"|"``-joined list of
    1..5 ids (>= 4: the planted interactions use the single-id ``s0``, ``s1`` and ``s2``)."""
    base_rate: float = 0.03
    """Target mean click probability (0 < base_rate < 1)."""
    max_cardinality: int = 1_000_000
    """Largest cardinality; the others are spread log-uniformly from 10 (1..10,000,000)."""
    zipf_exponent: float = 1.1
    """Exponent of the bounded Zipf law of id frequencies (0 = uniform; 0..10)."""
    seed: int = 0
    """Seed of every random stream (>= 0)."""
    chunk_rows: int = 250_000
    """Rows generated and written per chunk (one Parquet row group each); bounds memory (1..10,000,000)."""

    def __post_init__(self) -> None:
        _validate(self)


def _validate(spec: SynthSpec) -> None:
    """Raise :class:`ValueError` naming the first invalid field of ``spec``."""

    def bad(name: str, allowed: str) -> ValueError:
        return ValueError(f"SynthSpec.{name}={getattr(spec, name)!r} is invalid: {allowed}")

    for name in ("rows", "dense", "sparse", "max_cardinality", "seed", "chunk_rows"):
        if not _is_int(getattr(spec, name)):
            raise bad(name, "must be an integer")
    for name in ("base_rate", "zipf_exponent"):
        value = getattr(spec, name)
        if not _is_real(value) or not math.isfinite(float(value)):
            raise bad(name, "must be a finite number")
    if spec.rows < 1:
        raise bad("rows", "must be >= 1")
    if spec.dense < 0:
        raise bad("dense", "must be >= 0")
    if spec.sparse < 4:
        raise bad(
            "sparse",
            "must be >= 4 (the planted interactions need single-id s0, s1 and s2; the last column is a list)",
        )
    if not 0.0 < spec.base_rate < 1.0:
        raise bad("base_rate", "must satisfy 0 < base_rate < 1")
    if not 1 <= spec.max_cardinality <= MAX_CARDINALITY_CAP:
        raise bad("max_cardinality", f"must satisfy 1 <= max_cardinality <= {MAX_CARDINALITY_CAP:,}")
    if not 0.0 <= spec.zipf_exponent <= 10.0:
        raise bad("zipf_exponent", "must satisfy 0 <= zipf_exponent <= 10")
    if spec.seed < 0:
        raise bad("seed", "must be >= 0")
    if not 1 <= spec.chunk_rows <= MAX_CHUNK_ROWS:
        raise bad("chunk_rows", f"must satisfy 1 <= chunk_rows <= {MAX_CHUNK_ROWS:,}")


# ---------------------------------------------------------------------------------------------- truth


@dataclass(frozen=True)
class SynthTruth:
    """What a model can at best achieve on the generated log, computed from the true probabilities."""

    rows: int
    """Rows written."""
    base_rate: float
    """Observed positive rate of the sampled labels."""
    bayes_auc: float
    """ROC AUC of the true probabilities against the labels (``nan`` with a single class)."""
    bayes_logloss: float
    """Mean log loss of the true probabilities."""
    bayes_ne: float
    """``bayes_logloss / H(base_rate)`` (``nan`` when the observed rate is 0 or 1)."""
    spec: dict[str, Any]
    """The :class:`SynthSpec` as a dict."""

    def to_json(self) -> dict[str, Any]:
        """A JSON-serializable dict (``nan`` for undefined metrics)."""
        return {
            "rows": int(self.rows),
            "base_rate": float(self.base_rate),
            "bayes_auc": float(self.bayes_auc),
            "bayes_logloss": float(self.bayes_logloss),
            "bayes_ne": float(self.bayes_ne),
            "spec": dict(self.spec),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SynthTruth:
        """Inverse of :meth:`to_json`."""
        names = {f.name for f in fields(cls)}
        missing = names - set(data)
        if missing:
            raise ValueError(f"truth JSON lacks the keys {sorted(missing)}")
        return cls(
            rows=int(data["rows"]),
            base_rate=float(data["base_rate"]),
            bayes_auc=float(data["bayes_auc"]),
            bayes_logloss=float(data["bayes_logloss"]),
            bayes_ne=float(data["bayes_ne"]),
            spec=dict(data["spec"]),
        )


def truth_path(path: str | Path) -> Path:
    """Where :func:`generate` writes the truth of the log at ``path``: ``"<path>.truth.json"``."""
    p = Path(path)
    return p.with_name(p.name + ".truth.json")


def load_truth(path: str | Path) -> SynthTruth:
    """Read the truth written next to the log at ``path`` (pass the log's path, not the JSON's)."""
    with open(truth_path(path), encoding="utf-8") as fh:
        return SynthTruth.from_json(json.load(fh))


# ------------------------------------------------------------------------------------------- hashing


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """One SplitMix64 step of a uint64 array: add the golden gamma, then the finalizer."""
    with np.errstate(over="ignore"):
        return mix64(x + _GOLDEN)


def _gauss(h: np.ndarray) -> np.ndarray:
    """Standard normal values from uint64 hashes (Box-Muller on two 24-bit uniforms)."""
    u1 = ((h >> _U64(40)).astype(np.float64) + 0.5) / float(1 << 24)
    u2 = ((h & _U64(0xFFFFFF)).astype(np.float64) + 0.5) / float(1 << 24)
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


def _tag(*parts: int) -> np.uint64:
    """A 64-bit key for a (purpose, feature) pair."""
    h = np.zeros(1, dtype=np.uint64)
    for part in parts:
        h = _splitmix64(h ^ _U64(part))
    return _U64(h[0])


def _rank_gauss(tag: np.uint64, ranks: np.ndarray) -> np.ndarray:
    """A deterministic N(0, 1) value per rank for the given tag."""
    return _gauss(_splitmix64(ranks.astype(np.uint64) ^ tag))


def _decay(ranks: np.ndarray) -> np.ndarray:
    return 1.0 / np.sqrt(1.0 + (ranks - 1.0) / _RANK_SCALE)


def _id_codes(feature: int, ranks: np.ndarray) -> np.ndarray:
    """Bijective 24-bit scramble of ranks (per feature) used as the hex part of the id."""
    offset = int(_tag(7, feature)) & _ID_MASK
    x = (ranks.astype(np.uint64) + _U64(offset)) & _U64(_ID_MASK)
    x = (x * _U64(0x9E3779)) & _U64(_ID_MASK)  # odd multiplier: bijective mod 2^24
    x ^= x >> _U64(12)
    x = (x * _U64(0xC2B2AF)) & _U64(_ID_MASK)  # odd multiplier
    x ^= x >> _U64(11)
    return x


# ------------------------------------------------------------------------------------------- params


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


# ------------------------------------------------------------------------------------------ sampling


def _zipf_ranks(rng: np.random.Generator, size: int | tuple[int, ...], card: int, a: float) -> np.ndarray:
    """Ranks in ``1..card`` from a bounded Zipf law: floor of a continuous power law on ``[1, card+1)``."""
    u = rng.random(size)
    top = card + 1.0
    e = 1.0 - a
    # CDF^-1(u) = (1 + u (top^e - 1))^(1/e) with e = 1 - a, written with log1p/expm1 so that it stays
    # accurate as a -> 1, where it tends to top^u.
    x = np.exp(u * math.log(top)) if e == 0.0 else np.exp(np.log1p(u * math.expm1(e * math.log(top))) / e)
    return np.clip(np.floor(x).astype(np.int64), 1, card)


@dataclass
class _Sample:
    """The latent content of a chunk of rows (before string formatting)."""

    dense: np.ndarray  # (n, D) float64, nan = null
    ranks: np.ndarray  # (n, S-1) int64 ranks of the single-id features, 0 = null
    list_ranks: np.ndarray  # (n, LIST_MAX_IDS) int64, distinct ranks sorted by id code, 0 = padding
    list_codes: np.ndarray  # (n, LIST_MAX_IDS) uint64 id codes aligned with list_ranks
    list_len: np.ndarray  # (n,) int64 number of ids, 0 = null cell

    @property
    def rows(self) -> int:
        return int(self.list_len.shape[0])


def _sample(rng: np.random.Generator, spec: SynthSpec, params: _Params, n: int) -> _Sample:
    """Draw the features of ``n`` rows (the order of draws is part of the determinism contract)."""
    d = spec.dense
    latent = rng.standard_normal(n)
    noise = rng.standard_normal((n, d))
    lam = np.exp(params.dense_mean + latent[:, None] * params.dense_load + noise * params.dense_noise)
    dense = rng.poisson(lam).astype(np.float64)
    dense[rng.random((n, d)) < DENSE_NULL_RATE] = np.nan

    s = spec.sparse
    ranks = np.empty((n, s - 1), dtype=np.int64)
    for j in range(s - 1):
        ranks[:, j] = _zipf_ranks(rng, n, int(params.cards[j]), spec.zipf_exponent)
    ranks[rng.random((n, s - 1)) < SPARSE_NULL_RATE] = 0

    last = s - 1
    k = rng.integers(1, LIST_MAX_IDS + 1, size=n)
    lr = _zipf_ranks(rng, (n, LIST_MAX_IDS), int(params.cards[last]), spec.zipf_exponent)
    sentinel = _U64(1 << _ID_BITS)  # larger than any code
    codes = _id_codes(last, lr)
    slot = np.arange(LIST_MAX_IDS)
    codes[slot[None, :] >= k[:, None]] = sentinel
    lr, codes = _sort_by_code(lr, codes)
    dup = np.zeros_like(codes, dtype=bool)
    dup[:, 1:] = (codes[:, 1:] == codes[:, :-1]) & (codes[:, 1:] != sentinel)
    codes[dup] = sentinel
    lr, codes = _sort_by_code(lr, codes)
    present = codes != sentinel
    lr[~present] = 0
    length = present.sum(axis=1)
    null_list = rng.random(n) < SPARSE_NULL_RATE
    length[null_list] = 0
    lr[null_list] = 0
    return _Sample(dense=dense, ranks=ranks, list_ranks=lr, list_codes=codes, list_len=length)


def _sort_by_code(ranks: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(codes, axis=1, kind="stable")
    return np.take_along_axis(ranks, order, axis=1), np.take_along_axis(codes, order, axis=1)


# --------------------------------------------------------------------------------------------- logit


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


def _calibrate_bias(logit0: np.ndarray, base_rate: float) -> float:
    """The ``b`` with ``mean(sigmoid(b + logit0)) == base_rate``, by bisection."""
    lo, hi = -40.0, 40.0
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        if float(np.mean(_sigmoid(mid + logit0))) < base_rate:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def _bias(spec: SynthSpec, params: _Params) -> float:
    pilot = _sample(np.random.default_rng([spec.seed, _TAG_PILOT]), spec, params, PILOT_ROWS)
    return _calibrate_bias(_logit(pilot, params), spec.base_rate)


# ------------------------------------------------------------------------------------------- strings


def _string_array(prefix: bytes, codes: np.ndarray, valid: np.ndarray) -> pa.Array:
    """Arrow strings ``prefix + 6 hex digits`` for each code, null where not ``valid`` (no Python loop)."""
    n = codes.shape[0]
    width = len(prefix) + _ID_HEX
    shifts = np.arange(_ID_HEX - 1, -1, -1, dtype=np.uint64) * _U64(4)
    buf = np.empty((n, width), dtype=np.uint8)
    buf[:, : len(prefix)] = np.frombuffer(prefix, dtype=np.uint8)
    buf[:, len(prefix) :] = _HEX[((codes[:, None] >> shifts[None, :]) & _U64(0xF)).astype(np.intp)]
    lengths = np.where(valid, width, 0)
    return _from_parts(buf[valid].ravel(), lengths, valid)


def _list_array(prefix: bytes, codes: np.ndarray, length: np.ndarray) -> pa.Array:
    """Arrow strings of ``"|"``-joined ids: the first ``length[i]`` codes of row ``i`` (null when 0)."""
    n, m = codes.shape
    width = len(prefix) + _ID_HEX + 1  # id + separator
    shifts = np.arange(_ID_HEX - 1, -1, -1, dtype=np.uint64) * _U64(4)
    safe = np.where(codes > _U64(_ID_MASK), _U64(0), codes)
    buf = np.empty((n, m, width), dtype=np.uint8)
    buf[:, :, : len(prefix)] = np.frombuffer(prefix, dtype=np.uint8)
    buf[:, :, len(prefix) : -1] = _HEX[((safe[:, :, None] >> shifts) & _U64(0xF)).astype(np.intp)]
    buf[:, :, -1] = ord("|")
    valid = length > 0
    lengths = np.where(valid, length * width - 1, 0)
    keep = np.arange(m * width)[None, :] < lengths[:, None]
    return _from_parts(buf.reshape(n, m * width)[keep], lengths, valid)


def _from_parts(data: np.ndarray, lengths: np.ndarray, valid: np.ndarray) -> pa.Array:
    n = lengths.shape[0]
    offsets = np.zeros(n + 1, dtype=np.int32)  # chunk_rows <= 10M keeps a chunk's bytes < 2 GiB
    np.cumsum(lengths, out=offsets[1:])
    null_count = int(n - np.count_nonzero(valid))
    bitmap = pa.py_buffer(np.packbits(valid, bitorder="little")) if null_count else None
    return pa.StringArray.from_buffers(
        n, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(data)), bitmap, null_count
    )


def _schema(spec: SynthSpec) -> pa.Schema:
    cols = [pa.field("label", pa.int8())]
    cols += [pa.field(f"d{k}", pa.float64()) for k in range(spec.dense)]
    cols += [pa.field(f"s{j}", pa.string()) for j in range(spec.sparse)]
    return pa.schema(cols)


def _table(spec: SynthSpec, sample: _Sample, labels: np.ndarray, schema: pa.Schema) -> pa.Table:
    arrays: list[pa.Array] = [pa.array(labels, type=pa.int8())]
    for k in range(spec.dense):
        col = sample.dense[:, k]
        arrays.append(pa.array(col, type=pa.float64(), mask=np.isnan(col)))
    for j in range(spec.sparse - 1):
        r = sample.ranks[:, j]
        arrays.append(_string_array(f"s{j}_".encode(), _id_codes(j, r), r > 0))
    last = spec.sparse - 1
    arrays.append(_list_array(f"s{last}_".encode(), sample.list_codes, sample.list_len))
    return pa.Table.from_arrays(arrays, schema=schema)


# ------------------------------------------------------------------------------------------ generate


def _entropy(q: float) -> float:
    if not 0.0 < q < 1.0:
        return 0.0
    return -(q * math.log(q) + (1.0 - q) * math.log(1.0 - q))


def generate(path: str | Path, spec: SynthSpec, progress: Callable[[int], None] | None = None) -> SynthTruth:
    """Write the log as Parquet (one row group per chunk) and the truth as JSON at ``truth_path(path)``.

    Both files are written to temporary names and renamed into place, so a crash never leaves a
    half-written log behind a valid-looking name.  ``progress(n_rows_done)`` is called after each chunk.
    Returns the :class:`SynthTruth` that was written.
    """
    from sklearn.metrics import roc_auc_score

    _validate(spec)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    params = _params(spec)
    bias = _bias(spec, params)
    schema = _schema(spec)

    probs = np.empty(spec.rows, dtype=np.float64)
    labels_all = np.empty(spec.rows, dtype=np.int8)
    loss_sum = 0.0
    tmp = path.with_name(path.name + ".tmp")
    done = 0
    try:
        with pq.ParquetWriter(tmp, schema) as writer:
            for chunk in range(math.ceil(spec.rows / spec.chunk_rows)):
                n = min(spec.chunk_rows, spec.rows - done)
                rng = np.random.default_rng([spec.seed, _TAG_CHUNK, chunk])
                sample = _sample(rng, spec, params, n)
                logit = bias + _logit(sample, params)
                p = _sigmoid(logit)
                labels = (rng.random(n) < p).astype(np.int8)
                # log loss from the logit: softplus(x) - y * x, stable for any x
                loss_sum += float(np.sum(np.logaddexp(0.0, logit) - labels * logit))
                probs[done : done + n] = p
                labels_all[done : done + n] = labels
                writer.write_table(_table(spec, sample, labels, schema), row_group_size=n)
                done += n
                if progress is not None:
                    progress(done)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()

    q = float(labels_all.mean())
    logloss = loss_sum / spec.rows
    h = _entropy(q)
    auc = float(roc_auc_score(labels_all, probs)) if 0.0 < q < 1.0 else math.nan
    truth = SynthTruth(
        rows=spec.rows,
        base_rate=q,
        bayes_auc=auc,
        bayes_logloss=logloss,
        bayes_ne=logloss / h if h > 0.0 else math.nan,
        spec=asdict(spec),
    )
    tpath = truth_path(path)
    ttmp = tpath.with_name(tpath.name + ".tmp")
    with open(ttmp, "w", encoding="utf-8") as fh:
        json.dump(truth.to_json(), fh, indent=2, sort_keys=True)
        fh.write("\n")
    os.replace(ttmp, tpath)
    return truth
