"""Typed run configuration, loaded from YAML and validated by pydantic.

A config names the data (files and their format), the label, the features and their kinds, the model and the
training settings. Unknown keys fail; every error names the file, the field, the bad value and what is
allowed. Relative paths in a config file are resolved against the folder that holds the file, so a config
works from any working directory.

Example (``configs/synthetic.yaml`` is a complete one)::

    name: clicks
    data: {train: clicks.parquet, valid_fraction: 0.1}
    label: {column: label}
    features:
      - {name: d0, kind: dense, transform: log1p}
      - {name: s0, kind: sparse, buckets: 100000}
    model: {name: dlrm, embedding_dim: 16}
    train: {epochs: 2, batch_size: 1024}
"""

from __future__ import annotations

import datetime
import hashlib
import os
import re
import tempfile
import zoneinfo
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from shoal.errors import ShoalError

__all__ = [
    "AnyFeature",
    "apply_overrides",
    "check_memory",
    "embedding_tables",
    "machine_memory",
    "read_yaml",
    "BagConfig",
    "ByteCNNConfig",
    "ConfigError",
    "DataConfig",
    "HeadsConfig",
    "TaskConfig",
    "DCNv2Config",
    "AudioFeature",
    "DenseFeature",
    "DLRMConfig",
    "EmbeddingsConfig",
    "FeatureConfig",
    "FileSpec",
    "ImageFeature",
    "LabelConfig",
    "LogisticConfig",
    "MLPConfig",
    "ModelConfig",
    "RowFilter",
    "RunConfig",
    "SQL_BASE_HEADER",
    "SparseFeature",
    "TextFeature",
    "TimeFeature",
    "TrainConfig",
    "load_config",
    "parse_config",
]


class ConfigError(ShoalError, ValueError):
    """A config file that cannot be used; the message names the file, the field and the fix."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


FileFormat = Literal["csv", "tsv", "parquet", "jsonl", "arrow", "sql"]
MAX_CLASSES = 1000

# -- sources: a file, folder or glob; a list of them; or a DuckDB query -----------------------------------------
# Every reader takes one Path per split (``data.train``), so a list and a query are given one too: a list is its
# entries joined by newlines (no data path holds one), a query is a ``.sql`` file (``shoal.data.sql`` runs it). The
# resolved config writes both back in the form the user wrote them.
SQL_BASE_HEADER = "-- shoal-base: "  # first line of a .sql file: the folder its relative paths resolve against
FilterOp = Literal["=", "==", "!=", "<", "<=", ">", ">=", "in", "not in"]
Scalar = str | bool | int | float
RowFilter = tuple[str, FilterOp, Scalar | list[Scalar]]  # [column, op, value]: the rows kept; a list is their AND


def _query_file(query: str, base: Path) -> Path:
    """The ``.sql`` file (content-addressed, in the temp folder) holding an inline ``{sql: QUERY}`` source."""
    text = f"{SQL_BASE_HEADER}{base}\n{query.strip()}\n"
    path = Path(tempfile.gettempdir()) / "shoal-sql" / f"{hashlib.sha256(text.encode()).hexdigest()[:24]}.sql"
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)  # atomic: ranks parse the same config at once
    return path


def _source(value: Any, info: ValidationInfo) -> Any:
    """A split's source as one Path: a list is joined by newlines, ``{sql: QUERY, base: DIR}`` becomes a .sql
    file; list entries and the query's folder are resolved against the config's folder (``base_dir``)."""
    base: Path | None = (info.context or {}).get("base_dir")
    if isinstance(value, list):
        if not value or not all(isinstance(v, str | os.PathLike) and str(v).strip() for v in value):
            raise ValueError(f"a list of sources must hold file, folder or glob paths (got {value!r})")
        if any("\n" in str(v) for v in value):
            raise ValueError(f"a source path cannot hold a line break (got {value!r})")
        entries = [base / v if base is not None else Path(v) for v in value]
        return Path("\n".join(str(e.resolve() if base is not None else e) for e in entries))
    if isinstance(value, dict) and "sql" in value:
        extra = sorted(set(value) - {"sql", "base"})
        if extra:
            raise ValueError(f"a SQL source takes the keys sql and base, not {extra}")
        query = value["sql"]
        if not isinstance(query, str) or not query.strip():
            raise ValueError(f"sql must be a query text, e.g. \"select * from read_parquet('logs/*.parquet')\" "
                             f"(got {query!r})")
        folder = Path(value.get("base") or base or Path.cwd())
        return _query_file(query, (base / folder if base is not None else folder).resolve())
    return value


def _declared(path: Path) -> Any:
    """A source as the user wrote it: a path, a list of paths, or ``{sql, base}`` (for the resolved config)."""
    text = str(path)
    if "\n" in text:
        return text.split("\n")
    if path.suffix == ".sql" and path.parent.name == "shoal-sql" and path.is_file():
        head, _, query = path.read_text(encoding="utf-8").partition("\n")
        if head.startswith(SQL_BASE_HEADER):
            return {"sql": query.strip(), "base": head[len(SQL_BASE_HEADER):]}
    return text


_FILTER_TERM = re.compile(r"""\s*(?P<col>[A-Za-z_][\w.-]*|`[^`]+`)\s*(?P<op>==|=|!=|<=|>=|<|>|not\s+in\b|in\b)\s*
    (?P<value>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|\((?:[^()'"]|'[^']*'|"[^"]*")*\)|[^\s()]+)\s*$""", re.X)
_FILTER_ITEM = re.compile(r"""\s*('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|[^,\s]+)\s*(?:,|$)""")


def _filter_value(text: str, where: str) -> Scalar:
    """One literal of a filter: 'text' or "text", a number, true/false."""
    if text[:1] in "'\"" and len(text) >= 2 and text[-1] == text[0]:
        return re.sub(r"\\(.)", r"\1", text[1:-1])
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{where}: {text!r} is not a value; quote text ('2026-11-01'), or write a number, true or "
                         "false") from None


def _parse_filter(text: str) -> list[tuple[str, str, Any]]:
    """``"date >= '2026-11-01' and city in ('a', 'b')"`` -> ``[(date, >=, 2026-11-01), (city, in, [a, b])]``.
    Only comparisons joined by ``and``: no functions, nothing that runs."""
    terms = re.split(r"\s+and\s+(?=(?:[^'\"]|'[^']*'|\"[^\"]*\")*$)", text.strip(), flags=re.I)
    out: list[tuple[str, str, Any]] = []
    for term in terms:
        m = _FILTER_TERM.fullmatch(term)
        if m is None:
            raise ValueError(f"cannot read {term.strip()!r}: write COLUMN OP VALUE joined by 'and', OP one of "
                             "= != < <= > >= in, 'not in' (e.g. date >= '2026-11-01' and date < '2026-12-01')")
        col, op, raw = m["col"].strip("`"), " ".join(m["op"].lower().split()), m["value"]
        if op in ("in", "not in"):
            if not (raw.startswith("(") and raw.endswith(")")):
                raise ValueError(f"{term.strip()!r}: {op} takes a list in parentheses, e.g. city in ('a', 'b')")
            items = _FILTER_ITEM.findall(raw[1:-1])
            out.append((col, op, [_filter_value(i, term.strip()) for i in items]))
        else:
            out.append((col, op, _filter_value(raw, term.strip())))
    return out


