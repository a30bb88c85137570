"""Stable, vectorized hashing of string ids into embedding buckets.

Python's built-in ``hash()`` is salted per process, so it cannot map an id to the same row at training and
at serving time. We use 64-bit FNV-1a over the UTF-8 bytes (seeded per feature) followed by the SplitMix64
finalizer, over the Arrow string buffers, never a Python loop per id: by default in one compiled loop
(:mod:`shoal.data.hash_kernel`, linear in the bytes however long an id is), else with numpy, one vectorized step
per byte position (the reference; a long id costs one numpy call per byte there). Both give the same ids.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shoal.data import hash_kernel

__all__ = ["bucketize", "hash_strings", "seed_for", "mix64"]

_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)


def mix64(h: np.ndarray) -> np.ndarray:
    """The SplitMix64 finalizer: spreads every input bit over the 64 output bits (wrapping arithmetic)."""
    h = h ^ (h >> np.uint64(30))
    h = h * np.uint64(0xBF58476D1CE4E5B9)
    h = h ^ (h >> np.uint64(27))
    h = h * np.uint64(0x94D049BB133111EB)
    return h ^ (h >> np.uint64(31))


def seed_for(name: str) -> int:
    """A stable 64-bit seed for a feature name."""
    h = _FNV_OFFSET
    with np.errstate(over="ignore"):
        for b in name.encode("utf-8"):
            h = (h ^ np.uint64(b)) * _FNV_PRIME
    return int(h)


def hash_strings(values: pa.Array | pa.ChunkedArray, seed: int = 0, compiled: bool = True) -> np.ndarray:
    """64-bit hashes of non-null strings, shape (N,) uint64. Nulls must be removed or filled first.

    ``compiled``: use the compiled loop where numba is available (else, or with False: the numpy reference).
    """
    arr = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        arr = pc.cast(arr, pa.string())
    if arr.null_count:
        raise ValueError("hash_strings got nulls; map missing values to the reserved id before hashing")
    n = len(arr)
    off_type = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    offsets = np.frombuffer(arr.buffers()[1], dtype=off_type, count=n + 1 + arr.offset)[arr.offset:]
    offsets = offsets.astype(np.int64)
    data_buf = arr.buffers()[2]
    data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    lengths = np.diff(offsets)
    if compiled and n and hash_kernel.kernel() is not None:
        return hash_kernel.hash_rows(data, offsets[:-1], lengths, int(_FNV_OFFSET ^ np.uint64(seed)))
    h = np.full(n, _FNV_OFFSET ^ np.uint64(seed), dtype=np.uint64)
    starts = offsets[:-1]
    max_len = int(lengths.max()) if n else 0
    uniform = n > 0 and int(lengths.min()) == max_len
    with np.errstate(over="ignore"):
        for j in range(max_len):
            if uniform:
                h = (h ^ data[starts + j]) * _FNV_PRIME
            else:
                rows = np.flatnonzero(lengths > j)
                h[rows] = (h[rows] ^ data[starts[rows] + j]) * _FNV_PRIME
        return mix64(h ^ lengths.astype(np.uint64))


def bucketize(hashes: np.ndarray, buckets: int) -> np.ndarray:
    """Map hashes to ids in [1, buckets); id 0 is reserved for missing values."""
    return (hashes % np.uint64(buckets - 1)).astype(np.int64) + 1
