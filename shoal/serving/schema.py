"""Request and response models built from a bundle's feature schema.

A request carries raw rows, keyed by the column names the model was trained on::

    {"rows": [{"d0": 3.0, "d1": null, "s0": "a9f3", "s1": 17, "title": "Stocks rally"}]}

Per column, by the kind of the features that read it:

    dense   a number within float32's range (|v| <= 3.4028235e38) or null (null: missing, as an empty cell in a
            file): the model computes in float32, where a larger number would become inf, then NaN. When the
            feature reads numbers written for people (its ``decimal``, ``thousands`` or ``symbol`` option, as
            ``shoal inspect`` writes them), also a string written that way (``"30,220"``, ``"2,5 %"``), parsed as
            the training file's cells were
    sparse  a string, an integer or null (an id never seen in training is fine: it hashes like any other), of at
            most ``max_id_bytes`` UTF-8 bytes; a list feature's cell at most ``max_list_ids`` ids, as text joined by
            its separator (``"a|b"``) or a JSON array (``["a", "b"]``, as a JSON-lines training file had them;
            ``[]``: missing; an id holding the separator is a 422)
    text    a string of at most ``max_text_bytes`` UTF-8 bytes
    image   base64 of a PNG/JPEG/WebP file (or a ``data:<type>;base64,`` URI) of at most ``max_media_bytes``
    audio   base64 of a mono 16-bit PCM WAV file, the same way
    time    an ISO 8601 string (``"2024-03-01T08:30:00Z"``; without an offset: the feature's time zone), epoch
            seconds or milliseconds (a number, or a string of one), or null; a value that is not a time is a 422
            naming the field and the value, before any model work

A media value is never a file path: the encoder's media columns are told that cells are base64
(:attr:`~shoal.data.features.media.MediaColumn.read_paths` False), so a request cannot make the server read its
own files. Base64 that does not decode, a value over ``max_media_bytes`` or one that does not start like the
kind's files is a 422 naming the row and the field, before any model work; a file that starts right but cannot
be decoded is a 422 from the encoder, naming the row and the field too.

A ``multipart/form-data`` request (:mod:`shoal.serving.multipart`) carries one row, a part per column: it is
validated by the same checks (:meth:`RequestSchema.parse_form`), a media value being the file's bytes, not base64.

Every column must be present in every row; an unknown column, a wrong type, a missing column or a value over a
limit is a 422 that names the field (and the limit). The limits bound the work of a request before any of it is
done: with ``max_rows`` and the body size, no request costs more than a fixed multiple of a normal one.
Validated rows become a pyarrow table with the same column types a file gives the encoder, so the server and
``shoal predict`` encode the same values the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
import pyarrow as pa
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, create_model
from pydantic_core import PydanticCustomError

from shoal.data.encoder import Encoder
from shoal.data.features.base import Problems
from shoal.data.features.dense import FLOAT32_MAX, NumberFormat
from shoal.data.features.media import MediaColumn, MediaError, base64_bytes
from shoal.data.features.time import TimeColumn
from shoal.errors import ShoalError

__all__ = ["FLOAT32_MAX", "MAX_MEDIA_BYTES", "ClassPrediction", "FieldSpec", "PredictResponse", "Probability",
           "RequestSchema", "TagsPrediction"]

_EXPECT = {"dense": "a number or null", "sparse": "a string, an integer or null", "text": "a string",
           "time": "an ISO 8601 time (2024-03-01T08:30:00Z), epoch seconds or milliseconds, or null"}
_MEDIA = frozenset({"image", "audio"})
_MAX_ERRORS = 20
MAX_MEDIA_BYTES = 4 << 20  # default cap on one media value (decoded), per request field


class Probability(BaseModel):
    """Binary label: the probability of the positive class."""

    probability: float


class ClassPrediction(BaseModel):
    """Multiclass label: the most probable class and every class's probability."""

    model_config = ConfigDict(populate_by_name=True)

    class_: str = Field(alias="class")
    probabilities: dict[str, float]


class Prediction(BaseModel):
    """Regression label: the predicted value, in the label's units."""

    prediction: float


