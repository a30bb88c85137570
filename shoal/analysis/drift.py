"""Drift: how far a new file's features have moved from the run's training data, one feature at a time.

The measure is the **population stability index** (PSI) of credit scoring (Siddiqi, *Credit Risk Scorecards*,
Wiley 2006, ch. 8; its sampling distribution: Yurdakul, "Statistical Properties of Population Stability Index",
2018). Over bins ``i`` with training shares ``e_i`` and new shares ``a_i``::

    PSI = sum_i (a_i - e_i) * ln(a_i / e_i)          = KL(a || e) + KL(e || a), the symmetrised KL divergence

    bins     missing  (-inf, q1]  (q1, q2]  ...  (q9, inf)
    train      2%        10%        10%    ...     8%        e
    new        2%         3%         5%    ...    31%        a      -> PSI 0.62: flagged

PSI < 0.1 reads as no shift, 0.1 - 0.25 a moderate one, > 0.25 a major one (the default threshold, 0.2, sits
between). Shares are floored at :data:`EPS` so an empty bin costs a large but finite amount. The bins, per kind:

- dense: the training quantile bins of the transformed value (the bin edges the model embeds, ``DenseColumn.edges_``,
  when the feature has ``bins``; else deciles of a training sample), and a bin for missing; the mean's shift is
  given in training standard deviations (``DenseColumn.mean_``/``std_``, saved at training time).
- sparse: the :data:`TOP_IDS` most frequent training ids, one bin for every other id and one for missing; and the
  out-of-vocabulary rate: the share of the new ids never seen in a sample of training ids (beside the same rate of
  one half of the training sample against the other, what an unchanged stream shows for a sample of this size).
- text: deciles of the training text lengths (bytes), and a bin for missing.
- time: each calendar part's values (hour, weekday, ...) and a bin for missing; the part with the largest PSI
  counts (a log that moved from evenings to mornings shows in ``hour``).

A feature is flagged when its PSI is above the threshold, or (sparse) its out-of-vocabulary rate exceeds the
training sample's own by more than the threshold. Image and audio features are not measured.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shoal.analysis.sample import AnalysisError, Rows, source_rows, training_source
from shoal.artifacts.bundle import Bundle, load_bundle
from shoal.artifacts.refs import resolve
from shoal.config import TIME_PARTS
from shoal.data.features import (
    DenseColumn,
    FeatureColumn,
    Problems,
    SparseColumn,
    TextColumn,
    TimeColumn,
    as_strings,
)

__all__ = ["EPS", "TOP_IDS", "DriftReport", "FeatureDrift", "drift", "feature_drift", "psi"]

EPS = 1e-4  # the least share a bin counts with, so an empty bin adds a finite amount
TOP_IDS = 20  # sparse features: the most frequent training ids that get a bin of their own
DECILES = 10  # bins of a dense feature without saved edges, and of text lengths


def psi(expected: np.ndarray, actual: np.ndarray, eps: float = EPS) -> float:
    """The population stability index of two histograms over the same bins (counts or shares, (K,) each).

    >>> round(psi(np.array([50, 50]), np.array([50, 50])), 6)
    0.0
    >>> round(psi(np.array([50, 50]), np.array([90, 10])), 3)
    0.879
    """
    e = np.asarray(expected, dtype=np.float64)
    a = np.asarray(actual, dtype=np.float64)
    if e.shape != a.shape or e.ndim != 1:
        raise ValueError(f"expected and actual must be histograms over the same bins, got {e.shape} and {a.shape}")
    if e.sum() <= 0 or a.sum() <= 0:
        raise ValueError("expected and actual must each count at least one value")
    e = np.maximum(e / e.sum(), eps)
    a = np.maximum(a / a.sum(), eps)
    return float(np.sum((a - e) * np.log(a / e)))


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's drift: its PSI, whether it is flagged and why, and the numbers behind it."""

    feature: str
    kind: str
    column: str
    psi: float | None  # None: not measured (image, audio)
    flagged: bool
    why: str  # what moved, in words ("PSI 0.62 > 0.2", "31% of ids unseen in training", "not measured")
    oov_rate: float | None = None  # sparse: share of the new ids not in the training sample
    stats: dict[str, float] = field(default_factory=dict)  # kind-specific: missing shares, mean shift, lengths

    def to_dict(self) -> dict[str, Any]:
        return {"feature": self.feature, "kind": self.kind, "column": self.column, "psi": self.psi,
                "flagged": self.flagged, "why": self.why, "oov_rate": self.oov_rate, **self.stats}