class FileSpec(_Strict):
    """A validation or test file read differently from the training file; unset options follow ``data``."""

    path: Path  # a file, folder, glob, or a list of them
    format: FileFormat | None = None
    header: bool | None = None
    columns: list[str] | None = None
    delimiter: str | None = Field(None, min_length=1, max_length=1)
    quoting: bool | None = None

    _path_source = field_validator("path", mode="before")(_source)

    @field_serializer("path", when_used="json")
    def _path_declared(self, path: Path) -> Any:
        return _declared(path)


class DataConfig(_Strict):
    """Where the rows come from and how to read them."""

    train: Path  # a file, folder or glob; a list of them; or {sql: QUERY} (DuckDB)
    valid: Path | FileSpec | None = None  # the same, or {path, format, header, columns, delimiter, quoting}
    test: Path | FileSpec | None = None
    filter: list[RowFilter] | None = None  # rows kept: "date >= '2026-11-01' and ..." or [[column, op, value], ...]
    valid_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    format: FileFormat | None = None  # None: from the file extension
    header: bool = True
    columns: list[str] | None = None  # required for headerless CSV/TSV
    delimiter: str | None = Field(None, min_length=1, max_length=1)
    quoting: bool = True  # CSV/TSV: '"' quotes cells; false reads quotes as plain text (e.g. SST-2)
    missing: list[str] = Field(default_factory=lambda: ["", "NA", "N/A", "n/a", "#N/A", "NaN", "nan", "null", "NULL",
                                                        "?"])
    on_bad_rows: Literal["error", "quarantine"] = "error"
    chunk_rows: int = Field(65_536, ge=1)

    _sources = field_validator("train", "valid", "test", mode="before")(_source)

    @field_validator("filter", mode="before")
    @classmethod
    def _filter_terms(cls, value: Any) -> Any:
        if isinstance(value, str):
            return _parse_filter(value) if value.strip() else None
        if isinstance(value, list):  # a YAML date (2026-11-01 unquoted) compares as its ISO text
            return [[v.isoformat() if isinstance(v, datetime.date) else v for v in t] if isinstance(t, list | tuple)
                    else t for t in value]
        return value

    @field_serializer("train", "valid", "test", when_used="json")
    def _sources_declared(self, value: Path | FileSpec | None) -> Any:
        return _declared(value) if isinstance(value, Path) else value

    @model_validator(mode="after")
    def _columns_for_headerless(self) -> DataConfig:
        if not self.header and self.columns is None and self.format in (None, "csv", "tsv"):
            raise ValueError("header is false, so data.columns must list the column names in file order")
        return self

    @property
    def holds_out(self) -> bool:
        """Whether validation rows are held out of the training file (no ``valid`` file, a fraction above 0)."""
        return self.valid is None and self.valid_fraction > 0

    def file(self, split: Literal["train", "valid", "test"]) -> tuple[Path, DataConfig] | None:
        """The path of a split and the reading options for it (``data`` with the file's own options on top)."""
        spec = getattr(self, split)
        if spec is None:
            return None
        if isinstance(spec, Path):
            return spec, self
        own = {k: v for k, v in spec.model_dump(exclude={"path"}).items() if v is not None}
        if own.get("header") is False and "columns" not in own and self.columns is None:
            raise ValueError(f"data.{split}.header is false, so data.{split}.columns must list the column names")
        return spec.path, self.model_copy(update=own)


class TaskConfig(_Strict):
    """One task of a ``kind: multitask`` label: a ``binary`` event (clicked, converted) or a ``regression`` number
    (watch time, revenue) read from its own column. An empty or missing cell means "not known for this row": the
    row trains and is scored on the other tasks only. ``weight`` scales the task's share of the training loss."""

    column: str = Field(min_length=1)
    kind: Literal["binary", "regression"] = "binary"
    weight: float = Field(1.0, gt=0, le=1000)
    loss: Literal["mse", "huber"] = "mse"
    huber_delta: float = Field(1.0, gt=0)
    positive: list[str] = Field(default_factory=lambda: ["1", "1.0", "true", "True"])
    negative: list[str] = Field(default_factory=lambda: ["0", "0.0", "false", "False"])

    @model_validator(mode="after")
    def _consistent(self) -> TaskConfig:
        both = sorted(set(self.positive) & set(self.negative))
        if both:
            raise ValueError(f"task {self.column!r}: values {both} are listed as both positive and negative")
        if self.kind != "regression" and (self.loss != "mse" or self.huber_delta != 1.0):
            raise ValueError(f"task {self.column!r}: loss and huber_delta apply to kind: regression "
                             f"(this task is {self.kind})")
        return self


