"""The inputs of a raw ONNX export (:mod:`shoal.export.raw`) from raw rows: a pyarrow table or row dicts.

:func:`raw_feed` does the caller's part of the contract (``raw_inputs.json``) as the encoder does: numbers as
float32 (NaN for missing), ids trimmed and as UTF-8 bytes + lengths (packed by :mod:`.raw_bytes`), lists split on
their separator, texts as their UTF-8 bytes + lengths (cut to the feature's ``max_bytes``), images and sounds
decoded (bytes or base64, never a path: :func:`~shoal.export.raw_media.media_feed`). A few row dicts take a
plain-Python path (no pyarrow call), ~10x less time at batch 1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shoal.data.features import DenseColumn, Problems, as_strings
from shoal.data.features.base import id_lists, is_id_list
from shoal.data.features.dense import FLOAT32_MAX
from shoal.data.rows import rows_table
from shoal.export.raw_bytes import pack, refuse_long, trimmed_matrix
from shoal.export.raw_graph import per_object
from shoal.export.raw_ids import ANY_WIDTH_MAX
from shoal.export.raw_media import media_feed
from shoal.export.raw_text import text_cells_feed, text_feed
from shoal.export.raw_time import time_feed

__all__ = ["FAST_ROWS", "RowParts", "RowPlan", "raw_feed", "row_parts", "row_plan"]


def _table(rows: pa.Table | Sequence[Mapping[str, Any]]) -> pa.Table:
    return rows if isinstance(rows, pa.Table) else rows_table(list(rows))


def _column(table: pa.Table, column: str) -> pa.ChunkedArray:
    if table.schema.get_field_index(column) < 0:
        raise KeyError(f"the rows have no column {column!r} (the raw model reads {column!r}); send it, null for "
                       "missing")
    return table.column(column)


def _padded(ids: Sequence[bytes], width: int) -> np.ndarray:
    """Ids' bytes as one (k, width) uint8 array, each zero-padded (no id is longer than ``width``)."""
    return np.frombuffer(b"".join(b.ljust(width, b"\0") for b in ids), np.uint8).reshape(len(ids), width)


_ABSENT = object()
FAST_ROWS = 32  # row dicts up to this many are fed in plain Python (no pyarrow call: ~10x less time at batch 1)


def _dense_cell(c: Any) -> float | None:
    """A dense cell as a float (NaN for missing), or None when pyarrow's rules must decide (text, bool, a huge
    int, a value beyond float32: :func:`raw_feed` then names it)."""
    if c is None or c is _ABSENT:
        return float("nan")
    if type(c) is float or (type(c) is int and abs(c) <= 2**53):
        return c if -FLOAT32_MAX <= c <= FLOAT32_MAX or c != c else None
    return None


def _id_text(c: Any) -> str | None:
    """An id cell's text ("" for missing), or None for a cell pyarrow must cast (a float, a bool)."""
    if c is None or c is _ABSENT or (type(c) is float and c != c):  # NaN: a data frame's missing value
        return ""
    if type(c) is str:
        return c
    if type(c) is int:
        return str(c)
    return None


@dataclass(frozen=True)
class RowPlan:
    """What one row of a contract of numbers and single ids needs, worked out once per contract."""

    columns: frozenset[str]
    dense: tuple[tuple[str, str], ...]  # (column, value input)
    ids: tuple[tuple[str, str, str, str], ...]  # (column, bytes input, lengths input, feature)
    lists: tuple[tuple[str, str, str, str, str], ...]  # (column, bytes input, lengths input, counts input, separator)

    def cells(self, row: Mapping[str, Any]) -> tuple[list[Any], list[Any]]:
        """The row's dense cells and single-id cells, in plan order (the row has every column)."""
        return [row[c] for c, _ in self.dense], [row[c] for c, _, _, _ in self.ids]


_PLANS: dict[int, tuple[Any, Any]] = {}


def row_plan(contract: Mapping[str, Any]) -> RowPlan | None:
    """The one-row plan of ``contract``, or None when it has texts or media (the general path feeds them)."""
    return per_object(_PLANS, contract, _row_plan)


def _row_plan(contract: Mapping[str, Any]) -> RowPlan | None:
    features = contract["features"]
    if not all(f["kind"] in ("dense", "sparse") for f in features):
        return None
    ids = [f for f in features if f["kind"] == "sparse"]
    return RowPlan(frozenset(f["column"] for f in features),
                   tuple((f["column"], f["inputs"]["value"]) for f in features if f["kind"] == "dense"),
                   tuple((f["column"], f["inputs"]["bytes"], f["inputs"]["lengths"], f["name"])
                         for f in ids if f.get("separator") is None),
                   tuple((f["column"], f["inputs"]["bytes"], f["inputs"]["lengths"], f["inputs"]["counts"],
                          f["separator"]) for f in ids if f.get("separator") is not None))


