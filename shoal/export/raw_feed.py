"""The inputs of a raw ONNX export (:mod:`shoal.export.raw`) from raw rows: a pyarrow table or row dicts.

:func:`raw_feed` does the caller's part of the contract (``raw_inputs.json``) as the encoder does: numbers as
float32 (NaN for missing), ids trimmed and as UTF-8 bytes + lengths, lists split on their separator, texts as
their UTF-8 bytes + lengths (cut to the feature's ``max_bytes``), images and sounds decoded (bytes or base64, never
a path: :func:`~shoal.export.raw_media.media_feed`). A few row dicts take a plain-Python path (no
pyarrow call), ~10x less time at batch 1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shoal.data.features import DenseColumn, Problems, as_strings
from shoal.data.features.dense import FLOAT32_MAX
from shoal.export.raw_media import media_feed
from shoal.export.raw_text import text_cells_feed, text_feed

__all__ = ["FAST_ROWS", "raw_feed"]


def _table(rows: pa.Table | Sequence[Mapping[str, Any]]) -> pa.Table:
    return rows if isinstance(rows, pa.Table) else pa.Table.from_pylist(list(rows))


def _column(table: pa.Table, column: str) -> pa.ChunkedArray:
    if column not in table.column_names:
        raise KeyError(f"the rows have no column {column!r} (the raw model reads {column!r}); send it, null for "
                       "missing")
    return table.column(column)


def _bytes_matrix(text: pa.Array, width: int | None, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(bytes (n, W) uint8, lengths (n,) int64) of a string array; nulls and "" have length 0 (missing)."""
    arr = pc.fill_null(text, "") if text.null_count else text
    if pa.types.is_large_string(arr.type):
        arr = pc.cast(arr, pa.string())
    n = len(arr)
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32, count=n + 1 + arr.offset)[arr.offset:].astype(np.int64)
    buf = arr.buffers()[2]
    data = np.frombuffer(buf, dtype=np.uint8) if buf is not None else np.zeros(0, np.uint8)
    return _pack(data, offsets, width, name)


