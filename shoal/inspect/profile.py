"""Profiles of a file's columns, the kind chosen for each, and the label."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from shoal.config import LabelConfig, TextFeature
from shoal.data.features.dense import NumberFormat
from shoal.data.features.time import ISO_TIME
from shoal.data.readers import BadInputError, BadRowSink, check_file, detect_format, read_chunks, read_header
from shoal.inspect.media import sniff_media
from shoal.inspect.sniff import _first_lines, _guess_delimiter, _guess_header, _is_number, _rows
from shoal.inspect.stats import (
    _ALL_UNIQUE_MIN_ROWS,
    _BIN_MIN_RARE,
    _BIN_MIN_ROWS,
    _BINS,
    _CONTIGUOUS_SPAN,
    _ID_DIGITS,
    _ID_MAX_DISTINCT,
    _ID_MIN_ROWS,
    _ID_SMOOTHNESS,
    _LIST_SEPARATORS,
    _SKEWED,
    _TEXT_MIN_BYTES,
    _TEXT_SPACED_SHARE,
    _UNIQUE_MIN_ROWS,
    _UNIQUE_SHARE,
    CARDINALITY_CAP,
    COUNTED_VALUES,
    DEFAULT_MISSING,
    ID_NAME_PARTS,
    IDENTIFIER_NAME_PARTS,
    LABEL_NAMES,
    MAX_GUESSED_CLASSES,
    MAX_INTEGER_CLASSES,
    TEXT_COVER,
    Kind,
    _ColumnStats,
)

#: The label kinds a caller may impose on the label column (``label_kind``; ``shoal auto --label-kind``).
LABEL_KINDS = ("binary", "multiclass", "regression", "multilabel")
_TEXT_DEFAULT_BYTES = int(TextFeature.model_fields["max_bytes"].default)
_ISO_TIME = re.compile(ISO_TIME)
#: Name parts of a column of epoch numbers that is a time (``created_at``, ``event_ts``, ``signupTime``).
TIME_NAME_PARTS = ("time", "timestamp", "ts", "date", "datetime", "at", "epoch")
_MIN_DATES = 7  # a column of fewer distinct dates (no time of day) stays ids: a week of days at least for kind time
_EPOCH_SECONDS = (946_684_800, 2_524_608_000)  # 2000-01-01 .. 2050-01-01: integers in this range may be epochs


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
    bins: int | None = None  # dense only: quantile bins to embed beside the value
    max_bytes: int | None = None  # text only: the length that holds TEXT_COVER of the texts whole
    long_texts: int = 0  # text only: rows read whose text is longer than max_bytes (cut when encoded)
    values: tuple[str, ...] = ()  # sparse (or also_ids): every distinct value, when there are at most 64
    also_ids: bool = False  # dense only: integers that may be codes, also given to the model as ids
    media: dict[str, Any] | None = None  # image/audio only: the options suggested from the first files
    time_parts: tuple[str, ...] = ()  # time only: the calendar parts proposed (a date without times: no hour)
    number_format: dict[str, str] | None = None  # dense only: how its text reads (DenseFeature's decimal, ...)


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
    bad_reasons: tuple[tuple[str, int], ...] = ()  # (reason, rows) of the rows that could not be read, most first
    label_classes: tuple[str, ...] = ()  # a multiclass label's values (empty: a binary label)
    label_kind: str = "binary"  # binary, multiclass, regression or multilabel
    label_separator: str | None = None  # a multilabel label's tag separator
    label_candidates: tuple[str, ...] = ()  # no label given: the other columns that could be it
    label_tasks: tuple[dict[str, Any], ...] = ()  # several labels given: {column, kind, positive, negative} each

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
    label_kind: str | None = None,
) -> FileProfile:
    """Profile the first ``max_rows`` rows of ``path`` and choose a kind for each column.

    ``header`` and ``delimiter`` (CSV/TSV) are guessed when None; ``fmt`` comes from the extension when None.
    ``label`` names the target column; when None a binary column is chosen (see the module doc). Memory stays
    bounded: rows are streamed in chunks and each column keeps at most ``cardinality_cap`` hashes.
    ``missing`` lists the CSV/TSV cells that mean "no value" (as ``data.missing`` does; a marker with spaces
    around it, like ``" ?"`` after a ``", "`` delimiter, counts too); in Parquet/JSONL only nulls (and NaN)
    are missing. ``label_kind`` (binary, multiclass, regression or multilabel) overrides the kind guessed for
    the label column, when its values allow it.

    Raises :class:`~shoal.data.readers.BadInputError` for a missing, empty or header-only file (or one
    where no row has the right number of columns) and ``ValueError`` for an unknown ``label``, a header that
    names a column twice, or a ``label_kind`` the label's values do not allow.
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
    if has_header:
        _check_distinct(path, names)
    if label_kind is not None and label_kind not in LABEL_KINDS:
        raise ValueError(f"unknown label kind {label_kind!r}; choose from {', '.join(LABEL_KINDS)}")
    if label_kind is not None and label is not None and "," in label:
        raise ValueError(f"--label-kind {label_kind} applies to one label column, not to the tasks of --label "
                         f"{label!r}")
    for one in [] if label is None else [c.strip() for c in label.split(",")] if "," in label else [label]:
        if one in names:
            continue
        if header is None and not has_header and fmt in ("csv", "tsv"):
            raise ValueError(f"label column {one!r} not found in {path}: its first line was read as data (no "
                             f"header detected), so its columns are {names[0]}..{names[-1]}; pass --header if "
                             "the first line names the columns")
        raise ValueError(f"label column {one!r} not found in {path}; the columns are: {', '.join(names)}")

    typed = fmt not in ("csv", "tsv")
    # the file's own delimiter too, last: a cell holding it was quoted ("3,7,12" in a comma-separated file)
    separators = [s for s in _LIST_SEPARATORS if s != file_sep] + ([file_sep] if file_sep in _LIST_SEPARATORS else [])
    stats = [_ColumnStats(n, separators, cardinality_cap, file_sep) for n in names]
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
                s.add(col, marker_set, chunk.lines[: table.num_rows])
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

    columns = [_media_profile(_profile(s, rows), s, path) for s in stats]
    if label is not None and "," in label:
        tasks = _tasks(label, names, stats, columns)
        return FileProfile(path=path, format=fmt, header=has_header, delimiter=file_sep, columns=columns, rows=rows,
                           label=tasks[0]["column"], missing=tuple(markers), truncated=truncated,
                           bad_rows=sink.count, bad_reasons=_reasons(sink), label_kind="multitask",
                           label_tasks=tasks)
    chosen, why = (label, "given as the label") if label is not None else _choose_label(stats, columns)
    candidates = () if label is not None else tuple(c for c in _label_candidates(stats, columns) if c != chosen)
    positive: tuple[str, ...] = ()
    negative: tuple[str, ...] = ()
    classes: tuple[str, ...] = ()
    kind = "binary"
    separator: str | None = None
    if chosen is not None:
        k = names.index(chosen)
        # tags are recognised in a given label only (or one given its kind)
        listed = stats[k].separator() if label is not None or label_kind is not None else None
        if label_kind is not None:
            _check_label_kind(label_kind, stats[k], listed is not None)
        if label_kind == "regression" or (label_kind is None and _regression_like(stats[k])):
            kind, note = "regression", _regression_note(stats[k])
        elif label_kind == "multiclass":
            kind = "multiclass"
            classes, note = _class_values(stats[k])
        elif label_kind == "binary":
            positive, negative, note = _label_values(stats[k])
        elif listed is not None:
            kind, separator = "multilabel", listed[0]
            tags = f"{len(listed[1].distinct):,}{'+' if listed[1].distinct.capped else ''}"
            note = (f"multilabel: tags joined by {listed[0]!r} in {listed[1].rows:,} rows, {tags} distinct tags "
                    "(an empty cell is a row with no tags)" + _missing_note(stats[k]))
        elif len(stats[k].distinct) > 2 and stats[k].counts is not None:
            kind = "multiclass"
            classes, note = _class_values(stats[k])
        else:
            positive, negative, note = _label_values(stats[k])
        given = f"; --label-kind {label_kind}" if label_kind is not None else ""
        columns[k] = _as_label(columns[k], stats[k], f"{why}{given}; {note}")
        counts = stats[k].counts
        if kind == "binary" and counts is not None and len(counts) == 2:
            columns = [_rare_label_bins(c, min(counts.values())) if j != k else c for j, c in enumerate(columns)]
    return FileProfile(path=path, format=fmt, header=has_header, delimiter=file_sep, columns=columns,
                       rows=rows, label=chosen, missing=tuple(markers), label_positive=positive,
                       label_negative=negative, truncated=truncated, bad_rows=sink.count,
                       bad_reasons=_reasons(sink), label_classes=classes,
                       label_candidates=candidates, label_kind=kind, label_separator=separator)