class TagsPrediction(BaseModel):
    """Multilabel label: the tags whose probability is at least 0.5, and every tag's probability."""

    tags: list[str]
    probabilities: dict[str, float]


class TasksPrediction(BaseModel):
    """Multitask label: per task, the probability (a binary task) or the value (a regression one)."""

    tasks: dict[str, float]


class PredictResponse(BaseModel):
    """The answer to ``POST /predict``: one prediction per row, in request order."""

    model: str
    version: str
    predictions: (list[Probability] | list[ClassPrediction] | list[Prediction] | list[TagsPrediction]
                  | list[TasksPrediction])


@dataclass(frozen=True)
class FieldSpec:
    """One request field: a raw column and the kind of value it takes."""

    column: str
    kind: str  # dense | sparse | text | image | audio | time: dense wins, then time, when several kinds read one
    features: tuple[str, ...]
    kinds: frozenset[str]  # the kinds of all the features reading this column
    separators: tuple[str, ...] = ()  # of the list features reading this column (a cell of ids "a|b|c")

    @property
    def takes_array(self) -> bool:
        """Whether a JSON array of ids is this field's value too: only list features, of one separator, read it."""
        return self.kind == "sparse" and len(self.separators) == 1 and len(self.kinds) == 1


class NotServableError(ShoalError, ValueError):
    """A bundle whose inputs the HTTP server cannot take (a column read both as media and as another kind)."""


def _fields(encoder: Encoder) -> list[FieldSpec]:
    unknown = [f"{f.name} ({f.kind})" for f in encoder.features if f.kind not in _EXPECT and f.kind not in _MEDIA]
    if unknown:
        raise NotServableError(f"this model reads {', '.join(unknown)}: `shoal serve` does not take these kinds; "
                               "score files with `shoal predict RUN FILE`")
    kinds: dict[str, list[str]] = {}
    names: dict[str, list[str]] = {}
    separators: dict[str, list[str]] = {}
    for f in encoder.features:
        kinds.setdefault(f.column, []).append(f.kind)
        names.setdefault(f.column, []).append(f.name)
        separator = getattr(f, "separator", None)
        if f.kind == "sparse" and separator:
            separators.setdefault(f.column, []).append(separator)
    out = []
    for column, ks in kinds.items():
        media = set(ks) & _MEDIA
        if media and (len(media) > 1 or len(set(ks)) > 1):  # one JSON value cannot be both a file and a number
            raise NotServableError(f"column {column!r} is read as {' and '.join(sorted(set(ks)))} "
                                   f"({', '.join(names[column])}): `shoal serve` takes a media column only when "
                                   "every feature reading it is of one media kind; score files with `shoal predict`")
        kind = (next(iter(media)) if media else "dense" if "dense" in ks else "time" if "time" in ks
                else "text" if "text" in ks else "sparse")
        out.append(FieldSpec(column, kind, tuple(names[column]), frozenset(ks),
                             tuple(dict.fromkeys(separators.get(column, [])))))
    return out


def _utf8_size(value: str, limit: int) -> int:
    """The UTF-8 size of ``value``; a string of at most ``limit // 4`` characters is not encoded (it fits)."""
    if len(value) <= limit // 4:
        return len(value)
    return len(value.encode("utf-8", errors="surrogatepass"))


def _text_limit(limit: int) -> AfterValidator:
    def check(value: str) -> str:
        size = len(value.encode("utf-8", errors="surrogatepass"))
        if size > limit:
            raise ValueError(f"text of {size} bytes is over the limit of {limit} bytes (server max_text_bytes)")
        return value

    return AfterValidator(check)