class HeadsConfig(_Strict):
    """How the tasks of a ``kind: multitask`` label share the model (every registered model works).

    The model's output layer becomes a shared representation of ``width`` values; then, per task, a ``tower``
    MLP ends in the task's output. ``shared_bottom``: every tower reads the representation (Caruana 1997).
    ``mmoe``: ``experts`` MLPs (``expert`` hidden widths) read it and each task mixes their outputs with its own
    softmax gate (Ma et al. 2018, "Modeling Task Relationships in Multi-task Learning with Multi-gate
    Mixture-of-Experts"), so tasks that disagree can lean on different experts."""

    kind: Literal["shared_bottom", "mmoe"] = "shared_bottom"
    width: Width = 64
    tower: list[Width] = Field(default_factory=lambda: [32])
    experts: int = Field(4, ge=1, le=64)
    expert: list[Width] = Field(default_factory=lambda: [64], min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> HeadsConfig:
        fields = HeadsConfig.model_fields  # a saved config repeats the defaults: only other values are refused
        if self.kind == "shared_bottom" and any(getattr(self, k) != fields[k].get_default(call_default_factory=True)
                                                for k in ("experts", "expert")):
            raise ValueError("experts and expert apply to heads kind: mmoe (these heads are shared_bottom)")
        return self


class LabelConfig(_Strict):
    """The target column: ``binary`` (positive/negative values), ``multiclass`` (class names or integers) or
    ``regression`` (a number: watch time, revenue, a price).

    For ``multiclass``, ``classes`` lists the class names in output order (found in the training file and
    sorted when left out) and ``aliases`` maps other spellings to them, e.g. ``{"1": World}`` when a test
    file numbers the classes that the training file names.

    For ``regression``, the model learns the target standardised by the training rows' mean and standard
    deviation and answers in the label's own units; ``loss`` is ``mse`` or ``huber`` (less swayed by a few
    huge values), ``huber_delta`` in standard deviations of the target.

    For ``multilabel``, each row holds any number of tags: a text joined by ``separator`` (``"sports|news"``)
    or a Parquet/JSON list column; an empty cell means no tags. ``classes`` lists the tags in output order
    (found in the training file and sorted when left out), ``aliases`` maps other spellings to them; the model
    has one sigmoid output per tag.

    For ``multitask``, several labels are learned at once (click and conversion, watch time): ``tasks`` lists
    them (:class:`TaskConfig`, each with its own column; no ``column`` here) and ``heads`` how they share the
    model (:class:`HeadsConfig`). The model has one output per task, in ``tasks`` order.
    """

    column: str = ""
    kind: Literal["binary", "multiclass", "regression", "multilabel", "multitask"] = "binary"
    loss: Literal["mse", "huber"] = "mse"
    huber_delta: float = Field(1.0, gt=0)
    separator: str = Field("|", min_length=1)
    positive: list[str] = Field(default_factory=lambda: ["1", "1.0", "true", "True"])
    negative: list[str] = Field(default_factory=lambda: ["0", "0.0", "false", "False"])
    classes: list[str] | None = Field(None, min_length=2, max_length=MAX_CLASSES)
    aliases: dict[str, str] = Field(default_factory=dict)
    tasks: list[TaskConfig] | None = Field(None, min_length=2, max_length=32)
    heads: HeadsConfig | None = None

    @model_validator(mode="after")
    def _consistent(self) -> LabelConfig:
        if self.kind == "multitask":
            return self._multitask()
        if not self.column:
            raise ValueError("label.column is required (the column to predict)")
        if self.tasks is not None or self.heads is not None:
            raise ValueError(f"tasks and heads apply to kind: multitask (this label is {self.kind})")
        both = sorted(set(self.positive) & set(self.negative))
        if both:
            raise ValueError(f"values {both} are listed as both positive and negative")
        if self.kind not in ("multiclass", "multilabel") and (self.classes is not None or self.aliases):
            raise ValueError(f"classes and aliases apply to kind: multiclass (this label is {self.kind}) "
                             "or kind: multilabel")
        if self.kind != "multilabel" and self.separator != "|":
            raise ValueError(f"separator applies to kind: multilabel (this label is {self.kind})")
        if self.kind != "regression" and (self.loss != "mse" or self.huber_delta != 1.0):
            raise ValueError(f"loss and huber_delta apply to kind: regression (this label is {self.kind})")
        if self.classes is not None:
            dupes = sorted({c for c in self.classes if self.classes.count(c) > 1})
            if dupes:
                raise ValueError(f"classes {dupes} are listed twice")
            unknown = sorted(set(self.aliases.values()) - set(self.classes))
            if unknown:
                raise ValueError(f"aliases point to {unknown}, which are not in classes {self.classes}")
        return self

    def _multitask(self) -> LabelConfig:
        if self.tasks is None:
            raise ValueError("kind: multitask needs tasks: a list of at least 2 {column, kind} (binary or "
                             "regression), e.g. tasks: [{column: click}, {column: conversion}]")
        fields = LabelConfig.model_fields  # a resolved config repeats the defaults: only other values are refused
        set_here = {k for k in self.model_fields_set - {"kind", "tasks", "heads"}
                    if getattr(self, k) != fields[k].get_default(call_default_factory=True)}
        if set_here:
            raise ValueError(f"{sorted(set_here)} of a multitask label go in each of its tasks, not in label")
        columns = [t.column for t in self.tasks]
        dupes = sorted({c for c in columns if columns.count(c) > 1})
        if dupes:
            raise ValueError(f"tasks {dupes} are listed twice")
        return self

    @property
    def columns(self) -> list[str]:
        """The label's columns: one, or one per task."""
        return [t.column for t in self.tasks] if self.tasks else [self.column]

    @property
    def task_heads(self) -> HeadsConfig:
        """The heads of a multitask label (the defaults when ``heads`` is left out)."""
        return self.heads or HeadsConfig()


FeatureKind = Literal["dense", "sparse", "text", "image", "audio", "time"]


class FeatureConfig(_Strict):
    """One input column, of one kind: :class:`DenseFeature`, :class:`SparseFeature` or :class:`TextFeature`.

    Each kind is its own class with only its own options; a config's ``features`` list is the tagged union
    :data:`AnyFeature` on ``kind``. Calling ``FeatureConfig(kind=..., ...)`` builds the class of that kind, so
    code that names no kind keeps working::

        >>> FeatureConfig(name="age", kind="dense", transform="log1p")
        DenseFeature(name='age', kind='dense', column=None, transform='log1p', bins=None, decimal='.', thousands=None,
        symbol=None, not_a_number='bad_row')

    An option of another kind is accepted at its default value and dropped (a saved config lists every kind's
    options for every feature); at any other value it is an error that names the kind it applies to.
    """

    name: str
    kind: FeatureKind
    column: str | None = None  # defaults to ``name``

    def __new__(cls, *args: Any, **data: Any) -> FeatureConfig:
        # FeatureConfig(kind="dense", ...) is a DenseFeature; Python then runs DenseFeature.__init__(**data).
        # An unknown or missing kind stays a FeatureConfig, whose validation reports the kind.
        kind = data.get("kind")
        target = _KINDS.get(kind, cls) if cls is FeatureConfig and isinstance(kind, str) else cls
        return super().__new__(target)

    @model_validator(mode="before")
    @classmethod
    def _other_kinds_options(cls, data: Any) -> Any:
        if not isinstance(data, dict) or cls is FeatureConfig:
            return data
        kept = {}
        for key, value in data.items():
            owners = [k for k, c in _KINDS.items() if key in c.model_fields] if key not in cls.model_fields else []
            if not owners:
                kept[key] = value  # this kind's option, or an unknown key (reported as such)
            elif value != _KINDS[owners[0]].model_fields[key].default:
                raise ValueError(f"feature {data.get('name')!r}: {key} applies to {' and '.join(owners)} features "
                                 f"only (this one is {data.get('kind')})")
        return kept

    @property
    def source(self) -> str:
        """The column the feature reads: ``column``, or else its ``name``."""
        return self.column or self.name


class DenseFeature(FeatureConfig):
    """A number: ``transform`` it, flag it when missing, and optionally embed its quantile bin.

    Text cells are read with ``decimal`` as the decimal mark, ``thousands`` (if set) between groups of three
    digits, and ``symbol`` (if set) dropped before or after the number: ``{decimal: ","}`` reads ``"0,3105"`` as
    0.3105, ``{thousands: ",", symbol: "$"}`` reads ``"$1,858.39"`` as 1858.39, ``{symbol: "%"}`` reads ``"2.1%"``
    as 2.1. A cell that is not a number makes its row bad, or with ``not_a_number: missing`` reads as missing.
    """

    kind: Literal["dense"]
    transform: Literal["log1p", "standardize", "none"] = "standardize"
    bins: int | None = Field(None, ge=2, le=4096)  # also embed the value's quantile bin (learned from training)
    decimal: Literal[".", ","] = "."
    thousands: Literal[",", ".", " ", "'"] | None = None
    symbol: str | None = Field(None, min_length=1, max_length=8)  # a currency sign or unit, e.g. "$", "%", "kg"
    not_a_number: Literal["bad_row", "missing"] = "bad_row"

    @model_validator(mode="after")
    def _number_marks(self) -> DenseFeature:
        if self.thousands == self.decimal:
            raise ValueError(f"feature {self.name!r}: thousands {self.thousands!r} is also the decimal mark; set "
                             "thousands to another mark (or leave it out), e.g. decimal: \",\", thousands: \".\"")
        if self.symbol is not None and (not self.symbol.strip() or re.search(r"[\d.,+\-\s']", self.symbol)):
            raise ValueError(f"feature {self.name!r}: symbol {self.symbol!r} must be a mark such as \"$\", \"%\" "
                             "or \"kg\", without digits, signs, spaces, '.', ',' or \"'\"")
        return self


class SparseFeature(FeatureConfig):
    """An id, or a list of ids in one cell, hashed into ``buckets`` embedding rows; or, with ``encoding: vocab``,
    looked up in the exact vocabulary of the training file (ids seen at least ``min_count`` times, the
    ``max_size`` most frequent), with one out-of-vocabulary row for the others: no two ids share a row."""

    kind: Literal["sparse"]
    buckets: int = Field(100_000, ge=2, le=100_000_000)  # vocab: the rows assumed before the vocabulary is built
    separator: str | None = Field(None, min_length=1)  # a list of ids in one cell, e.g. "|"
    encoding: Literal["hash", "vocab"] = "hash"
    min_count: int = Field(1, ge=1)  # vocab: rarer ids share the out-of-vocabulary row
    max_size: int | None = Field(None, ge=1, le=100_000_000)  # vocab: at most this many ids of their own

    @model_validator(mode="after")
    def _vocab_options(self) -> SparseFeature:
        if self.encoding == "hash" and (self.min_count != 1 or self.max_size is not None):
            raise ValueError(f"feature {self.name!r}: min_count and max_size apply to encoding: vocab only "
                             "(this one hashes its ids); set encoding: vocab or remove them")
        return self


class TextFeature(FeatureConfig):
    """Raw UTF-8 text: a bag of hashed byte n-grams (and whitespace-word n-grams) in ``buckets`` rows, or with
    ``tokens: bytes`` the byte sequence itself, in order, for sequence models such as bytecnn."""

    kind: Literal["text"]
    buckets: int = Field(100_000, ge=2, le=100_000_000)
    tokens: Literal["ngrams", "bytes"] = "ngrams"
    max_bytes: int = Field(1024, ge=1)
    ngram_min: int = Field(1, ge=1, le=16)
    ngram_max: int = Field(4, ge=1, le=16)
    word_ngrams: int = Field(2, ge=0, le=8)

    @model_validator(mode="after")
    def _ngram_range(self) -> TextFeature:
        if self.ngram_min > self.ngram_max:
            raise ValueError(f"feature {self.name!r}: ngram_min {self.ngram_min} > ngram_max {self.ngram_max}")
        return self


class _MediaFeature(FeatureConfig):
    """What image and audio features share: the encoder network that turns one into a vector (its ``widths``:
    the channels of each stage, ``blocks`` per stage), and training-time ``augment``."""

    widths: list[Annotated[int, Field(ge=1, le=1024)]] = Field(default_factory=lambda: [16, 32, 64], min_length=1,
                                                               max_length=6)
    blocks: int = Field(1, ge=1, le=4)
    augment: bool = False  # random changes to each training example (never at evaluation or serving)


class ImageFeature(_MediaFeature):
    """An image: a file path (relative to the data file's folder, or absolute), raw bytes or base64 text; decoded
    (PNG, JPEG, WebP, ... with Pillow), made grey (``channels: 1``) or RGB (3), resized to ``size`` [H, W],
    scaled to [0, 1] and normalised ``(x - mean) / std``; a small ResNet (:mod:`shoal.models.vision`) encodes it.
    ``augment``: random shifts (crops of a padded image), small rotations and, with ``flip``, mirror images."""

    kind: Literal["image"]
    channels: Literal[1, 3] = 3
    size: tuple[Annotated[int, Field(ge=4, le=1024)], Annotated[int, Field(ge=4, le=1024)]] = (32, 32)
    mean: float = 0.5
    std: float = Field(0.25, gt=0)
    flip: bool = True  # with augment: mirror left-right (off for digits and text)


class AudioFeature(_MediaFeature):
    """A sound: a WAV file path or bytes (mono, 16-bit PCM), resampled to ``sample_rate``, cut or padded to
    ``seconds``, turned into a log-mel spectrogram of ``n_mels`` bands (``window_ms`` frames every ``hop_ms``);
    a small 2-D CNN (:mod:`shoal.models.audio`) encodes it. ``augment``: random time shifts and SpecAugment
    masks of frequency bands and frames."""

    kind: Literal["audio"]
    sample_rate: int = Field(16_000, ge=1000, le=192_000)
    seconds: float = Field(1.0, gt=0, le=60)
    n_mels: int = Field(40, ge=4, le=256)
    window_ms: float = Field(25.0, gt=0, le=1000)
    hop_ms: float = Field(10.0, gt=0, le=1000)

    @model_validator(mode="after")
    def _frames(self) -> AudioFeature:
        if round(self.seconds * 1000 / self.hop_ms) > 4096:
            raise ValueError(f"feature {self.name!r}: {self.seconds} s every {self.hop_ms} ms is over 4096 frames; "
                             "raise hop_ms or lower seconds")
        return self


TimePart = Literal["hour", "weekday", "day", "month"]
#: Values of each calendar part of a time feature: hour of day 0-23, day of week 0-6 (Monday 0), day of month
#: 1-31, month 1-12. Its embedding table has one more row: id 0 is a missing time.
TIME_PARTS: dict[str, int] = {"hour": 24, "weekday": 7, "day": 31, "month": 12}
DEFAULT_TIME_PARTS: tuple[TimePart, ...] = ("hour", "weekday")


class TimeFeature(FeatureConfig):
    """A point in time: an ISO 8601 string (with or without an offset or ``Z``), epoch seconds or milliseconds,
    or a Parquet/Arrow timestamp or date. Its calendar ``parts`` in ``timezone`` are ids (each its own small
    embedding table); with ``relative_to`` (another time feature, the row's time) also its age in days, a
    dense value (signed log1p, standardized, with a missing flag)."""

    kind: Literal["time"]
    parts: list[TimePart] = Field(default_factory=lambda: list(DEFAULT_TIME_PARTS), max_length=len(TIME_PARTS))
    timezone: str = "UTC"  # IANA name: calendar parts, and text without an offset, are in this zone's local time
    relative_to: str | None = Field(None, min_length=1)  # another time feature: this one's age at that time, in days
    format: str | None = Field(None, min_length=2)  # strptime format of text cells (default: ISO 8601)
    unit: Literal["auto", "s", "ms"] = "auto"  # epoch numbers: auto reads |v| >= 1e11 as milliseconds

    @model_validator(mode="after")
    def _time_options(self) -> TimeFeature:
        if len(set(self.parts)) != len(self.parts):
            raise ValueError(f"feature {self.name!r}: parts {self.parts} lists a part twice; choose each of "
                             f"{', '.join(TIME_PARTS)} at most once")
        try:
            zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"feature {self.name!r}: timezone {self.timezone!r} is not a known IANA time zone; "
                             "use a name such as UTC, Europe/Paris or America/New_York") from None
        if self.format is not None and "%" not in self.format:
            raise ValueError(f"feature {self.name!r}: format {self.format!r} has no % directive; give a strptime "
                             "format such as '%d/%m/%Y %H:%M', or leave it out for ISO 8601")
        if self.relative_to == self.name:
            raise ValueError(f"feature {self.name!r}: relative_to names the feature itself; name another time "
                             "feature (the row's time, e.g. the event's timestamp)")
        return self


