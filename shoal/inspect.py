"""``shoal inspect FILE``: profile a data file and write a starter config for it.

:func:`inspect_file` streams up to ``max_rows`` rows through :func:`shoal.data.readers.read_chunks` (CSV/TSV
columns read as strings) and keeps, per column, only bounded state: 64-bit hashes of the distinct values (up
to a cap), a fixed-size sample of the numeric values, a few counters. From that it guesses each column's
kind:

- ``dense``: every non-missing value is a number. ``log1p`` for skewed integer counts, else ``standardize``.
- ``sparse``: strings (ids, categories); a cell holding a list of ids (``"a|b|c"`` in more than 10% of the
  rows) gets that separator.
- ``ignore``: nothing to learn from: always missing, constant, or unique per row (an identifier).
- ``label``: the target, given or guessed: binary (a label-like name, 0/1 values, else the first or last
  column with exactly two values), else multiclass (a label-like name with 3 to 100 values, or, in a file
  with a text column, the first or last column with 3 to 100 values: the classes of a text classifier).

It also guesses whether a CSV/TSV file has a header line and which delimiter it uses.
:func:`starter_config` turns the profile into YAML that :func:`shoal.config.load_config` accepts, with a
comment on every choice so it can be reviewed before training.

>>> import tempfile
>>> folder = Path(tempfile.mkdtemp())
>>> _ = (folder / "clicks.csv").write_text("clicked,age,city\\n1,31,paris\\n0,45,rome\\n0,27,paris\\n")
>>> profile = inspect_file(folder / "clicks.csv")
>>> profile.header, profile.label, [c.kind for c in profile.columns]
(True, 'clicked', ['label', 'dense', 'sparse'])
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shoal.config import BagConfig, DLRMConfig, LabelConfig, TrainConfig
from shoal.data.hashing import hash_strings
from shoal.data.readers import BadInputError, BadRowSink, check_file, detect_format, read_chunks, read_header

__all__ = [
    "DEFAULT_MISSING",
    "ColumnProfile",
    "FileProfile",
    "inspect_file",
    "sparse_buckets",
    "starter_config",
]

Kind = Literal["label", "dense", "sparse", "text", "ignore"]
_TEXT_SPACED_SHARE = 0.5  # a string column is text when most values contain spaces ...
_TEXT_MIN_BYTES = 16  # ... and they are not short labels

#: The missing-value markers of :class:`shoal.config.DataConfig` (its default for ``data.missing``).
DEFAULT_MISSING: tuple[str, ...] = ("", "NA", "NaN", "nan", "null", "?")
#: Distinct values are counted exactly up to this many per column, then reported as ">=".
CARDINALITY_CAP = 1_000_000
MAX_GUESSED_CLASSES = 100  # a column with more values is not guessed to be a multiclass label

#: Names that mark a label column (compared lower-cased).
LABEL_NAMES = ("label", "labels", "click", "clicked", "clicks", "target", "y", "income", "class")

_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")  # what the encoder accepts as a number
_NUMBER_PATTERN = _NUMBER.pattern
_HEX_PATTERN = r"^[0-9a-fA-F]+$"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_ .:/()\[\]#+-]*$")
_DELIMITERS = (",", "\t", ";", "|")
_LIST_SEPARATORS = ("|", ";", ",")
_SNIFF_LINES = 64
_SNIFF_BYTES = 1 << 20
_SAMPLE_SIZE = 20_000  # numeric values kept per column for skewness
_SMALL = 64  # value counts are kept while a column has at most this many distinct values
_SKEWED = 2.0  # sample skewness above which integer counts get log1p
_UNIQUE_SHARE = 0.95
_UNIQUE_MIN_ROWS = 1000
_LIST_SHARE = 0.10
_MIN_BUCKETS, _MAX_BUCKETS = 16, 1_000_000


@dataclass(frozen=True)
class ColumnProfile:
    """What one column looks like and the kind chosen for it.

    ``cardinality`` counts distinct non-missing values (for a list column: distinct ids across the lists),
    exactly up to :data:`CARDINALITY_CAP`; past it ``cardinality_capped`` is set and the count is a lower
    bound. ``top_values`` holds (value, rows) for columns with few distinct values, most frequent first.
    """

    name: str
    kind: Kind
    dtype: str
    rows: int
    missing: int
    missing_pct: float
    cardinality: int
    cardinality_capped: bool
    example: str | None
    reason: str
    multi_id_separator: str | None = None
    transform: Literal["log1p", "standardize", "none"] | None = None  # dense only
    top_values: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class FileProfile:
    """A profiled file: how to read it, its columns and the chosen label.

    ``label_positive`` / ``label_negative`` are the label values to configure; empty means the defaults of
    :class:`shoal.config.LabelConfig` (``1``/``0``, ``true``/``false``) already cover them. ``rows`` is the
    number of rows read (at most ``max_rows``; ``truncated`` says the file has more). ``bad_rows`` counts
    rows skipped for a wrong column count.
    """

    path: Path
    format: str
    header: bool
    delimiter: str | None
    columns: list[ColumnProfile]
    rows: int
    label: str | None
    missing: tuple[str, ...] = DEFAULT_MISSING
    label_positive: tuple[str, ...] = ()
    label_negative: tuple[str, ...] = ()
    truncated: bool = False
    bad_rows: int = 0
    label_classes: tuple[str, ...] = ()  # a multiclass label's values (empty: a binary label)

    def column(self, name: str) -> ColumnProfile:
        """The profile of column ``name``; ``KeyError`` when there is none."""
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data (``path`` as a string), e.g. for ``shoal inspect --json``."""
        d = asdict(self)
        d["path"] = str(self.path)
        return d