def _reasons(sink: BadRowSink) -> tuple[tuple[str, int], ...]:
    return tuple(sorted(sink.by_reason.items(), key=lambda kv: (-kv[1], kv[0])))


def _check_distinct(path: Path, names: Sequence[str]) -> None:
    """Refuse a header that names a column twice: the config names columns, so each name must be one column."""
    for j, name in enumerate(names):
        if name in names[:j]:
            first = names.index(name)
            raise ValueError(f"{path}: the header names column {name!r} twice (columns {first + 1} and {j + 1}); "
                             f"give each column its own name in the first line (e.g. {name!r} and '{name}.1')")


def _check_label_kind(kind: str, s: _ColumnStats, tagged: bool) -> None:
    """Refuse a ``label_kind`` that the label column's values do not allow, saying what they are."""
    distinct = _distinct_text(s)
    if kind == "regression" and not (s.numeric and s.present > 0):
        example = f" (e.g. {s.example!r})" if s.example is not None else ""
        raise ValueError(f"label column {s.name!r} has values that are not numbers{example}; --label-kind regression "
                         "needs numbers")
    if kind == "multiclass" and (s.counts is None or len(s.counts) < 2):
        raise ValueError(f"label column {s.name!r} has {distinct} values; --label-kind multiclass needs 2 to "
                         f"{COUNTED_VALUES} classes (the values inspect counts)")
    if kind == "binary" and (s.counts is None or len(s.counts) != 2):
        raise ValueError(f"label column {s.name!r} has {distinct} values; --label-kind binary needs exactly 2 values")
    if kind == "multilabel" and not tagged:
        raise ValueError(f"label column {s.name!r} has no tags joined by one of {' '.join(_LIST_SEPARATORS)} in "
                         "its values; --label-kind multilabel needs them")