_KINDS: dict[Any, type[FeatureConfig]] = {"dense": DenseFeature, "sparse": SparseFeature, "text": TextFeature,
                                          "image": ImageFeature, "audio": AudioFeature, "time": TimeFeature}
AnyFeature = Annotated[DenseFeature | SparseFeature | TextFeature | ImageFeature | AudioFeature | TimeFeature,
                       Field(discriminator="kind")]


def check_time_references(features: Sequence[FeatureConfig]) -> None:
    """Refuse a time feature whose ``relative_to`` does not name another time feature, and one that encodes
    nothing (no parts, no relative_to, and no other feature's reference). Raises ``ValueError``."""
    times = {f.name: f for f in features if isinstance(f, TimeFeature)}
    kinds = {f.name: f.kind for f in features}
    for f in times.values():
        ref = f.relative_to
        if ref is not None and ref not in times:
            what = (f"{ref!r} is a {kinds[ref]} feature" if ref in kinds else f"there is no feature {ref!r}")
            others = ", ".join(repr(n) for n in times if n != f.name) or "none"
            raise ValueError(f"feature {f.name!r}: relative_to must name another time feature, and {what}; "
                             f"the time features are: {others}")
    referenced = {f.relative_to for f in times.values()}
    for f in times.values():
        if not f.parts and f.relative_to is None and f.name not in referenced:
            raise ValueError(f"feature {f.name!r} encodes nothing: parts is empty, it has no relative_to and no "
                             "feature is relative to it; give it parts (e.g. [hour, weekday]) or remove it")


