"""The Encoder: raw columns -> a :class:`~shoal.data.batch.Batch`, fitted on the training data.

- dense: ``log1p`` (sign-preserving, for counts), ``standardize`` (mean/std from training) or ``none``;
  a missing value becomes 0 and sets the feature's missing flag (an extra input column).
- sparse: a stable hash (:mod:`shoal.data.hashing`) into ``buckets`` rows; id 0 is reserved for a missing
  value. An id never seen in training is normal: it hashes to some bucket like any other.
- text: a bag of hashed byte and word n-grams (:func:`~shoal.data.text.text_bag`), or with ``tokens: bytes``
  the bytes themselves in order (:func:`~shoal.data.text.text_bytes`) for sequence models.
- label: binary: the configured positive/negative values -> 1/0; multiclass: the class index (class names,
  or their aliases, in ``classes`` order; the classes are found in the training file when not configured).

Values that cannot be used (a non-numeric or infinite dense value, a missing or unknown label) are reported
to a :class:`~shoal.data.readers.BadRowSink` with the file, line, column and value, and the row is left out
of the batch, never silently. The encoder is saved with the model as JSON (no pickle).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shoal.config import MAX_CLASSES, FeatureConfig, LabelConfig
from shoal.data.batch import Batch
from shoal.data.hashing import bucketize, hash_strings, seed_for
from shoal.data.readers import BadRow, BadRowSink, Chunk
from shoal.data.text import BYTE_VOCAB, text_bag, text_bytes

__all__ = ["Encoder", "FeatureState"]

_NUMBER = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
FORMAT_VERSION = 1


@dataclass
class FeatureState:
    """One feature's encoding: its config and what was learned from the training data."""

    name: str
    kind: str
    column: str
    transform: str = "none"
    buckets: int = 0
    separator: str | None = None
    bins: int = 0  # dense: also embed the value's quantile bin (an extra sparse input) when > 0
    tokens: str = "ngrams"  # text: "ngrams" (a bag) or "bytes" (the sequence)
    max_bytes: int = 1024
    ngram_min: int = 1
    ngram_max: int = 4
    word_ngrams: int = 2
    mean_: float = 0.0
    std_: float = 1.0
    edges_: list[float] = field(default_factory=list)  # dense with bins: interior quantile edges
    seed: int = 0

    @staticmethod
    def from_config(f: FeatureConfig) -> FeatureState:
        return FeatureState(name=f.name, kind=f.kind, column=f.source, transform=f.transform,
                            buckets=BYTE_VOCAB if f.tokens == "bytes" else f.buckets, separator=f.separator,
                            bins=f.bins or 0, tokens=f.tokens, max_bytes=f.max_bytes,
                            ngram_min=f.ngram_min, ngram_max=f.ngram_max, word_ngrams=f.word_ngrams,
                            seed=seed_for(f.name) & 0xFFFFFFFF)

    @property
    def bin_buckets(self) -> int:
        """Rows of the bin embedding table: id 0 for missing, then one per bin."""
        return len(self.edges_) + 2


@dataclass
class _Problems:
    """Bad cells found in a chunk, in row order: the first problem of each bad row is reported."""

    rows: list[np.ndarray] = field(default_factory=list)
    cols: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    values: list[pa.Array] = field(default_factory=list)

    def add(self, mask: np.ndarray, column: str, reason: str, values: pa.Array) -> None:
        idx = np.flatnonzero(mask)
        if len(idx):
            self.rows.append(idx)
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


class _Reservoir:
    """A uniform sample of a stream of values (Vitter's algorithm R, vectorized per chunk, seeded)."""

    def __init__(self, size: int, seed: int) -> None:
        self.size = size
        self.seen = 0
        self.buf = np.empty(size, dtype=np.float64)
        self.rng = np.random.default_rng(seed)

    def add(self, v: np.ndarray) -> None:
        room = max(0, min(self.size - self.seen, len(v)))
        self.buf[self.seen:self.seen + room] = v[:room]
        rest = v[room:]
        if len(rest):
            # the i-th value overall replaces a random slot with probability size / (i + 1)
            positions = self.seen + room + np.arange(len(rest))
            slots = (self.rng.random(len(rest)) * (positions + 1)).astype(np.int64)
            keep = slots < self.size
            self.buf[slots[keep]] = rest[keep]
        self.seen += len(v)

    def values(self) -> np.ndarray:
        return self.buf[: min(self.seen, self.size)]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _as_strings(col: pa.ChunkedArray | pa.Array) -> pa.Array:
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if not pa.types.is_string(arr.type):
        arr = pc.cast(arr, pa.string())
    return pc.utf8_trim_whitespace(arr)