def _has_more(stream: Iterable[object]) -> bool:
    """Whether a chunk stream has another chunk (reads at most one more chunk)."""
    return next(iter(stream), None) is not None


def _profile(s: _ColumnStats, rows: int) -> ColumnProfile:
    timed = _time_kind(s)
    if timed is not None:
        reason, parts = timed
        return ColumnProfile(
            name=s.name, kind="time", dtype=s.dtype(), rows=rows, missing=s.missing,
            missing_pct=round(100.0 * s.missing / rows, 2) if rows else 0.0, cardinality=len(s.distinct),
            cardinality_capped=s.distinct.capped, example=s.example, reason=reason, time_parts=parts)
    kind, reason, transform, sep = _kind(s)
    card, capped = len(s.distinct), s.distinct.capped
    listed = s.separator() if sep is not None else None
    if listed is not None:
        card, capped = len(listed[1].distinct), listed[1].distinct.capped
    bins = _bins(s) if kind == "dense" else None
    number_format = _number_format(s) if kind == "dense" else None
    if number_format:
        reason += _number_note(s)
    if bins is not None:
        reason += f"; {bins} quantile bins embedded beside the value (any shape of effect)"
    coded = _id_coded(s) if kind == "dense" and s.integer and len(s.distinct) > 2 else None
    if coded is not None:
        reason += f"; also read as ids (codes, or round amounts?): {coded}"
    max_bytes, long_texts = s.length_cover(TEXT_COVER, _TEXT_DEFAULT_BYTES) if kind == "text" else (None, 0)
    if max_bytes is not None:
        share = 100.0 * long_texts / max(s.present, 1)
        reason += (f"; max_bytes {max_bytes:,} (at least {_TEXT_DEFAULT_BYTES:,}, else {100 * TEXT_COVER:g}% of "
                   f"the texts whole): {long_texts:,} rows ({share:.1f}%) are longer and will be cut")
    return ColumnProfile(
        name=s.name, kind=kind, dtype=s.dtype(), rows=rows, missing=s.missing,
        missing_pct=round(100.0 * s.missing / rows, 2) if rows else 0.0,
        cardinality=card, cardinality_capped=capped, example=s.example, reason=reason,
        multi_id_separator=sep, transform=transform, top_values=s.top_values(), bins=bins,
        max_bytes=max_bytes, long_texts=long_texts,
        values=tuple(sorted(s.counts)) if (kind == "sparse" or coded) and sep is None and s.counts is not None
        else (),
        also_ids=coded is not None, number_format=number_format or None,
    )