MAX_WIDTH = 65_536
# A layer's width (hidden units, channels): 0 or less builds a layer that cannot learn (a dead model).
Width = Annotated[int, Field(ge=1, le=MAX_WIDTH)]


class _ModelBase(_Strict):
    embedding_dim: int = Field(16, ge=1, le=1024)


class DLRMConfig(_ModelBase):
    """Naumov et al. 2019: bottom MLP on dense, one table per sparse feature, dot interactions, top MLP."""

    name: Literal["dlrm"]
    bottom_mlp: list[Width] = Field(default_factory=lambda: [64, 32])
    top_mlp: list[Width] = Field(default_factory=lambda: [128, 64])


class LogisticConfig(_Strict):
    """The wide baseline: one weight per hashed id and per dense value."""

    name: Literal["logistic"]


class MLPConfig(_ModelBase):
    """Concatenated embeddings and dense values through an MLP."""

    name: Literal["mlp"]
    hidden: list[Width] = Field(default_factory=lambda: [256, 128])


class BagConfig(_ModelBase):
    """fastText-style: the mean embedding of each feature's ids (text n-grams), then one linear layer."""

    name: Literal["bag"]
    embedding_dim: int = Field(32, ge=1, le=1024)


class ByteCNNConfig(_ModelBase):
    """Character-level CNN (Zhang, Zhao & LeCun 2015) over the raw bytes of ``tokens: bytes`` text features."""

    name: Literal["bytecnn"]
    channels: list[Width] = Field(default_factory=lambda: [128, 128, 128], min_length=1)  # one conv block each
    kernel_size: int = Field(5, ge=1, le=15)
    pool: int = Field(2, ge=1, le=8)  # max-pool width after every block but the last (then a global max)
    hidden: list[Width] = Field(default_factory=lambda: [128])
    dropout: float = Field(0.1, ge=0.0, lt=1.0)


