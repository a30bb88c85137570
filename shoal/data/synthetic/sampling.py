"""Drawing rows: the latent content of a chunk (dense counts, id ranks, list cells, nulls) before formatting.

Rows are kept as *ranks* (1 = the most popular id of a feature, 0 = null) rather than strings: the click model
(:mod:`.logit`) reads the ranks directly and only :mod:`.arrow` turns them into id strings, once, when the chunk
is written.  The order of the draws from ``rng`` is part of the determinism contract: reordering them changes
every generated log.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from shoal.data.synthetic.ids import _ID_BITS, _U64, _id_codes
from shoal.data.synthetic.params import _Params
from shoal.data.synthetic.spec import SynthSpec

DENSE_NULL_RATE = 0.05
"""Probability that a dense value is null."""

SPARSE_NULL_RATE = 0.03
"""Probability that a sparse cell (single id or list) is null."""

LIST_MAX_IDS = 5
"""Most ids in a cell of the list feature (the last sparse column)."""


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
    """Sort each row's list slots by id code (the sentinel last), keeping ranks aligned with their codes."""
    order = np.argsort(codes, axis=1, kind="stable")
    return np.take_along_axis(ranks, order, axis=1), np.take_along_axis(codes, order, axis=1)