def _time_kind(s: _ColumnStats) -> tuple[str, tuple[str, ...]] | None:
    """(reason, calendar parts) for a column of times, else None: a Parquet/Arrow timestamp or date column; text
    whose first values are all ISO 8601 times; integers named like a time (``created_at``) that are all epoch
    seconds or milliseconds of 2000-2050. Dates without a time of day get [weekday, month] (their hour is 0), when
    there are at least 7 distinct ones (fewer, such as a partition column's, stay ids)."""
    t = s.arrow_type
    if s.present == 0 or s.unsupported is not None:
        return None
    hourly = ("hour", "weekday")
    few_days = len(s.distinct) < _MIN_DATES  # a few dates (a partition column): their days of week teach little
    if t is not None and pa.types.is_date(t) and not few_days:
        return f"{t} column: dates, read as kind time (day of week and month as ids)", ("weekday", "month")
    if t is not None and pa.types.is_timestamp(t):
        return f"{t} column: read as kind time (hour of day and day of week as ids)", hourly
    head = [v.strip() for v in s.head if isinstance(v, str)]
    if not s.numeric and head and len(head) == len(s.head) and all(_ISO_TIME.match(v) for v in head):
        if all(len(v) == 10 for v in head):
            if few_days:
                return None
            return (f"ISO 8601 dates (e.g. {head[0]!r}): read as kind time (day of week and month as ids)",
                    ("weekday", "month"))
        return f"ISO 8601 timestamps (e.g. {head[0]!r}): read as kind time (hour of day and day of week as ids)", hourly
    if s.numeric and s.integer and _name_parts(s.name) & set(TIME_NAME_PARTS):
        low, high = _EPOCH_SECONDS
        for unit, scale in (("seconds", 1), ("milliseconds", 1000)):
            if low * scale <= s.minimum and s.maximum < high * scale:
                return (f"integers named like a time, all epoch {unit} of 2000-2050: read as kind time (hour of "
                        "day and day of week as ids)", hourly)
    return None


def _media_profile(c: ColumnProfile, s: _ColumnStats, path: Path) -> ColumnProfile:
    """The profile of an image or audio column (:mod:`shoal.inspect.media`), else ``c`` unchanged."""
    if c.kind in ("dense", "time") or s.present == 0:
        return c
    guess = sniff_media(s.head, path.parent.resolve())
    if guess is None:
        return c
    return replace(c, kind=guess.kind, reason=guess.reason, media=guess.options, top_values=(), values=(),  # type: ignore[arg-type]
                   multi_id_separator=None, max_bytes=None, long_texts=0)


