"""Stable, vectorized hashing of string ids into embedding buckets.

Python's built-in ``hash()`` is salted per process, so it cannot map an id to the same row at training and
at serving time. An id's hash is computed from its UTF-8 bytes ``b_0 .. b_{L-1}`` and the feature's seed:

    h_k = (S_k + L * Q_k + sum_i b_i * B_k^i) mod P        k = 1, 2;  P = 2^31 - 1
    hash = SplitMix64((h_1 << 31) | h_2)

two polynomial hashes modulo the Mersenne prime P with different bases B_k (62 bits together), the id's length
weighted in (so trailing NUL bytes count), the seed's two offsets S_k (:func:`offsets`), then the SplitMix64
finalizer. Every term is an integer below 2^53, so the sum over an id's bytes is one exact float64 matrix product:
the exported graph (:mod:`shoal.export.raw_ids`) hashes all ids of a batch with one ``MatMul`` instead of a chain
of byte steps. Here it runs over the Arrow string buffers, never a Python loop per id: by default in one compiled
loop (:mod:`shoal.data.hash_kernel`, linear in the bytes however long an id is), else with numpy, one vectorized
step per byte position (the reference). Both give the same ids.

(Encoder format 1 hashed with FNV-1a 64; a bundle of that format is refused by name.)
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shoal.data import hash_kernel

__all__ = ["BASES", "LENGTH_WEIGHTS", "PRIME", "bucketize", "hash_strings", "mix64", "offsets", "powers", "seed_for"]

PRIME = 2**31 - 1
BASES = (0x5BD1E995 % PRIME, 0x1B873593 % PRIME)  # B_1, B_2
LENGTH_WEIGHTS = (0x27D4EB2F % PRIME, 0x165667B1 % PRIME)  # Q_1, Q_2
_FNV_OFFSET = np.uint64(0xCBF29CE484222325)  # seed_for: a feature name's seed
_FNV_PRIME = np.uint64(0x100000001B3)


def mix64(h: np.ndarray) -> np.ndarray:
    """The SplitMix64 finalizer: spreads every input bit over the 64 output bits (wrapping arithmetic)."""
    h = h ^ (h >> np.uint64(30))
    h = h * np.uint64(0xBF58476D1CE4E5B9)
    h = h ^ (h >> np.uint64(27))
    h = h * np.uint64(0x94D049BB133111EB)
    return h ^ (h >> np.uint64(31))


def seed_for(name: str) -> int:
    """A stable 64-bit seed for a feature name (FNV-1a 64 of its UTF-8 bytes)."""
    h = _FNV_OFFSET
    with np.errstate(over="ignore"):
        for b in name.encode("utf-8"):
            h = (h ^ np.uint64(b)) * _FNV_PRIME
    return int(h)


def offsets(seed: int) -> tuple[int, int]:
    """The seed's offsets ``(S_1, S_2)``, each below :data:`PRIME`."""
    s = seed & 0xFFFFFFFFFFFFFFFF
    return (s * 0x9E3779B1 + 1) % PRIME, ((s >> 31) * 0x85EBCA77 + (s & 0x7FFFFFFF) + 2) % PRIME


def powers(width: int) -> np.ndarray:
    """``B_k^i mod P`` for i < ``width``: (width, 2) int64."""
    out = np.empty((width, 2), np.int64)
    pw = [1, 1]
    for i in range(width):
        out[i] = pw
        pw = [pw[0] * BASES[0] % PRIME, pw[1] * BASES[1] % PRIME]
    return out


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
    starts_ends = np.frombuffer(arr.buffers()[1], dtype=off_type, count=n + 1 + arr.offset)[arr.offset:]
    starts_ends = starts_ends.astype(np.int64)
    data_buf = arr.buffers()[2]
    data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    lengths = np.diff(starts_ends)
    if compiled and n and hash_kernel.kernel() is not None:
        return hash_kernel.hash_rows(data, starts_ends[:-1], lengths, offsets(seed), BASES, LENGTH_WEIGHTS)
    starts = starts_ends[:-1]
    acc = np.array(offsets(seed), np.int64) + lengths[:, None] * np.array(LENGTH_WEIGHTS, np.int64)  # (N, 2)
    acc %= PRIME
    max_len = int(lengths.max()) if n else 0
    uniform = n > 0 and int(lengths.min()) == max_len
    for j, pw in enumerate(powers(max_len)):
        if uniform:
            acc = (acc + data[starts + j][:, None].astype(np.int64) * pw) % PRIME
        else:
            rows = np.flatnonzero(lengths > j)
            acc[rows] = (acc[rows] + data[starts[rows] + j][:, None].astype(np.int64) * pw) % PRIME
    h = (acc[:, 0].astype(np.uint64) << np.uint64(31)) | acc[:, 1].astype(np.uint64)
    with np.errstate(over="ignore"):
        return mix64(h)


def bucketize(hashes: np.ndarray, buckets: int) -> np.ndarray:
    """Map hashes to ids in [1, buckets); id 0 is reserved for missing values."""
    return (hashes % np.uint64(buckets - 1)).astype(np.int64) + 1
