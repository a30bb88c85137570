"""Time features inside the raw ONNX graph: instants in, the encoder's calendar ids and ages out.

:mod:`shoal.export.raw` builds the whole raw graph; this module adds the time features
(:class:`~shoal.data.features.TimeColumn`) to it, in standard ONNX operators (opset 18, ``ai.onnx``). Reading a
time is the caller's job, as decoding a WAV is: ONNX has no date parsing and no time zones, and every language has
both. A time feature ``NAME`` takes::

    NAME.instant  int64 (N,)  microseconds since 1970-01-01T00:00:00Z; missing: -9223372036854775808 (int64's
                              smallest value)
    NAME.offset   int64 (N,)  only for a feature whose ``timezone`` is not UTC: the zone's offset from UTC at that
                              instant, in seconds (3600 for 09:00 in Paris in winter, which is 08:00Z); any value
                              where the instant is missing

    "2024-03-01T08:30:00Z", missing, "2024-03-01T09:30:00+01:00"  ->  instant [1709281800000000,
                                                                      -9223372036854775808, 1709281800000000]

and the graph computes what :meth:`TimeColumn.part_ids` and :meth:`TimeColumn.ages` do, in integers: the local
time ``instant + offset``; its day ``floor(local / 1 day)`` (``Mod`` with a positive divisor is a floor modulo, so
``(local - Mod(local, day)) / day`` is exact for times before 1970 too); the hour from the time of day, the weekday
from the day (1970-01-01 was a Thursday) and the day of the month and the month from the day by Howard Hinnant's
``civil_from_days``, each as ``1 + value`` (0 where missing). A feature with ``relative_to`` also gives its age in
days at the row's time, ``(reference - instant) / 1 day`` in float64, then ``sign(a) * log1p(|a|)`` standardised
with the encoder's mean and std, 0 and a missing flag where either time is missing, as a dense value.

:func:`time_feed` reads the cells with the encoder's own reader (ISO 8601 text, a ``format``, epoch seconds or
milliseconds, timestamps), so text it would not read is refused with the row and column named.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shoal.data.features.base import Problems
from shoal.data.features.time import DAY_US, MILLIS_FROM, US, TimeColumn
from shoal.export.raw_graph import GraphBuilder, per_object, signed_log1p

__all__ = ["MISSING_INSTANT", "synthetic_times", "time_contract", "time_feed", "time_graph"]

MISSING_INSTANT = np.iinfo(np.int64).min  # a missing time's instant
HOUR_US = 3600 * US
_EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday (Monday = 0)
_COLUMNS: dict[int, tuple[Any, Any]] = {}  # a contract entry -> its column (per_object)


# -- the contract -----------------------------------------------------------------------------------------------
def time_contract(col: TimeColumn) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """(the feature's entry, its inputs) in ``raw_inputs.json``."""
    names = {"instant": f"{col.name}.instant"}
    if col.timezone != "UTC":
        names["offset"] = f"{col.name}.offset"
    feature = {"name": col.name, "kind": "time", "column": col.column, **col.options(), "inputs": names}
    inputs: dict[str, dict[str, Any]] = {names["instant"]: {
        "dtype": "int64", "shape": ["N"], "missing": int(MISSING_INSTANT),
        "example": [1709281800000000, int(MISSING_INSTANT)],
        "about": f"time feature {col.name!r} (column {col.column!r}): each row's instant in microseconds since "
                 "1970-01-01T00:00:00Z (the caller reads the text: ISO 8601, epoch seconds or milliseconds"
                 + (f", or the format {col.format!r}" if col.format else "")
                 + (f"; text without an offset is the local time of {col.timezone}" if col.timezone != "UTC" else "")
                 + ")"}}
    if "offset" in names:
        inputs[names["offset"]] = {
            "dtype": "int64", "shape": ["N"], "missing": "any value (the instant says missing)", "example": [3600, 0],
            "about": f"the UTC offset of {col.timezone} at each instant of {col.name!r}, in seconds (its "
                     "daylight-saving rules are the caller's time-zone library's)"}
    return feature, inputs


# -- the caller's part: reading ---------------------------------------------------------------------------------
def time_feed(feature: dict[str, Any], cells: pa.ChunkedArray | pa.Array) -> dict[str, np.ndarray]:
    """The inputs of time feature ``feature`` (a contract entry) for ``cells``, read as the encoder reads them;
    ValueError naming the row and column for a cell it would not read (the encoder leaves that row out)."""
    col = per_object(_COLUMNS, feature, TimeColumn.from_dict)  # its reading options, the ages' mean and std
    if pa.types.is_null(cells.type):  # every cell missing (row dicts with None only)
        cells = pa.nulls(len(cells), pa.string())
    problems = Problems()
    instants = col.read(pa.table({col.column: cells}), problems)
    if problems.rows:
        bad = int(problems.rows[0][0])
        raise ValueError(f"row {bad}, column {col.column!r}: {problems.reasons[0]} "
                         f"(value {problems.values[0][bad].as_py()!r})")
    us = np.asarray(pc.fill_null(pc.cast(instants, pa.int64()), int(MISSING_INSTANT)).to_numpy(zero_copy_only=False),
                    dtype=np.int64)
    names = feature["inputs"]
    feed = {names["instant"]: us}
    if "offset" in names:
        local = pc.cast(pc.local_timestamp(pc.cast(instants, pa.timestamp("us", tz=col.timezone))), pa.int64())
        offset = (np.asarray(pc.fill_null(local, 0).to_numpy(zero_copy_only=False), dtype=np.int64)
                  - np.where(us == MISSING_INSTANT, 0, us))
        feed[names["offset"]] = np.where(us == MISSING_INSTANT, 0, offset // US)
    return feed


# -- the graph --------------------------------------------------------------------------------------------------
def _floor_div(g: GraphBuilder, x: str, d: int) -> tuple[str, str]:
    """(floor(x / d), x mod d in [0, d)) of int64 ``x`` and a positive constant ``d``, exact for any sign."""
    rest = g.op("Mod", [x, g.i64(d)], fmod=0)  # integer Mod: the divisor's sign, a floor modulo
    return g.op("Div", [g.op("Sub", [x, rest]), g.i64(d)]), rest


def _day_and_month(g: GraphBuilder, days: str) -> tuple[str, str]:
    """(day of the month 1..31, month 1..12) of ``days`` since 1970-01-01, Hinnant's ``civil_from_days`` for the
    years 1 to 9999 (every division of non-negative numbers, so C's truncation is the floor)."""
    def div(x: str, d: int) -> str:
        return g.op("Div", [x, g.i64(d)])

    def mul(x: str, k: int) -> str:
        return g.op("Mul", [x, g.i64(k)])

    def add(*xs: str) -> str:
        out = xs[0]
        for x in xs[1:]:
            out = g.op("Add", [out, x])
        return out

    def sub(a: str, b: str) -> str:
        return g.op("Sub", [a, b])

    z = g.op("Add", [days, g.i64(719_468)])  # days since 0000-03-01: positive from the year 1
    doe = sub(z, mul(div(z, 146_097), 146_097))  # day of the 400-year era, 0..146096
    yoe = div(sub(add(sub(doe, div(doe, 1_460)), div(doe, 36_524)), div(doe, 146_096)), 365)  # year of the era
    doy = sub(doe, add(mul(yoe, 365), div(yoe, 4)))  # day of the year from March 1 ...
    doy = g.op("Add", [doy, div(yoe, 100)])  # ... (365 yoe + yoe/4 - yoe/100 days before it)
    mp = div(g.op("Add", [mul(doy, 5), g.i64(2)]), 153)  # month from March = 0
    day = g.op("Add", [sub(doy, div(g.op("Add", [mul(mp, 153), g.i64(2)]), 5)), g.i64(1)])
    month = g.op("Add", [g.op("Mod", [g.op("Add", [mp, g.i64(2)]), g.i64(12)], fmod=0), g.i64(1)])
    return day, month


def time_graph(g: GraphBuilder, cols: Sequence[TimeColumn]) -> tuple[list[str], list[str], list[str]]:
    """Add the time features ``cols`` (config order) to ``g``: (each age's value (N, 1) float32, each age's missing
    flag (N, 1) float32, in the encoder's age order; each part's ids (N,) int64, feature after feature in
    ``parts`` order)."""
    from onnx import TensorProto as T

    instants: dict[str, tuple[str, str]] = {}  # name -> (instant with 0 where missing, missing)
    parts: list[str] = []
    for col in cols:
        raw = f"{col.name}.instant"
        missing = g.op("Equal", [raw, g.i64(int(MISSING_INSTANT))])
        instant = g.op("Where", [missing, g.i64(0), raw])
        instants[col.name] = (instant, missing)
        if not col.parts:
            continue
        local = instant
        if col.timezone != "UTC":
            local = g.op("Add", [instant, g.op("Mul", [f"{col.name}.offset", g.i64(US)])])
        days, of_day = _floor_div(g, local, DAY_US)
        values: dict[str, str] = {"hour": g.op("Div", [of_day, g.i64(HOUR_US)]),
                                  "weekday": g.op("Mod", [g.op("Add", [days, g.i64(_EPOCH_WEEKDAY)]), g.i64(7)],
                                                  fmod=0)}
        if "day" in col.parts or "month" in col.parts:
            values["day"], values["month"] = _day_and_month(g, days)
        first = {"hour": 0, "weekday": 0, "day": 1, "month": 1}
        for part in col.parts:
            ids = g.op("Add", [values[part], g.i64(1 - first[part])])
            parts.append(g.op("Where", [missing, g.i64(0), ids], f"time_{part}"))
    ages, flags = [], []
    for col in cols:
        if col.relative_to is None:
            continue
        (this, this_missing), (ref, ref_missing) = instants[col.name], instants[col.relative_to]
        days = g.op("Div", [g.op("Cast", [g.op("Sub", [ref, this])], to=T.DOUBLE), g.const(float(DAY_US), np.float64)])
        scaled = g.op("Div", [g.op("Sub", [signed_log1p(g, days), g.const(col.mean_, np.float64)]),
                              g.const(col.std_, np.float64)])
        missing = g.op("Or", [this_missing, ref_missing])
        value = g.op("Cast", [g.op("Where", [missing, g.const(0.0, np.float64), scaled])], to=T.FLOAT)
        ages.append(g.unsqueeze(value, 1))
        flags.append(g.unsqueeze(g.op("Cast", [missing], to=T.FLOAT), 1))
    return ages, flags, parts


# -- synthetic rows ---------------------------------------------------------------------------------------------
def synthetic_times(rng: np.random.Generator, col: TimeColumn, rows: int) -> list[str | None]:
    """Random cells of time feature ``col``: instants from 1901 to 2099 (and the minutes around midnight, the
    month ends and daylight-saving changes), written as the feature reads them: with a ``format``, in it; else
    ISO 8601 with ``Z``, with an offset, without a zone (the feature's local time), a date alone, or epoch seconds
    or milliseconds as text; about 10% missing (empty or null)."""
    zone = ZoneInfo(col.timezone)
    out: list[str | None] = []
    for _ in range(rows):
        pick = rng.random()
        if pick < 0.05:
            out.append(None)
            continue
        if pick < 0.1:
            out.append("")
            continue
        seconds = int(rng.integers(-2_177_452_800, 4_102_444_800))  # 1901-01-01 .. 2100-01-01
        if rng.random() < 0.3:  # near a day's (and often a month's or a DST change's) end
            seconds = seconds - seconds % 86_400 + int(rng.integers(-7_200, 7_200))
        at = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
        local = at.astimezone(zone)
        if col.format is not None:
            out.append((local if "%z" in col.format else local.replace(tzinfo=None)).strftime(col.format))
            continue
        style = int(rng.integers(0, 6))
        offset = local.utcoffset()
        if style == 0 or (style == 1 and offset is not None and offset.seconds % 60):  # ISO offsets are in minutes
            out.append(at.strftime("%Y-%m-%dT%H:%M:%SZ"))
        elif style == 1:
            out.append(local.isoformat(timespec="seconds"))
        elif style == 2:
            out.append(local.replace(tzinfo=None).isoformat(sep=" ", timespec="seconds"))
        elif style == 3:
            out.append(local.date().isoformat())
        elif style == 4 or abs(seconds) < MILLIS_FROM / 1000:  # milliseconds are told apart by size alone
            out.append(str(seconds))
        else:
            out.append(str(seconds * 1000 + int(rng.integers(0, 1000))))
    return out
