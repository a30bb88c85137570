"""Raw text -> hashed byte n-grams and whitespace-word n-grams, vectorized over the Arrow buffers.

No tokenizer, no lowercasing, no language rules: a text is its UTF-8 bytes (invalid UTF-8 is just bytes).
Each row becomes a bag of ids, in the spirit of fastText (Joulin et al. 2016, "Bag of Tricks for Efficient
Text Classification"), hashed into ``buckets`` rows (0 is reserved for an empty or missing text)::

    "ab c" with byte n-grams 1..2 and word n-grams 1..2
      bytes:  a, b, " ", c, ab, "b ", " c"
      words:  ab, c, (ab c)

Every step is a numpy operation over all rows of a chunk at once: one step per n-gram order, never a Python
loop per byte or per row. By default the same ids come from one compiled loop (:mod:`shoal.data.bag_kernel`,
numba); this numpy code is its reference.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shoal.data import bag_kernel
from shoal.data.hashing import mix64

__all__ = ["BYTE_VOCAB", "text_bag", "text_bytes"]

BYTE_VOCAB = 257  # byte b -> id b + 1; id 0 = empty or missing text
BAG_BLOCK_ROWS = 4096  # text_bag hashes this many rows at a time (see there; 2048-16384 were slower)

_PRIME = np.uint64(0x100000001B3)
_WORD_SEED = 0x5BD1E995  # word hashes use seed ^ this, so a one-word text's byte and word n-grams differ
_WHITESPACE = np.array([0x20, 0x09, 0x0A, 0x0D, 0x0B, 0x0C], dtype=np.uint8)
_IS_WORD_BYTE = np.ones(256, dtype=bool)  # a lookup table: one gather instead of np.isin over every byte
_IS_WORD_BYTE[_WHITESPACE] = False


def _buffers(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(offsets (N + 1,) int64, data (bytes,) uint8) of a binary/string array without nulls."""
    off_type = np.int64 if pa.types.is_large_binary(arr.type) or pa.types.is_large_string(arr.type) else np.int32
    offsets = np.frombuffer(arr.buffers()[1], dtype=off_type, count=len(arr) + 1 + arr.offset)[arr.offset:]
    data_buf = arr.buffers()[2]
    data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    return offsets.astype(np.int64), data