@dataclass(frozen=True)
class RowParts:
    """One row of a :class:`RowPlan`, checked and encoded: what :func:`_one_row` and a bound call
    (:mod:`shoal.export.raw_bound`) write into their arrays."""

    values: list[float]  # the dense cells in plan order, NaN for missing
    ids: np.ndarray  # (F, W) uint8: the single ids in plan order, trimmed UTF-8, zero-padded to the inputs' width
    # (the export's max_bytes, else the longest id, at least 1); "" for missing
    lengths: list[int]
    lists: list[tuple[np.ndarray, np.ndarray, np.ndarray]]  # per list feature: bytes (k, W), lengths (k,), counts (1,)


def row_parts(row: Mapping[str, Any], plan: RowPlan, width: int | None) -> RowParts | None:
    """``row`` checked against ``plan`` and encoded, or None where :func:`_fast_feed` would say None (a missing
    column, a cell needing pyarrow's rules, an id too long: the general path names it)."""
    if not plan.columns <= row.keys():
        return None
    dense, ids = plan.cells(row)
    # the usual cells inline (a float in float32's range, a str), the rest through the checks
    values = [c if type(c) is float and -FLOAT32_MAX <= c <= FLOAT32_MAX else _dense_cell(c) for c in dense]
    texts = [c if type(c) is str else _id_text(c) for c in ids]
    if None in values or None in texts:
        return None
    try:
        encoded = [t.strip().encode("utf-8") for t in texts]  # type: ignore[union-attr]
    except UnicodeEncodeError:
        return None
    lengths = [len(b) for b in encoded]
    longest = max(lengths, default=0)
    if longest > (width if width is not None else ANY_WIDTH_MAX):
        return None  # _fast_feed names the feature
    lists: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for column, _, _, _, separator in plan.lists:
        text = _id_text(row[column])
        if text is None:
            return None
        try:
            kept = [t.encode("utf-8") for t in (t.strip() for t in text.split(separator)) if t] if text else []
        except UnicodeEncodeError:
            return None
        most = max(map(len, kept), default=0)
        if most > (width if width is not None else ANY_WIDTH_MAX):
            return None
        w = width if width is not None else max(most, 1)
        lists.append((_padded(kept, w), np.array([len(x) for x in kept], np.int64), np.array([len(kept)], np.int64)))
    w = width if width is not None else max(longest, 1)
    return RowParts(values, _padded(encoded, w), lengths, lists)  # type: ignore[arg-type]


def _one_row(row: Mapping[str, Any], plan: RowPlan, width: int | None) -> dict[str, np.ndarray] | None:
    """:func:`_fast_feed` of one row of numbers and single ids (a request's usual row): one array for the numbers
    and one for the ids' bytes, the inputs being views of them; None where :func:`_fast_feed` would say None."""
    parts = row_parts(row, plan, width)
    if parts is None:
        return None
    feed: dict[str, np.ndarray] = {}
    block = np.array(parts.values, np.float32)
    for k, (_, name) in enumerate(plan.dense):
        feed[name] = block[k:k + 1]
    if plan.ids:
        data = parts.ids[:, None, :]  # (F, 1, W): each feature's input a (1, W) view
        lengths = np.array(parts.lengths, np.int64)
        for k, (_, b, ln, _) in enumerate(plan.ids):
            feed[b], feed[ln] = data[k], lengths[k:k + 1]
    for (_, b, ln, counts, _), (data_, lengths_, counts_) in zip(plan.lists, parts.lists, strict=True):
        feed[b], feed[ln], feed[counts] = data_, lengths_, counts_
    return feed