class Encoder:
    """Fit on training chunks, then turn any chunk of the same columns into a :class:`Batch`.

    >>> from shoal.config import FeatureConfig, LabelConfig
    >>> enc = Encoder([FeatureConfig(name="n", kind="dense", transform="log1p"),
    ...                FeatureConfig(name="c", kind="sparse", buckets=10)], LabelConfig(column="y"))
    >>> enc.dense_dim, enc.buckets
    (2, [10])
    """

    def __init__(self, features: list[FeatureConfig], label: LabelConfig | None) -> None:
        self.features = [FeatureState.from_config(f) for f in features]
        self.label = label
        self.classes_: list[str] = list(label.classes) if label is not None and label.classes else []
        self.fitted_ = False
        self.fit_rows_ = 0

    # -- shape of the encoded inputs -------------------------------------------------------------------------
    @property
    def dense_features(self) -> list[FeatureState]:
        return [f for f in self.features if f.kind == "dense"]

    @property
    def sparse_features(self) -> list[FeatureState]:
        return [f for f in self.features if f.kind == "sparse"]

    @property
    def dense_dim(self) -> int:
        """Encoded dense width: one value and one missing flag per dense feature."""
        return 2 * len(self.dense_features)

    @property
    def text_features(self) -> list[FeatureState]:
        return [f for f in self.features if f.kind == "text"]

    @property
    def binned_features(self) -> list[FeatureState]:
        """Dense features whose quantile bin is embedded too (after the sparse features in a batch)."""
        return [f for f in self.dense_features if f.bins]

    @property
    def buckets(self) -> list[int]:
        """Embedding table sizes, in batch order: sparse features, text features, then binned dense features."""
        return ([f.buckets for f in self.sparse_features] + [f.buckets for f in self.text_features]
                + [f.bin_buckets for f in self.binned_features])

    @property
    def sequence_slots(self) -> list[int]:
        """Positions in ``buckets`` (and a batch's ids) of the ``tokens: bytes`` text features."""
        first = len(self.sparse_features)
        return [first + j for j, f in enumerate(self.text_features) if f.tokens == "bytes"]

    @property
    def multiclass(self) -> bool:
        return self.label is not None and self.label.kind == "multiclass"

    @property
    def outputs(self) -> int:
        """Model outputs: 1 logit for a binary label, one per class for a multiclass one."""
        return len(self.classes_) if self.multiclass else 1

    @property
    def needs_classes(self) -> bool:
        return self.multiclass and not self.classes_

    @property
    def needs_fit(self) -> bool:
        return any(f.transform == "standardize" or f.bins for f in self.dense_features)

    def columns(self, with_label: bool = True) -> list[str]:
        cols = [f.column for f in self.features]
        if with_label and self.label is not None:
            cols.append(self.label.column)
        return list(dict.fromkeys(cols))

    # -- fitting ----------------------------------------------------------------------------------------------
    def fit(self, chunks: Iterable[Chunk], sink: BadRowSink, max_rows: int = 2_000_000,
            sample_size: int = 200_000) -> Encoder:
        """Learn dense statistics from up to ``max_rows`` rows: mean and std of the transformed values, and
        quantile bin edges from a uniform sample (reservoir, fixed seed) of ``sample_size`` values."""
        dense = self.dense_features
        n = np.zeros(len(dense))
        s1 = np.zeros(len(dense))
        s2 = np.zeros(len(dense))
        rows = 0
        samples = {f.name: _Reservoir(sample_size, seed=f.seed) for f in dense if f.bins}
        for chunk in chunks:
            problems = _Problems()
            raw = [self._dense_raw(chunk, f, problems) for f in dense]
            good = problems.report(chunk, sink)
            for k, (f, values) in enumerate(zip(dense, raw, strict=True)):
                v = self._transform(f, values[good], standardize=False)
                v = v[np.isfinite(v)]
                if f.bins:
                    samples[f.name].add(v)
                n[k] += len(v)
                s1[k] += float(v.sum())
                s2[k] += float((v * v).sum())
            rows += int(good.sum())
            if rows >= max_rows:
                break
        for k, f in enumerate(dense):
            if n[k] > 0:
                mean = s1[k] / n[k]
                var = max(s2[k] / n[k] - mean * mean, 0.0)
                f.mean_, f.std_ = float(mean), float(np.sqrt(var)) if var > 1e-12 else 1.0
            if f.bins:
                sample = samples[f.name].values()
                if len(sample):
                    qs = np.quantile(sample, np.linspace(0, 1, f.bins + 1)[1:-1])
                    f.edges_ = [float(e) for e in np.unique(qs)]
        self.fitted_ = True
        self.fit_rows_ = rows
        return self

    def fit_classes(self, chunks: Iterable[Chunk]) -> Encoder:
        """Find a multiclass label's classes in the training file: its distinct values (aliases applied),
        sorted as numbers when they all are, else as text. Missing labels are reported later, when encoding."""
        assert self.label is not None
        seen: set[str] = set()
        for chunk in chunks:
            text = _as_strings(chunk.table.column(self.label.column))
            seen.update(v for v in pc.unique(text).to_pylist() if v)
            if len(seen) > MAX_CLASSES:
                raise ValueError(
                    f"{chunk.file}: label column {self.label.column!r} has more than {MAX_CLASSES} distinct values; "
                    "is it the right column? (list the classes in label.classes to be sure)"
                )
        names = sorted({self.label.aliases.get(v, v) for v in seen})
        if all(_is_number(v) for v in names):
            names = sorted(names, key=float)
        if len(names) < 2:
            raise ValueError(f"label column {self.label.column!r} has {len(names)} distinct value(s) {names}; "
                             "a multiclass label needs at least 2")
        self.classes_ = names
        return self

    # -- encoding ---------------------------------------------------------------------------------------------
    def encode(self, chunk: Chunk, sink: BadRowSink, with_label: bool = True) -> Batch:
        """Encode a chunk. Bad rows go to ``sink`` and are left out of the batch."""
        problems = _Problems()
        dense_raw = [self._dense_raw(chunk, f, problems) for f in self.dense_features]
        label = self._label(chunk, problems) if with_label and self.label is not None else None
        good = problems.report(chunk, sink)
        table = chunk.table if good.all() else chunk.table.filter(pa.array(good))
        n = table.num_rows
        dense = np.zeros((n, self.dense_dim), dtype=np.float32)
        nd = len(self.dense_features)
        for k, (f, values) in enumerate(zip(self.dense_features, dense_raw, strict=True)):
            v = self._transform(f, values[good], standardize=True)
            missing = np.isnan(v)
            dense[:, k] = np.where(missing, 0.0, v)
            dense[:, nd + k] = missing
        ids, offsets = [], []
        one_per_row = np.arange(n + 1, dtype=np.int64)  # shared by every single-id feature
        for f in self.sparse_features:
            k_ids, k_off = self._sparse(table.column(f.column), f)
            ids.append(k_ids)
            offsets.append(one_per_row if f.separator is None else k_off)
        truncated = 0
        for f in self.text_features:
            if f.tokens == "bytes":
                k_ids, k_off, cut = text_bytes(table.column(f.column), max_bytes=f.max_bytes)
                ids.append(k_ids)
                offsets.append(k_off)
                truncated += cut
                continue
            k_ids, k_off, cut = text_bag(table.column(f.column), buckets=f.buckets, max_bytes=f.max_bytes,
                                       ngram_min=f.ngram_min, ngram_max=f.ngram_max, word_ngrams=f.word_ngrams,
                                       seed=f.seed)
            ids.append(k_ids)
            offsets.append(k_off)
            truncated += cut
        for f, values in zip(self.dense_features, dense_raw, strict=True):
            if f.bins:
                v = self._transform(f, values[good], standardize=False)
                bin_ids = np.searchsorted(np.asarray(f.edges_), v, side="right").astype(np.int64) + 1
                ids.append(np.where(np.isnan(v), 0, bin_ids))
                offsets.append(one_per_row)
        return Batch(dense=dense, ids=ids, offsets=offsets,
                     label=None if label is None else label[good], lines=chunk.lines[good], truncated=truncated)

    def _dense_raw(self, chunk: Chunk, f: FeatureState, problems: _Problems) -> np.ndarray:
        """Float64 values with NaN for missing; non-numeric and infinite cells are recorded as problems."""
        col = chunk.table.column(f.column).combine_chunks()
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            text = pc.utf8_trim_whitespace(col)
            ok = pc.fill_null(pc.match_substring_regex(text, _NUMBER), True)
            bad = ~ok.to_numpy(zero_copy_only=False)
            problems.add(bad, f.column, "not a number (dense feature)", col)
            clean = pc.if_else(ok, text, pa.scalar(None, pa.string()))
            values = pc.cast(clean, pa.float64()).to_numpy(zero_copy_only=False)
        elif pa.types.is_integer(col.type) or pa.types.is_floating(col.type) or pa.types.is_boolean(col.type):
            values = pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False)
        else:
            problems.add(np.ones(len(col), bool), f.column, f"unsupported type {col.type} for a dense feature", col)
            return np.full(len(col), np.nan)
        values = np.asarray(values, dtype=np.float64)
        problems.add(np.isinf(values), f.column, "infinite value (dense feature)", col)
        return values

    @staticmethod
    def _transform(f: FeatureState, v: np.ndarray, standardize: bool) -> np.ndarray:
        if f.transform == "log1p":
            v = np.sign(v) * np.log1p(np.abs(v))
        elif f.transform == "standardize" and standardize:
            v = (v - f.mean_) / f.std_
        return v

    def _label(self, chunk: Chunk, problems: _Problems) -> np.ndarray:
        assert self.label is not None
        raw = chunk.table.column(self.label.column)
        text = _as_strings(raw)
        if self.multiclass:
            names = self.classes_ + list(self.label.aliases)
            index_of = np.array(list(range(len(self.classes_)))
                                + [self.classes_.index(c) for c in self.label.aliases.values()], dtype=np.int64)
            found = pc.index_in(text, value_set=pa.array(names, pa.string()))
            unknown = np.asarray(pc.is_null(found).to_numpy(zero_copy_only=False), dtype=bool)
            found = pc.fill_null(found, 0).to_numpy(zero_copy_only=False)
            allowed = self.classes_ + [f"{a} (= {c})" for a, c in self.label.aliases.items()]
            problems.add(unknown, self.label.column,
                         f"unknown class; allowed: {allowed} (set label.classes / label.aliases)", text)
            return index_of[found].astype(np.float32)
        pos = pc.fill_null(pc.is_in(text, value_set=pa.array(self.label.positive)), False).to_numpy(
            zero_copy_only=False)
        neg = pc.fill_null(pc.is_in(text, value_set=pa.array(self.label.negative)), False).to_numpy(
            zero_copy_only=False)
        allowed = sorted(set(self.label.positive) | set(self.label.negative))
        problems.add(~(pos | neg), self.label.column,
                     f"invalid label; allowed: {allowed} (set label.positive / label.negative)", text)
        return pos.astype(np.float32)

    @staticmethod
    def _sparse(col: pa.ChunkedArray, f: FeatureState) -> tuple[np.ndarray, np.ndarray]:
        text = _as_strings(col)
        n = len(text)
        if f.separator is None:
            valid = pc.invert(pc.or_kleene(pc.is_null(text), pc.equal(text, ""))).to_numpy(zero_copy_only=False)
            valid = np.asarray(valid, dtype=bool)
            ids = np.zeros(n, dtype=np.int64)
            present = text.filter(pa.array(valid))
            ids[valid] = bucketize(hash_strings(present, f.seed), f.buckets)
            return ids, np.arange(n + 1, dtype=np.int64)
        lists = pc.split_pattern(text, f.separator)
        flat = pc.utf8_trim_whitespace(pc.list_flatten(lists))
        parent = pc.list_parent_indices(lists).to_numpy()
        keep = np.asarray(pc.not_equal(flat, "").to_numpy(zero_copy_only=False), dtype=bool)
        flat_ids = bucketize(hash_strings(flat.filter(pa.array(keep)), f.seed), f.buckets)
        parent = parent[keep]
        counts = np.bincount(parent, minlength=n)
        empty = np.flatnonzero(counts == 0)  # missing or empty list -> one reserved id 0
        all_parent = np.concatenate([parent, empty])
        all_ids = np.concatenate([flat_ids, np.zeros(len(empty), dtype=np.int64)])
        order = np.argsort(all_parent, kind="stable")
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.maximum(counts, 1), out=offsets[1:])
        return all_ids[order], offsets

    # -- persistence (JSON, never pickle) --------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "features": [vars(f).copy() for f in self.features],
            "label": None if self.label is None else self.label.model_dump(mode="json"),
            "classes": self.classes_,
            "fit_rows": self.fit_rows_,
        }

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Encoder:
        if d.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"encoder format_version {d.get('format_version')!r} is not supported (expected {FORMAT_VERSION}); "
                "re-train the model with this version of shoal"
            )
        enc = Encoder.__new__(Encoder)
        enc.features = [FeatureState(**f) for f in d["features"]]
        enc.label = None if d["label"] is None else LabelConfig.model_validate(d["label"])
        enc.classes_ = list(d.get("classes", []))
        enc.fitted_ = True
        enc.fit_rows_ = int(d.get("fit_rows", 0))
        return enc
