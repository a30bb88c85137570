"""Ids as the raw graph's bytes inputs (:mod:`shoal.export.raw`): each id's UTF-8 bytes left-aligned in a
zero-padded (n, W) uint8 matrix, beside its length::

    ids  ["ab", None, " é "]   ->   bytes [[97, 98,   0, 0],      lengths [2, 0, 2]
                                           [ 0,  0,   0, 0],
                                           [195, 169, 0, 0]]      (W = 4; "é" trimmed, 2 bytes)

:func:`bytes_matrix` packs a string array as it is; :func:`trimmed_matrix` trims each id first, as ``str.strip()``
and ``utf8_trim_whitespace`` do. Both take one compiled pass over the bytes where numba is available
(:mod:`shoal.jit`) and the ids are many (:data:`COMPILED_FROM`), the trimming in the same pass: ASCII whitespace
is cut there, and a batch with an id that starts or ends with any other byte (a multi-byte character, maybe
whitespace such as U+3000) is trimmed by pyarrow instead. Otherwise numpy and pyarrow, the same bytes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shoal.export.raw_ids import ANY_WIDTH_MAX
from shoal.jit import lazy_njit

__all__ = ["COMPILED_FROM", "bytes_matrix", "pack", "refuse_long", "trimmed_matrix"]

# from this many ids the compiled pass is used: below, numpy is about as fast, and a server answering small
# requests never imports numba (~1 s, once per process)
COMPILED_FROM = 64

# bytes an id may start with (first) or end with (last) when str.strip() would cut something: the ASCII
# whitespace, and any byte of a multi-byte character (some are whitespace: U+0085, U+00A0, U+3000, ...)
_SPACE = np.zeros(256, bool)
_SPACE[[9, 10, 11, 12, 13, 28, 29, 30, 31, 32]] = True
_SPACE[0x80:] = True


def refuse_long(lengths: np.ndarray, width: int | None, names: Sequence[str], n: int) -> None:
    """A ValueError naming the first feature with an id over ``width`` bytes (the any-width form, ``width``
    None: over :data:`~shoal.export.raw_ids.ANY_WIDTH_MAX`); ``lengths`` holds ``n`` ids of each feature of ``names``
    in turn."""
    limit = width if width is not None else ANY_WIDTH_MAX
    over = np.flatnonzero(lengths > limit)
    if len(over):
        k = int(over[0]) // n
        fix = "re-export with a larger max_bytes" if width is not None else "its id is too long to be hashed here"
        raise ValueError(f"an id of {names[k]!r} is {int(lengths[k * n:(k + 1) * n].max())} bytes long; this raw "
                         f"export reads at most {limit} bytes per id: {fix}")


def _buffers(text: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, np.ndarray, np.ndarray, np.ndarray | None]:
    """(the array as one pa.string() array, its bytes, its offsets (n + 1,) int64, its validity (n,) bool or None
    when it has no null)."""
    arr = text.combine_chunks() if isinstance(text, pa.ChunkedArray) else text
    if pa.types.is_large_string(arr.type):
        arr = pc.cast(arr, pa.string())
    n = len(arr)
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32, count=n + 1 + arr.offset)[arr.offset:].astype(np.int64)
    buf = arr.buffers()[2]
    data = np.frombuffer(buf, dtype=np.uint8) if buf is not None else np.zeros(0, np.uint8)
    valid = None
    if arr.null_count:  # a null's slot may hold bytes: its length is 0 whatever the offsets say
        bits = np.frombuffer(arr.buffers()[0], np.uint8)
        valid = np.unpackbits(bits, bitorder="little")[arr.offset: arr.offset + n].astype(bool)
    return arr, data, offsets, valid


def bytes_matrix(text: pa.Array | pa.ChunkedArray, width: int | None, name: str,
                 min_width: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(bytes (n, W) uint8, lengths (n,) int64) of a string array; nulls and "" have length 0 (missing). W is
    ``width``, else the longest id's length but at least ``min_width``. An id over ``width`` bytes: ValueError
    naming feature ``name``."""
    _, data, offsets, valid = _buffers(text)
    return pack(data, offsets, width, name, valid, min_width)