def _fast_feed(rows: Sequence[Mapping[str, Any]], contract: Mapping[str, Any]) -> dict[str, np.ndarray] | None:
    """:func:`raw_feed` of a few row dicts without pyarrow, or None when a cell needs pyarrow's rules (text in a
    dense column, a float or bool id, a column no row has, a value to refuse). ``str.strip()`` trims exactly the
    characters ``utf8_trim_whitespace`` does (the 29 code points Python calls whitespace; the tests check it), and
    an int id's text is its ``str``, as pyarrow's cast writes it. The dense values, and the single ids, of every
    feature go in one array each, the inputs being views of its rows: a few numpy calls per request, not a few
    per feature."""
    n = len(rows)
    width = contract.get("max_bytes")
    plan = row_plan(contract) if n == 1 else None
    if plan is not None:
        one = _one_row(rows[0], plan, width)
        if one is not None:
            return one
    feed: dict[str, np.ndarray] = {}
    dense_names: list[str] = []
    dense_values: list[float] = []
    single_names: list[tuple[str, str, str]] = []  # (feature, bytes input, lengths input)
    single_ids: list[bytes] = []
    for f in contract["features"]:
        column = f["column"]
        cells = [r.get(column, _ABSENT) for r in rows]
        if all(c is _ABSENT for c in cells):
            return None
        names = f["inputs"]
        kind = f["kind"]
        if kind == "dense":
            for c in cells:
                v = _dense_cell(c)
                if v is None:
                    return None
                dense_values.append(v)
            dense_names.append(names["value"])
            continue
        if kind == "time":  # read by the encoder's reader, on a table: the general path
            return None
        if kind in ("image", "audio"):
            feed |= media_feed(f, [None if c is _ABSENT else c for c in cells])
            continue
        if kind == "text":
            packed = text_cells_feed([None if c is _ABSENT else c for c in cells], int(f["max_bytes"]))
            if packed is None:
                return None
            feed[names["bytes"]], feed[names["lengths"]] = packed
            continue
        separator = f.get("separator")
        try:
            if separator is None:
                for c in cells:
                    text = _id_text(c)
                    if text is None:
                        return None
                    single_ids.append(text.strip().encode("utf-8"))
                single_names.append((f["name"], names["bytes"], names["lengths"]))
                continue
            ids: list[bytes] = []
            counts: list[int] = []
            for c in cells:
                text = _id_text(c)
                if text is None:
                    return None
                kept = [t.encode("utf-8") for t in (t.strip() for t in text.split(separator)) if t] if text else []
                ids += kept
                counts.append(len(kept))
        except UnicodeEncodeError:  # a lone surrogate: pyarrow refuses it with its own message
            return None
        offsets = np.zeros(len(ids) + 1, np.int64)
        np.cumsum([len(b) for b in ids], out=offsets[1:])
        feed[names["bytes"]], feed[names["lengths"]] = pack(np.frombuffer(b"".join(ids), np.uint8), offsets, width,
                                                             f["name"])
        feed[names["counts"]] = np.array(counts, np.int64)
    if dense_names:
        block = np.array(dense_values, np.float32).reshape(len(dense_names), n)
        for k, name in enumerate(dense_names):
            feed[name] = block[k]
    if single_names:
        lengths = np.array([len(b) for b in single_ids], np.int64)
        refuse_long(lengths, width, [name for name, _, _ in single_names], n)
        w = width if width is not None else max(int(lengths.max(initial=0)), 1)
        data = _padded(single_ids, w)
        for k, (_, b, ln) in enumerate(single_names):
            feed[b], feed[ln] = data[k * n:(k + 1) * n], lengths[k * n:(k + 1) * n]
    return feed