def _bins(s: _ColumnStats) -> int | None:
    """Quantile bins for a number with at least 16 distinct values: 32, halved until there are no more bins than
    values and each holds >= 50 rows."""
    if len(s.distinct) < 16:
        return None
    bins = _BINS
    while bins > len(s.distinct) or (bins > 4 and s.present / bins < _BIN_MIN_ROWS):
        bins //= 2
    return bins


def _rare_label_bins(c: ColumnProfile, rarer: int) -> ColumnProfile:
    """``c`` with no more quantile bins than the ``rarer`` rows of a binary label's rarer value can teach: halved
    until each bin holds :data:`_BIN_MIN_RARE` of them on average (at least 4 bins). A bin's embedding row learns
    how that range of values moves the odds; with a few dozen positives, 32 bins of a number each see one or two,
    and their rows learn noise (measured on files of 43-65 positives: test AUC 0.58-0.84 with 32 bins, 0.71-0.95
    with 4)."""
    if not c.bins or c.bins <= 4 or rarer / c.bins >= _BIN_MIN_RARE:
        return c
    bins = c.bins
    while bins > 4 and rarer / bins < _BIN_MIN_RARE:
        bins //= 2
    said = f"; {c.bins} quantile bins embedded beside the value (any shape of effect)"
    now = (f"; {bins} quantile bins embedded beside the value (any shape of effect; no more than the label's rarer "
           f"value's {rarer:,} rows can teach, {_BIN_MIN_RARE} a bin)")
    return replace(c, bins=bins, reason=c.reason.replace(said, now))


def _number_format(s: _ColumnStats) -> dict[str, str]:
    """The options of a dense feature that read the column's text as inspect did (empty: plain numbers)."""
    missing = {"not_a_number": "missing"} if s.not_numbers else {}
    return {**s.number_format.options(), **missing}


def _number_note(s: _ColumnStats) -> str:
    """How the column's text reads as numbers, with an example, and a warning for the cells that are not numbers."""
    fmt = s.number_format
    marks = ([f"decimal mark {fmt.decimal!r}"] if fmt.decimal != "." else []) + (
        [f"thousands mark {fmt.thousands!r}"] if fmt.thousands else []) + (
        [f"symbol {fmt.symbol!r} dropped"] if fmt.symbol else [])
    note = ""
    if marks:
        values, ok = fmt.parse(pa.array([s.example or ""], pa.string()))
        shown = f" ({s.example!r} is {float(values[0]):g}" if ok[0] and s.example else ""
        if shown and fmt.symbol == "%":
            shown += ": a percentage reads as the number written, not divided by 100"
        note = f"; text read with {', '.join(marks)}{shown}{')' if shown else ''}"
    if s.not_numbers and s.not_number_at is not None:
        value, line = s.not_number_at
        cells = "1 cell is not a number" if s.not_numbers == 1 else f"{s.not_numbers:,} cells are not numbers"
        note += f"; warning: {cells} (e.g. {value!r} on line {line:,}): read as missing (not_a_number: missing)"
    return note


def _identifier(s: _ColumnStats, unique: bool) -> str | None:
    """Why a column of whole numbers holds identifiers, or None when they may be amounts.

    Unique per row (or all distinct in at least 20 rows) and: named like an id or an index (``row_id``,
    ``Unnamed: 0``: a saved pandas index); filling a range (span <= 1.1 x the rows: row numbers, sequential ids,
    in any order); or of 9 digits or more in 99% of rows (random or hashed ids; amounts that large are rare).
    Other unique integers are amounts (an income, a weight) and stay numbers.
    """
    everyone = not s.distinct.capped and len(s.distinct) == s.present >= _ALL_UNIQUE_MIN_ROWS
    if not s.whole or not (unique or everyone):
        return None
    rows = f"{_distinct_text(s)} in {s.present:,} rows"
    if _name_parts(s.name) & set(IDENTIFIER_NAME_PARTS):
        return f"unique integer per row, named like an id or an index: {rows}"
    span = s.maximum - s.minimum + 1
    if span <= _CONTIGUOUS_SPAN * s.present:
        order = "increasing" if s.increasing else "in any order"
        return (f"unique integers filling {_number_text(s.minimum)}..{_number_text(s.maximum)}, {order} "
                f"(row numbers or sequential ids): {rows}")
    if np.mean(np.abs(s.sample.values) >= _ID_DIGITS) >= 0.99:
        return f"unique integers of 9 digits or more (random or hashed ids): {rows}"
    return None


