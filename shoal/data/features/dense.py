"""Dense features: a number per row, transformed, with a missing flag and optionally its quantile bin.

- ``log1p``: ``sign(v) * log(1 + |v|)``, for counts; ``standardize``: ``(v - mean_) / std_`` with the mean
  and standard deviation of the training values; ``none``: the value as it is.
- A missing value encodes as 0 and sets the feature's missing flag (a second dense input).
- With ``bins``, the transformed value's quantile bin (edges from a uniform sample of the training values)
  is also an id, for an embedding table of ``len(edges_) + 2`` rows: id 0 for missing, then one per bin.

A cell that is not a number, is infinite, or is a finite number beyond float32's range (|v| > 3.4028235e38: the
model computes in float32, where it would become inf, then NaN) is a problem of its row (:class:`~.base.Problems`);
with ``not_a_number: missing`` a cell that is not a number reads as missing instead (counted, and logged once).

Text cells are read as :class:`NumberFormat` says: a decimal mark (``.`` or ``,``), an optional thousands mark
between groups of three digits, and an optional symbol before or after the number (``$``, ``%``) that is dropped::

    decimal  thousands  symbol   cell           value
    "."      -          -        "-1.5e3"       -1500.0
    "."      ","        "$"      "$1,858.39"     1858.39
    ","      -          -        "0,3105"        0.3105
    ","      "."        -        "1.234,5"       1234.5
    "."      -          "%"      "2.1%"          2.1   (the number as written, not 0.021)
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any, Self

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shoal.config import DenseFeature
from shoal.data.features.base import FeatureColumn, Problems, feature_seed

__all__ = ["FLOAT32_MAX", "NUMBER", "DenseColumn", "DenseStats", "NumberFormat"]

log = logging.getLogger(__name__)

NUMBER = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"  # the text of a cell that a dense feature reads as a number
FLOAT32_MAX = float(np.finfo(np.float32).max)  # 3.4028235e38: the largest magnitude a dense value may have


def number_pattern(decimal: str = ".", thousands: str | None = None) -> str:
    """The regex of a cell's text (trimmed, its symbol dropped) that reads as a number with these marks; the
    defaults give :data:`NUMBER`. With a thousands mark the integer part is plain digits or groups of three
    (``30,220``, not ``3,02,20``)."""
    d = re.escape(decimal)
    whole = rf"(?:[1-9]\d{{0,2}}(?:{re.escape(thousands)}\d{{3}})+|\d+)" if thousands else r"\d+"
    return rf"^[+-]?(?:{whole}(?:{d}\d*)?|{d}\d+)(?:[eE][+-]?\d+)?$"


@dataclass(frozen=True)
class NumberFormat:
    """How a dense feature reads a text cell as a number (the module doc shows examples); ``not_a_number``:
    ``bad_row`` (a cell that is not a number is a problem of its row) or ``missing`` (it reads as missing)."""

    decimal: str = "."
    thousands: str | None = None
    symbol: str | None = None
    not_a_number: str = "bad_row"

    def options(self) -> dict[str, str]:
        """The options that differ from the defaults, keyed as in the config (empty for plain numbers)."""
        return {k: v for k, v in vars(self).items() if v != getattr(NumberFormat, k)}

    def parse(self, text: pa.Array) -> tuple[np.ndarray, np.ndarray]:
        """(values (N,) float64, NaN where null or not a number; ok (N,) bool, True where null or a number) of
        trimmed text cells."""
        if self.symbol:
            mark = re.escape(self.symbol)
            text = pc.replace_substring_regex(text, rf"^([+-]?)\s*{mark}\s*", r"\1")  # "-$5", "$ 5"
            text = pc.replace_substring_regex(text, rf"\s*{mark}$", "")  # "2.1%", "5 $"
        ok = pc.fill_null(pc.match_substring_regex(text, number_pattern(self.decimal, self.thousands)), True)
        clean = pc.if_else(ok, text, pa.scalar(None, pa.string()))
        if self.thousands:
            clean = pc.replace_substring(clean, self.thousands, "")
        if self.decimal != ".":
            clean = pc.replace_substring(clean, self.decimal, ".")
        values = np.asarray(pc.cast(clean, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
        return values, np.asarray(ok.to_numpy(zero_copy_only=False), dtype=bool)


class DenseColumn(FeatureColumn):
    """A dense feature: ``transform`` and, when ``bins`` > 0, the quantile bin of the value.

    Learned from training data (:meth:`learn`): ``mean_`` and ``std_`` of the transformed values, ``edges_``
    the interior quantile edges of the bins.
    """

    kind = "dense"

    def __init__(self, name: str, column: str, seed: int, transform: str = "none", bins: int = 0,
                 number: NumberFormat | None = None) -> None:
        super().__init__(name, column, seed)
        self.transform = transform
        self.bins = bins
        self.number = number or NumberFormat()
        self.not_numbers = 0  # cells read as missing for not being numbers (not_a_number: missing), not saved
        self.mean_ = 0.0
        self.std_ = 1.0
        self.edges_: list[float] = []

    @classmethod
    def from_config(cls, f: DenseFeature) -> DenseColumn:
        number = NumberFormat(f.decimal, f.thousands, f.symbol, f.not_a_number)
        return cls(f.name, f.source, feature_seed(f.name), transform=f.transform, bins=f.bins or 0, number=number)

    @property
    def bin_buckets(self) -> int:
        """Rows of the bin embedding table: id 0 for missing, then one per bin."""
        return len(self.edges_) + 2

    @property
    def needs_fit(self) -> bool:
        """Whether the encoding uses statistics of the training data (standardize, bins)."""
        return self.transform == "standardize" or self.bins > 0

    def read(self, table: pa.Table, problems: Problems) -> np.ndarray:
        """Float64 values (N,), each a float32 (what the model reads), NaN for missing; text read as :attr:`number`
        says. Infinite cells, and cells that are not numbers (unless ``not_a_number`` is ``missing``: then they
        read as missing, counted in :attr:`not_numbers`), are recorded as problems."""
        col = table.column(self.column).combine_chunks()
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            values, ok = self.number.parse(pc.utf8_trim_whitespace(col))
            if self.number.not_a_number == "missing":
                self._count_not_numbers(~ok, col)
            else:
                problems.add(~ok, self.column, "not a number (dense feature)", col)
        elif pa.types.is_integer(col.type) or pa.types.is_floating(col.type) or pa.types.is_boolean(col.type):
            values = pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False)
        else:
            problems.add(np.ones(len(col), bool), self.column, f"unsupported type {col.type} for a dense feature",
                         col)
            return np.full(len(col), np.nan)
        values = np.asarray(values, dtype=np.float64)
        infinite = np.isinf(values)
        problems.add(infinite, self.column, "infinite value (dense feature)", col)
        problems.add(~infinite & (np.abs(values) > FLOAT32_MAX), self.column,
                     f"outside float32's range, -{FLOAT32_MAX:.8g} to {FLOAT32_MAX:.8g} (dense feature)", col)
        with np.errstate(over="ignore"):  # those out of range are their rows' problems (above)
            # rounded to float32 as the model and the raw ONNX graph read them: '-0.028' on a bin edge learnt from
            # float64 values fell in the edge's bin here and below it in the graph (float32 -0.0280000009)
            return values.astype(np.float32).astype(np.float64)

    def _count_not_numbers(self, bad: np.ndarray, col: pa.Array) -> None:
        n = int(bad.sum())
        if n and not self.not_numbers:
            log.warning("dense feature %r: %r is not a number; read as missing, as such cells will be "
                        "(not_a_number: missing)", self.name, col[int(np.argmax(bad))].as_py())
        self.not_numbers += n

    def transformed(self, v: np.ndarray, standardize: bool) -> np.ndarray:
        """``v`` (N,) after the transform; ``standardize=False`` leaves out the learned scaling (for fitting)."""
        if self.transform == "log1p":
            v = np.sign(v) * np.log1p(np.abs(v))
        elif self.transform == "standardize" and standardize:
            v = (v - self.mean_) / self.std_
        return v

    def bin_ids(self, v: np.ndarray) -> np.ndarray:
        """The bin id (N,) int64 of each raw value: 1 + the number of edges at or below it, 0 when missing."""
        t = self.transformed(v, standardize=False)
        ids = np.searchsorted(np.asarray(self.edges_), t, side="right").astype(np.int64) + 1
        return np.where(np.isnan(t), 0, ids)

    def stats(self, sample_size: int) -> DenseStats:
        """An empty accumulator of this column's training statistics."""
        return DenseStats(sample_size if self.bins else 0, self.seed)

    def learn(self, stats: DenseStats) -> None:
        """Set ``mean_``, ``std_`` and ``edges_`` from the statistics of the training values."""
        if stats.n > 0:
            mean = stats.s1 / stats.n
            var = max(stats.s2 / stats.n - mean * mean, 0.0)
            self.mean_, self.std_ = float(mean), float(np.sqrt(var)) if var > 1e-12 else 1.0
        if self.bins:
            sample = stats.sample.values()
            if len(sample):
                qs = np.quantile(sample, np.linspace(0, 1, self.bins + 1)[1:-1])
                self.edges_ = [float(e) for e in np.unique(qs)]

    def options(self) -> dict[str, Any]:
        return {"transform": self.transform, "bins": self.bins, **self.number.options(), "mean_": self.mean_,
                "std_": self.std_, "edges_": list(self.edges_)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Self:
        number = NumberFormat(**{k: d[k] for k in NumberFormat.__dataclass_fields__ if k in d})
        col = cls(d["name"], d["column"], int(d.get("seed", 0)), transform=d.get("transform", "none"),
                  bins=int(d.get("bins", 0)), number=number)
        col.mean_ = float(d.get("mean_", 0.0))
        col.std_ = float(d.get("std_", 1.0))
        col.edges_ = [float(e) for e in d.get("edges_", [])]
        return col


class DenseStats:
    """Running statistics of one dense column's training values: count, sum, sum of squares and a sample."""

    def __init__(self, sample_size: int, seed: int) -> None:
        self.n = 0
        self.s1 = 0.0
        self.s2 = 0.0
        self.sample = Reservoir(sample_size, seed)

    def add(self, column: DenseColumn, v: np.ndarray) -> None:
        """Add the raw values ``v`` (N,) of good rows; missing values are left out."""
        t = column.transformed(v, standardize=False)
        t = t[np.isfinite(t)]
        if column.bins:
            self.sample.add(t)
        self.n += len(t)
        self.s1 += float(t.sum())
        self.s2 += float((t * t).sum())


class Reservoir:
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
