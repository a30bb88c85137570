"""What every feature column shares: its identity, its saved form, and the bad cells it finds.

A feature column is one configured feature (:mod:`shoal.config`) turned into encoding code and the state it
learns from training data. The :class:`~shoal.data.encoder.Encoder` holds one column per feature and lays
their outputs out in a :class:`~shoal.data.batch.Batch`; each kind is one class (:mod:`.dense`, :mod:`.sparse`,
:mod:`.text`).

The saved form of a column (format 1) lists every kind's options, another kind's at the value it would have
by default, so the JSON of a bundle's encoder is the same whatever class wrote it::

    {"name": "age", "kind": "dense", "column": "age", "transform": "log1p", "buckets": 100000, ...,
     "mean_": 3.1, "std_": 1.2, "edges_": [], "seed": 2950537173}
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shoal.data.hashing import seed_for
from shoal.data.readers import BadRow, BadRowSink, Chunk

__all__ = ["FeatureColumn", "IdColumn", "Problems", "as_strings", "feature_seed"]

# Format 1 of a saved feature: the options of every kind, in this order, between "column" and "seed"; those
# of other kinds hold these values.
SAVED_OPTIONS: dict[str, Any] = {
    "transform": "standardize", "buckets": 100_000, "separator": None, "bins": 0, "tokens": "ngrams",
    "max_bytes": 1024, "ngram_min": 1, "ngram_max": 4, "word_ngrams": 2, "mean_": 0.0, "std_": 1.0, "edges_": [],
}


def feature_seed(name: str) -> int:
    """The hashing (and sampling) seed of a feature: from its name, so a renamed column keeps its ids."""
    return seed_for(name) & 0xFFFFFFFF


def is_id_list(typ: pa.DataType) -> bool:
    """Whether a column of type ``typ`` holds a list of ids per row (a JSON-lines array, a Parquet list) of
    strings or integers: read by a list feature (one with a ``separator``) as the cell ``"a|b"`` is."""
    if not (pa.types.is_list(typ) or pa.types.is_large_list(typ)):
        return False
    item = typ.value_type  # null: a chunk whose lists are all empty
    return pa.types.is_string(item) or pa.types.is_large_string(item) or pa.types.is_integer(item) \
        or pa.types.is_null(item)


def id_lists(col: pa.ChunkedArray | pa.Array, trim: bool = True) -> pa.Array:
    """A list column (:func:`is_id_list`) as one list<string> array, each id whitespace trimmed (``trim=False``:
    left to the caller); a null list is a missing cell, a null id is dropped as an empty one is."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    lists = pc.cast(arr, pa.large_list(pa.string()) if pa.types.is_large_list(arr.type) else pa.list_(pa.string()))
    return trimmed_items(lists) if trim else lists


def trimmed_items(lists: pa.Array) -> pa.Array:
    """A list<string> array with each item whitespace trimmed (a null list stays null)."""
    cls = pa.LargeListArray if pa.types.is_large_list(lists.type) else pa.ListArray
    return cls.from_arrays(lists.offsets, pc.utf8_trim_whitespace(lists.values), mask=lists.is_null())


def as_strings(col: pa.ChunkedArray | pa.Array, name: str = "?", trim: bool = True) -> pa.Array:
    """A column as one string array, whitespace trimmed (ids and labels read the same from any file format;
    ``trim=False``: left to the caller, e.g. once over several columns concatenated).
    A column of lists, structs or maps (Parquet, JSONL) is refused naming column ``name`` and its type."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if pa.types.is_nested(arr.type):
        from shoal.data.readers import BadInputError

        fix = ("give the feature a separator (separator: \"|\"): a list feature reads the list as it reads \"a|b\""
               if is_id_list(arr.type) else "join the list when writing the file")
        raise BadInputError(f"column {name!r} holds {arr.type}, where ids are expected: one string or integer per "
                            "row, or several ids joined into one string by the feature's separator (e.g. \"a|b\" "
                            f"with separator: \"|\"); {fix}")
    if not pa.types.is_string(arr.type):
        arr = pc.cast(arr, pa.string())
    return pc.utf8_trim_whitespace(arr) if trim else arr


@dataclass
class Problems:
    """Bad cells found in a chunk, in row order: the first problem of each bad row is reported."""

    rows: list[np.ndarray] = field(default_factory=list)
    cols: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    values: list[pa.Array] = field(default_factory=list)

    def add(self, mask: np.ndarray, column: str, reason: str, values: pa.Array) -> None:
        """Record ``reason`` for the rows where ``mask`` (N,) is True; ``values`` are the cells as read."""
        idx = np.flatnonzero(mask)
        if len(idx):
            self.rows.append(idx)
            self.cols.append(column)
            self.reasons.append(reason)
            self.values.append(values)

    def add_at(self, rows: list[int], column: str, reason: str, values: pa.Array) -> None:
        """Record ``reason`` for the rows at the indices ``rows`` (a reason of its own for a few rows, such as
        the path of a file that cannot be read)."""
        if rows:
            self.rows.append(np.asarray(rows, dtype=np.int64))
            self.cols.append(column)
            self.reasons.append(reason)
            self.values.append(values)

    def report(self, chunk: Chunk, sink: BadRowSink) -> np.ndarray:
        """Send each bad row to the sink once (first problem wins); return the mask of good rows."""
        good = np.ones(len(chunk), dtype=bool)
        found: dict[int, BadRow] = {}
        for idx, col, reason, values in zip(self.rows, self.cols, self.reasons, self.values, strict=True):
            for i in idx.tolist():
                if i not in found:
                    v = values[i].as_py()
                    found[i] = BadRow(chunk.file, int(chunk.lines[i]), col, None if v is None else str(v), reason)
        for i in sorted(found):
            sink.add(found[i])
            good[i] = False
        return good


class FeatureColumn(ABC):
    """One feature of one kind: where it reads (``column``), its hashing ``seed``, its saved form."""

    kind: ClassVar[str]

    def __init__(self, name: str, column: str, seed: int) -> None:
        self.name = name
        self.column = column
        self.seed = seed

    @abstractmethod
    def options(self) -> dict[str, Any]:
        """This kind's options and learned state, keyed as in the saved form."""

    @classmethod
    @abstractmethod
    def from_dict(cls, d: dict[str, Any]) -> Self:
        """The column a saved form describes (the other kinds' options in it are ignored)."""

    def to_dict(self) -> dict[str, Any]:
        """The saved form (plain JSON data): every kind's options, in format 1's order."""
        return {"name": self.name, "kind": self.kind, "column": self.column,
                **SAVED_OPTIONS, "edges_": [], **self.options(), "seed": self.seed}  # a fresh edges_ list

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, column={self.column!r}, {self.options()})"


class IdColumn(FeatureColumn):
    """A column encoded as ids for an embedding table of ``buckets`` rows: a jagged list of ids per row."""

    buckets: int

    @abstractmethod
    def ids(self, col: pa.ChunkedArray, one_per_row: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        """(ids (total,) int64, offsets (N+1,) int64, texts cut short) of a column's N cells.

        ``one_per_row`` is ``arange(N + 1)``: the offsets of one id per row, shared by the columns that have them.
        """