class DCNv2Config(_ModelBase):
    """Wang et al. 2021: cross layers x_{l+1} = x0 * (W x_l + b) + x_l over [dense, embeddings], and an MLP."""

    name: Literal["dcn_v2"]
    cross_layers: int = Field(3, ge=1, le=8)
    low_rank: int | None = Field(None, ge=1)  # W = U V^T with U, V of this many columns; None: full-rank W
    hidden: list[Width] = Field(default_factory=lambda: [256, 128])
    structure: Literal["stacked", "parallel"] = "stacked"  # the MLP after the cross layers, or beside them


ModelConfig = Annotated[DLRMConfig | LogisticConfig | MLPConfig | BagConfig | ByteCNNConfig | DCNv2Config,
                        Field(discriminator="name")]


class EmbeddingsConfig(_Strict):
    """Where the embedding tables live: shoal's own SparseArch (replicated, sparse gradients all-reduced) or
    TorchRec's EmbeddingBagCollection sharded by DistributedModelParallel (the ``scale`` extra)."""

    backend: Literal["native", "torchrec"] = "native"
    sharding: Literal["table_wise", "row_wise", "column_wise"] = "table_wise"  # torchrec only


LRSchedule = Literal["constant", "cosine", "onecycle"]
# the warm-up a schedule gets when train.warmup is left out: onecycle's is torch's OneCycleLR pct_start
DEFAULT_WARMUP: dict[str, float] = {"constant": 0.0, "cosine": 0.05, "onecycle": 0.3}


