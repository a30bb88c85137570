"""An exact vocabulary of a sparse feature's ids (``encoding: vocab``), built from their training counts.

The ids seen at least ``min_count`` times, at most ``max_size`` of them (the most frequent), get the rows 1..V in
a stable order: most frequent first, ties by value (code point order). Row 0 is a missing id; row V+1, the
out-of-vocabulary row, every id that is not in the vocabulary (never seen, or rarer than ``min_count``)::

    training ids   b b a c b a d         counts   b:3  a:2  c:1  d:1   (min_count 2)
    vocabulary     b -> 1, a -> 2        buckets  4 (0: missing, 1..2, 3: out of vocabulary)
    lookup         "a" -> 2, "c" -> 3, "zz" -> 3

Its saved form (JSON, in the feature's) is ``{"min_count": 2, "max_size": null, "vocab_": ["b", "a"],
"counts_": [3, 2]}``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["Vocabulary", "VocabularyCounter"]


class VocabularyCounter:
    """Counts of the ids of a feature over the chunks of the training file (one :meth:`add` per chunk)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def add(self, values: pa.Array) -> None:
        """Count the ids ``values`` (n,) string, missing ones already dropped."""
        if not len(values):
            return
        vc = pc.value_counts(values)
        counts = self.counts
        for v, c in zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist(), strict=True):
            counts[v] = counts.get(v, 0) + c


class Vocabulary:
    """The ids of a feature that have a row of their own (``values_``, in row order from 1), and the rules that
    chose them. Unbuilt (``values_`` None) until :meth:`built` is given the training counts."""

    def __init__(self, min_count: int = 1, max_size: int | None = None, values: list[str] | None = None,
                 counts: list[int] | None = None) -> None:
        self.min_count = min_count
        self.max_size = max_size
        self.values_ = values
        self.counts_ = counts if counts is not None else ([0] * len(values) if values is not None else None)
        self._index: pa.Array | None = None

    @property
    def size(self) -> int:
        """V: the ids with a row of their own."""
        if self.values_ is None:
            raise RuntimeError("the vocabulary is not built yet: fit the encoder on the training data first")
        return len(self.values_)

    @property
    def buckets(self) -> int:
        """Rows of the embedding table: 0 for missing, 1..V, and V+1 out of vocabulary."""
        return self.size + 2

    def built(self, counter: VocabularyCounter) -> Vocabulary:
        """The vocabulary of these training counts: ids seen ``min_count`` times or more, most frequent first (ties
        by value), the first ``max_size``."""
        kept = [(v, c) for v, c in counter.counts.items() if c >= self.min_count]
        kept.sort(key=lambda vc: (-vc[1], vc[0]))
        if self.max_size is not None:
            kept = kept[:self.max_size]
        return Vocabulary(self.min_count, self.max_size, [v for v, _ in kept], [c for _, c in kept])

    def lookup(self, values: pa.Array) -> np.ndarray:
        """Rows (n,) int64 of the non-missing ids ``values``: 1..V in the vocabulary, V+1 for any other."""
        size = self.size
        if self._index is None:
            self._index = pa.array(self.values_, pa.string())
        found = pc.index_in(values, value_set=self._index)
        return np.asarray(pc.fill_null(found, size).to_numpy(zero_copy_only=False), dtype=np.int64) + 1

    def to_dict(self) -> dict[str, Any]:
        """The saved form (plain JSON data)."""
        return {"min_count": self.min_count, "max_size": self.max_size, "vocab_": list(self.values_ or []),
                "counts_": list(self.counts_ or [])}

    @classmethod
    def from_dict(cls, d: dict[str, Any], name: str) -> Vocabulary:
        """The vocabulary in a saved feature ``d`` (named ``name``); a damaged one is refused naming the feature."""
        values, counts = d.get("vocab_"), d.get("counts_", [])
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise ValueError(f"saved feature {name!r}: vocab_ must be a list of strings, not {str(values)[:80]}; "
                             "re-train the model to rebuild its vocabulary")
        if len(set(values)) != len(values):
            raise ValueError(f"saved feature {name!r}: vocab_ lists an id twice; re-train the model")
        if not isinstance(counts, list) or len(counts) not in (0, len(values)):
            raise ValueError(f"saved feature {name!r}: counts_ must list one count per id of vocab_ "
                             f"({len(values)}), not {str(counts)[:80]}")
        max_size = d.get("max_size")
        return cls(int(d.get("min_count", 1)), None if max_size is None else int(max_size), list(values),
                   [int(c) for c in counts] if counts else None)