@dataclass(frozen=True)
class DriftReport:
    """What ``shoal drift`` reports: each feature's drift against the training data, the largest PSI first."""

    run: str
    data: str  # the new file
    reference: str  # where the training rows were read (the training file, or the run's split file)
    rows: int  # new rows compared
    reference_rows: int  # training rows compared
    threshold: float
    features: list[FeatureDrift]

    @property
    def flagged(self) -> list[str]:
        """The names of the flagged features."""
        return [f.feature for f in self.features if f.flagged]

    def to_dict(self) -> dict[str, Any]:
        return {"run": self.run, "data": self.data, "reference": self.reference, "rows": self.rows,
                "reference_rows": self.reference_rows, "threshold": self.threshold, "flagged": self.flagged,
                "features": [f.to_dict() for f in self.features]}


def drift(ref: str | os.PathLike[str], data: str | os.PathLike[str], home: str | os.PathLike[str] = "shoal-runs",
          *, threshold: float = 0.2, rows: int = 20_000, seed: int = 0) -> DriftReport:
    """Per-feature drift of ``data`` against the training data of run ``ref`` (bounded samples of both).

    Raises:
        AnalysisError: ``data`` lacks a column the run reads (named), holds no rows, or the run's training data
            cannot be read any more (and it kept no split); a threshold below 0.
    """
    if not threshold >= 0:
        raise AnalysisError(f"threshold is {threshold}; a PSI threshold is 0 or more (0.1: sensitive, 0.25: major "
                            "shifts only; default 0.2)")
    found = resolve(ref, home)
    bundle = load_bundle(found.folder)
    name = found.run_id or str(ref)
    columns = bundle.encoder.columns(with_label=False)
    new = source_rows(bundle, Path(data), columns, rows, seed, f"run {name} reads")
    train = training_source(bundle, found.folder, columns, rows, seed, name)
    return compare(bundle, train, new, threshold=threshold, run=name)


def compare(bundle: Bundle, train: Rows, new: Rows, *, threshold: float = 0.2, run: str = "") -> DriftReport:
    """The drift of each feature of ``bundle`` from the rows ``train`` to the rows ``new``."""
    found = [feature_drift(f, train.table, new.table, threshold) for f in bundle.encoder.features]
    found.sort(key=lambda d: (d.psi is None, -(d.psi or 0.0)))  # the largest PSI first, the unmeasured last
    return DriftReport(run, new.source, train.source, len(new), len(train), threshold, found)


def feature_drift(f: FeatureColumn, train: pa.Table, new: pa.Table, threshold: float) -> FeatureDrift:
    """The drift of one feature column from the table ``train`` to the table ``new``."""
    if isinstance(f, DenseColumn):
        return _dense(f, train, new, threshold)
    if isinstance(f, SparseColumn):
        return _sparse(f, train, new, threshold)
    if isinstance(f, TextColumn):
        return _text(f, train, new, threshold)
    if isinstance(f, TimeColumn) and f.parts:
        return _time(f, train, new, threshold)
    return FeatureDrift(f.name, f.kind, f.column, None, False, f"not measured ({f.kind} features)")


def _verdict(value: float, threshold: float) -> tuple[bool, str]:
    return value > threshold, f"PSI {value:.3f} {'>' if value > threshold else '<='} {threshold:g}"


