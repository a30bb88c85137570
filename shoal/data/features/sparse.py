"""Sparse features: an id per row, or a list of ids in one cell, hashed into ``buckets`` embedding rows.

An id hashes (:mod:`shoal.data.hashing`, seeded per feature) to one of the rows 1..buckets-1; id 0 is
reserved for a missing value. An id never seen in training is normal: it hashes to some row like any other.
With a ``separator``, a cell holds a list (``"a|b|c"``); an empty or missing list is the one id 0::

    cells        "a|b"   ""    "c"          ids      [h(a), h(b), 0, h(c)]
                                            offsets  [0, 2, 3, 4]
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shoal.config import SparseFeature
from shoal.data.features.base import IdColumn, as_strings, feature_seed
from shoal.data.hashing import bucketize, hash_strings

__all__ = ["SparseColumn"]


class SparseColumn(IdColumn):
    """A sparse feature: one hashed id per row, or (``separator``) a list of them."""

    kind = "sparse"

    def __init__(self, name: str, column: str, seed: int, buckets: int, separator: str | None = None) -> None:
        super().__init__(name, column, seed)
        self.buckets = buckets
        self.separator = separator

    @classmethod
    def from_config(cls, f: SparseFeature) -> SparseColumn:
        return cls(f.name, f.source, feature_seed(f.name), buckets=f.buckets, separator=f.separator)

    def ids(self, col: pa.ChunkedArray, one_per_row: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        text = as_strings(col, self.column)
        n = len(text)
        if self.separator is None:
            valid = pc.invert(pc.or_kleene(pc.is_null(text), pc.equal(text, ""))).to_numpy(zero_copy_only=False)
            valid = np.asarray(valid, dtype=bool)
            ids = np.zeros(n, dtype=np.int64)
            present = text.filter(pa.array(valid))
            ids[valid] = bucketize(hash_strings(present, self.seed), self.buckets)
            return ids, one_per_row, 0
        lists = pc.split_pattern(text, self.separator)
        flat = pc.utf8_trim_whitespace(pc.list_flatten(lists))
        parent = pc.list_parent_indices(lists).to_numpy()
        keep = np.asarray(pc.not_equal(flat, "").to_numpy(zero_copy_only=False), dtype=bool)
        flat_ids = bucketize(hash_strings(flat.filter(pa.array(keep)), self.seed), self.buckets)
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
        return {"buckets": self.buckets, "separator": self.separator}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Self:
        return cls(d["name"], d["column"], int(d.get("seed", 0)), buckets=int(d.get("buckets", 0)),
                   separator=d.get("separator"))
