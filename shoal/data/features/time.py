"""Time features: a point in time as calendar ids (hour of day, day of week, ...) and, relative to the row's
time, its age in days.

A cell is read as an instant (microseconds since 1970-01-01 UTC), by its type:

- text: ISO 8601, ``2024-03-01T08:30:00Z``, ``2024-03-01 08:30:00.25+02:00``, ``2024-03-01T08:30``,
  ``2024-03-01``; without an offset (or ``Z``) it is the local time of the feature's ``timezone``. With a
  ``format`` (strptime, e.g. ``%d/%m/%Y %H:%M``) text is read with it instead (``%z`` reads an offset).
  Text that is a number is an epoch number (below);
- a number: epoch seconds or milliseconds; ``unit: auto`` tells them apart by size: ``|v| >= 1e11`` is
  milliseconds (1e11 seconds is the year 5138; 1e11 milliseconds is 1973-03-03), ``unit: s`` / ``ms`` says;
- a Parquet/Arrow timestamp (with a time zone: the instant; without: local time of ``timezone``) or date.

Each of the feature's ``parts`` is an id for its own embedding table of (values + 1) rows, id 0 a missing time::

    cells         "2024-03-01T08:30:00Z"   ""     1709280000 (s)     parts [hour, weekday]
    hour ids      9 (08h + 1)              0      9                  table of 25 rows
    weekday ids   5 (Friday = 4, + 1)      0      5                  table of 8 rows

A wall time that a daylight-saving change skips (02:30 on a spring-forward night) reads as the first instant after
the gap; one it repeats, as the earlier of the two. UTC, the default zone, has neither.

With ``relative_to`` (another time feature: the row's time), the age ``(row time - this time)`` in days is also a
dense value: ``sign(a) * log1p(|a|)``, standardized with the training mean and standard deviation (``mean_``,
``std_``, saved with the encoder), 0 plus a missing flag when either time is missing.

Text that is neither a time nor a number, an infinite number, or a time outside the years 1 to 9999 is a problem
of its row (:class:`~.base.Problems`): the row is bad, reported with its file, line, column and value.
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shoal.config import TIME_PARTS, TimeFeature
from shoal.data.features.base import FeatureColumn, Problems, feature_seed
from shoal.data.features.dense import NUMBER

__all__ = ["ISO_TIME", "TimeColumn", "TimeStats"]

#: ISO 8601 text a time feature reads: a date, then optionally a time (minutes, seconds, a fraction) and a zone.
ISO_TIME = (r"^(?P<date>\d{4}-\d{2}-\d{2})(?:[T ](?P<hm>\d{2}:\d{2})(?P<sec>:\d{2})?(?P<frac>[.,]\d{1,9})?)?"
            r"\s?(?P<zone>[Zz]|[+-]\d{2}(?::?\d{2})?)?$")
MILLIS_FROM = 1e11  # unit auto: an epoch number at least this large (in magnitude) is in milliseconds
MIN_SECONDS, MAX_SECONDS = -62_135_596_800, 253_402_300_799  # 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59Z
US = 1_000_000
DAY_US = 86_400 * US
_FIRST = {"hour": 0, "weekday": 0, "day": 1, "month": 1}  # the smallest value of each part (its id is 1)
_INSTANT = pa.timestamp("us", tz="UTC")


class TimeColumn(FeatureColumn):
    """A time feature: the ids of its calendar ``parts`` in ``timezone`` and, with ``relative_to``, its age in days
    at the row's time (``mean_`` and ``std_`` of the log1p ages learned by :meth:`learn`)."""

    kind = "time"

    def __init__(self, name: str, column: str, seed: int, parts: tuple[str, ...] = ("hour", "weekday"),
                 timezone: str = "UTC", relative_to: str | None = None, format: str | None = None,
                 unit: str = "auto") -> None:
        super().__init__(name, column, seed)
        self.parts = tuple(parts)
        self.timezone = timezone
        self.relative_to = relative_to
        self.format = format
        self.unit = unit
        self.mean_ = 0.0
        self.std_ = 1.0

    @classmethod
    def from_config(cls, f: TimeFeature) -> TimeColumn:
        return cls(f.name, f.source, feature_seed(f.name), parts=tuple(f.parts), timezone=f.timezone,
                   relative_to=f.relative_to, format=f.format, unit=f.unit)

    @property
    def part_buckets(self) -> list[int]:
        """Rows of each part's embedding table, in ``parts`` order: id 0 for missing, then one per value."""
        return [TIME_PARTS[p] + 1 for p in self.parts]

    @property
    def needs_fit(self) -> bool:
        """Whether the encoding uses statistics of the training data (the age's mean and std)."""
        return self.relative_to is not None

    # -- reading -----------------------------------------------------------------------------------------------
    def read(self, table: pa.Table, problems: Problems) -> pa.Array:
        """The instants (N,) ``timestamp[us, tz=UTC]`` of the column, null where missing; cells that are not a time
        are recorded as problems (and null)."""
        col = table.column(self.column).combine_chunks()
        n = len(col)
        if pa.types.is_timestamp(col.type) or pa.types.is_date(col.type):
            return self._from_timestamps(col)
        if pa.types.is_integer(col.type) or pa.types.is_floating(col.type) or pa.types.is_decimal(col.type):
            values = np.asarray(pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
            us, ok = self._from_numbers(values, col, problems)
            return pa.array(us, _INSTANT, mask=~ok)
        if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
            problems.add(np.ones(n, bool), self.column, f"unsupported type {col.type} for a time feature (a string, "
                         "a number or a timestamp)", col)
            return pa.nulls(n, _INSTANT)
        text = pc.utf8_trim_whitespace(col.cast(pa.string()))
        present = _mask(pc.not_equal(text, ""))
        number = present & _mask(pc.match_substring_regex(text, NUMBER))
        us = np.zeros(n, np.int64)
        ok = np.zeros(n, bool)
        if number.any():
            values = np.full(n, np.nan)
            values[number] = pc.cast(text.filter(pa.array(number)), pa.float64()).to_numpy(zero_copy_only=False)
            n_us, n_ok = self._from_numbers(values, col, problems)
            us[number], ok[number] = n_us[number], n_ok[number]
        words = present & ~number
        if words.any():
            w_us, w_ok = self._from_text(pc.if_else(pa.array(words), text, pa.scalar(None, pa.string())))
            us[words], ok[words] = w_us[words], w_ok[words]
            what = (f"does not match format {self.format!r} (time feature)" if self.format is not None else
                    "not a time (time feature): expected ISO 8601 (2024-03-01T08:30:00Z, 2024-03-01 08:30, "
                    "2024-03-01), epoch seconds or epoch milliseconds")
            problems.add(words & ~w_ok, self.column, what, col)
        return pa.array(us, _INSTANT, mask=~ok)

    def _from_numbers(self, values: np.ndarray, col: pa.Array, problems: Problems) -> tuple[np.ndarray, np.ndarray]:
        """(microseconds, readable) of epoch numbers ``values`` (N,), NaN for missing; bad ones recorded."""
        finite = np.isfinite(values)
        problems.add(np.isinf(values), self.column, "infinite value (time feature)", col)
        if self.unit == "auto":
            millis = np.abs(np.where(finite, values, 0.0)) >= MILLIS_FROM
        else:
            millis = np.full(len(values), self.unit == "ms")
        seconds = np.where(millis, values / 1000.0, values)
        inside = finite & (seconds >= MIN_SECONDS) & (seconds <= MAX_SECONDS)
        unit = {"s": "seconds", "ms": "milliseconds"}.get(self.unit, "seconds, or milliseconds from 1e11")
        problems.add(finite & ~inside, self.column, f"a time outside the years 1 to 9999 (time feature; epoch {unit})",
                     col)
        us = np.round(np.where(inside, seconds, 0.0) * US).astype(np.int64)
        return us, inside

    def _from_text(self, text: pa.Array) -> tuple[np.ndarray, np.ndarray]:
        """(microseconds, readable) of text cells (null: not to be read here)."""
        if self.format is not None:
            parsed = pc.strptime(text, format=self.format, unit="us", error_is_null=True)
            return _int_us(parsed if "%z" in self.format else self._assume(parsed))
        parts = pc.extract_regex(text, ISO_TIME)  # null where the text is not ISO 8601
        date, hm, sec, frac, zone = (pc.struct_field(parts, k) for k in ("date", "hm", "sec", "frac", "zone"))
        hm = pc.if_else(pc.equal(hm, ""), "00:00", hm)
        sec = pc.if_else(pc.equal(sec, ""), ":00", sec)
        wall = pc.binary_join_element_wise(date, "T", hm, sec, "")
        zone = pc.replace_substring_regex(pc.replace_substring_regex(zone, "^[Zz]$", "+00:00"), "^([+-]\\d{2})$",
                                          "\\1:00")
        aware = _mask(pc.not_equal(zone, ""))
        with_zone = pc.strptime(pc.binary_join_element_wise(wall, zone, ""), format="%Y-%m-%dT%H:%M:%S%z", unit="us",
                                error_is_null=True)
        local = self._assume(pc.strptime(wall, format="%Y-%m-%dT%H:%M:%S", unit="us", error_is_null=True))
        z_us, z_ok = _int_us(with_zone)
        l_us, l_ok = _int_us(local)
        us, ok = np.where(aware, z_us, l_us), np.where(aware, z_ok, l_ok) & _calendar(wall)
        digits = pc.utf8_slice_codeunits(pc.utf8_rpad(pc.utf8_slice_codeunits(frac, 1), 6, "0"), 0, 6)
        fraction = np.asarray(pc.fill_null(pc.cast(pc.if_else(pc.equal(frac, ""), "0", digits), pa.int64()), 0)
                              .to_numpy(zero_copy_only=False), dtype=np.int64)
        return us + np.where(ok, fraction, 0), ok

    def _from_timestamps(self, col: pa.Array) -> pa.Array:
        """Instants of a timestamp or date column (a naive one is local time of ``timezone``)."""
        if pa.types.is_date(col.type):
            col = pc.cast(col, pa.timestamp("us"))
        if col.type.tz is None:
            return pc.cast(self._assume(pc.cast(col, pa.timestamp("us"), safe=False)), _INSTANT)
        return pc.cast(col, _INSTANT, safe=False)

    def _assume(self, naive: pa.Array) -> pa.Array:
        """Naive timestamps as the local time of ``timezone``: instants (a skipped wall time reads as the first
        instant after the gap, a repeated one as the earlier)."""
        if self.timezone == "UTC":
            return pc.cast(naive, _INSTANT)
        return pc.cast(pc.assume_timezone(naive, timezone=self.timezone, ambiguous="earliest", nonexistent="latest"),
                       _INSTANT)

    # -- encoding ----------------------------------------------------------------------------------------------
    def part_ids(self, instants: pa.Array) -> list[np.ndarray]:
        """The id (N,) int64 of each part, in ``parts`` order: 1 + the part's value in ``timezone`` (counted from
        its smallest value: hour 0, Monday, day 1, January), 0 for a missing time."""
        local = pc.cast(instants, pa.timestamp("us", tz=self.timezone))
        out = []
        for part in self.parts:
            value = {"hour": pc.hour, "weekday": pc.day_of_week, "day": pc.day, "month": pc.month}[part](local)
            ids = pc.fill_null(pc.subtract(value, _FIRST[part] - 1), 0)
            out.append(np.array(ids.to_numpy(zero_copy_only=False), dtype=np.int64))  # writable, for torch
        return out

    def ages(self, instants: pa.Array, reference: pa.Array) -> np.ndarray:
        """The age (N,) float64 in days, ``reference - instants``, NaN where either is missing."""
        this, this_ok = _int_us(instants)
        ref, ref_ok = _int_us(reference)
        days = (ref - this).astype(np.float64) / DAY_US
        return np.where(this_ok & ref_ok, days, np.nan)

    def transformed(self, days: np.ndarray, standardize: bool) -> np.ndarray:
        """Signed log1p of the ages ``days`` (N,), then (``standardize``) scaled by the learned mean and std."""
        t = np.sign(days) * np.log1p(np.abs(days))
        return (t - self.mean_) / self.std_ if standardize else t

    def stats(self) -> TimeStats:
        """An empty accumulator of the ages' training statistics."""
        return TimeStats()

    def learn(self, stats: TimeStats) -> None:
        """Set ``mean_`` and ``std_`` of the log1p ages of the training rows."""
        if stats.n > 0:
            mean = stats.s1 / stats.n
            var = max(stats.s2 / stats.n - mean * mean, 0.0)
            self.mean_, self.std_ = float(mean), float(np.sqrt(var)) if var > 1e-12 else 1.0

    def options(self) -> dict[str, Any]:
        return {"parts": list(self.parts), "timezone": self.timezone, "relative_to": self.relative_to,
                "format": self.format, "unit": self.unit, "mean_": self.mean_, "std_": self.std_}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Self:
        parts = tuple(str(p) for p in d.get("parts", ("hour", "weekday")))
        unknown = [p for p in parts if p not in TIME_PARTS]
        if unknown:
            raise ValueError(f"saved feature {d.get('name')!r}: unknown time parts {unknown}; known: "
                             f"{', '.join(TIME_PARTS)}")
        col = cls(d["name"], d["column"], int(d.get("seed", 0)), parts=parts, timezone=str(d.get("timezone", "UTC")),
                  relative_to=d.get("relative_to"), format=d.get("format"), unit=str(d.get("unit", "auto")))
        col.mean_ = float(d.get("mean_", 0.0))
        col.std_ = float(d.get("std_", 1.0))
        return col


class TimeStats:
    """Count, sum and sum of squares of the log1p ages of the training rows."""

    def __init__(self) -> None:
        self.n = 0
        self.s1 = 0.0
        self.s2 = 0.0

    def add(self, column: TimeColumn, days: np.ndarray) -> None:
        """Add the ages ``days`` (N,) of good rows; missing ones are left out."""
        t = column.transformed(days, standardize=False)
        t = t[np.isfinite(t)]
        self.n += len(t)
        self.s1 += float(t.sum())
        self.s2 += float((t * t).sum())


def _calendar(wall: pa.Array) -> np.ndarray:
    """Whether each ``YYYY-MM-DDTHH:MM:SS`` text (N,) names a real date and time (strptime rolls 2024-02-30 over to
    March 1 and 24:00 to the next day; ISO text that says so is refused instead). Null: False."""
    def number(start: int, stop: int) -> np.ndarray:
        digits = pc.fill_null(pc.utf8_slice_codeunits(wall, start, stop), "0")
        return np.asarray(pc.cast(digits, pa.int64()).to_numpy(zero_copy_only=False), dtype=np.int64)

    year, month, day = number(0, 4), number(5, 7), number(8, 10)
    hour, minute, second = number(11, 13), number(14, 16), number(17, 19)
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    days = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])[np.clip(month - 1, 0, 11)] + (leap & (month == 2))
    real = (month >= 1) & (month <= 12) & (day >= 1) & (day <= days) & (hour < 24) & (minute < 60) & (second < 60)
    return real & np.asarray(pc.is_valid(wall).to_numpy(zero_copy_only=False), dtype=bool)


def _mask(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A boolean array (N,) as numpy, null as False."""
    return np.asarray(pc.fill_null(values, False).to_numpy(zero_copy_only=False), dtype=bool)


def _int_us(instants: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(microseconds (N,) int64, 0 where null; present (N,) bool) of timestamps."""
    ok = np.asarray(pc.is_valid(instants).to_numpy(zero_copy_only=False), dtype=bool)
    us = pc.fill_null(pc.cast(pc.cast(instants, pa.timestamp("us", tz="UTC")), pa.int64()), 0)
    return np.asarray(us.to_numpy(zero_copy_only=False), dtype=np.int64), ok