# ------------------------------------------------------------------------------------------ per column state


class _Reservoir:
    """A uniform random sample of at most ``size`` values of a stream (algorithm R, vectorized)."""

    def __init__(self, size: int, seed: int = 0) -> None:
        self.size = size
        self.seen = 0
        self.values = np.empty(0, dtype=np.float64)
        self._rng = np.random.default_rng(seed)

    def add(self, v: np.ndarray) -> None:
        room = self.size - len(self.values)
        if room > 0:
            self.values = np.concatenate([self.values, v[:room]])
            self.seen += min(room, len(v))
            v = v[room:]
        if len(v) == 0:
            return
        index = self.seen + np.arange(len(v), dtype=np.int64)
        slot = (self._rng.random(len(v)) * (index + 1)).astype(np.int64)
        keep = slot < self.size
        self.values[slot[keep]] = v[keep]
        self.seen += len(v)


class _DistinctSet:
    """Distinct values as sorted 64-bit hashes, exact up to ``cap`` entries."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.hashes = np.empty(0, dtype=np.uint64)
        self.capped = False

    def add(self, values: pa.Array) -> np.ndarray:
        """Add the (non-null) strings ``values``; returns the distinct hashes of this batch."""
        new = np.unique(hash_strings(values)) if len(values) else np.empty(0, dtype=np.uint64)
        if not self.capped:
            merged = np.union1d(self.hashes, new)
            if len(merged) >= self.cap:
                merged = merged[: self.cap]
                self.capped = True
            self.hashes = merged
        return new

    def __len__(self) -> int:
        return len(self.hashes)


@dataclass
class _ListStats:
    """How often a candidate list separator occurs in a column, and the ids it splits into."""

    rows: int = 0
    tokens: int = 0
    spaced_tokens: int = 0
    distinct: _DistinctSet = field(default_factory=lambda: _DistinctSet(CARDINALITY_CAP))


class _ColumnStats:
    """Everything :func:`inspect_file` remembers about one column while streaming (bounded)."""

    def __init__(self, name: str, separators: Sequence[str], cap: int) -> None:
        self.name = name
        self.rows = 0
        self.missing = 0
        self.padded_missing = 0  # markers with spaces around them, e.g. " ?" (not nulled by the reader)
        self.example: str | None = None
        self.arrow_type: pa.DataType | None = None
        self.unsupported: str | None = None
        self.distinct = _DistinctSet(cap)
        self.counts: dict[str, int] | None = {}
        self.numeric = True
        self.non_numeric: str | None = None
        self.integer = True
        self.minimum = math.inf
        self.maximum = -math.inf
        self.sample = _Reservoir(_SAMPLE_SIZE)
        self.increasing = True
        self.last = -math.inf
        self.hex = True
        self.text_bytes = 0  # total UTF-8 bytes of the string values
        self.spaced = 0  # string values containing a space: prose, not ids
        self.lists = {s: _ListStats() for s in separators}

    @property
    def present(self) -> int:
        return self.rows - self.missing

    def add(self, col: pa.ChunkedArray | pa.Array, markers: pa.Array | None) -> None:
        arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
        self.rows += len(arr)
        if self.arrow_type is None:
            self.arrow_type = arr.type
        if self.unsupported is not None:
            return
        floats: np.ndarray | None = None
        if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
            text = pc.utf8_trim_whitespace(arr)
        elif pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type) or pa.types.is_decimal(arr.type):
            floats = np.asarray(pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
            nan = np.isnan(floats)  # nulls come out as NaN too: both are missing values
            if nan.any():
                arr = arr.filter(pa.array(~nan))
                self.missing += int(nan.sum())
                floats = floats[~nan]
            text = pc.cast(arr, pa.string())
        else:
            try:
                text = pc.utf8_trim_whitespace(pc.cast(arr, pa.string()))
            except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
                self.unsupported = str(arr.type)
                return
            self.numeric = False
        if markers is not None and len(text):
            padded = pc.fill_null(pc.is_in(text, value_set=markers), False)
            n_padded = pc.sum(padded).as_py() or 0
            if n_padded:
                self.padded_missing += n_padded
                text = pc.if_else(padded, pa.scalar(None, pa.string()), text)
        self.missing += text.null_count
        values = pc.drop_null(text) if text.null_count else text
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        if len(values) == 0:
            return
        if self.example is None:
            self.example = values[0].as_py()
        batch_distinct = self.distinct.add(values)
        self._count(values, len(batch_distinct))
        if floats is None and self.numeric:
            ok = pc.match_substring_regex(values, _NUMBER_PATTERN)
            if not pc.all(ok).as_py():
                self.numeric = False
                self.non_numeric = values.filter(pc.invert(ok))[0].as_py()
            else:
                parsed = pc.cast(values, pa.float64()).to_numpy(zero_copy_only=False)
                floats = np.asarray(parsed, dtype=np.float64)
        if self.numeric and floats is not None:
            self._numbers(floats)
        else:
            self._strings(values)

    def _count(self, values: pa.Array, batch_distinct: int) -> None:
        if self.counts is None:
            return
        if batch_distinct > _SMALL:
            self.counts = None
            return
        vc = pc.value_counts(values)
        for v, n in zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist(), strict=True):
            self.counts[v] = self.counts.get(v, 0) + int(n)
        if len(self.counts) > _SMALL:
            self.counts = None

    def _numbers(self, v: np.ndarray) -> None:
        if np.isinf(v).any():
            self.numeric = False  # the encoder rejects infinite dense values
            self.non_numeric = str(v[np.isinf(v)][0])
            return
        self.minimum = min(self.minimum, float(v.min()))
        self.maximum = max(self.maximum, float(v.max()))
        if self.integer and not (np.all(v == np.floor(v)) and np.all(np.abs(v) < 2.0**53)):
            self.integer = False
        if self.increasing:
            self.increasing = bool(v[0] > self.last and np.all(np.diff(v) > 0))
            self.last = float(v[-1])
        self.sample.add(v)

    def _strings(self, values: pa.Array) -> None:
        self.text_bytes += pc.sum(pc.binary_length(values)).as_py() or 0
        self.spaced += pc.sum(pc.match_substring(values, " ")).as_py() or 0
        if self.hex:
            self.hex = bool(pc.all(pc.match_substring_regex(values, _HEX_PATTERN)).as_py())
        for sep, stats in self.lists.items():
            has = pc.match_substring(values, sep)
            rows = pc.sum(has).as_py() or 0
            if not rows:
                continue
            stats.rows += rows
            tokens = pc.utf8_trim_whitespace(pc.list_flatten(pc.split_pattern(values, sep)))
            tokens = tokens.filter(pc.not_equal(tokens, ""))
            stats.tokens += len(tokens)
            stats.spaced_tokens += pc.sum(pc.match_substring(tokens, " ")).as_py() or 0
            stats.distinct.add(tokens)

    # -- conclusions ---------------------------------------------------------------------------------
    def top_values(self) -> tuple[tuple[str, int], ...]:
        if self.counts is None:
            return ()
        return tuple(sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0]))[:10])

    def skewness(self) -> float:
        x = self.sample.values
        if len(x) < 3:
            return 0.0
        m, s = float(x.mean()), float(x.std())
        if s <= 0:
            return 0.0
        return float(np.mean(((x - m) / s) ** 3))

    def separator(self) -> tuple[str, _ListStats] | None:
        """The list separator found in more than 10% of the non-missing rows, if any."""
        best: tuple[str, _ListStats] | None = None
        for sep, stats in self.lists.items():
            if not self.present or stats.rows <= _LIST_SHARE * self.present or not stats.tokens:
                continue
            if stats.spaced_tokens > 0.1 * stats.tokens:  # free text with commas, not lists of ids
                continue
            if best is None or stats.rows > best[1].rows:
                best = (sep, stats)
        return best

    def dtype(self) -> str:
        if self.unsupported is not None:
            return self.unsupported
        if self.arrow_type is not None and pa.types.is_boolean(self.arrow_type):
            return "bool"
        if self.present == 0:
            return "empty"
        if self.numeric:
            return "int" if self.integer else "float"
        return "string"


# ------------------------------------------------------------------------------------------ CSV/TSV sniffing


def _first_lines(path: Path) -> list[str]:
    lines: list[str] = []
    size = 0
    with path.open(encoding="utf-8", errors="replace", newline="") as fh:
        while len(lines) < _SNIFF_LINES and size < _SNIFF_BYTES:
            line = fh.readline(_SNIFF_BYTES)
            if not line:
                break
            size += len(line)
            if line.strip():
                lines.append(line.rstrip("\r\n"))
    return lines


def _rows(lines: Sequence[str], sep: str) -> list[list[str]]:
    return [[c.strip() for c in row] for row in csv.reader(lines, delimiter=sep)]


def _consistent(lines: Sequence[str], sep: str) -> bool:
    """Every sampled line splits into the same number (> 1) of fields."""
    try:
        widths = {len(r) for r in _rows(lines, sep)}
    except csv.Error:
        return False
    return len(widths) == 1 and widths.pop() > 1


def _guess_delimiter(lines: Sequence[str], fmt: str) -> str:
    if fmt == "tsv":
        return "\t"
    # the last line may be cut short by the byte limit; leave it out of the vote
    sample = list(lines[:-1]) if len(lines) > 2 else list(lines)
    try:
        dialect = csv.Sniffer().sniff("\n".join(sample), delimiters="".join(_DELIMITERS))
        sniffed: str | None = dialect.delimiter
    except csv.Error:
        sniffed = None
    if sniffed is not None and _consistent(sample, sniffed):
        return sniffed
    for sep in _DELIMITERS:
        if _consistent(sample, sep):
            return sep
    return ","


def _is_number(text: str) -> bool:
    return bool(_NUMBER.match(text))


def _guess_header(lines: Sequence[str], sep: str, missing: Sequence[str]) -> bool:
    """Whether the first line names the columns: identifier-like cells over rows of another type."""
    rows = _rows(lines, sep)
    first, rest = rows[0], rows[1:]
    named = [c for c in first if c]
    if not named or len(set(named)) != len(named) or not all(_IDENTIFIER.match(c) for c in named):
        return False
    if not rest:
        return True  # a single line of names: the reader then reports "only a header"
    skip = set(missing)
    for j in range(len(first)):
        below = [r[j] for r in rest if j < len(r) and r[j] not in skip]
        if below and all(_is_number(v) for v in below):
            return True  # a name over a column of numbers
    try:
        return csv.Sniffer().has_header("\n".join(lines))
    except csv.Error:
        return False


# ------------------------------------------------------------------------------------------ inspect_file


def inspect_file(
    path: Path,
    *,
    label: str | None = None,
    header: bool | None = None,
    delimiter: str | None = None,
    fmt: str | None = None,
    max_rows: int = 200_000,
    missing: Sequence[str] = DEFAULT_MISSING,
    cardinality_cap: int = CARDINALITY_CAP,
) -> FileProfile:
    """Profile the first ``max_rows`` rows of ``path`` and choose a kind for each column.

    ``header`` and ``delimiter`` (CSV/TSV) are guessed when None; ``fmt`` comes from the extension when None.
    ``label`` names the target column; when None a binary column is chosen (see the module doc). Memory stays
    bounded: rows are streamed in chunks and each column keeps at most ``cardinality_cap`` hashes.
    ``missing`` lists the CSV/TSV cells that mean "no value" (as ``data.missing`` does; a marker with spaces
    around it, like ``" ?"`` after a ``", "`` delimiter, counts too); in Parquet/JSONL only nulls (and NaN)
    are missing.

    Raises :class:`~shoal.data.readers.BadInputError` for a missing, empty or header-only file (or one
    where no row has the right number of columns) and ``ValueError`` for an unknown ``label``.
    """
    path = Path(path)
    if max_rows < 1:
        raise ValueError(f"max_rows must be at least 1, got {max_rows}")
    check_file(path)
    fmt = detect_format(path, fmt)
    markers = list(dict.fromkeys(missing))
    if fmt in ("csv", "tsv"):
        lines = _first_lines(path)
        if not lines:
            raise BadInputError(f"{path}: file has only blank lines; expected rows of data")
        sep = delimiter or _guess_delimiter(lines, fmt)
        has_header = _guess_header(lines, sep, markers) if header is None else header
        width = len(_rows(lines[:1], sep)[0])
        names = read_header(path, fmt, sep) if has_header else [f"c{j}" for j in range(width)]
        file_sep: str | None = sep
    else:
        names = read_header(path, fmt)
        has_header, file_sep = True, None
    if label is not None and label not in names:
        raise ValueError(f"label column {label!r} not found in {path}; the columns are: {', '.join(names)}")

    typed = fmt not in ("csv", "tsv")
    separators = [s for s in _LIST_SEPARATORS if s != file_sep]
    stats = [_ColumnStats(n, separators, cardinality_cap) for n in names]
    marker_set = None if typed or not markers else pa.array(markers, pa.string())
    sink = BadRowSink("count")
    rows = 0
    truncated = False
    stream = read_chunks(path, fmt=fmt, columns=names, sink=sink, header=has_header,
                         names=None if has_header else names, delimiter=file_sep, missing=markers,
                         chunk_rows=min(65_536, max_rows))
    try:
        for chunk in stream:
            table = chunk.table
            if rows + table.num_rows > max_rows:
                table = table.slice(0, max_rows - rows)
                truncated = True
            for s, col in zip(stats, table.columns, strict=True):
                s.add(col, marker_set)
            rows += table.num_rows
            if rows >= max_rows:
                truncated = truncated or _has_more(stream)
                break
    except BadInputError as err:
        if rows == 0 and sink.count:
            raise BadInputError(
                f"{path}: none of the rows has the {len(names)} columns of the first line "
                f"(delimiter {file_sep!r}, {sink.count} rows skipped); pass the right delimiter"
            ) from err
        raise
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()

    columns = [_profile(s, rows) for s in stats]
    chosen, why = (label, "given as the label") if label is not None else _choose_label(stats, columns)
    positive: tuple[str, ...] = ()
    negative: tuple[str, ...] = ()
    classes: tuple[str, ...] = ()
    if chosen is not None:
        k = names.index(chosen)
        if len(stats[k].distinct) > 2 and stats[k].counts is not None:
            classes, note = _class_values(stats[k])
        else:
            positive, negative, note = _label_values(stats[k])
        columns[k] = _as_label(columns[k], stats[k], f"{why}; {note}")
    return FileProfile(path=path, format=fmt, header=has_header, delimiter=file_sep, columns=columns,
                       rows=rows, label=chosen, missing=tuple(markers), label_positive=positive,
                       label_negative=negative, truncated=truncated, bad_rows=sink.count, label_classes=classes)


def _has_more(stream: Iterable[object]) -> bool:
    """Whether a chunk stream has another chunk (reads at most one more chunk)."""
    return next(iter(stream), None) is not None


def _profile(s: _ColumnStats, rows: int) -> ColumnProfile:
    kind, reason, transform, sep = _kind(s)
    card, capped = len(s.distinct), s.distinct.capped
    listed = s.separator() if sep is not None else None
    if listed is not None:
        card, capped = len(listed[1].distinct), listed[1].distinct.capped
    return ColumnProfile(
        name=s.name, kind=kind, dtype=s.dtype(), rows=rows, missing=s.missing,
        missing_pct=round(100.0 * s.missing / rows, 2) if rows else 0.0,
        cardinality=card, cardinality_capped=capped, example=s.example, reason=reason,
        multi_id_separator=sep, transform=transform, top_values=s.top_values(),
    )


def _distinct_text(s: _ColumnStats) -> str:
    return f"{'>=' if s.distinct.capped else ''}{len(s.distinct):,} distinct"


def _number_text(x: float) -> str:
    return f"{int(x):,}" if float(x).is_integer() and abs(x) < 1e15 else f"{x:.4g}"


def _kind(s: _ColumnStats) -> tuple[Kind, str, Literal["log1p", "standardize", "none"] | None, str | None]:
    """(kind, reason, dense transform, list separator) for a column that is not the label."""
    if s.unsupported is not None:
        return "ignore", f"unsupported type {s.unsupported} (not a number or a string)", None, None
    if s.present == 0:
        return "ignore", "always missing", None, None
    if len(s.distinct) == 1 and s.missing == 0:
        return "ignore", f"constant: every row is {s.example!r}", None, None
    distinct = _distinct_text(s)
    unique = s.present > _UNIQUE_MIN_ROWS and len(s.distinct) > _UNIQUE_SHARE * s.present
    binary = len(s.distinct) == 2
    if s.numeric:
        padded = (f"; warning: {s.padded_missing:,} missing markers have spaces around them (e.g. ' ?') and "
                  "may be read as not-a-number" if s.padded_missing else "")
        if s.integer and unique:
            what = "increasing unique integers (a row number?)" if s.increasing else \
                "unique integer per row (an identifier?)"
            return "ignore", f"{what}: {distinct} in {s.present:,} rows", None, None
        if binary:
            what = f"numbers, 2 distinct values (binary; a label candidate){padded}"
            return "dense", what, "standardize", None
        skew = s.skewness()
        if s.integer and skew > _SKEWED:
            if s.minimum >= 0:
                what = f"non-negative integer counts, {distinct}, skewed (skewness {skew:.1f})"
            else:
                what = (f"integers (min {_number_text(s.minimum)}), {distinct}, "
                        f"skewed (skewness {skew:.1f}): sign-preserving log1p")
            return "dense", what + padded, "log1p", None
        what = "integers" if s.integer else "numbers"
        span = f"range {_number_text(s.minimum)}..{_number_text(s.maximum)}"
        return "dense", f"{what}, {distinct}, {span}{padded}", "standardize", None
    mean_bytes = s.text_bytes / max(s.present, 1)
    if s.spaced > _TEXT_SPACED_SHARE * s.present and mean_bytes >= _TEXT_MIN_BYTES:
        return ("text", f"free text: {mean_bytes:.0f} bytes on average, {100.0 * s.spaced / s.present:.0f}% "
                f"of values contain spaces; learned from raw bytes (n-gram bags)", None, None)
    listed = s.separator()
    if listed is not None:
        sep, ls = listed
        ids = f"{'>=' if ls.distinct.capped else ''}{len(ls.distinct):,}"
        share = 100.0 * ls.rows / s.present
        return ("sparse", f"lists of ids separated by {sep!r} ({share:.0f}% of rows have several), "
                f"{ids} distinct ids, {ls.tokens / max(s.present, 1):.1f} per row on average", None, sep)
    if unique:
        return "ignore", f"unique per row (an identifier?): {distinct} in {s.present:,} rows", None, None
    what = "hex ids" if s.hex else "strings"
    extra = " (binary; a label candidate)" if binary else ""
    return "sparse", f"{what}, {distinct}{extra}", None, None


def _choose_label(stats: Sequence[_ColumnStats], columns: Sequence[ColumnProfile]) -> tuple[str | None, str]:
    """The label column when none was given, and why it was chosen."""
    binary = [s for s, c in zip(stats, columns, strict=True) if len(s.distinct) == 2 and c.kind != "ignore"]
    if not binary:
        return _choose_classes(stats, columns)
    for s in binary:
        if s.name.strip().lower() in LABEL_NAMES:
            return s.name, "chosen as the label: named like a label, 2 distinct values"
    defaults = set(LabelConfig.model_fields["positive"].get_default(call_default_factory=True)) | set(
        LabelConfig.model_fields["negative"].get_default(call_default_factory=True))
    for s in binary:
        if s.counts is not None and set(s.counts) <= defaults:
            return s.name, "chosen as the label: the first column with only 0/1 (or true/false) values"
    ends = {stats[0].name: "first", stats[-1].name: "last"}
    for s in binary:
        if s.name in ends:
            return s.name, f"chosen as the label: the {ends[s.name]} column, with exactly 2 distinct values"
    return binary[0].name, "chosen as the label: the first column with exactly 2 distinct values"


def _choose_classes(stats: Sequence[_ColumnStats], columns: Sequence[ColumnProfile]) -> tuple[str | None, str]:
    """A multiclass label when no column is binary: named like a label, or the first/last column of a text file."""
    few = [s for s, c in zip(stats, columns, strict=True)
           if 3 <= len(s.distinct) <= MAX_GUESSED_CLASSES and s.counts is not None and c.kind in ("sparse", "dense")]
    for s in few:
        if s.name.strip().lower() in LABEL_NAMES:
            return s.name, f"chosen as the label: named like a label, {len(s.distinct)} classes"
    if any(c.kind == "text" for c in columns):
        ends = {stats[0].name: "first", stats[-1].name: "last"}
        for s in few:
            if s.name in ends:
                return s.name, (f"chosen as the label: the {ends[s.name]} column of a text file, "
                                f"with {len(s.distinct)} distinct values (classes)")
    return None, ""


def _class_values(s: _ColumnStats) -> tuple[tuple[str, ...], str]:
    """(classes in config order, note) for a multiclass label: sorted, as numbers when they all are."""
    counts = s.counts or {}
    total = sum(counts.values()) or 1
    names = sorted(counts, key=lambda v: (float(v), v) if all(_is_number(c) for c in counts) else (0.0, v))
    shares = ", ".join(f"{v!r} {100.0 * counts[v] / total:.1f}%" for v in names)
    return tuple(names), f"multiclass, {len(names)} classes: {shares}" + _missing_note(s)


def _label_values(s: _ColumnStats) -> tuple[tuple[str, ...], tuple[str, ...], str]:
    """(positive, negative, note) for a label column; empty tuples when LabelConfig's defaults fit."""
    counts = s.counts or {}
    total = sum(counts.values()) or 1
    by_count = sorted(counts.items(), key=lambda kv: -kv[1])
    shares = ", ".join(f"{v!r} {100.0 * n / total:.1f}%" for v, n in by_count)
    if len(counts) != 2:
        many = f"{_distinct_text(s)}" if s.counts is None else f"{len(counts)} distinct values"
        fix = "a binary label needs exactly 2 (set label.positive / label.negative)"
        return (), (), f"warning: {many}; {fix}"
    pos_default = set(LabelConfig.model_fields["positive"].get_default(call_default_factory=True))
    neg_default = set(LabelConfig.model_fields["negative"].get_default(call_default_factory=True))
    a, b = sorted(counts)
    if (a in pos_default and b in neg_default) or (a in neg_default and b in pos_default):
        pos = a if a in pos_default else b
        return (), (), f"values {shares}; positive {pos!r}" + _missing_note(s)
    if _is_number(a) and _is_number(b):
        pos, neg = (a, b) if float(a) > float(b) else (b, a)
        return (pos,), (neg,), f"values {shares}; positive = the larger value {pos!r}" + _missing_note(s)
    pos, neg = (a, b) if (counts[a], b) < (counts[b], a) else (b, a)
    return (pos,), (neg,), f"values {shares}; positive = the minority value {pos!r}" + _missing_note(s)