# -- time ------------------------------------------------------------------------------------------------------------
def _time(f: TimeColumn, train: pa.Table, new: pa.Table, threshold: float) -> FeatureDrift:
    """A time feature's drift: the PSI of each calendar part's histogram (missing included), the largest named;
    cells that are not a time count as missing (the encoder would refuse their rows)."""
    parts = {}
    for name, t, a in zip(f.parts, f.part_ids(f.read(train, Problems())), f.part_ids(f.read(new, Problems())),
                          strict=True):
        k = TIME_PARTS[name] + 1
        parts[name] = psi(np.bincount(t, minlength=k), np.bincount(a, minlength=k))
    worst = max(parts, key=lambda p: parts[p])
    flagged, why = _verdict(parts[worst], threshold)
    detail = ", ".join(f"{p} {v:.3f}" for p, v in parts.items())
    return FeatureDrift(f.name, f.kind, f.column, parts[worst], flagged, f"{why} ({detail})",
                        stats={f"psi_{p}": v for p, v in parts.items()})


# -- dense -----------------------------------------------------------------------------------------------------------
def _numbers(f: DenseColumn, table: pa.Table) -> tuple[np.ndarray, int]:
    """The transformed values (N,) of a dense feature, NaN where missing or not a number, and the count of the
    latter (cells that are not numbers count as missing here; the encoder would refuse their rows)."""
    problems = Problems()
    v = f.read(table, problems)
    bad = np.zeros(len(v), dtype=bool)
    for idx in problems.rows:
        bad[idx] = True
    v = np.where(bad, np.nan, v)
    return f.transformed(v, standardize=False), int(bad.sum())


