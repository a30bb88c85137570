"""The text bag's n-gram hashing as one compiled loop (numba): the same ids as the vectorized numpy code.

:func:`shoal.data.text.text_bag` hashes a chunk of texts with a few dozen numpy passes over every byte (each
pass 8 bytes of temporaries per byte of text), which dominates the cost of scoring raw texts. This module
computes the very same ids, byte for byte, in two passes of one compiled loop per row (counting, then
hashing), with no temporaries. The numpy code stays as the reference
(``text_bag(..., compiled=False)``), and a property test holds the two equal.

numba compiles the loop on its first call in a process, or loads it from its on-disk cache in a fraction of a
second (:mod:`shoal.jit`). Without numba (it is a dependency, but an install may lack it, or have one that
fails to import), ``text_bag`` uses the numpy code.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from shoal.jit import AVAILABLE, lazy_njit

__all__ = ["AVAILABLE", "bag_ids", "kernel"]

_PRIME = np.uint64(0x100000001B3)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _mix64(h: np.uint64) -> np.uint64:
    """SplitMix64's finalizer, as :func:`shoal.data.hashing.mix64` (every constant and shift a uint64: numba
    would turn uint64 ^ int64 into a float)."""
    h = h ^ (h >> np.uint64(30))
    h = h * _M1
    h = h ^ (h >> np.uint64(27))
    h = h * _M2
    return h ^ (h >> np.uint64(31))


def _is_space(b: np.uint8) -> Any:
    """The whitespace bytes of :data:`shoal.data.text._WHITESPACE`: space, \\t, \\n, \\r, \\v, \\f."""
    return b == 0x20 or (0x09 <= b <= 0x0D)


def _row_words(data: np.ndarray, start: int, length: int) -> int:
    words = 0
    inside = False
    for j in range(start, start + length):
        space = _is_space(data[j])
        if not space and not inside:
            words += 1
        inside = not space
    return words


def _bag_ids(data: np.ndarray, starts: np.ndarray, lengths: np.ndarray, n_min: int, n_max: int,
             word_ngrams: int, seed: np.uint64, word_seed: np.uint64,
             modulus: np.uint64) -> tuple[np.ndarray, np.ndarray]:
    n = starts.shape[0]
    # pass 1: ids per row (an empty bag is the single id 0)
    counts = np.zeros(n, dtype=np.int64)
    longest = 0
    most_words = 0
    for r in range(n):
        length = lengths[r]
        c = 0
        for k in range(n_min, n_max + 1):
            if length >= k:
                c += length - k + 1
        if word_ngrams > 0:
            w = _row_words(data, starts[r], length)
            most_words = max(most_words, w)
            for k in range(1, word_ngrams + 1):
                if w >= k:
                    c += w - k + 1
        counts[r] = max(c, 1)
        longest = max(longest, length)
    offsets = np.zeros(n + 1, dtype=np.int64)
    for r in range(n):
        offsets[r + 1] = offsets[r] + counts[r]
    out = np.zeros(offsets[n], dtype=np.int64)
    rolling = np.empty(longest, dtype=np.uint64)  # rolling[i]: the hash of the row's bytes i .. i + k - 1
    word_hash = np.empty(most_words, dtype=np.uint64)
    # pass 2: byte n-grams (by n), then word n-grams (by n), each in order of position, as text_bag lays them
    for r in range(n):
        s = starts[r]
        length = lengths[r]
        slot = offsets[r]
        for i in range(length):
            rolling[i] = seed
        for k in range(1, n_max + 1):
            if length < k:
                break
            for i in range(length - k + 1):
                rolling[i] = (rolling[i] ^ np.uint64(data[s + i + k - 1])) * _PRIME
                if k >= n_min:
                    out[slot] = np.int64(_mix64(rolling[i] ^ np.uint64(k)) % modulus) + 1
                    slot += 1
        if word_ngrams > 0:
            w = 0
            pos = 0  # position of the byte inside its word
            for j in range(length):
                b = data[s + j]
                if _is_space(b):
                    pos = 0
                    continue
                if pos == 0:
                    word_hash[w] = np.uint64(0)
                    w += 1
                word_hash[w - 1] += _mix64(np.uint64(b) ^ (np.uint64(pos) << np.uint64(8)) ^ word_seed)
                pos += 1
            for k in range(1, word_ngrams + 1):
                for i in range(w - k + 1):
                    h = word_hash[i]
                    for j in range(1, k):
                        h = (h * _PRIME) ^ word_hash[i + j]
                    out[slot] = np.int64(_mix64(h ^ (np.uint64(k) << np.uint64(40))) % modulus) + 1
                    slot += 1
    return out, offsets


kernel = lazy_njit(globals(), "_bag_ids", helpers=("_mix64", "_is_space", "_row_words"))
"""The compiled :func:`_bag_ids`, or None without numba (then ``text_bag`` uses the numpy code)."""


def bag_ids(data: np.ndarray, starts: np.ndarray, lengths: np.ndarray, *, buckets: int, ngram_min: int,
            ngram_max: int, word_ngrams: int, seed: int, word_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, offsets)`` of each row's bytes ``data[starts[r] : starts[r] + lengths[r]]`` (lengths already
    cut to ``max_bytes``), as :func:`shoal.data.text.text_bag` computes them."""
    compiled = kernel()
    if compiled is None:
        raise RuntimeError("numba is not available; use text_bag(..., compiled=False)")
    if data.flags.writeable:  # numba compiles once per kind of array, and a writable one is another kind
        data = data.view()  # than a read-only one (a memory-mapped Arrow file's buffers): keep to one
        data.flags.writeable = False
    return compiled(data, starts.astype(np.int64), lengths.astype(np.int64), int(ngram_min), int(ngram_max),
                    int(word_ngrams), np.uint64(seed & 0xFFFFFFFFFFFFFFFF), np.uint64(word_seed & 0xFFFFFFFFFFFFFFFF),
                    np.uint64(buckets - 1))
