"""The Encoder: raw columns -> a :class:`~shoal.data.batch.Batch`, fitted on the training data.

It holds one column per feature, of the class of its kind (:mod:`shoal.data.features`), and encodes the label:

- dense (:class:`~shoal.data.features.DenseColumn`): ``log1p``, ``standardize`` or ``none``, a missing flag,
  and optionally the value's quantile bin as an id.
- sparse (:class:`~shoal.data.features.SparseColumn`): a stable hash into ``buckets`` rows, or (``encoding:
  vocab``) the row of the id in the training file's vocabulary, with one out-of-vocabulary row; id 0 for missing.
- text (:class:`~shoal.data.features.TextColumn`): a bag of hashed byte and word n-grams, or the bytes in order.
- image, audio (:class:`~shoal.data.features.ImageColumn`, :class:`~shoal.data.features.AudioColumn`): the
  decoded pixels or log-mel spectrogram, flattened at the end of the dense values (:mod:`shoal.data.features.media`).
- time (:class:`~shoal.data.features.TimeColumn`): each calendar part (hour of day, day of week, ...) in the
  feature's time zone as an id, 0 for missing; with ``relative_to``, also the age in days at the row's time
  (signed log1p, standardized, a missing flag), as a dense value after the dense features'.
- label: binary: the configured positive/negative values -> 1/0; multiclass: the class index (class names,
  or their aliases, in ``classes`` order; the classes are found in the training file when not configured);
  regression: the number itself (its training mean and standard deviation, ``target_``, are set after the
  first pass and scale the model's output); multilabel: a row of 0/1, one per tag in ``classes`` order, from
  the cell's tags (a text joined by ``label.separator`` or a list column; an empty cell means no tags);
  multitask: a row of one value per task, in ``label.tasks`` order (1/0 for a binary task, the number for a
  regression one, NaN where the cell is missing or empty: the row is not scored on that task).

A batch lays the columns out by kind, each kind in config order::

    dense    (B, 2 * (n_dense + n_age) + media)   the dense values and the time ages, their missing flags (same
                                                  order), then each media feature's values
    ids      sparse features, then text features, then the bins of binned dense features, then each time
             feature's parts (in its ``parts`` order)

For example dense ``d``, sparse ``s``, time ``ts`` (parts hour, weekday) and time ``signup`` (relative_to ts,
parts month)::

    dense  [ d | signup age | d missing | signup age missing ]
    ids    [ s, ts:hour, ts:weekday, signup:month ]          buckets [s.buckets, 25, 8, 13]

Values that cannot be used (a non-numeric or infinite dense value, an unreadable image, a missing or unknown
label) are reported to a :class:`~shoal.data.readers.BadRowSink` with the file, line, column and value, and the
row is left out of the batch, never silently. The encoder is saved with the model as JSON (no pickle).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shoal.config import MAX_CLASSES, FeatureConfig, LabelConfig, check_time_references
from shoal.data.batch import Batch
from shoal.data.features import (
    DenseColumn,
    FeatureColumn,
    MediaColumn,
    MediaInput,
    Problems,
    SparseColumn,
    TextColumn,
    TimeColumn,
    as_strings,
    column_for,
    column_from_dict,
)
from shoal.data.features.dense import FLOAT32_MAX, NUMBER
from shoal.data.features.media import data_folder
from shoal.data.readers import BadRowSink, Chunk

__all__ = ["FORMAT_VERSION", "Encoder", "format_problem"]

FORMAT_VERSION = 2  # 2: ids hashed by two polynomials mod 2^31 - 1 (shoal.data.hashing); 1: FNV-1a 64


def format_problem(version: Any) -> str | None:
    """Why an encoder saved with ``format_version`` ``version`` cannot be loaded (None: it can)."""
    if version == FORMAT_VERSION:
        return None
    why = (": format 1 hashed ids with FNV-1a, this shoal hashes them differently (one matrix product in the "
           "exported graph), so the model's embedding rows would belong to other ids" if version == 1 else "")
    return (f"encoder format_version {version!r} is not supported (expected {FORMAT_VERSION}){why}; re-train the "
            "model with this version of shoal (shoal train CONFIG), or load it with the shoal that trained it")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class Encoder:
    """Fit on training chunks, then turn any chunk of the same columns into a :class:`Batch`.

    >>> from shoal.config import FeatureConfig, LabelConfig
    >>> enc = Encoder([FeatureConfig(name="n", kind="dense", transform="log1p"),
    ...                FeatureConfig(name="c", kind="sparse", buckets=10)], LabelConfig(column="y"))
    >>> enc.dense_dim, enc.buckets
    (2, [10])
    """

    def __init__(self, features: Sequence[FeatureConfig], label: LabelConfig | None) -> None:
        check_time_references(features)
        self.features: list[FeatureColumn] = [column_for(f) for f in features]
        self.label = label
        self.classes_: list[str] = list(label.classes) if label is not None and label.classes else []
        self.fitted_ = False
        self.fit_rows_ = 0
        self.target_: tuple[float, float] | None = None  # regression: the training label's (mean, std)
        self.targets_: list[tuple[float, float] | None] = []  # multitask: per task, a regression task's (mean, std)

    # -- shape of the encoded inputs -------------------------------------------------------------------------
    @property
    def dense_features(self) -> list[DenseColumn]:
        return [f for f in self.features if isinstance(f, DenseColumn)]

    @property
    def sparse_features(self) -> list[SparseColumn]:
        return [f for f in self.features if isinstance(f, SparseColumn)]

    @property
    def time_features(self) -> list[TimeColumn]:
        return [f for f in self.features if isinstance(f, TimeColumn)]

    @property
    def age_features(self) -> list[TimeColumn]:
        """Time features with ``relative_to``: their age in days follows the dense features' values."""
        return [f for f in self.time_features if f.relative_to is not None]

    @property
    def dense_dim(self) -> int:
        """Encoded dense width: one value and one missing flag per dense feature and per time age, then each
        media feature's values (an image's C*H*W pixels, a sound's spectrogram: :mod:`shoal.data.features.media`)."""
        return 2 * (len(self.dense_features) + len(self.age_features)) + sum(f.size for f in self.media_features)

    @property
    def media_features(self) -> list[MediaColumn]:
        """Image and audio features, in config order (their blocks close a batch's dense part)."""
        return [f for f in self.features if isinstance(f, MediaColumn)]

    @property
    def media_inputs(self) -> list[MediaInput]:
        """What a model needs to find and encode each media feature in the dense input."""
        return [f.media_input() for f in self.media_features]

    @property
    def text_features(self) -> list[TextColumn]:
        return [f for f in self.features if isinstance(f, TextColumn)]

    @property
    def binned_features(self) -> list[DenseColumn]:
        """Dense features whose quantile bin is embedded too (last in a batch's ids)."""
        return [f for f in self.dense_features if f.bins]

    @property
    def buckets(self) -> list[int]:
        """Embedding table sizes, in batch order: sparse features, text features, binned dense features, then the
        parts of time features."""
        return ([f.buckets for f in self.sparse_features] + [f.buckets for f in self.text_features]
                + [f.bin_buckets for f in self.binned_features]
                + [b for f in self.time_features for b in f.part_buckets])

    @property
    def sequence_slots(self) -> list[int]:
        """Positions in ``buckets`` (and a batch's ids) of the ``tokens: bytes`` text features."""
        first = len(self.sparse_features)
        return [first + j for j, f in enumerate(self.text_features) if f.sequence]

    @property
    def multiclass(self) -> bool:
        return self.label is not None and self.label.kind == "multiclass"

    @property
    def multilabel(self) -> bool:
        return self.label is not None and self.label.kind == "multilabel"

    @property
    def regression(self) -> bool:
        return self.label is not None and self.label.kind == "regression"

    @property
    def multitask(self) -> bool:
        return self.label is not None and self.label.kind == "multitask"

    @property
    def task(self) -> str:
        """What the model predicts: ``binary``, ``multiclass``, ``regression``, ``multilabel`` or ``multitask``."""
        return "binary" if self.label is None else self.label.kind

    @property
    def outputs(self) -> int:
        """Model outputs: 1 logit for a binary label, one per class (multiclass), per tag (multilabel) or per
        task (multitask)."""
        if self.multitask:
            assert self.label is not None and self.label.tasks is not None
            return len(self.label.tasks)
        return len(self.classes_) if self.multiclass or self.multilabel else 1

    @property
    def needs_classes(self) -> bool:
        return (self.multiclass or self.multilabel) and not self.classes_

    @property
    def needs_fit(self) -> bool:
        """Whether encoding uses statistics of the training data (dense statistics, sparse vocabularies)."""
        return (any(f.needs_fit for f in self.dense_features) or any(f.needs_fit for f in self.sparse_features)
                or bool(self.age_features))

    def columns(self, with_label: bool = True) -> list[str]:
        cols = [f.column for f in self.features]
        if with_label and self.label is not None:
            cols.extend(self.label.columns)
        return list(dict.fromkeys(cols))

    # -- fitting ----------------------------------------------------------------------------------------------
    def fit(self, chunks: Iterable[Chunk], sink: BadRowSink, max_rows: int = 2_000_000,
            sample_size: int = 200_000) -> Encoder:
        """Learn dense statistics from up to ``max_rows`` rows: mean and std of the transformed values, and
        quantile bin edges from a uniform sample (reservoir, fixed seed) of ``sample_size`` values; the
        vocabulary of each ``encoding: vocab`` sparse feature, from its id counts over the same rows; and the mean
        and std of each time feature's log1p age."""
        dense = self.dense_features
        stats = [f.stats(sample_size) for f in dense]
        vocab = [f for f in self.sparse_features if f.needs_fit]
        counters = [f.counter() for f in vocab]
        ages = self.age_features
        age_stats = [f.stats() for f in ages]
        rows = 0
        for chunk in chunks:
            problems = Problems()
            raw = [f.read(chunk.table, problems) for f in dense]
            age_raw = self._ages(chunk.table, problems)
            good = problems.report(chunk, sink)  # a row bad in one dense or time column counts in none
            for f, acc, values in zip(dense, stats, raw, strict=True):
                acc.add(f, values[good])
            for t, t_acc, days in zip(ages, age_stats, age_raw, strict=True):
                t_acc.add(t, days[good])
            table = chunk.table if good.all() else chunk.table.filter(pa.array(good))
            for s, counter in zip(vocab, counters, strict=True):
                counter.add(s.values(table.column(s.column)))
            rows += int(good.sum())
            if rows >= max_rows:
                break
        for f, acc in zip(dense, stats, strict=True):
            f.learn(acc)
        for s, counter in zip(vocab, counters, strict=True):
            s.learn(counter)
        for t, t_acc in zip(ages, age_stats, strict=True):
            t.learn(t_acc)
        self.fitted_ = True
        self.fit_rows_ = rows
        return self

    def fit_classes(self, chunks: Iterable[Chunk]) -> Encoder:
        """Find a multiclass label's classes in the training file: its distinct values (aliases applied),
        sorted as numbers when they all are, else as text. Missing labels are reported later, when encoding."""
        assert self.label is not None
        seen: set[str] = set()
        for chunk in chunks:
            if self.multilabel:
                tags = _tag_lists(chunk.table.column(self.label.column), self.label.separator).flatten()
                seen.update(v for v in pc.unique(tags).to_pylist() if v)
            else:
                text = as_strings(chunk.table.column(self.label.column), self.label.column)
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
            what = (f"a multilabel label needs at least 2 tags (split on separator {self.label.separator!r}; "
                    "with one tag use kind: binary)" if self.multilabel else "a multiclass label needs at least 2")
            raise ValueError(f"label column {self.label.column!r} has {len(names)} distinct value(s) {names}; {what}")
        self.classes_ = names
        return self

    # -- encoding ---------------------------------------------------------------------------------------------
    def encode(self, chunk: Chunk, sink: BadRowSink, with_label: bool = True) -> Batch:
        """Encode a chunk. Bad rows go to ``sink`` and are left out of the batch."""
        problems = Problems()
        dense_raw = [f.read(chunk.table, problems) for f in self.dense_features]
        instants = {f.name: f.read(chunk.table, problems) for f in self.time_features}
        age_raw = self._ages(chunk.table, problems, instants)
        media = self.media_features
        media_raw = [f.read(chunk.table, data_folder(chunk.file), problems) for f in media] if media else []
        label = self._label(chunk, problems) if with_label and self.label is not None else None
        good = problems.report(chunk, sink)
        table = chunk.table if good.all() else chunk.table.filter(pa.array(good))
        n = table.num_rows
        dense = np.zeros((n, self.dense_dim), dtype=np.float32)  # (B, 2 * nd): values and ages, then missing flags
        nd = len(self.dense_features) + len(self.age_features)
        values_in_order = [f.transformed(values[good], standardize=True)
                           for f, values in zip(self.dense_features, dense_raw, strict=True)]
        values_in_order += [t.transformed(days[good], standardize=True)
                            for t, days in zip(self.age_features, age_raw, strict=True)]
        for k, v in enumerate(values_in_order):
            missing = np.isnan(v)
            dense[:, k] = np.where(missing, 0.0, v)
            dense[:, nd + k] = missing
        start = 2 * nd
        for m, pixels in zip(media, media_raw, strict=True):  # (N, C*H*W) each, after the missing flags
            dense[:, start:start + m.size] = pixels[good]
            start += m.size
        ids, offsets = [], []
        one_per_row = np.arange(n + 1, dtype=np.int64)  # shared by every single-id input
        truncated = 0
        for col in [*self.sparse_features, *self.text_features]:
            k_ids, k_off, cut = col.ids(table.column(col.column), one_per_row)
            ids.append(k_ids)
            offsets.append(k_off)
            truncated += cut
        for f, values in zip(self.dense_features, dense_raw, strict=True):
            if f.bins:
                ids.append(f.bin_ids(values[good]))
                offsets.append(one_per_row)
        for t in self.time_features:
            at = instants[t.name] if good.all() else instants[t.name].filter(pa.array(good))
            for part in t.part_ids(at):
                ids.append(part)
                offsets.append(one_per_row)
        return Batch(dense=dense, ids=ids, offsets=offsets,
                     label=None if label is None else label[good], lines=chunk.lines[good], truncated=truncated)

    def _ages(self, table: pa.Table, problems: Problems,
              instants: dict[str, pa.Array] | None = None) -> list[np.ndarray]:
        """The age in days (N,) of each time feature with ``relative_to`` (NaN where either time is missing);
        ``instants`` are the times already read, by feature name (the others are read, their problems recorded)."""
        ages = self.age_features
        if not ages:
            return []
        found = dict(instants or {})
        by_name = {t.name: t for t in self.time_features}
        for name in [n for t in ages for n in (t.name, t.relative_to)]:
            assert name is not None
            if name not in found:
                found[name] = by_name[name].read(table, problems)
        return [t.ages(found[t.name], found[str(t.relative_to)]) for t in ages]

    def _label(self, chunk: Chunk, problems: Problems) -> np.ndarray:
        assert self.label is not None
        if self.multitask:
            return self._tasks_label(chunk, problems)
        raw = chunk.table.column(self.label.column)
        if self.regression:
            return self._number_label(raw, problems)
        if self.multilabel:
            return self._tags_label(raw, problems)
        text = as_strings(raw, self.label.column)
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
        pos, neg = _binary(text, self.label.positive, self.label.negative)
        allowed = sorted(set(self.label.positive) | set(self.label.negative))
        problems.add(~(pos | neg), self.label.column,
                     f"invalid label; allowed: {allowed} (set label.positive / label.negative)", text)
        return pos.astype(np.float32)

    def _tasks_label(self, chunk: Chunk, problems: Problems) -> np.ndarray:
        """A multitask label as float32 (N, T): per task 1/0 (binary) or the number (regression); NaN where the
        cell is missing or empty (not known for this row). A value that is neither is bad, as for one label."""
        assert self.label is not None and self.label.tasks is not None
        out = np.empty((chunk.table.num_rows, len(self.label.tasks)), dtype=np.float32)
        for t, task in enumerate(self.label.tasks):
            raw = chunk.table.column(task.column)
            if task.kind == "regression":
                out[:, t] = self._number_label(raw, problems, task.column, optional=True)
                continue
            text = as_strings(raw, task.column)
            known = pc.fill_null(pc.not_equal(pc.utf8_trim_whitespace(text), ""), False).to_numpy(zero_copy_only=False)
            pos, neg = _binary(text, task.positive, task.negative)
            allowed = sorted(set(task.positive) | set(task.negative))
            problems.add(known & ~(pos | neg), task.column, f"invalid label of task {task.column!r}; allowed: "
                         f"{allowed} or an empty cell (set the task's positive / negative)", text)
            out[:, t] = np.where(known, pos, np.nan)
        return out

    def _number_label(self, raw: pa.ChunkedArray, problems: Problems, name: str | None = None,
                      optional: bool = False) -> np.ndarray:
        """A regression label as float32 (N,); non-numeric, infinite and out-of-float32 cells are bad, and so are
        missing ones unless ``optional`` (a task's label: NaN there, left out of its loss and metrics)."""
        assert self.label is not None
        name, col = name or self.label.column, raw.combine_chunks()
        if pa.types.is_integer(col.type) or pa.types.is_floating(col.type) or pa.types.is_boolean(col.type):
            values = np.asarray(pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
        else:
            text = as_strings(col, name)
            empty = pc.fill_null(pc.equal(pc.utf8_trim_whitespace(text), ""), True).to_numpy(zero_copy_only=False)
            ok = pc.fill_null(pc.match_substring_regex(text, NUMBER), False).to_numpy(zero_copy_only=False)
            problems.add(~ok & ~empty, name, "invalid label: a regression label must be a number", text)
            clean = pc.if_else(pa.array(ok), text, pa.scalar(None, pa.string()))
            values = np.where(ok, pc.cast(clean, pa.float64()).to_numpy(zero_copy_only=False),
                              np.nan if optional else np.where(empty, np.nan, 0.0))  # a bad cell: reported once
        missing = np.isnan(values)
        if not optional:
            problems.add(missing, name, "missing label (regression)", col)
        big = ~missing & (np.abs(values) > FLOAT32_MAX)
        problems.add(big, name, f"label outside float32's range, -{FLOAT32_MAX:.8g} to {FLOAT32_MAX:.8g}", col)
        return np.where(big, 0.0, values if optional else np.where(missing, 0.0, values)).astype(np.float32)

    def _tags_label(self, raw: pa.ChunkedArray, problems: Problems) -> np.ndarray:
        """A multilabel label as float32 (N, T): 1 where the row has tag t. A missing or empty cell has no tags; a
        row with a tag that is neither in ``classes`` nor an alias is bad."""
        assert self.label is not None
        lists = _tag_lists(raw, self.label.separator)
        flat = lists.flatten()
        rows = np.asarray(pc.list_parent_indices(lists).to_numpy(zero_copy_only=False), dtype=np.int64)
        names = self.classes_ + list(self.label.aliases)
        index_of = np.array(list(range(len(self.classes_)))
                            + [self.classes_.index(c) for c in self.label.aliases.values()], dtype=np.int64)
        found = pc.index_in(flat, value_set=pa.array(names, pa.string()))
        unknown = np.asarray(pc.is_null(found).to_numpy(zero_copy_only=False), dtype=bool)
        n = len(lists)
        bad = np.zeros(n, dtype=bool)
        bad[rows[unknown]] = True
        if bad.any():
            first: dict[int, str] = {}  # row -> its first unknown tag
            for i, r in zip(np.flatnonzero(unknown).tolist(), rows[unknown].tolist(), strict=True):
                first.setdefault(r, str(flat[i].as_py()))
            cells = pa.array([f"{raw_cell} (unknown tag {first[i]!r})" if i in first else None
                              for i, raw_cell in enumerate(raw.combine_chunks().to_pylist())], pa.string())
            allowed = self.classes_ + [f"{a} (= {c})" for a, c in self.label.aliases.items()]
            problems.add(bad, self.label.column, f"unknown tag; allowed: {allowed} (set label.classes / label.aliases, "
                         f"or label.separator, now {self.label.separator!r})", cells)
        out = np.zeros((n, len(self.classes_)), dtype=np.float32)
        ok = ~unknown
        idx = pc.fill_null(found, 0).to_numpy(zero_copy_only=False)
        out[rows[ok], index_of[idx[ok]]] = 1.0
        return out

    # -- persistence (JSON, never pickle) --------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "features": [f.to_dict() for f in self.features],
            "label": None if self.label is None else self.label.model_dump(
                mode="json", exclude=self._not_saved()),  # the same form as before for the older kinds
            "classes": self.classes_,
            "fit_rows": self.fit_rows_,
            **({} if self.target_ is None else {"target": list(self.target_)}),
            **({"targets": [None if t is None else list(t) for t in self.targets_]} if self.multitask else {}),
        }

    def _not_saved(self) -> set[str]:
        """Label fields of other kinds, left out of the saved form (it stays what it was before they existed)."""
        if self.multitask:
            return set(LabelConfig.model_fields) - {"kind", "tasks", "heads"}
        return ({"loss", "huber_delta"} if not self.regression else set()) | (
            {"separator"} if not self.multilabel else set()) | {"tasks", "heads"}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Encoder:
        problem = format_problem(d.get("format_version"))
        if problem is not None:
            raise ValueError(problem)
        enc = Encoder.__new__(Encoder)
        enc.features = [column_from_dict(f) for f in d["features"]]
        enc.label = None if d["label"] is None else LabelConfig.model_validate(d["label"])
        enc.classes_ = list(d.get("classes", []))
        enc.fitted_ = True
        enc.fit_rows_ = int(d.get("fit_rows", 0))
        target = d.get("target")
        enc.target_ = None if target is None else (float(target[0]), float(target[1]))
        enc.targets_ = [None if t is None else (float(t[0]), float(t[1])) for t in d.get("targets", [])]
        return enc