def raw_feed(rows: pa.Table | Sequence[Mapping[str, Any]], contract: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The raw model's inputs for ``rows`` (a pyarrow table, or a list of row dicts keyed by column name).

    Does the caller's part of the contract as the encoder does: dense cells as numbers (text parsed with the
    feature's decimal, thousands and symbol marks; a bad or infinite value raises ValueError, where the encoder
    would leave the row out; under ``not_a_number: missing`` a bad one reads as missing), ids as trimmed strings, lists
    split on the separator with empty ids dropped, texts as their UTF-8 bytes (not trimmed), nulls as empty texts,
    images and sounds decoded from their bytes or base64 (a missing, undecodable or path cell raises ValueError).
    """
    if not isinstance(rows, pa.Table) and len(rows) <= FAST_ROWS:
        fast = _fast_feed(rows, contract)
        if fast is not None:
            return fast
    table = _table(rows)
    names_ = table.column_names
    by_name = dict(zip(names_, table.columns, strict=True)) if len(set(names_)) == len(names_) else {}
    feed: dict[str, np.ndarray] = {}
    singles: list[tuple[Mapping[str, Any], pa.ChunkedArray]] = []
    numbers: list[tuple[Mapping[str, Any], pa.ChunkedArray]] = []
    width = contract.get("max_bytes")
    for f in contract["features"]:
        col = by_name[f["column"]] if f["column"] in by_name else _column(table, f["column"])
        names = f["inputs"]
        if f["kind"] in ("image", "audio"):  # decoded here (the caller's part), resized / log-mel in the graph
            feed |= media_feed(f, col.to_pylist())
            continue
        if f["kind"] == "text":  # the bytes as they are, cut to the feature's max_bytes; null: empty
            feed[names["bytes"]], feed[names["lengths"]] = text_feed(col, int(f["max_bytes"]))
            continue
        if f["kind"] == "time":  # read as the encoder reads it: instants (and the zone's offsets)
            feed |= time_feed(f, col)
            continue
        if f["kind"] == "dense":
            if pa.types.is_null(col.type):  # every cell missing (row dicts with None only)
                feed[names["value"]] = np.full(len(col), np.nan, np.float32)
                continue
            if pa.types.is_floating(col.type) or pa.types.is_integer(col.type):  # numbers: checked as one block
                numbers.append((f, col))
                continue
            problems = Problems()
            values = DenseColumn.from_dict(f).read(pa.table({f["column"]: col}), problems)  # its number format
            if problems.rows:
                bad = int(problems.rows[0][0])
                raise ValueError(f"row {bad}, column {f['column']!r}: {problems.reasons[0]} "
                                 f"(value {problems.values[0][bad].as_py()!r})")
            feed[names["value"]] = values.astype(np.float32)
            continue
        if f.get("separator") is None:  # one id per row: all such features trimmed and packed at once, below
            singles.append((f, col))
            continue
        feed[names["bytes"]], feed[names["lengths"]], feed[names["counts"]] = _split_ids(col, f, width)
    if numbers:
        _numbers(feed, numbers, table.num_rows)
    if singles:
        _single_ids(feed, singles, width, table.num_rows)
    return feed


def _split_ids(col: pa.ChunkedArray, f: Mapping[str, Any], width: int | None) -> tuple[np.ndarray, ...]:
    """A list feature's (bytes (M, W), lengths (M,), counts (N,)): each cell split on the separator, each id
    trimmed, empty ids dropped (trimming the cell first would change nothing: what it cuts is trimmed or
    dropped)."""
    if is_id_list(col.type):  # a JSON-lines / Parquet list column: its ids as they are (a null id: an empty one)
        lists = id_lists(col, trim=False)  # trimmed_matrix trims
        flat = pc.fill_null(pc.list_flatten(lists), "")
    else:
        lists = pc.split_pattern(as_strings(col, f["column"], trim=False), f["separator"])  # a null cell: null list
        flat = pc.list_flatten(lists)  # (M,) every id, row after row
    data, lengths = trimmed_matrix(flat, width, [f["name"]], len(flat))
    counts = np.diff(lists.offsets.to_numpy()).astype(np.int64)  # (N,) ids per row, empty ones included
    empty = lengths == 0
    if empty.any():
        parent = pc.list_parent_indices(lists).to_numpy()
        counts -= np.bincount(parent[empty], minlength=len(counts))
        data, lengths = data[~empty], lengths[~empty]
    return data, lengths, counts


def _numbers(feed: dict[str, np.ndarray], numbers: list[tuple[Mapping[str, Any], pa.ChunkedArray]], n: int) -> None:
    """The values of every dense feature read as numbers, as one (F, N) block checked at once (an infinite value,
    or one beyond float32's range, raises ValueError naming the first such feature in the contract's order and
    its first such row); each feature's input is a view of its row of the block."""
    block = np.empty((len(numbers), n), np.float64)
    for k, (_, col) in enumerate(numbers):  # floats as they are (nulls: NaN); integers cast, refusing a lossy one
        block[k] = col.to_numpy() if pa.types.is_floating(col.type) else pc.cast(col, pa.float64()).to_numpy()
    with np.errstate(invalid="ignore"):
        bad = np.abs(block) > FLOAT32_MAX  # infinite too; NaN (missing) is not
    if bad.any():
        k, row = (int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"row {row}, column {numbers[k][0]['column']!r}: {float(block[k, row])!r} is infinite or "
                         "beyond float32's range (dense feature)")
    values = block.astype(np.float32)
    for k, (f, _) in enumerate(numbers):
        feed[f["inputs"]["value"]] = values[k]


def _single_ids(feed: dict[str, np.ndarray], singles: list[tuple[Mapping[str, Any], pa.ChunkedArray]],
                width: int | None, n: int) -> None:
    """The bytes and lengths of every one-id-per-row feature, trimmed and packed as one array (one pyarrow and
    one numpy pass, not one per feature); each feature's inputs are views of its rows. An id too long is
    named by its feature, the first in the contract's order."""
    string = pa.string()  # a string column's chunks as they are, any other through as_strings (cast or refused)
    texts = [c for f, col in singles for c in (col.chunks if col.type == string else
                                               [as_strings(col, f["column"], trim=False)])]
    text = pa.concat_arrays(texts) if len(texts) > 1 else texts[0] if texts else pa.array([], string)
    data, lengths = trimmed_matrix(text, width, [f["name"] for f, _ in singles], n)
    for k, (f, _) in enumerate(singles):
        names = f["inputs"]
        feed[names["bytes"]], feed[names["lengths"]] = data[k * n:(k + 1) * n], lengths[k * n:(k + 1) * n]