class TrainConfig(_Strict):
    """Optimisation: Adagrad on embedding rows (sparse gradients), Adam on everything else; Adam's learning rate
    follows ``lr_schedule`` (:func:`shoal.training.optimizers.lr_schedule`)."""

    epochs: int = Field(2, ge=1)
    batch_size: int = Field(1024, ge=1)
    lr: float = Field(1e-3, gt=0)  # Adam's; a schedule's peak
    lr_schedule: LRSchedule = "constant"
    warmup: float = Field(0.0, ge=0, le=0.5)  # fraction of the steps rising to lr; left out: DEFAULT_WARMUP
    embedding_lr: float = Field(0.05, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    embedding_weight_decay: float = Field(0.0, ge=0)  # L2 on the embedding rows a batch touches
    seed: int = Field(0, ge=0, le=2**63 - 1)  # numpy's generators refuse a negative seed, torch one over 64 bits
    checkpoint_every: int = Field(500, ge=1)  # steps
    early_stopping_patience: int = Field(2, ge=1)  # epochs without a better validation log loss
    eval_every: int | None = Field(None, ge=1)  # steps between validations; None: once per epoch
    threads: int | None = Field(None, ge=1)
    cache_mb: int = Field(256, ge=0)  # keep encoded rows in memory across epochs up to this size (0: never)
    pictures: bool = True  # draw the learning curve and ROC/PR/calibration curves at the end (~0.4 s)
    # TensorBoard event files: true -> the run folder's tensorboard/; a folder -> FOLDER/<run id>/ (needs tensorboard)
    tensorboard: bool | Path = False
    embeddings: EmbeddingsConfig = Field(default_factory=EmbeddingsConfig)

    @model_validator(mode="before")
    @classmethod
    def _schedule_warmup(cls, data: Any) -> Any:
        """A left-out ``warmup`` is the schedule's default, so the saved config shows the one used."""
        if isinstance(data, dict) and data.get("warmup") is None:
            schedule = data.get("lr_schedule", "constant")
            data = {**data, "warmup": DEFAULT_WARMUP.get(schedule, 0.0) if isinstance(schedule, str) else 0.0}
        return data

    @model_validator(mode="after")
    def _warmup_needs_schedule(self) -> TrainConfig:
        if self.lr_schedule == "constant" and self.warmup:
            raise ValueError(f"warmup {self.warmup} needs a schedule: set lr_schedule to cosine or onecycle, or "
                             "leave warmup out (a constant learning rate has no warm-up)")
        return self


class RunConfig(_Strict):
    """A whole run: name, data, label, features, model and training settings."""

    name: str = "run"
    data: DataConfig
    label: LabelConfig
    features: list[AnyFeature] = Field(min_length=1)
    model: ModelConfig
    train: TrainConfig = Field(default_factory=TrainConfig)

    @model_validator(mode="after")
    def _unique_names(self) -> RunConfig:
        seen: set[str] = set()
        for f in self.features:
            if f.name in seen:
                raise ValueError(f"feature name {f.name!r} is used twice; feature names must be unique")
            seen.add(f.name)
        for column in self.label.columns:
            if column in {f.source for f in self.features}:
                raise ValueError(f"the label column {column!r} is also listed as a feature")
        check_time_references(self.features)
        if self.model.name == "bytecnn" and not any(f.tokens == "bytes" for f in self.text):
            raise ValueError("model bytecnn reads byte sequences: give at least one text feature `tokens: bytes`")
        return self

    @property
    def dense(self) -> list[DenseFeature]:
        return [f for f in self.features if isinstance(f, DenseFeature)]

    @property
    def sparse(self) -> list[SparseFeature]:
        return [f for f in self.features if isinstance(f, SparseFeature)]

    @property
    def text(self) -> list[TextFeature]:
        return [f for f in self.features if isinstance(f, TextFeature)]

    def resolved(self) -> dict[str, Any]:
        """The config as plain JSON data (paths as strings), for the registry and the bundle."""
        return self.model_dump(mode="json")


def machine_memory() -> int | None:
    """This machine's memory in bytes (physical RAM, or a smaller cgroup v2 limit); None when it cannot be told."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        return None
    if total <= 0:
        return None
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text(encoding="ascii").strip()
    except OSError:
        return total
    return min(total, int(limit)) if limit.isdigit() and int(limit) > 0 else total


def embedding_tables(cfg: RunConfig) -> list[tuple[str, int, int, int]]:
    """Each embedding table a model of ``cfg`` allocates: (feature, rows, width, float32 values kept per value of
    the table with its optimizer state). Row-wise Adagrad (:mod:`shoal.training.optimizers`) keeps one value per
    row of a sparse table; a ``tokens: bytes`` sequence table of bytecnn is a dense parameter under Adam (two
    values per weight: x3 in all)."""
    if cfg.model.name == "logistic":  # one weight per id and class
        width = len(cfg.label.classes) if cfg.label.kind in ("multiclass", "multilabel") and cfg.label.classes else 1
    else:
        width = cfg.model.embedding_dim
    tables = [(f.name, f.buckets, width, 1) for f in cfg.sparse]
    for t in cfg.text:
        tables.append((t.name, t.buckets, width, 3 if cfg.model.name == "bytecnn" and t.tokens == "bytes" else 1))
    tables += [(f.name, f.bins + 1, width, 1) for f in cfg.dense if f.bins]
    tables += [(f"{f.name}:{p}", TIME_PARTS[p] + 1, width, 1) for f in cfg.features if isinstance(f, TimeFeature)
               for p in f.parts]
    return tables


def _table_bytes(rows: int, width: int, factor: int) -> int:
    return 4 * rows * width * factor if factor > 1 else 4 * rows * (width + 1)  # + the row's Adagrad value


def check_memory(cfg: RunConfig, source: str = "<config>", memory: int | None = None) -> None:
    """Refuse, before anything is allocated, a config whose embedding tables and their optimizer state need more
    than this machine's memory (``memory`` bytes; default :func:`machine_memory`, no check when unknown). The
    torchrec backend shards the tables over its workers, so it is not checked here."""
    memory = machine_memory() if memory is None else memory
    if memory is None or cfg.train.embeddings.backend == "torchrec":
        return
    tables = embedding_tables(cfg)
    need = sum(_table_bytes(rows, width, factor) for _, rows, width, factor in tables)
    if need <= memory:
        return
    name, rows, width, factor = max(tables, key=lambda t: _table_bytes(t[1], t[2], t[3]))
    state = "x3 with Adam state" if factor > 1 else "+ 1 float32 per row of row-wise Adagrad state"
    raise ConfigError(f"{source}: embedding tables need {need / 1e9:,.1f} GB (largest: feature {name!r}: "
                      f"{rows:,} x {width} float32, {state}); this machine has {memory / 1e9:,.1f} GB of memory; "
                      "lower the buckets or the embedding_dim")


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation may hold (through Optional, list, unions, Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for arg in getattr(annotation, "__args__", ()):
        found += _models_in(arg)
    return found


def _discriminator(field: FieldInfo) -> str | None:
    """The tag field of the tagged union a field holds, itself or as list items (``name``, ``kind``)."""
    if isinstance(field.discriminator, str):
        return field.discriminator
    for arg in getattr(field.annotation, "__args__", ()):
        for meta in getattr(arg, "__metadata__", ()):
            if isinstance(meta, FieldInfo) and isinstance(meta.discriminator, str):
                return meta.discriminator
    return None


def _allowed_fields(model: type[BaseModel], loc: tuple[int | str, ...]) -> list[str] | None:
    """The field names allowed where ``loc`` points, found by walking the model classes.

    Tagged unions put the tag in ``loc`` after the field name (``model.mlp.hidden``, ``features.0.dense.bins``),
    list items an index.
    """
    current: type[BaseModel] | None = model
    parts = list(loc[:-1])
    i = 0
    while i < len(parts) and current is not None:
        field = current.model_fields.get(str(parts[i]))
        if field is None:
            return None
        members = _models_in(field.annotation)
        i += 1
        while i < len(parts) and isinstance(parts[i], int):
            i += 1  # list index
        tag_field = _discriminator(field)
        if tag_field is not None and i < len(parts):
            tag = parts[i]
            members = [m for m in members if tag in getattr(m.model_fields[tag_field].annotation, "__args__", ())]
            i += 1
        current = members[0] if len(members) == 1 else None
    return sorted(current.model_fields) if current is not None else None


def _describe(e: ErrorDetails) -> str:
    """One pydantic error in the words of the config file: the field, what is wrong, the value given."""
    loc = tuple(e["loc"])
    where = ".".join(str(p) for p in loc) or "(top level)"
    ctx = e.get("ctx", {})
    if e["type"] in ("union_tag_invalid", "union_tag_not_found"):
        # the tag of a tagged union (a feature's kind, a model's name) is a field of the item: name it
        tag = str(ctx.get("discriminator", "")).strip("'")
        if e["type"] == "union_tag_not_found":
            return f"{where}.{tag}: required field is missing"
        *first, last = str(ctx.get("expected_tags", "")).split(", ")
        choices = f"{', '.join(first)} or {last}" if first else last
        given = e.get("input")
        value = given.get(tag) if isinstance(given, dict) else given
        return f"{where}.{tag}: Input should be {choices} (got {value!r})"
    if e["type"] == "extra_forbidden":
        allowed = _allowed_fields(RunConfig, loc)
        return f"{where}: unknown key {loc[-1]!r}" + (f"; allowed keys: {', '.join(allowed)}" if allowed else "")
    if e["type"] == "missing":
        return f"{where}: required field is missing"
    return f"{where}: {e['msg']} (got {e.get('input')!r})"


def _format_errors(err: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid config ({err.error_count()} problem{'s' if err.error_count() > 1 else ''})"]
    lines += [f"  - {_describe(e)}" for e in err.errors()]
    return "\n".join(lines)


def parse_config(data: Any, source: str = "<config>", base_dir: Path | None = None) -> RunConfig:
    """Validate plain data as a :class:`RunConfig`; relative data paths are joined to ``base_dir``."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a config must be a mapping of keys to values, not {type(data).__name__}")
    try:
        cfg = RunConfig.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as err:
        raise ConfigError(_format_errors(err, source)) from None
    if base_dir is None:
        return cfg
    paths: dict[str, Path | FileSpec] = {}
    for key in ("train", "valid", "test"):
        p = getattr(cfg.data, key)
        if isinstance(p, FileSpec) and not p.path.is_absolute():
            paths[key] = p.model_copy(update={"path": (base_dir / p.path).resolve()})
        elif isinstance(p, Path) and not p.is_absolute():
            paths[key] = (base_dir / p).resolve()
    return cfg.model_copy(update={"data": cfg.data.model_copy(update=paths)})


