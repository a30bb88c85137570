"""Stable hashes of ``(feature, rank)``: the id string of a rank and the effect an id has on the click.

Both are deterministic functions of the rank rather than tables, so a feature of 10M ids costs no memory:

* :func:`_id_codes` scrambles a rank into a 24-bit code (the 6 hex digits of the id ``"s{j}_xxxxxx"``) with a
  bijection (add a per-feature offset, multiply by odd constants and xor-shift, modulo ``2^24 > 10^7``), so ids
  are unique per feature but their order says nothing about their popularity;
* :func:`_rank_gauss` turns ``(tag, rank)`` into a standard normal value through SplitMix64, the per-id draw
  behind every effect of the click model (:mod:`.logit`).
"""

from __future__ import annotations

import numpy as np

from shoal.data.hashing import mix64

_ID_BITS = 24
_ID_MASK = (1 << _ID_BITS) - 1
_ID_HEX = _ID_BITS // 4

_U64 = np.uint64
_GOLDEN = _U64(0x9E3779B97F4A7C15)

_RANK_SCALE = 20.0  # effects decay as 1/sqrt(1 + (rank - 1) / _RANK_SCALE)


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
    """How much of an id's effect survives at this popularity rank: popular ids carry most of the signal."""
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
