"""Text features: raw UTF-8 text as a bag of hashed n-grams, or as its byte sequence.

- ``tokens: ngrams``: the byte n-grams (``ngram_min``..``ngram_max``) and whitespace-word n-grams (up to
  ``word_ngrams``) of the first ``max_bytes`` bytes, hashed into ``buckets`` rows
  (:func:`~shoal.data.text.text_bag`); a model mean-pools their embeddings.
- ``tokens: bytes``: the first ``max_bytes`` bytes themselves, in order, as ids 1..256 (0: an empty text) in a
  table of :data:`~shoal.data.text.BYTE_VOCAB` rows (:func:`~shoal.data.text.text_bytes`), for sequence
  models such as bytecnn.

Texts longer than ``max_bytes`` are cut; the batch counts them (``Batch.truncated``).
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np
import pyarrow as pa

from shoal.config import TextFeature
from shoal.data.features.base import IdColumn, feature_seed
from shoal.data.text import BYTE_VOCAB, text_bag, text_bytes

__all__ = ["TextColumn"]


class TextColumn(IdColumn):
    """A text feature: a bag of hashed n-grams (``tokens="ngrams"``) or its bytes in order (``"bytes"``)."""

    kind = "text"

    def __init__(self, name: str, column: str, seed: int, buckets: int, tokens: str = "ngrams",
                 max_bytes: int = 1024, ngram_min: int = 1, ngram_max: int = 4, word_ngrams: int = 2) -> None:
        super().__init__(name, column, seed)
        self.buckets = buckets
        self.tokens = tokens
        self.max_bytes = max_bytes
        self.ngram_min = ngram_min
        self.ngram_max = ngram_max
        self.word_ngrams = word_ngrams

    @classmethod
    def from_config(cls, f: TextFeature) -> TextColumn:
        return cls(f.name, f.source, feature_seed(f.name), buckets=BYTE_VOCAB if f.tokens == "bytes" else f.buckets,
                   tokens=f.tokens, max_bytes=f.max_bytes, ngram_min=f.ngram_min, ngram_max=f.ngram_max,
                   word_ngrams=f.word_ngrams)

    @property
    def sequence(self) -> bool:
        """Whether the ids are the text's bytes in order (a sequence), not a bag."""
        return self.tokens == "bytes"

    def ids(self, col: pa.ChunkedArray, one_per_row: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        if self.sequence:
            return text_bytes(col, max_bytes=self.max_bytes)
        return text_bag(col, buckets=self.buckets, max_bytes=self.max_bytes, ngram_min=self.ngram_min,
                        ngram_max=self.ngram_max, word_ngrams=self.word_ngrams, seed=self.seed)

    def options(self) -> dict[str, Any]:
        return {"buckets": self.buckets, "tokens": self.tokens, "max_bytes": self.max_bytes,
                "ngram_min": self.ngram_min, "ngram_max": self.ngram_max, "word_ngrams": self.word_ngrams}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Self:
        return cls(d["name"], d["column"], int(d.get("seed", 0)), buckets=int(d.get("buckets", 0)),
                   tokens=d.get("tokens", "ngrams"), max_bytes=int(d.get("max_bytes", 1024)),
                   ngram_min=int(d.get("ngram_min", 1)), ngram_max=int(d.get("ngram_max", 4)),
                   word_ngrams=int(d.get("word_ngrams", 2)))