def _truncate(offsets: np.ndarray, max_bytes: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-row (start, length) with each text cut to ``max_bytes`` bytes."""
    starts = offsets[:-1]
    return starts, np.minimum(np.diff(offsets), max_bytes)


def _flat_bytes(data: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The kept bytes of all rows back to back (T,) uint8, and the row of each (T,) int64."""
    rows = np.repeat(np.arange(len(starts)), lengths)
    excl = np.zeros(len(lengths), dtype=np.int64)
    np.cumsum(lengths[:-1], out=excl[1:])
    pos = np.repeat(starts - excl, lengths) + np.arange(rows.shape[0])
    return data[pos], rows


Parts = list[tuple[np.ndarray, np.ndarray]]  # (hashes (M,) uint64, rows (M,) int64), each in row order


def _byte_ngrams(flat: np.ndarray, rows: np.ndarray, lengths: np.ndarray, n_min: int, n_max: int,
                 seed: int) -> Parts:
    """One part per n in [n_min, n_max]: the hashes of every byte n-gram that fits inside its row."""
    t = flat.shape[0]
    ends = np.cumsum(lengths)[rows] if t else np.zeros(0, np.int64)  # (T,) end (exclusive) of each byte's row
    remaining = ends - np.arange(t)  # bytes from here to the end of the row
    h = np.full(t, np.uint64(seed), dtype=np.uint64)
    parts: Parts = []
    with np.errstate(over="ignore"):
        for n in range(1, n_max + 1):
            if t - n + 1 <= 0:
                break
            # h[i] covers flat[i : i + n]: extend every hash by the next byte, contiguous slices only
            h = (h[: t - n + 1] ^ flat[n - 1:]) * _PRIME
            if n >= n_min:
                ok = remaining[: t - n + 1] >= n
                parts.append((mix64(h[ok] ^ np.uint64(n)), rows[: t - n + 1][ok]))
    return parts


def _word_ngrams(flat: np.ndarray, rows: np.ndarray, n_max: int, seed: int) -> Parts:
    """Whitespace-separated words (maximal runs of non-whitespace bytes) and their n-grams, one part per n."""
    if rows.shape[0] == 0:
        return []
    word = _IS_WORD_BYTE[flat]
    # a word starts at a word byte whose predecessor is whitespace or in another row
    prev_word = np.concatenate([[False], word[:-1] & (rows[1:] == rows[:-1])])
    begin = word & ~prev_word
    if not begin.any():
        return []
    # A word's hash: the wrapping sum of mixed (byte, position in word) pairs, so byte order matters.
    idx = np.arange(rows.shape[0])
    k = idx - np.maximum.accumulate(np.where(begin, idx, 0))  # position of each byte inside its word
    with np.errstate(over="ignore"):
        contrib = mix64(flat.astype(np.uint64) ^ (k.astype(np.uint64) << np.uint64(8)) ^ np.uint64(seed))
        wh = np.add.reduceat(contrib[word], np.flatnonzero(begin[word]))  # (W,) one hash per word
    w_rows = rows[begin]
    parts: Parts = [(mix64(wh ^ np.uint64(1 << 40)), w_rows)]
    h = wh
    with np.errstate(over="ignore"):
        for n in range(2, n_max + 1):
            if len(w_rows) < n:
                break
            same = w_rows[n - 1:] == w_rows[: len(w_rows) - n + 1]
            h = (h[:-1] * _PRIME) ^ wh[n - 1:]
            parts.append((mix64(h[same] ^ np.uint64(n << 40)), w_rows[n - 1:][same]))
    return parts


def _as_binary(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """The texts as a binary array without nulls (a missing text is empty); bytes are never decoded."""
    arr = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    if not (pa.types.is_binary(arr.type) or pa.types.is_large_binary(arr.type)):
        arr = pc.cast(arr, pa.binary()) if not pa.types.is_large_string(arr.type) else pc.cast(arr, pa.large_binary())
    if arr.null_count:
        arr = pc.fill_null(arr, pa.scalar(b"", arr.type))
    return arr


def text_bytes(values: pa.Array | pa.ChunkedArray, *, max_bytes: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Each text's first ``max_bytes`` bytes, in order, as ids ``byte + 1`` (for sequence models).

    Returns ``(ids (M,) int64 in [0, 257), offsets (N + 1,) int64, truncated rows)``; a missing or empty text
    is the single id 0. Invalid UTF-8 is no problem: the ids are the bytes.
    """
    arr = _as_binary(values)
    offsets, data = _buffers(arr)
    starts, lengths = _truncate(offsets, max_bytes)
    truncated = int((np.diff(offsets) > max_bytes).sum())
    flat, rows = _flat_bytes(data, starts, lengths)
    n = len(arr)
    empty = lengths == 0
    out_offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.where(empty, 1, lengths), out=out_offsets[1:])
    out = np.zeros(int(out_offsets[-1]), dtype=np.int64)
    # byte j of row r goes to out_offsets[r] + j; an empty row keeps its single 0
    first = np.cumsum(lengths) - lengths  # index in ``flat`` of each row's first byte
    slots = np.repeat(out_offsets[:-1] - first, lengths) + np.arange(rows.shape[0])
    out[slots] = flat.astype(np.int64) + 1
    return out, out_offsets, truncated


def text_bag(values: pa.Array | pa.ChunkedArray, *, buckets: int, max_bytes: int, ngram_min: int,
             ngram_max: int, word_ngrams: int, seed: int, compiled: bool = True) -> tuple[np.ndarray, np.ndarray, int]:
    """The bag of hashed n-gram ids of each text.

    Returns ``(ids (M,) int64 in [1, buckets), offsets (N + 1,) int64, truncated rows)``. A missing or empty
    text becomes the single id 0. ``word_ngrams = 0`` turns word features off.

    With ``compiled`` (the default) and numba installed, one compiled loop computes the ids
    (:mod:`shoal.data.bag_kernel`); otherwise the numpy code below, the reference: both give the same ids. The
    numpy code hashes rows in blocks of ``BAG_BLOCK_ROWS``: the temporaries of a block (a few per n-gram order,
    8 bytes per byte of text each) then stay small enough to be reused from the heap instead of mapped fresh
    (a whole chunk at once pays page faults for every new temporary).
    """
    arr = _as_binary(values)
    if compiled and bag_kernel.kernel() is not None:
        offsets, data = _buffers(arr)
        starts, lengths = _truncate(offsets, max_bytes)
        ids, out_offsets = bag_kernel.bag_ids(data, starts, lengths, buckets=buckets, ngram_min=ngram_min,
                                              ngram_max=ngram_max, word_ngrams=word_ngrams, seed=seed,
                                              word_seed=seed ^ _WORD_SEED)
        return ids, out_offsets, int((np.diff(offsets) > max_bytes).sum())
    if len(arr) > BAG_BLOCK_ROWS:
        blocks = [text_bag(arr.slice(start, BAG_BLOCK_ROWS), buckets=buckets, max_bytes=max_bytes,
                           ngram_min=ngram_min, ngram_max=ngram_max, word_ngrams=word_ngrams, seed=seed,
                           compiled=False)
                  for start in range(0, len(arr), BAG_BLOCK_ROWS)]
        offsets = np.zeros(len(arr) + 1, dtype=np.int64)
        row, base = 0, 0
        for ids, off, _ in blocks:
            offsets[row + 1:row + len(off)] = off[1:] + base
            row, base = row + len(off) - 1, base + len(ids)
        return np.concatenate([b[0] for b in blocks]), offsets, sum(b[2] for b in blocks)
    n = len(arr)
    offsets, data = _buffers(arr)
    starts, lengths = _truncate(offsets, max_bytes)
    truncated = int((np.diff(offsets) > max_bytes).sum())
    flat, rows = _flat_bytes(data, starts, lengths)
    parts = _byte_ngrams(flat, rows, lengths, ngram_min, ngram_max, seed)
    if word_ngrams > 0:
        parts += _word_ngrams(flat, rows, word_ngrams, seed ^ _WORD_SEED)
    parts_h = [h for h, _ in parts]
    parts_r = [r for _, r in parts]
    # Lay each row's ids out contiguously without sorting: every part lists its ids in row order, so an id's
    # slot is its row's start + the ids of earlier parts in that row + its rank within this part's row.
    part_counts = [np.bincount(r, minlength=n) for r in parts_r]
    counts = np.sum(part_counts, axis=0) if part_counts else np.zeros(n, np.int64)
    empty = counts == 0  # a missing or empty text: the single reserved id 0
    out_offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.where(empty, 1, counts), out=out_offsets[1:])
    out = np.zeros(int(out_offsets[-1]), dtype=np.int64)
    filled = out_offsets[:-1].copy()
    for h, r, c in zip(parts_h, parts_r, part_counts, strict=True):
        first = np.zeros(n, dtype=np.int64)
        np.cumsum(c[:-1], out=first[1:])  # index in this part of each row's first id
        slots = filled[r] + (np.arange(len(r)) - first[r])
        out[slots] = (h % np.uint64(buckets - 1)).astype(np.int64) + 1
        filled += c
    return out, out_offsets, truncated