def _id_named(s: _ColumnStats) -> bool:
    """An integer column named like an id (``user_id``, ``zipCode``) with at most 4,096 values, each seen twice
    on average: read as ids, not amounts."""
    k = len(s.distinct)
    return 3 <= k <= _ID_MAX_DISTINCT and not s.distinct.capped and s.present >= 2 * k \
        and bool(_name_parts(s.name) & set(ID_NAME_PARTS))


def _id_coded(s: _ColumnStats) -> str | None:
    """Why an integer column may hold category codes rather than amounts, or None when it looks like amounts.

    At most 4,096 distinct values, each seen in >= 20 rows on average (enough to learn an embedding row), with
    row counts that, taken in value order, jump about like noise: amounts and counts have a distribution over
    their scale (neighbouring values are about as frequent), codes do not (code 7 may be common, 6 and 8 rare).
    Round amounts (40 hours a week, a price of 100) jump about too, so such a column stays a number and is
    *also* read as ids (a second, sparse feature): the model gets both.
    """
    k = len(s.distinct)
    if k < 3 or k > _ID_MAX_DISTINCT or s.distinct.capped or s.present < _ID_MIN_ROWS * k:
        return None
    _, counts = s.value_counts()
    if len(counts) < 3:
        return None
    if len(counts) >= 8:
        log = np.log(counts.astype(np.float64))
        a, b = log[:-1] - log[:-1].mean(), log[1:] - log[1:].mean()
        scale = float(np.sqrt((a * a).sum() * (b * b).sum()))
        smooth = float((a * b).sum()) / scale if scale > 0 else 1.0
        if smooth >= _ID_SMOOTHNESS:
            return None
        return f"row counts in value order jump about (lag-1 autocorrelation of their logs {smooth:.2f})"
    steps = np.sign(np.diff(counts))
    steps = steps[steps != 0]
    turns = int((steps[1:] != steps[:-1]).sum())
    if turns < 2:
        return None
    return f"row counts in value order rise and fall {turns} times"


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
        identifier = _identifier(s, unique)
        if identifier is not None:
            return "ignore", identifier, None, None
        if binary:
            what = f"numbers, 2 distinct values (binary; a label candidate){padded}"
            return "dense", what, "standardize", None
        if s.integer and _id_named(s):
            return "sparse", f"integer-coded ids, {distinct}: named like an id{padded}", None, None
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
    if s.list_separator is not None:  # a list column: a list feature whatever the share of rows with several ids
        ls = s.lists.get(s.list_separator)
        # no row with two ids: each list's one id is a value of the column
        found, share = (ls.distinct, 100.0 * ls.rows / s.present) if ls is not None and ls.rows else (s.distinct, 0.0)
        return ("sparse", f"lists of ids (a {s.arrow_type} column; {share:.0f}% of rows have several), "
                f"{'>=' if found.capped else ''}{len(found):,} distinct ids", None, s.list_separator)
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
    """The label column when none was given, and why.

    A column named like a label (:func:`_label_like`) with 2 values (binary) or 3 to 100 (classes) is chosen.
    Otherwise only the conventional place is guessed: the first or last column with 2 values (0/1 or true/false
    first), or, in a file with a text column, with 3 to 100 values; the reason says it is a guess, and
    ``shoal inspect`` prints it with the other candidates. A two-valued column in the middle is as likely a
    feature (a flag, a sex) and is never guessed.
    """
    usable = [(s, c) for s, c in zip(stats, columns, strict=True) if c.kind != "ignore"]
    named = [s for s, _ in usable if _label_like(s.name)]
    for s in named:
        if len(s.distinct) == 2:
            return s.name, "chosen as the label: named like a label, 2 distinct values"
    for s in named:
        if _regression_like(s):
            return s.name, "chosen as the label: named like a label, numbers"
    for s in named:
        if 3 <= len(s.distinct) <= MAX_GUESSED_CLASSES and s.counts is not None:
            return s.name, f"chosen as the label: named like a label, {len(s.distinct)} classes"
    ends = {stats[0].name: "first", stats[-1].name: "last"}
    binary = [s for s, _ in usable if s.name in ends and len(s.distinct) == 2]
    defaults = set(LabelConfig.model_fields["positive"].get_default(call_default_factory=True)) | set(
        LabelConfig.model_fields["negative"].get_default(call_default_factory=True))
    binary.sort(key=lambda s: not (s.counts is not None and set(s.counts) <= defaults))  # 0/1 first, stable
    if binary:
        s = binary[0]
        return s.name, (f"GUESSED as the label (no column is named like one): the {ends[s.name]} column, "
                        "2 distinct values; check it, or name the label with --label")
    if any(c.kind == "text" for _, c in usable):
        for s, c in usable:
            if s.name in ends and 3 <= len(s.distinct) <= MAX_GUESSED_CLASSES and s.counts is not None \
                    and c.kind in ("sparse", "dense"):
                return s.name, (f"GUESSED as the label (no column is named like one): the {ends[s.name]} column "
                                f"of a text file, {len(s.distinct)} distinct values (classes); check it, or name "
                                "the label with --label")
    return None, ""