def _missing_note(s: _ColumnStats) -> str:
    if not s.missing:
        return ""
    return f"; warning: {s.missing:,} rows have no label and will be rejected as bad rows"


def _as_label(c: ColumnProfile, s: _ColumnStats, reason: str) -> ColumnProfile:
    return ColumnProfile(
        name=c.name, kind="label", dtype=c.dtype, rows=c.rows, missing=c.missing, missing_pct=c.missing_pct,
        cardinality=len(s.distinct), cardinality_capped=s.distinct.capped, example=c.example, reason=reason,
        multi_id_separator=None, transform=None, top_values=c.top_values,
    )


# ------------------------------------------------------------------------------------------ starter config


def sparse_buckets(cardinality: int, capped: bool = False) -> int:
    """Embedding rows for a sparse feature: ``2**ceil(log2(2 * cardinality))`` within [16, 1,000,000]."""
    if capped:
        return _MAX_BUCKETS
    want = 2 ** math.ceil(math.log2(max(2 * cardinality, 1)))
    return int(min(_MAX_BUCKETS, max(_MIN_BUCKETS, want)))


def _y(value: object) -> str:
    """A YAML flow scalar or sequence for plain data (JSON is valid YAML)."""
    return json.dumps(value, ensure_ascii=False)


def _comment(text: str) -> str:
    return " ".join(text.split())