def _binary(text: pa.Array | pa.ChunkedArray, positive: list[str],
            negative: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(is positive, is negative) of each cell, as bool arrays (a missing cell is neither)."""
    pos = pc.fill_null(pc.is_in(text, value_set=pa.array(positive)), False).to_numpy(zero_copy_only=False)
    neg = pc.fill_null(pc.is_in(text, value_set=pa.array(negative)), False).to_numpy(zero_copy_only=False)
    return np.asarray(pos, dtype=bool), np.asarray(neg, dtype=bool)


def _tag_lists(raw: pa.ChunkedArray | pa.Array, separator: str) -> pa.Array:
    """A multilabel column as a list<string> array, one list of tags per row, whitespace trimmed and empty tags
    dropped: a list column as it is, a text column split on ``separator``; a missing cell is an empty list."""
    arr = raw.combine_chunks() if isinstance(raw, pa.ChunkedArray) else raw
    if pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type) or pa.types.is_fixed_size_list(arr.type):
        arr = pc.cast(arr, pa.list_(pa.string()))
    else:
        text = arr if pa.types.is_string(arr.type) else pc.cast(arr, pa.string())
        arr = pc.split_pattern(pc.fill_null(text, ""), separator)
    arr = pc.fill_null(arr, pa.scalar([], pa.list_(pa.string())))
    flat = pc.utf8_trim_whitespace(arr.flatten())
    keep = pc.and_(pc.is_valid(flat), pc.not_equal(flat, ""))
    keep = pc.fill_null(keep, False)
    parents = pc.list_parent_indices(arr)
    kept_parents = np.asarray(pc.filter(parents, keep).to_numpy(zero_copy_only=False), dtype=np.int64)
    counts = np.bincount(kept_parents, minlength=len(arr))
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pc.filter(flat, keep))