MAX_YAML_ALIASES = 100  # a config uses a few aliases (*name) at most
MAX_YAML_VALUES = 1_000_000  # values in a document with every alias expanded: a config holds hundreds


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader that counts the aliases it composes (see :func:`read_yaml`)."""

    def __init__(self, stream: str, source: str) -> None:
        super().__init__(stream)
        self.source = source
        self.aliases = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_YAML_ALIASES:
                mark = self.peek_event().start_mark
                raise ConfigError(f"{self.source}: more than {MAX_YAML_ALIASES} YAML aliases (*name), one more at "
                                  f"line {mark.line + 1}; refused (an alias bomb?)")
        return super().compose_node(parent, index)


def _expanded_size(root: yaml.Node, source: str) -> int:
    """How many values the document holds with every alias expanded (each node counted once per path to it, by
    memoised sizes, so a bomb is measured without expanding it); a node inside itself is refused."""
    sizes: dict[int, int] = {}
    open_: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        if done:
            open_.discard(key)
            sizes[key] = min(1 + sum(sizes[id(c)] for c in children), MAX_YAML_VALUES + 1)
            continue
        if key in sizes:
            continue
        if key in open_:
            raise ConfigError(f"{source}: a YAML alias refers to a value that holds it (line "
                              f"{node.start_mark.line + 1}); refused")
        open_.add(key)
        stack.append((node, True))
        for child in children:
            if id(child) in open_:
                raise ConfigError(f"{source}: a YAML alias refers to a value that holds it (line "
                                  f"{child.start_mark.line + 1}); refused")
            if id(child) not in sizes:
                stack.append((child, False))
    return sizes[id(root)]


def read_yaml(text: str, source: str = "<yaml>") -> Any:
    """``yaml.safe_load`` that refuses alias bombs ("billion laughs"): more than :data:`MAX_YAML_ALIASES` aliases,
    or more than :data:`MAX_YAML_VALUES` values once they are expanded, or an alias inside its own value; the
    :class:`ConfigError` names ``source``. Costs one pass over the composed nodes."""
    loader = _BoundedLoader(text, source)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if loader.aliases:
            size = _expanded_size(node, source)
            if size > MAX_YAML_VALUES:
                raise ConfigError(f"{source}: YAML aliases expand to over {MAX_YAML_VALUES:,} values (from "
                                  f"{loader.aliases} aliases); refused (an alias bomb?)")
        return loader.construct_document(node)
    finally:
        loader.dispose()


def load_config(path: str | Path, overrides: Mapping[str, Any] | Sequence[str] = ()) -> RunConfig:
    """Read and validate a YAML config file, with ``overrides`` (:func:`apply_overrides`) applied first. Raises
    :class:`ConfigError` naming the file and field."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist (working directory: {Path.cwd()})")
    try:
        data = read_yaml(path.read_text(encoding="utf-8"), str(path))
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if overrides:
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: a config must be a mapping of keys to values, not {type(data).__name__}")
        data = apply_overrides(data, overrides)
    return parse_config(data, source=str(path), base_dir=path.parent.resolve())


def apply_overrides(data: dict[str, Any], overrides: Mapping[str, Any] | Sequence[str]) -> dict[str, Any]:
    """A copy of the plain config ``data`` with dotted keys set: ``{"train.epochs": 3}`` or ``["train.epochs=3"]``
    (the value of a ``KEY=VALUE`` string is read as YAML: ``3``, ``0.01``, ``[64, 32]``, ``true``, ``ctr``).

    A key walks mappings by name and lists by index, and ``features`` also by feature name
    (``features.city.buckets=4096``). The result is validated as usual by :func:`parse_config`, so a wrong type or
    an unknown key is refused there, naming the field; a key that does not lead anywhere is refused here.
    """
    import copy

    pairs: list[tuple[str, Any]] = []
    if isinstance(overrides, Mapping):
        pairs = list(overrides.items())
    else:
        for item in overrides:
            key, eq, text = str(item).partition("=")
            if not eq or not key.strip():
                raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. train.epochs=3")
            try:
                pairs.append((key.strip(), read_yaml(text, f"--set {item!r}") if text.strip() else ""))
            except yaml.YAMLError as err:
                raise ConfigError(f"--set {item!r}: the value is not valid YAML: {err}") from None
    out = copy.deepcopy(data)
    for key, value in pairs:
        parts = key.split(".")
        node: Any = out
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            where = ".".join(parts[:depth]) or "the config"
            if isinstance(node, list):
                index = _list_index(node, part, key, where)
                if last:
                    node[index] = value
                else:
                    node = node[index]
            elif isinstance(node, dict):
                if last:
                    node[part] = value
                else:
                    node = node.setdefault(part, {})
            else:
                raise ConfigError(f"override {key!r}: {where} is {node!r}, not a mapping or a list")
    return out


def _list_index(node: list[Any], part: str, key: str, where: str) -> int:
    """The index of ``part`` in a list: a number, or the name of an item (a feature's ``name``)."""
    if part.lstrip("-").isdigit():
        index = int(part)
        if not -len(node) <= index < len(node):
            raise ConfigError(f"override {key!r}: {where} has {len(node)} items, no item {index}")
        return index
    names = [item.get("name") for item in node if isinstance(item, dict)]
    if part not in names:
        raise ConfigError(f"override {key!r}: {where} has no item named {part!r} (names: {', '.join(map(str, names))})")
    return names.index(part)
