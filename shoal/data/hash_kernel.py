"""The id hash (two polynomials mod 2^31 - 1 + SplitMix64) as one compiled loop (numba): the same ids as the
numpy code.

:func:`shoal.data.hashing.hash_strings` in numpy takes one vectorized step per byte position, over the rows that
are at least that long: fast for many short ids, but one long id costs a Python-level numpy call per byte (a
900 KB id: over a second). This loop walks each row's bytes once, so the work is linear in the bytes whatever
their lengths. The numpy code stays as the reference (``hash_strings(..., compiled=False)``), and a property
test holds the two equal.

numba compiles the loop on its first call in a process, or loads it from its on-disk cache (:mod:`shoal.jit`).
Without numba, ``hash_strings`` uses the numpy code.
"""

from __future__ import annotations

import numpy as np

from shoal.jit import lazy_njit

__all__ = ["hash_rows", "kernel"]

_P = np.int64(2**31 - 1)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _hash_rows(data: np.ndarray, starts: np.ndarray, lengths: np.ndarray, first: np.ndarray, bases: np.ndarray,
               weights: np.ndarray) -> np.ndarray:
    n = starts.shape[0]
    out = np.empty(n, dtype=np.uint64)
    for r in range(n):
        h1 = (first[0] + lengths[r] * weights[0]) % _P
        h2 = (first[1] + lengths[r] * weights[1]) % _P
        p1 = np.int64(1)
        p2 = np.int64(1)
        s = starts[r]
        for j in range(s, s + lengths[r]):
            b = np.int64(data[j])
            h1 = (h1 + b * p1) % _P
            h2 = (h2 + b * p2) % _P
            p1 = p1 * bases[0] % _P
            p2 = p2 * bases[1] % _P
        # SplitMix64's finalizer (every constant a uint64: numba would make uint64 ^ int64 a float)
        h = (np.uint64(h1) << np.uint64(31)) | np.uint64(h2)
        h = h ^ (h >> np.uint64(30))
        h = h * _M1
        h = h ^ (h >> np.uint64(27))
        h = h * _M2
        out[r] = h ^ (h >> np.uint64(31))
    return out


kernel = lazy_njit(globals(), "_hash_rows")
"""The compiled :func:`_hash_rows`, or None without numba (then ``hash_strings`` uses the numpy code)."""


def hash_rows(data: np.ndarray, starts: np.ndarray, lengths: np.ndarray, first: tuple[int, int],
              bases: tuple[int, int], weights: tuple[int, int]) -> np.ndarray:
    """The hash (N,) uint64 of each row's bytes ``data[starts[r] : starts[r] + lengths[r]]``: the two polynomials
    from ``first`` (the seed's offsets) with ``bases`` and the length ``weights``, as
    :func:`shoal.data.hashing.hash_strings` computes it."""
    compiled = kernel()
    if compiled is None:
        raise RuntimeError("numba is not available; use hash_strings(..., compiled=False)")
    if data.flags.writeable:  # one compiled kind of array: read-only, as Arrow buffers are
        data = data.view()
        data.flags.writeable = False
    return compiled(data, starts.astype(np.int64), lengths.astype(np.int64), np.array(first, np.int64),
                    np.array(bases, np.int64), np.array(weights, np.int64))