def _regression_like(s: _ColumnStats) -> bool:
    """A number to predict rather than classes: numeric, more than 2 values, and some fractional or more than
    :data:`MAX_INTEGER_CLASSES` integer ones (a 1-5 rating stays classes; a price, a duration is a number). Plain
    numbers only: a label is read without a dense feature's number format, and a cell that is not a number is bad."""
    return (s.numeric and s.present > 0 and len(s.distinct) > 2 and s.number_format == NumberFormat()
            and not s.not_numbers and (not s.integer or len(s.distinct) > MAX_INTEGER_CLASSES))


def _regression_note(s: _ColumnStats) -> str:
    what = "integers" if s.integer else "numbers"
    return (f"regression: {what}, {_distinct_text(s)}, range {_number_text(s.minimum)}..{_number_text(s.maximum)} "
            "(a number to predict; set label.kind: multiclass to treat the values as classes)" + _missing_note(s))


def _label_like(name: str) -> bool:
    """A name in :data:`LABEL_NAMES`, or made of parts one of which is (``is_click``, ``target_label``; not ``y``)."""
    if name.strip().lower() in LABEL_NAMES:
        return True
    return any(len(part) > 1 and part in LABEL_NAMES for part in _name_parts(name))


def _name_parts(name: str) -> set[str]:
    """The lower-cased words of a column name: ``userId``, ``user_id`` and ``user id`` give {user, id}."""
    return set(re.split(r"[^a-z0-9]+", re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower())) - {""}


def _label_candidates(stats: Sequence[_ColumnStats], columns: Sequence[ColumnProfile]) -> tuple[str, ...]:
    """Columns that could be the label: two values anywhere, or 3 to 100 values (the classes of a multiclass
    label) at either end of a file with text, anywhere in a file of images or sounds (path, class, speaker)."""
    ends = {stats[0].name, stats[-1].name}
    text = any(c.kind == "text" for c in columns)
    media = any(c.kind in ("image", "audio") for c in columns)
    return tuple(s.name for s, c in zip(stats, columns, strict=True) if c.kind not in ("ignore", "image", "audio")
                 and (len(s.distinct) == 2 or ((media or (text and s.name in ends)) and s.counts is not None
                                               and 3 <= len(s.distinct) <= MAX_GUESSED_CLASSES)))