def _id_limit(max_id_bytes: int, max_list_ids: int, separators: tuple[str, ...]) -> AfterValidator:
    def check(value: str | int | list[str | int] | None) -> str | int | None:
        if isinstance(value, list):  # a list feature's ids as a JSON array: the cell its separator joins
            value = _joined(value, separators[0], max_list_ids)
        if value is None:
            return value
        text = value if isinstance(value, str) else str(value)
        for sep in separators:
            if len(text) >= max_list_ids * len(sep) and text.count(sep) + 1 > max_list_ids:
                raise ValueError(f"a list of {text.count(sep) + 1:,} ids is over the limit of {max_list_ids:,} ids "
                                 "(server max_list_ids)")
        size = _utf8_size(text, max_id_bytes)
        if size <= max_id_bytes:
            return value  # no id in it can be longer
        for sep in separators:
            size = max(_utf8_size(i, max_id_bytes) for i in text.split(sep))
            if size <= max_id_bytes:
                return value
        raise ValueError(f"an id of {size:,} bytes is over the limit of {max_id_bytes:,} bytes (server max_id_bytes)")

    return AfterValidator(check)


def _joined(ids: list[str | int], separator: str, max_list_ids: int) -> str | None:
    """A JSON array of ids as the text cell ``"a|b"`` a list feature reads (an empty array: a missing cell)."""
    if len(ids) > max_list_ids:
        raise ValueError(f"a list of {len(ids):,} ids is over the limit of {max_list_ids:,} ids (server max_list_ids)")
    text = [i if isinstance(i, str) else str(i) for i in ids]
    inside = next((i for i in text if separator in i), None)
    if inside is not None:
        raise ValueError(f"the id {inside[:40]!r} holds the feature's separator {separator!r}: it would read as "
                         "several ids")
    return separator.join(text) if text else None


def _media_check(column: MediaColumn, limit: int) -> AfterValidator:
    """base64 text (JSON) or a file's bytes (a multipart part) -> the file's bytes (never a path), at most ``limit``
    bytes, starting like the kind's files."""

    def check(value: str | bytes) -> bytes:
        if isinstance(value, bytes):  # a multipart file part: the file itself
            data, what = value, "the file is"
            if len(data) > limit:
                raise ValueError(f"a file of {len(data):,} bytes is over the limit of {limit:,} bytes for one media "
                                 "value (server max_media_bytes)")
        else:
            what = "the base64 decodes to"
            try:
                data = base64_bytes(value, limit)
            except MediaError as err:
                raise ValueError(f"{err} (server max_media_bytes: {limit:,})" if "limit" in str(err) else str(err)) \
                    from None
        if not column.magic(data):
            raise ValueError(f"{what} {len(data):,} bytes starting {data[:12]!r}, not "
                             f"{column.formats.removeprefix('base64 of ')}")
        return data

    return AfterValidator(check)


def _time_check(columns: list[TimeColumn]) -> AfterValidator:
    """A time value (text, or an epoch number) that every time feature reading the column can read."""

    readers = [TimeColumn.from_dict({**c.to_dict(), "column": "v"}) for c in columns]  # each reads a cell "v"

    def check(value: str | int | float | None) -> str | int | float | None:
        if value is None:
            return value
        cell = pa.table({"v": pa.array([value], pa.string() if isinstance(value, str) else pa.float64())})
        for reader in readers:
            problems = Problems()
            reader.read(cell, problems)
            if problems.reasons:
                shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
                reason = problems.reasons[0].replace(" (time feature)", "").replace("time feature; ", "")
                reason = reason.split(": expected")[0]  # "not a time", "a time outside the years 1 to 9999 (...)"
                raise ValueError(f"{shown} is {reason if reason.startswith('not') else 'not a time: ' + reason}; "
                                 f"send {_EXPECT['time']}")
        return value

    return AfterValidator(check)


def _written_number(number: NumberFormat) -> AfterValidator:
    """A dense value that is a number, or text written as the feature reads a file's cells (``number``'s decimal
    and thousands marks and symbol: ``"30,220"``, ``"$1,858.39"``): parsed here, by the reader's own code, so the
    model sees the number a file's cell gives."""

    marks = ", ".join(f"{k} {v!r}" for k, v in number.options().items() if k != "not_a_number")

    def check(value: float | str | None) -> float | None:
        if not isinstance(value, str):
            return _in_float32(value)
        values, ok = number.parse(pa.array([value.strip()], pa.string()))
        if not ok[0]:
            if number.not_a_number == "missing":
                return None
            shown = repr(value) if len(value) <= 40 else repr(value[:37] + "...")
            raise ValueError(f"{shown} is not a number as this feature reads them ({marks}); send a number, text "
                             "written that way, or null")
        return _in_float32(float(values[0]))

    return AfterValidator(check)