def starter_config(profile: FileProfile, config_path: Path) -> str:
    """YAML text of a run config for ``profile`` that :func:`shoal.config.load_config` accepts once written
    to ``config_path`` (``data.train`` is relative to that file's folder). Model ``dlrm`` and training
    settings are the defaults. Raises ``ValueError`` when the profile has no label or no usable feature.
    """
    if profile.label is None:
        raise ValueError(
            f"{profile.path}: no label column was found (no column has exactly 2 distinct values, nor looks like "
            "the classes of a multiclass label); name it with --label"
        )
    features = [c for c in profile.columns if c.kind in ("dense", "sparse", "text")]
    if not features:
        raise ValueError(f"{profile.path}: no usable feature columns besides the label {profile.label!r}")
    label = profile.column(profile.label)
    config_dir = Path(config_path).resolve().parent
    train = Path(os.path.relpath(Path(profile.path).resolve(), config_dir)).as_posix()
    whole = " (the first rows only)" if profile.truncated else ", the whole file"
    read = f"{profile.rows:,} rows read{whole}"
    out = [
        f"# Starter config generated by `shoal inspect` from {Path(profile.path).name} ({read}).",
        "# Review before training:",
        "#   - the label column and which value is positive (label.positive / label.negative), or its classes;",
        "#   - each feature's kind: dense (a number; transform log1p for counts, standardize otherwise) or",
        "#     sparse (an id; buckets = embedding rows, about 2x the distinct ids seen) or text (raw text);",
        "#   - the columns left out (commented out under features) and columns with many missing values;",
        "#   - model and train settings: these are the defaults.",
        f"name: {_y(Path(profile.path).stem)}",
        "data:",
        f"  train: {_y(train)}",
        f"  format: {_y(profile.format)}",
    ]
    if profile.format in ("csv", "tsv"):
        out.append(f"  header: {'true' if profile.header else 'false'}")
        if not profile.header:
            out.append(f"  columns: {_y([c.name for c in profile.columns])}")
        out.append(f"  delimiter: {_y(profile.delimiter)}")
        out.append(f"  missing: {_y(list(profile.missing))}")
    out.append("  valid_fraction: 0.1")
    if profile.bad_rows:
        out.append(f"  on_bad_rows: quarantine  # {profile.bad_rows:,} rows had the wrong number of columns")
    out += ["label:", f"  column: {_y(profile.label)}  # {_comment(label.reason)}"]
    if profile.label_classes:
        out.append("  kind: multiclass")
        out.append(f"  classes: {_y(list(profile.label_classes))}")
    if profile.label_positive:
        out.append(f"  positive: {_y(list(profile.label_positive))}")
        out.append(f"  negative: {_y(list(profile.label_negative))}")
    out.append("features:")
    for c in profile.columns:
        if c.kind == "label":
            continue
        if c.kind == "dense":
            entry = f"{{name: {_y(c.name)}, kind: dense, transform: {c.transform or 'standardize'}}}"
        elif c.kind == "sparse":
            entry = (f"{{name: {_y(c.name)}, kind: sparse, "
                     f"buckets: {sparse_buckets(c.cardinality, c.cardinality_capped)}")
            if c.multi_id_separator is not None:
                entry += f", separator: {_y(c.multi_id_separator)}"
            entry += "}"
        elif c.kind == "text":
            entry = f"{{name: {_y(c.name)}, kind: text, buckets: 1000000}}"
        else:
            out.append(f"  # left out {_y(c.name)}: {_comment(c.reason)}")
            continue
        missing = f"; {c.missing_pct:g}% missing" if c.missing else ""
        out.append(f"  - {entry}  # {_comment(c.reason)}{missing}")
    # text only: fastText's architecture (bag) is the fast, strong start; anything else: DLRM
    name = "bag" if all(c.kind == "text" for c in features) else "dlrm"
    model = (BagConfig if name == "bag" else DLRMConfig).model_validate({"name": name}).model_dump(mode="json")
    out += ["model:", f"  name: {_y(name)}"]
    out += [f"  {k}: {_y(v)}" for k, v in model.items() if k != "name"]
    out.append("train:")
    out += [f"  {k}: {_y(v)}" for k, v in TrainConfig.model_validate({}).model_dump(mode="json").items()]
    return "\n".join(out) + "\n"