def _tasks(label: str, names: list[str], stats: Sequence[_ColumnStats],
           columns: list[ColumnProfile]) -> tuple[dict[str, Any], ...]:
    """Several label columns (``click,conversion``): each a task, binary (two values) or regression (a number);
    their columns become ``label`` in ``columns``. An empty cell of a task is a row whose label it does not know."""
    given = [c.strip() for c in label.split(",")]
    if len(given) < 2 or any(not c for c in given) or len(set(given)) < len(given):
        raise ValueError(f"--label {label!r}: give the label columns of several tasks separated by commas, each "
                         "once (e.g. click,conversion)")
    tasks: list[dict[str, Any]] = []
    for column in given:
        k = names.index(column)
        s = stats[k]
        unknown = f"; {s.missing:,} rows have no label: unknown for this task" if s.missing else ""
        if _regression_like(s):
            task: dict[str, Any] = {"column": column, "kind": "regression"}
            note = _regression_note(s).split("; warning")[0] + unknown
        elif s.counts is not None and len(s.counts) == 2:
            positive, negative, note = _label_values(s)
            task = {"column": column, "kind": "binary", "positive": list(positive), "negative": list(negative)}
            note = note.split("; warning")[0] + unknown
        else:
            many = _distinct_text(s) if s.counts is None else f"{len(s.counts)} distinct values"
            raise ValueError(f"label column {column!r} has {many}: a task of a multitask label is binary (2 values) "
                             "or regression (a number); train a multiclass or multilabel label on its own")
        columns[k] = _as_label(columns[k], s, f"task {len(tasks) + 1} of the label; {note}")
        tasks.append(task)
    return tuple(tasks)


def _class_values(s: _ColumnStats) -> tuple[tuple[str, ...], str]:
    """(classes in config order, note) for a multiclass label: sorted, as numbers when they all are."""
    counts = s.counts or {}
    total = sum(counts.values()) or 1
    names = sorted(counts, key=lambda v: (float(v), v) if all(_is_number(c) for c in counts) else (0.0, v))
    shares = ", ".join(f"{v!r} {100.0 * counts[v] / total:.1f}%" for v in names)
    return tuple(names), f"multiclass, {len(names)} classes: {shares}" + _case_note(names) + _missing_note(s)


def _case_note(values: Sequence[str]) -> str:
    """A warning when label values differ only in case or surrounding spaces ('yes' and 'YES': two classes)."""
    seen: dict[str, list[str]] = {}
    for v in values:
        seen.setdefault(v.strip().casefold(), []).append(v)
    alike = [group for group in seen.values() if len(group) > 1]
    if not alike:
        return ""
    shown = "; ".join(" and ".join(repr(v) for v in group) for group in alike[:3])
    return (f"; warning: {shown} differ only in case or spaces and are different classes (fix the file, or list "
            "each class's spellings in label.positive / label.negative for a binary label)")


#: Words whose meaning names the positive (True) or negative (False) value of a two-valued label, in any case
_POLARITY = {**dict.fromkeys(("yes", "y", "true", "t", "positive", "pos"), True),
             **dict.fromkeys(("no", "n", "false", "f", "negative", "neg"), False)}


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
    said = {v: _POLARITY.get(v.strip().lower()) for v in (a, b)}
    if {said[a], said[b]} == {True, False}:  # yes / no, Positive / Negative: the word says which
        pos, neg = (a, b) if said[a] else (b, a)
        return (pos,), (neg,), f"values {shares}; positive {pos!r}" + _missing_note(s)
    pos, neg = (a, b) if (counts[a], b) < (counts[b], a) else (b, a)
    return (pos,), (neg,), (f"values {shares}; positive = the minority value {pos!r}" + _case_note([a, b])
                            + _missing_note(s))


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