def _in_float32(value: float | int | None) -> float | int | None:
    if value is not None and abs(value) > FLOAT32_MAX:
        raise PydanticCustomError("float32_range", "outside float32's range")
    return value


class RequestSchema:
    """The pydantic models of ``POST /predict`` for one encoder, and the way from validated rows to a table."""

    def __init__(self, encoder: Encoder, max_rows: int, max_text_bytes: int, *, max_id_bytes: int = 2048,
                 max_list_ids: int = 1024, max_media_bytes: int = MAX_MEDIA_BYTES) -> None:
        self.fields = _fields(encoder)
        self.max_rows = max_rows
        self.max_text_bytes = max_text_bytes
        self.max_id_bytes = max_id_bytes
        self.max_list_ids = max_list_ids
        self.max_media_bytes = max_media_bytes
        self._by_column = {f.column: f for f in self.fields}
        self._media: dict[str, MediaColumn] = {}  # column -> the first media feature reading it
        for feature in encoder.media_features:
            feature.read_paths = False  # a request's cell is base64, never a path to the server's files
            self._media.setdefault(feature.column, feature)
        # a column that only dense features read, with marks in its numbers (decimal ",", thousands, a symbol): a
        # request may send its numbers as text written that way, as the training file had them
        formats = {f.column: f.number for f in encoder.dense_features if f.number.options()}
        self._written = {f.column: formats[f.column] for f in self.fields
                         if f.kind == "dense" and len(f.kinds) == 1 and f.column in formats}
        # Internal names f0, f1, ... with the column as alias (columns need not be Python identifiers), their prefix
        # one no column starts with: pydantic reads a value by its alias first, so an internal name that is also
        # another field's column (c2 of the columns c0, c1, c3, as `shoal inspect` names a headerless file's) would
        # take that field's value.
        prefix = "f"
        while any(f.column.startswith(prefix) for f in self.fields):
            prefix += "_"
        self._names = [f"{prefix}{i}" for i in range(len(self.fields))]
        # the fields of a column read both as a number and as ids
        self._shared = [n for n, f in zip(self._names, self.fields, strict=True) if len(f.kinds) > 1]
        self.shared_columns = bool(self._shared)
        defs: dict[str, Any] = {}
        form: dict[str, Any] = {}  # a multipart row's: the same, but a media value is the file's bytes
        for name, f in zip(self._names, self.fields, strict=True):
            if f.kind == "dense" and f.column in self._written:  # also "30,220", read as the feature reads a file
                typ: Any = Annotated[float | str | None, _written_number(self._written[f.column])]
            elif f.kind == "dense":  # a column also read as ids keeps integers as integers ("17", not "17.0")
                typ = (int | float | None) if len(f.kinds) > 1 else (float | None)
                typ = Annotated[typ, AfterValidator(_in_float32)]
            elif f.takes_array:  # also a JSON array of ids
                typ = Annotated[str | int | list[str | int] | None, _id_limit(max_id_bytes, max_list_ids,
                                                                              f.separators)]
            elif f.kind == "sparse":
                typ = Annotated[str | int | None, _id_limit(max_id_bytes, max_list_ids, f.separators)]
            elif f.kind in _MEDIA:
                check = _media_check(self._media[f.column], max_media_bytes)
                typ = Annotated[str, check]
                form[name] = (Annotated[bytes, check], Field(alias=f.column))
            elif f.kind == "time":
                times = [t for t in encoder.time_features if t.column == f.column]
                typ = Annotated[str | int | float | None, _time_check(times)]
            else:
                typ = Annotated[str, _text_limit(max_text_bytes)]
            about = (f": {self._expect(f)} (never a file path), at most {max_media_bytes:,} bytes decoded"
                     if f.kind in _MEDIA else "")
            defs[name] = (typ, Field(alias=f.column, description=f"{f.kind} ({', '.join(f.features)}){about}"))
        config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)
        self.row_model: type[BaseModel] = create_model("Row", __config__=config, **defs)
        form_row: Any = create_model("FormRow", __config__=config, **{**defs, **form})
        self._form_model: type[BaseModel] = create_model(
            "PredictForm", __config__=config, rows=(list[form_row], Field(min_length=1, max_length=1)))
        row_list: Any = list[self.row_model]  # type: ignore[name-defined]
        self.request_model: type[BaseModel] = create_model(
            "PredictRequest", __config__=config,
            rows=(row_list, Field(min_length=1, max_length=max_rows,
                                  description=f"1 to {max_rows} rows of raw features")),
        )

    def _expect(self, spec: FieldSpec) -> str:
        """What a field takes, in words."""
        if spec.kind in _MEDIA:
            return self._media[spec.column].formats
        if spec.takes_array:
            return (f"a string, an integer, an array of them (the list's ids, \"{spec.separators[0]}\" joins them) "
                    "or null")
        if spec.column in self._written:
            number = self._written[spec.column]
            example = "1.234,5" if number.decimal == "," else "1,234.5" if number.thousands else f"{number.symbol}12"
            return f"a number, text written as the training file's (\"{example}\") or null"
        return _EXPECT[spec.kind]

    # -- validation ------------------------------------------------------------------------------------------
    def parse(self, body: bytes) -> list[BaseModel]:
        """Validated rows of a JSON body; raises :class:`ValidationError`."""
        rows: list[BaseModel] = self.request_model.model_validate_json(body).rows  # type: ignore[attr-defined]
        return rows

    def parse_form(self, row: dict[str, Any]) -> list[BaseModel]:
        """The validated row of a multipart request (:mod:`shoal.serving.multipart`): ``row`` maps column names to
        Python values (a media column's: the file's bytes); the same checks, and errors, as a JSON row's."""
        rows: list[BaseModel] = self._form_model.model_validate({"rows": [row]}).rows  # type: ignore[attr-defined]
        return rows

    def describe_errors(self, err: ValidationError) -> list[dict[str, Any]]:
        """One entry per bad field: ``loc`` (FastAPI style), ``msg`` naming the field and the fix, ``type``."""
        out: list[dict[str, Any]] = []
        seen: set[tuple[Any, ...]] = set()
        for e in err.errors(include_url=False):
            loc = tuple(e["loc"])
            if len(loc) >= 3 and loc[0] == "rows" and isinstance(loc[1], int):
                loc = loc[:3]  # drop the union member pydantic appends ("str", "int", ...)
                msg = self._field_message(e["type"], str(loc[2]), e.get("input"), e["msg"])
                spec = self._by_column.get(str(loc[2]))
                if spec is not None and spec.kind in _MEDIA:  # several media values per row: say which
                    msg = f"row {loc[1]}: {msg}"
            else:
                where = ".".join(str(p) for p in loc) or "body"
                msg = f"{where}: {e['msg']}"
            if loc in seen:
                continue
            seen.add(loc)
            out.append({"loc": ["body", *loc], "msg": msg, "type": e["type"]})
            if len(out) >= _MAX_ERRORS:
                break
        return out

    def _field_message(self, kind: str, field: str, value: Any, pydantic_msg: str) -> str:
        spec = self._by_column.get(field)
        if kind == "extra_forbidden" or spec is None:
            known = ", ".join(f.column for f in self.fields)
            return f"unknown field {field!r}; this model's fields are: {known}"
        if kind == "missing":
            fix = ("send null for a missing value" if spec.kind not in ("text", *_MEDIA)
                   else f"send {self._expect(spec)}" if spec.kind in _MEDIA else "send a string (\"\" if empty)")
            return f"missing field {field!r} ({spec.kind}); every row needs every field: {fix}"
        if kind == "value_error":  # our own validators (text, id and media sizes, float32's range, base64)
            what = f" ({spec.kind}, {self._expect(spec)})" if spec.kind in _MEDIA else ""
            return f"field {field!r}{what}: {pydantic_msg.removeprefix('Value error, ')}"
        shown = repr(value)
        shown = shown if len(shown) <= 40 else shown[:37] + "..."
        if kind in ("finite_number", "float32_range") and spec.kind != "time":  # inf, NaN, or beyond float32
            return (f"field {field!r} ({spec.kind}) must be a number within float32's range, -{FLOAT32_MAX:.8g} to "
                    f"{FLOAT32_MAX:.8g} (the model computes in float32), or null, not {shown}")
        return f"field {field!r} ({spec.kind}) must be {self._expect(spec)}, not {shown}"

    # -- rows -> table ---------------------------------------------------------------------------------------
    def table(self, rows: list[BaseModel]) -> pa.Table:
        """The rows as columns, typed as a file would give them to the encoder."""
        arrays = []
        for name, f in zip(self._names, self.fields, strict=True):
            values = [getattr(r, name) for r in rows]
            if f.kind in _MEDIA:  # decoded by the validator: a file's bytes, as a Parquet binary column gives
                arrays.append(pa.array(values, pa.binary()))
            elif f.kind == "dense" and all(v is None or isinstance(v, float) for v in values):
                arrays.append(pa.array(values, pa.float64()))
            elif f.kind == "time" and all(v is None or isinstance(v, int | float) for v in values):
                arrays.append(pa.array(values, pa.float64()))  # epoch numbers, as a Parquet number column
            else:  # ids and texts are strings, as in a CSV file (an integer id 17 is the string "17")
                arrays.append(pa.array([v if v is None or isinstance(v, str) else str(v) for v in values],
                                       pa.string()))
        return pa.Table.from_arrays(arrays, names=[f.column for f in self.fields])

    def as_dicts_safe(self, rows: list[BaseModel]) -> bool:
        """Whether ``rows`` read as row dicts the way :meth:`table` reads them: no float in a column read both as a
        number and as ids (the table writes 13.0 as the id "13.0", a dict's general feed casts it to "13"; an
        integer is "13" both ways)."""
        return all(type(getattr(r, n)) is not float for r in rows for n in self._shared)

    def placeholder(self) -> BaseModel:
        """A row with every value missing (texts empty, media a tiny valid file of the right kind): to warm a
        model up."""
        def value(f: FieldSpec) -> bytes | str | None:
            if f.kind in _MEDIA:  # as the validator leaves it (the file's bytes); not held to max_media_bytes
                return self._media[f.column].placeholder()
            return "" if f.kind == "text" else None

        values: dict[str, Any] = {n: value(f) for n, f in zip(self._names, self.fields, strict=True)}
        return self.row_model.model_construct(None, **values)

    def describe(self) -> list[dict[str, Any]]:
        """The fields as ``GET /model`` shows them."""
        return [{"name": f.column, "kind": f.kind, "type": self._expect(f), "features": list(f.features),
                 **({"max_bytes": self.max_text_bytes} if f.kind == "text" else {}),
                 **({"max_bytes": self.max_media_bytes, "encoding": "base64"} if f.kind in _MEDIA else {}),
                 **({"max_bytes": self.max_id_bytes} if f.kind == "sparse" else {}),
                 **({"max_ids": self.max_list_ids} if f.kind == "sparse" and f.separators else {})}
                for f in self.fields]


def predictions(proba: np.ndarray, classes: list[str] | None, task: str = "binary") -> list[dict[str, Any]]:
    """Rows of :class:`Probability` / :class:`ClassPrediction` / :class:`Prediction` / :class:`TagsPrediction`
    as plain dicts (JSON-ready); ``classes`` are the tags of a multilabel label, the tasks of a multitask one
    (:class:`TasksPrediction`)."""
    if task == "multitask":
        assert classes is not None
        return [{"tasks": dict(zip(classes, p, strict=True))} for p in proba.tolist()]
    if task == "regression":
        return [{"prediction": v} for v in proba.tolist()]
    if task == "multilabel":
        assert classes is not None
        return [{"tags": [t for t, q in zip(classes, p, strict=True) if q >= 0.5],
                 "probabilities": dict(zip(classes, p, strict=True))} for p in proba.tolist()]
    if classes is None:
        return [{"probability": p} for p in proba.tolist()]
    best = proba.argmax(axis=1).tolist()
    return [{"class": classes[b], "probabilities": dict(zip(classes, p, strict=True))}
            for b, p in zip(best, proba.tolist(), strict=True)]