def _pack(data: np.ndarray, offsets: np.ndarray, width: int | None, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Ids as bytes ``data[offsets[i]:offsets[i + 1]]`` -> (bytes (n, W) uint8 padded with 0, lengths (n,) int64)."""
    n = len(offsets) - 1
    lengths = np.diff(offsets)
    longest = int(lengths.max(initial=0))
    if width is not None and longest > width:
        raise ValueError(f"an id of {name!r} is {longest} bytes long; this raw export reads at most {width} bytes "
                         "per id: re-export with a larger max_bytes")
    w = width if width is not None else max(longest, 1)
    if n == 1:  # serving one row: a copy, no gather
        out = np.zeros((1, w), np.uint8)
        out[0, :longest] = data[offsets[0]: offsets[1]]
        return out, lengths
    pos = np.arange(w)
    inside = pos[None, :] < lengths[:, None]
    index = np.where(inside, offsets[:-1, None] + pos[None, :], 0)
    out = np.where(inside, data[index] if len(data) else 0, 0).astype(np.uint8)
    return out, lengths


_ABSENT = object()
FAST_ROWS = 32  # row dicts up to this many are fed in plain Python (no pyarrow call: ~10x less time at batch 1)


def _fast_feed(rows: Sequence[Mapping[str, Any]], contract: Mapping[str, Any]) -> dict[str, np.ndarray] | None:
    """:func:`raw_feed` of a few row dicts without pyarrow, or None when a cell needs pyarrow's rules (text in a
    dense column, a float or bool id, a column no row has, a value to refuse). ``str.strip()`` trims exactly the
    characters ``utf8_trim_whitespace`` does (the 29 code points Python calls whitespace; the tests check it), and
    an int id's text is its ``str``, as pyarrow's cast writes it."""
    feed: dict[str, np.ndarray] = {}
    width = contract.get("max_bytes")
    for f in contract["features"]:
        column = f["column"]
        cells = [r.get(column, _ABSENT) for r in rows]
        if all(c is _ABSENT for c in cells):
            return None
        names = f["inputs"]
        if f["kind"] in ("image", "audio"):
            feed |= media_feed(f, [None if c is _ABSENT else c for c in cells])
            continue
        if f["kind"] == "text":
            packed = text_cells_feed([None if c is _ABSENT else c for c in cells], int(f["max_bytes"]))
            if packed is None:
                return None
            feed[names["bytes"]], feed[names["lengths"]] = packed
            continue
        if f["kind"] == "dense":
            values = np.empty(len(cells), np.float64)
            for i, c in enumerate(cells):
                if c is None or c is _ABSENT:
                    values[i] = np.nan
                elif type(c) is float or (type(c) is int and abs(c) <= 2**53):
                    values[i] = c
                else:
                    return None
            if (np.abs(values) > FLOAT32_MAX).any():  # infinite or beyond float32: raw_feed's error says which
                return None
            feed[names["value"]] = values.astype(np.float32)
            continue
        ids: list[bytes] = []
        counts: list[int] = []
        separator = f.get("separator")
        for c in cells:
            if c is None or c is _ABSENT:
                text = ""
            elif type(c) is str:
                text = c
            elif type(c) is int:
                text = str(c)
            else:
                return None
            try:
                if separator is None:
                    ids.append(text.strip().encode("utf-8"))
                else:
                    items = [t.strip() for t in text.split(separator)] if text else []
                    kept = [t.encode("utf-8") for t in items if t]
                    ids += kept
                    counts.append(len(kept))
            except UnicodeEncodeError:  # a lone surrogate: pyarrow refuses it with its own message
                return None
        offsets = np.zeros(len(ids) + 1, np.int64)
        np.cumsum([len(b) for b in ids], out=offsets[1:])
        feed[names["bytes"]], feed[names["lengths"]] = _pack(np.frombuffer(b"".join(ids), np.uint8), offsets, width,
                                                             f["name"])
        if separator is not None:
            feed[names["counts"]] = np.array(counts, np.int64)
    return feed


def raw_feed(rows: pa.Table | Sequence[Mapping[str, Any]], contract: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The raw model's inputs for ``rows`` (a pyarrow table, or a list of row dicts keyed by column name).

    Does the caller's part of the contract as the encoder does: dense cells as numbers (text parsed; a bad or
    infinite value raises ValueError, where the encoder would leave the row out), ids as trimmed strings, lists
    split on the separator with empty ids dropped, texts as their UTF-8 bytes (not trimmed), nulls as empty texts,
    images and sounds decoded from their bytes or base64 (a missing, undecodable or path cell raises ValueError).
    """
    if not isinstance(rows, pa.Table) and len(rows) <= FAST_ROWS:
        fast = _fast_feed(rows, contract)
        if fast is not None:
            return fast
    table = _table(rows)
    feed: dict[str, np.ndarray] = {}
    width = contract.get("max_bytes")
    for f in contract["features"]:
        col = _column(table, f["column"])
        names = f["inputs"]
        if f["kind"] in ("image", "audio"):  # decoded here (the caller's part), resized / log-mel in the graph
            feed |= media_feed(f, col.to_pylist())
            continue
        if f["kind"] == "text":  # the bytes as they are, cut to the feature's max_bytes; null: empty
            feed[names["bytes"]], feed[names["lengths"]] = text_feed(col, int(f["max_bytes"]))
            continue
        if f["kind"] == "dense":
            if pa.types.is_null(col.type):  # every cell missing (row dicts with None only)
                feed[names["value"]] = np.full(len(col), np.nan, np.float32)
                continue
            if pa.types.is_floating(col.type) or pa.types.is_integer(col.type):  # numbers: no parsing to do
                values = np.asarray(pc.cast(col, pa.float64()).to_numpy(), dtype=np.float64)
                if not np.isfinite(values[~np.isnan(values)]).all() or (np.abs(values) > FLOAT32_MAX).any():
                    bad = int(np.flatnonzero(np.isinf(values) | (np.abs(values) > FLOAT32_MAX))[0])
                    raise ValueError(f"row {bad}, column {f['column']!r}: {values[bad]!r} is infinite or beyond "
                                     "float32's range (dense feature)")
                feed[names["value"]] = values.astype(np.float32)
                continue
            problems = Problems()
            values = DenseColumn(f["name"], f["column"], 0).read(pa.table({f["column"]: col}), problems)
            if problems.rows:
                bad = int(problems.rows[0][0])
                raise ValueError(f"row {bad}, column {f['column']!r}: {problems.reasons[0]} "
                                 f"(value {problems.values[0][bad].as_py()!r})")
            feed[names["value"]] = values.astype(np.float32)
            continue
        text = as_strings(col, f["column"])
        if f.get("separator") is not None:
            lists = pc.split_pattern(text, f["separator"])
            flat = pc.utf8_trim_whitespace(pc.list_flatten(lists))
            keep = np.asarray(pc.not_equal(flat, "").to_numpy(zero_copy_only=False), dtype=bool)
            parent = pc.list_parent_indices(lists).to_numpy()[keep]
            feed[names["counts"]] = np.bincount(parent, minlength=len(text)).astype(np.int64)
            text = flat.filter(pa.array(keep))
        feed[names["bytes"]], feed[names["lengths"]] = _bytes_matrix(text, width, f["name"])
    return feed