def _binned(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts (len(edges) + 2,): missing, then one per bin (edges are the interior bin edges)."""
    ids = np.searchsorted(edges, values, side="right") + 1
    ids = np.where(np.isnan(values), 0, ids)
    return np.bincount(ids, minlength=len(edges) + 2)


def _deciles(values: np.ndarray) -> np.ndarray:
    finite = values[np.isfinite(values)]
    if len(finite) == 0:
        return np.zeros(0)
    return np.unique(np.quantile(finite, np.linspace(0, 1, DECILES + 1)[1:-1]))


def _dense(f: DenseColumn, train: pa.Table, new: pa.Table, threshold: float) -> FeatureDrift:
    t, _ = _numbers(f, train)
    a, invalid = _numbers(f, new)
    saved = bool(f.bins and f.edges_)
    edges = np.asarray(f.edges_) if saved else _deciles(t)
    value = psi(_binned(t, edges), _binned(a, edges))
    flagged, why = _verdict(value, threshold)
    finite = a[np.isfinite(a)]
    stats = {"missing": float(np.isnan(a).mean()), "train_missing": float(np.isnan(t).mean()),
             "invalid": float(invalid), "bins": float(len(edges) + 1)}
    if len(finite):
        stats["mean_shift_std"] = float((finite.mean() - f.mean_) / f.std_)  # training mean_/std_ (transformed)
        why += f"; mean {stats['mean_shift_std']:+.2f} training std"
    return FeatureDrift(f.name, f.kind, f.column, value, flagged, why, stats=stats)


# -- sparse ----------------------------------------------------------------------------------------------------------
def _ids(f: SparseColumn, table: pa.Table) -> tuple[pa.Array, int]:
    """The ids of a sparse column as one string array (a list cell split by its separator), and the number of
    rows without any id (missing or empty: the encoder's id 0)."""
    text = as_strings(table.column(f.column), f.column)
    if f.separator is None:
        present = np.asarray(pc.fill_null(pc.not_equal(text, ""), False).to_numpy(zero_copy_only=False), dtype=bool)
        return text.filter(pa.array(present)), int((~present).sum())
    lists = pc.split_pattern(text, f.separator)
    flat = pc.utf8_trim_whitespace(pc.list_flatten(lists))
    parents = pc.list_parent_indices(lists).to_numpy()
    keep = np.asarray(pc.fill_null(pc.not_equal(flat, ""), False).to_numpy(zero_copy_only=False), dtype=bool)
    return flat.filter(pa.array(keep)), len(text) - len(np.unique(parents[keep]))


def _oov(seen: pa.Array, ids: pa.Array) -> float:
    """The share of ``ids`` not among ``seen`` (0 when there are no ids)."""
    if len(ids) == 0:
        return 0.0
    known = pc.is_in(ids, value_set=pc.unique(seen))
    return 1.0 - float(pc.sum(known.cast(pa.int64())).as_py() or 0) / len(ids)


def _sparse(f: SparseColumn, train: pa.Table, new: pa.Table, threshold: float) -> FeatureDrift:
    t, t_missing = _ids(f, train)
    a, a_missing = _ids(f, new)
    counts = pc.value_counts(t)
    order = np.argsort(-counts.field("counts").to_numpy(), kind="stable")[:TOP_IDS]
    top = counts.field("values").take(pa.array(order))

    def hist(ids: pa.Array, missing: int) -> np.ndarray:
        where = pc.index_in(ids, value_set=top).to_numpy(zero_copy_only=False)
        where = np.where(np.isnan(where.astype(np.float64)), len(top), where).astype(np.int64)  # other ids
        return np.concatenate([[missing], np.bincount(where, minlength=len(top) + 1)])

    value = psi(hist(t, t_missing), hist(a, a_missing))
    oov = _oov(t, a)
    half = np.arange(train.num_rows) % 2 == 0  # the training sample against itself: one half's ids vs the other's
    train_oov = _oov(_ids(f, train.filter(pa.array(half)))[0], _ids(f, train.filter(pa.array(~half)))[0])
    flagged, why = _verdict(value, threshold)
    if oov - train_oov > threshold:
        flagged = True
        why += f"; {oov:.0%} of ids unseen in training (training itself: {train_oov:.0%})"
    stats = {"missing": a_missing / max(new.num_rows, 1), "train_missing": t_missing / max(train.num_rows, 1),
             "train_oov_rate": train_oov, "top_ids": float(len(top)), "top_ids_share": _share(a, top),
             "train_top_ids_share": _share(t, top)}
    return FeatureDrift(f.name, f.kind, f.column, value, flagged, why, oov_rate=oov, stats=stats)


def _share(ids: pa.Array, top: pa.Array) -> float:
    """The share of ``ids`` among the ``top`` training ids."""
    if len(ids) == 0:
        return 0.0
    return float(pc.sum(pc.is_in(ids, value_set=top).cast(pa.int64())).as_py() or 0) / len(ids)


# -- text ------------------------------------------------------------------------------------------------------------
def _lengths(f: TextColumn, table: pa.Table) -> np.ndarray:
    """The length in UTF-8 bytes (N,) of each text, NaN where missing."""
    col = table.column(f.column).combine_chunks()
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        col = pc.cast(col, pa.string())
    n = pc.binary_length(col).cast(pa.float64())
    return np.asarray(n.to_numpy(zero_copy_only=False), dtype=np.float64)


def _text(f: TextColumn, train: pa.Table, new: pa.Table, threshold: float) -> FeatureDrift:
    t, a = _lengths(f, train), _lengths(f, new)
    edges = _deciles(t)
    value = psi(_binned(t, edges), _binned(a, edges))
    flagged, why = _verdict(value, threshold)
    stats = {"missing": float(np.isnan(a).mean()), "train_missing": float(np.isnan(t).mean()),
             "mean_bytes": float(np.nanmean(a)) if np.isfinite(a).any() else 0.0,
             "train_mean_bytes": float(np.nanmean(t)) if np.isfinite(t).any() else 0.0}
    if stats["train_mean_bytes"] > 0 and np.isfinite(a).any():
        why += f"; mean length {stats['train_mean_bytes']:.0f} -> {stats['mean_bytes']:.0f} bytes"
    return FeatureDrift(f.name, f.kind, f.column, value, flagged, why, stats=stats)

