"""Sparse features: an id per row, or a list of ids in one cell, hashed into ``buckets`` embedding rows, or
looked up in an exact vocabulary (``encoding: vocab``).

Hashing: an id hashes (:mod:`shoal.data.hashing`, seeded per feature) to one of the rows 1..buckets-1; id 0 is
reserved for a missing value. An id never seen in training is normal: it hashes to some row like any other.

Vocabulary (:mod:`.vocab`): the V ids of the training file seen at least ``min_count`` times (at most
``max_size``, the most frequent) get the rows 1..V, most frequent first (ties by value); every other id shares
the out-of-vocabulary row V+1, and ``buckets`` is V+2. Two ids never share a row by chance.

With a ``separator``, a cell holds a list (``"a|b|c"``); an empty or missing list is the one id 0::

    cells        "a|b"   ""    "c"          ids      [h(a), h(b), 0, h(c)]
                                            offsets  [0, 2, 3, 4]

A list column of a JSON-lines or Parquet file (``["a", "b"]``, strings or integers) is read by such a feature as
the cell ``"a|b"`` is, whatever its separator: ids 17 and "17" are the same id.
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shoal.config import SparseFeature
from shoal.data.features.base import IdColumn, as_strings, feature_seed, id_lists, is_id_list, trimmed_items
from shoal.data.features.vocab import Vocabulary, VocabularyCounter
from shoal.data.hashing import bucketize, hash_strings

__all__ = ["SparseColumn"]


class SparseColumn(IdColumn):
    """A sparse feature: one id per row, or (``separator``) a list of them; hashed, or (``vocab``) looked up in
    the training file's vocabulary (learned by :meth:`learn` from a :meth:`counter` fed in the first pass)."""

    kind = "sparse"

    def __init__(self, name: str, column: str, seed: int, buckets: int, separator: str | None = None,
                 vocab: Vocabulary | None = None) -> None:
        super().__init__(name, column, seed)
        self.buckets = buckets  # vocab: rows assumed until the vocabulary is learned, then V + 2
        self.separator = separator
        self.vocab = vocab  # None: hashed ids

    @classmethod
    def from_config(cls, f: SparseFeature) -> SparseColumn:
        vocab = Vocabulary(min_count=f.min_count, max_size=f.max_size) if f.encoding == "vocab" else None
        buckets = f.max_size + 2 if vocab is not None and f.max_size is not None else f.buckets
        return cls(f.name, f.source, feature_seed(f.name), buckets=buckets, separator=f.separator, vocab=vocab)

    @property
    def needs_fit(self) -> bool:
        """Whether the ids come from a vocabulary of the training data (``encoding: vocab``)."""
        return self.vocab is not None

    def values(self, col: pa.ChunkedArray) -> pa.Array:
        """The ids of a column as strings, missing and empty ones dropped (a list cell gives each of its ids)."""
        text = pc.list_flatten(self._lists(col)) if self.separator is not None else as_strings(col, self.column)
        return text.filter(pc.fill_null(pc.not_equal(text, ""), False))

    def _lists(self, col: pa.ChunkedArray | pa.Array) -> pa.Array:
        """A list feature's cells as lists of trimmed id strings: a list column as it is, text split on the
        separator."""
        if is_id_list(col.type):
            return id_lists(col)
        assert self.separator is not None
        return trimmed_items(pc.split_pattern(as_strings(col, self.column, trim=False), self.separator))

    def counter(self) -> VocabularyCounter:
        """An empty count of this feature's ids, for :meth:`learn`."""
        return VocabularyCounter()

    def learn(self, counts: VocabularyCounter) -> None:
        """Build the vocabulary from the training file's id counts; ``buckets`` becomes V + 2."""
        assert self.vocab is not None, f"feature {self.name!r} hashes its ids; it learns no vocabulary"
        self.vocab = self.vocab.built(counts)
        self.buckets = self.vocab.buckets

    def _lookup(self, present: pa.Array) -> np.ndarray:
        """Row ids (n,) int64 of non-missing id strings: hashed into 1..buckets-1, or the vocabulary's 1..V+1."""
        if self.vocab is not None:
            return self.vocab.lookup(present)
        return bucketize(hash_strings(present, self.seed), self.buckets)

    def ids(self, col: pa.ChunkedArray, one_per_row: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        n = len(col)
        if self.separator is None:
            text = as_strings(col, self.column)
            valid = pc.invert(pc.or_kleene(pc.is_null(text), pc.equal(text, ""))).to_numpy(zero_copy_only=False)
            valid = np.asarray(valid, dtype=bool)
            ids = np.zeros(n, dtype=np.int64)
            present = text.filter(pa.array(valid))
            ids[valid] = self._lookup(present)
            return ids, one_per_row, 0
        lists = self._lists(col)
        flat = pc.list_flatten(lists)
        parent = pc.list_parent_indices(lists).to_numpy()
        keep = np.asarray(pc.fill_null(pc.not_equal(flat, ""), False).to_numpy(zero_copy_only=False), dtype=bool)
        flat_ids = self._lookup(flat.filter(pa.array(keep)))
        parent = parent[keep]
        counts = np.bincount(parent, minlength=n)
        empty = np.flatnonzero(counts == 0)  # missing or empty list -> one reserved id 0
        all_parent = np.concatenate([parent, empty])
        all_ids = np.concatenate([flat_ids, np.zeros(len(empty), dtype=np.int64)])
        order = np.argsort(all_parent, kind="stable")
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.maximum(counts, 1), out=offsets[1:])
        return all_ids[order], offsets, 0

    def options(self) -> dict[str, Any]:
        # A hashed feature's saved form is format 1's; the vocabulary's keys are only there with encoding: vocab.
        vocab = {} if self.vocab is None else {"encoding": "vocab", **self.vocab.to_dict()}
        return {"buckets": self.buckets, "separator": self.separator, **vocab}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Self:
        vocab = Vocabulary.from_dict(d, str(d.get("name"))) if d.get("encoding", "hash") == "vocab" else None
        return cls(d["name"], d["column"], int(d.get("seed", 0)), buckets=int(d.get("buckets", 0)),
                   separator=d.get("separator"), vocab=vocab)