def trimmed_matrix(text: pa.Array | pa.ChunkedArray, width: int | None, names: Sequence[str], n: int,
                   min_width: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """:func:`bytes_matrix` of the ids trimmed as ``str.strip()`` trims; ``text`` holds ``n`` ids of each feature
    of ``names`` in turn, the one an id over ``width`` bytes is named by."""
    arr, data, offsets, valid = _buffers(text)
    compiled = _trim_kernel() if len(arr) >= COMPILED_FROM else None
    if compiled is None:
        return _checked(*bytes_matrix(_trimmed(arr), None, "", width or min_width), width, names, n)
    count = len(offsets) - 1
    w = width if width is not None else max(int(np.diff(offsets).max(initial=0)), min_width)  # trimmed: at most
    out = np.zeros((count, w), np.uint8)
    lengths = np.zeros(count, np.int64)
    if not compiled(data, offsets, np.ones(count, np.bool_) if valid is None else valid, out, lengths):
        return _checked(*bytes_matrix(pc.utf8_trim_whitespace(arr), None, "", width or min_width), width, names, n)
    if width is None and count:  # the any-width form: as wide as the longest trimmed id
        out = np.ascontiguousarray(out[:, :max(int(lengths.max()), min_width)])
    return _checked(out, lengths, width, names, n)


def _checked(out: np.ndarray, lengths: np.ndarray, width: int | None, names: Sequence[str],
             n: int) -> tuple[np.ndarray, np.ndarray]:
    refuse_long(lengths, width, names, max(n, 1))
    return out, lengths


def _trimmed(text: pa.Array) -> pa.Array:
    """``utf8_trim_whitespace(text)``, without its pass over every id when no id starts or ends with a byte of
    whitespace (:data:`_SPACE`): the usual ids."""
    offsets = np.frombuffer(text.buffers()[1], np.int32, count=len(text) + 1, offset=4 * text.offset)
    buf = text.buffers()[2]
    if buf is None:
        return text
    data = np.frombuffer(buf, np.uint8)
    starts, ends = offsets[:-1], offsets[1:]
    some = ends > starts
    if _SPACE[data[starts[some]]].any() or _SPACE[data[ends[some] - 1]].any():
        return pc.utf8_trim_whitespace(text)
    return text


def pack(data: np.ndarray, offsets: np.ndarray, width: int | None, name: str,
         valid: np.ndarray | None = None, min_width: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Ids as bytes ``data[offsets[i]:offsets[i + 1]]`` (length 0 where ``valid`` is False) -> (bytes (n, W)
    uint8 padded with 0, lengths (n,) int64). The work is the ids' bytes, not n x W."""
    n = len(offsets) - 1
    spans = np.diff(offsets)
    lengths = spans if valid is None else np.where(valid, spans, 0)
    refuse_long(lengths, width, [name], max(n, 1))
    longest = int(lengths.max(initial=0))
    w = width if width is not None else max(longest, min_width)
    out = np.zeros((n, w), np.uint8)
    if n == 1:  # serving one row: a copy, no gather
        out[0, :longest] = data[offsets[0]: offsets[0] + longest]
        return out, lengths
    total = int(lengths.sum())
    if not total:
        return out, lengths
    compiled = _copy_kernel() if n >= COMPILED_FROM else None
    if compiled is not None:  # one pass over the ids' bytes (numpy below: ~5 index arrays of every byte)
        compiled(data, offsets[:-1], lengths, out)
        return out, lengths
    if total == int(offsets[-1] - offsets[0]):  # the ids' bytes are one run (no null holds bytes): scatter it
        shift = np.arange(0, n * w, w, dtype=np.int64) - (offsets[:-1] - offsets[0])  # row start - id start
        out.reshape(-1)[np.arange(total) + np.repeat(shift, lengths)] = data[offsets[0]: offsets[-1]]
        return out, lengths
    ends = np.cumsum(lengths)
    within = np.arange(total) - np.repeat(ends - lengths, lengths)  # each byte's place in its id
    row = np.repeat(np.arange(n), lengths)
    out.reshape(-1)[row * w + within] = data[offsets[:-1][row] + within]
    return out, lengths


# -- the compiled loops (numba) -------------------------------------------------------------------------------------
def _copy_rows(data: np.ndarray, starts: np.ndarray, lengths: np.ndarray, out: np.ndarray) -> None:
    """``out[r, :lengths[r]] = data[starts[r]:starts[r] + lengths[r]]`` for every row r."""
    for r in range(starts.shape[0]):
        s = starts[r]
        for j in range(lengths[r]):
            out[r, j] = data[s + j]


def _is_space(b: int) -> bool:
    """An ASCII byte ``str.strip()`` cuts: ``\\t\\n\\v\\f\\r``, ``\\x1c``-``\\x1f``, the space."""
    return 9 <= b <= 13 or 28 <= b <= 32


def _trim_rows(data: np.ndarray, offsets: np.ndarray, valid: np.ndarray, out: np.ndarray,
               lengths: np.ndarray) -> bool:
    """Each valid id ``data[offsets[r]:offsets[r + 1]]`` with its ASCII whitespace cut at both ends, into
    ``out[r]`` (at most its width) and ``lengths[r]``; False (and the work left undone) as soon as an id, so cut,
    starts or ends with a byte of a multi-byte character: the caller trims those by the Unicode rules."""
    width = out.shape[1]
    for r in range(offsets.shape[0] - 1):
        if not valid[r]:
            continue
        s, e = offsets[r], offsets[r + 1]
        while s < e and _is_space(data[s]):
            s += 1
        while e > s and _is_space(data[e - 1]):
            e -= 1
        if e > s and (data[s] >= 0x80 or data[e - 1] >= 0x80):
            return False
        lengths[r] = e - s
        for j in range(min(e - s, width)):
            out[r, j] = data[s + j]
    return True


_copy_kernel = lazy_njit(globals(), "_copy_rows")
_trim_kernel = lazy_njit(globals(), "_trim_rows", helpers=("_is_space",))
