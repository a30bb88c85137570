"""The search space: the model families that fit a file's columns, and each family's hyperparameters, sized from
the data (rows, ids per sparse column, text lengths).

    starter config (shoal.inspect) ──> DataShape ──> families(shape) ──> Space.sample(trial) ──> RunConfig

Every parameter is named ``<family>.<what>`` (``dlrm.lr``, ``bag.text.ngram_max``), so the families' spaces never
share a distribution and Optuna's TPE models each one apart. A model's own options are read from its config class
in :mod:`shoal.config` (whatever model is registered): ``embedding_dim`` from a few sizes, each list of layer
widths (``hidden``, ``top_mlp``, ``channels``, ...) as a depth and a width around its default, ``dropout`` when the
class has one, any other integer option at half, one and twice its default.

:class:`Draw` either asks an Optuna trial or returns each parameter's default, so the same code gives a sampled
config and the family's default config (the first trial of each family, enqueued).
"""

from __future__ import annotations

import math
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow.compute as pc
from pydantic import BaseModel

from shoal.config import DenseFeature, ModelConfig, RunConfig, SparseFeature, TextFeature
from shoal.data.readers import BadRowSink
from shoal.data.stream import chunks
from shoal.inspect import CARDINALITY_CAP, FileProfile, sparse_buckets
from shoal.models import available

__all__ = ["BYTECNN_MIN_BUDGET_S", "DataShape", "Draw", "Space", "families", "model_class", "text_lengths"]

TABULAR = ("logistic", "mlp", "dlrm", "dcn_v2")  # dense and sparse columns
TEXTUAL = ("bag", "logistic", "bytecnn")  # raw text only
MIXED = ("bag", "logistic", "mlp", "dlrm", "dcn_v2", "bytecnn")  # text beside dense/sparse columns (text as n-grams)
#: DCN-v2 on a wider input than this gets low-rank cross layers of WIDE_RANK (its paper's eq. 2): a full-rank
#: layer holds width^2 weights (3 layers of a 5,760-wide input: 100M weights, for a few hundred rows)
FULL_RANK_MAX_WIDTH = 1024
WIDE_RANK = 64
BYTECNN_MIN_BUDGET_S = 300.0  # a convolution over every byte is slow on a CPU: only with 5 minutes or more
TEXT_SAMPLE_ROWS = 20_000  # rows read to measure text lengths
LINEAR = ("logistic", "bag")  # one linear layer: larger learning rates
ID_LIKE_MAX = 10_000  # a number with at most this many values may also be read as an id (its own embedding)


@dataclass(frozen=True)
class DataShape:
    """What the search space is sized from: rows, the features of each kind, and what was seen of them."""

    rows: int  # training rows profiled (a lower bound when the profile stopped early)
    multiclass: bool
    dense: tuple[str, ...] = ()  # dense features with more than two values (binning makes sense)
    skewed: tuple[str, ...] = ()  # dense features the profile gave a log1p transform
    cardinality: dict[str, tuple[int, bool]] = field(default_factory=dict)  # sparse feature -> (distinct, capped)
    id_like: dict[str, int] = field(default_factory=dict)  # dense feature with few distinct values -> how many
    text_bytes: dict[str, int] = field(default_factory=dict)  # text feature -> 99th percentile length in bytes
    regression: bool = False  # a number to predict
    multilabel: bool = False  # a set of tags per row
    multitask: bool = False  # several labels, one model

    @classmethod
    def of(cls, base: RunConfig, profile: FileProfile, text_bytes: dict[str, int]) -> DataShape:
        """The shape of ``base``'s features as ``profile`` saw their columns."""
        seen = {c.name: c for c in profile.columns}
        dense = tuple(f.name for f in base.dense if f.source in seen and seen[f.source].cardinality > 2)
        skewed = tuple(f.name for f in base.dense if f.transform == "log1p")
        card = {f.name: (seen[f.source].cardinality, seen[f.source].cardinality_capped) if f.source in seen
                else (CARDINALITY_CAP, True) for f in base.sparse}
        id_like = {f.name: seen[f.source].cardinality for f in base.dense if f.source in seen
                   and 2 < seen[f.source].cardinality <= ID_LIKE_MAX and not seen[f.source].cardinality_capped}
        return cls(profile.rows, base.label.kind == "multiclass", dense, skewed, card, id_like, text_bytes,
                   base.label.kind == "regression", base.label.kind == "multilabel", base.label.kind == "multitask")

    @property
    def max_epochs(self) -> int:
        """The most epochs a trial may ask for: many passes over a small file, few over a large one."""
        for rows, epochs in ((2_000, 30), (10_000, 20), (50_000, 12), (200_000, 8), (1_000_000, 4)):
            if self.rows <= rows:
                return epochs
        return 2

    @property
    def batch_sizes(self) -> list[int]:
        """Powers of two giving between 20 and 2,000 steps an epoch (at most the five largest, 16..4,096)."""
        sizes = [2**k for k in range(4, 13) if 20 <= self.rows / 2**k <= 2_000]
        return sizes[-5:] or [max(16, min(4096, 2 ** int(math.log2(max(self.rows // 20, 16)))))]


def text_lengths(base: RunConfig, max_rows: int = TEXT_SAMPLE_ROWS) -> dict[str, int]:
    """The 99th percentile length in bytes of each text feature, over the first ``max_rows`` training rows."""
    if not base.text:
        return {}
    found = base.data.file("train")
    assert found is not None
    columns = sorted({f.source for f in base.text})
    lengths: dict[str, list[np.ndarray]] = {c: [] for c in columns}
    seen = 0
    for chunk in chunks(found[0], found[1], columns, BadRowSink("count")):
        for c in columns:
            col = chunk.table.column(c)
            lengths[c].append(pc.fill_null(pc.binary_length(pc.cast(col, "binary")), 0).to_numpy())
        seen += len(chunk)
        if seen >= max_rows:
            break
    out = {}
    for f in base.text:
        values = np.concatenate(lengths[f.source]) if lengths[f.source] else np.zeros(1)
        out[f.name] = int(np.percentile(values, 99)) if len(values) else 0
    return out


STARTER = "starter"  # the pseudo-family of the starter config, unchanged: the first trial, so auto >= starter


def families(shape: DataShape, base: RunConfig, budget_s: float, wanted: Sequence[str] | None = None) -> list[str]:
    """The model families to search for these columns (those registered and in the config), cheapest first, after
    :data:`STARTER` (the starter config as ``shoal inspect`` writes it: what a user gets without the search) unless
    ``wanted`` leaves out its model."""
    has_text, has_other = bool(base.text), bool(base.dense or base.sparse)
    pool = check_families(wanted, has_text, has_other)
    known = set(available()) & set(_model_classes())
    if wanted is not None:
        chosen = [f for f in pool if f in wanted]
    else:
        chosen = [f for f in pool if f in known and (f != "bytecnn" or budget_s >= BYTECNN_MIN_BUDGET_S)]
    return ([STARTER] if base.model.name in chosen else []) + chosen


def check_families(wanted: Sequence[str] | None, has_text: bool, has_other: bool) -> tuple[str, ...]:
    """The families that fit columns with text (``has_text``) and/or dense or sparse ones (``has_other``);
    ``ValueError`` when one of ``wanted`` does not fit them or is not registered."""
    pool = MIXED if has_text and has_other else TEXTUAL if has_text else TABULAR
    known = set(available()) & set(_model_classes())
    unknown = [f for f in wanted or () if f not in pool or f not in known]
    if unknown:
        fit = [f for f in pool if f in known]
        what = ("text beside other columns" if has_text and has_other else "text only" if has_text
                else "no text column")
        raise ValueError(f"model families {unknown} do not fit these columns ({what}) or are not registered; "
                         f"choose from {', '.join(fit)}")
    return pool


def _model_classes() -> dict[str, type[BaseModel]]:
    """Model name -> its config class, from :data:`shoal.config.ModelConfig`'s union."""
    union = typing.get_args(ModelConfig)[0]
    out = {}
    for cls in typing.get_args(union):
        for name in typing.get_args(cls.model_fields["name"].annotation):
            out[name] = cls
    return out


def model_class(family: str) -> type[BaseModel]:
    """The config class of model ``family`` (``ValueError`` when no config class names it)."""
    classes = _model_classes()
    if family not in classes:
        raise ValueError(f"no model config is named {family!r}; known: {', '.join(sorted(classes))}")
    return classes[family]


class Draw:
    """Parameters from an Optuna trial, or (``trial=None``) each parameter's default; both recorded in ``params``."""

    def __init__(self, trial: Any | None = None) -> None:
        self.trial = trial
        self.params: dict[str, Any] = {}

    def float(self, name: str, low: float, high: float, default: float, log: bool = False) -> float:
        value = (min(max(default, low), high) if self.trial is None
                 else self.trial.suggest_float(name, low, high, log=log))
        self.params[name] = value
        return float(value)

    def int(self, name: str, low: int, high: int, default: int) -> int:
        value = min(max(default, low), high) if self.trial is None else self.trial.suggest_int(name, low, high)
        self.params[name] = value
        return int(value)

    def choice(self, name: str, choices: Sequence[Any], default: Any) -> Any:
        choices = list(dict.fromkeys(choices))
        if default not in choices:
            default = min(choices, key=lambda c: abs(c - default)) if isinstance(default, int | float) else choices[0]
        value = default if self.trial is None else self.trial.suggest_categorical(name, choices)
        self.params[name] = value
        return value


class Space:
    """The hyperparameters of each family for one data set; :meth:`config` turns a draw into a run config."""

    def __init__(self, base: RunConfig, shape: DataShape, families: Sequence[str], seed: int) -> None:
        self.base = base
        self.shape = shape
        self.families = list(families)
        self.seed = seed

    def config(self, draw: Draw, family: str | None = None) -> RunConfig:
        """A run config drawn by ``draw``: the family (unless given), its training settings, features, model."""
        if family is None:
            family = draw.choice("family", self.families, self.families[0])
        else:
            draw.params["family"] = family
        if family == STARTER:  # the starter config as it is; only its seed is the search's
            return self.base.model_copy(update={"name": f"{self.base.name}-{STARTER}",
                                                "train": self.base.train.model_copy(update={"seed": self.seed})})
        train = self._train(draw, family)
        features = self._features(draw, family)
        model = self._model(draw, family)
        if getattr(model, "low_rank", 0) is None and _input_width(features, model) > FULL_RANK_MAX_WIDTH:
            model = model.model_copy(update={"low_rank": WIDE_RANK})  # a full-rank cross layer is width^2 weights
        data = self.base.data
        return self.base.model_copy(update={"name": f"{self.base.name}-{family}", "data": data, "train": train,
                                            "features": features, "model": model})

    def defaults(self) -> list[dict[str, Any]]:
        """Each family's default parameters: the first trials, enqueued before the sampler takes over."""
        out = []
        for family in self.families:
            draw = Draw()
            self.config(draw, family)
            out.append(draw.params)
        return out

    # -- training settings ---------------------------------------------------------------------------------------
    def _train(self, draw: Draw, family: str) -> Any:
        p, shape = f"{family}.", self.shape
        linear = family in LINEAR
        sizes = shape.batch_sizes
        default_batch = min(sizes, key=lambda b: abs(math.log2(b) - math.log2(max(shape.rows / 100, 16))))
        top = shape.max_epochs
        # a logistic model's text weights are averaged over a text's n-grams (hundreds), so each moves the logit by
        # a hundredth of its step, and row-wise Adagrad's first steps are about the rate whatever the gradient:
        # rates below 0.1 leave it near the base rate after epochs (a search saw 0.51 accuracy at 0.001-0.03)
        text_logistic = family == "logistic" and bool(self.base.text)
        elr = (1e-2, 10.0, 1.0) if text_logistic else (1e-3, 1.0, 0.1 if linear else 0.05)
        settings = {
            "epochs": draw.int(p + "epochs", max(1, top // 4), top, top),
            "batch_size": draw.choice(p + "batch_size", sizes, default_batch),
            "lr": draw.float(p + "lr", 1e-4, 1e-1 if linear else 3e-2, 1e-2 if linear else 1e-3, log=True),
            "embedding_lr": draw.float(p + "embedding_lr", *elr, log=True),
            "weight_decay": draw.choice(p + "weight_decay", [0.0, 1e-6, 1e-5, 1e-4, 1e-3], 0.0),
            "embedding_weight_decay": draw.choice(p + "embedding_weight_decay", [0.0, 1e-7, 1e-6, 1e-5], 0.0),
            "seed": self.seed,
        }
        return self.base.train.model_copy(update=settings)

    # -- features -------------------------------------------------------------------------------------------------
    def _features(self, draw: Draw, family: str) -> list[Any]:
        p, shape = f"{family}.", self.shape
        scale = draw.choice(p + "bucket_scale", [0.25, 0.5, 1.0, 2.0, 4.0], 1.0) if self.base.sparse else 1.0
        bins, scope = 0, "skewed"
        if shape.dense:
            bins = draw.choice(p + "bins", [0, 8, 16, 32, 64], 0)
            if bins and set(shape.dense) - set(shape.skewed):
                scope = draw.choice(p + "bins_for", ["skewed", "all"], "skewed")
        text: dict[str, Any] = self._text(draw, family) if self.base.text else {}
        # a number with few values (a code, an age, a count) may act as a category: also embed each value
        as_ids = bool(shape.id_like) and draw.choice(p + "numbers_as_ids", [False, True], False)
        out: list[Any] = []
        for f in self.base.features:
            if isinstance(f, SparseFeature):
                distinct, capped = shape.cardinality.get(f.name, (CARDINALITY_CAP, True))
                out.append(f.model_copy(update={"buckets": sparse_buckets(max(1, int(distinct * scale)))
                                                if not capped or scale < 1 else sparse_buckets(distinct, True)}))
            elif isinstance(f, DenseFeature):
                binned = bins and f.name in shape.dense and (scope == "all" or f.name in shape.skewed)
                out.append(f.model_copy(update={"bins": bins if binned else None}))
            elif isinstance(f, TextFeature):
                out.append(f.model_copy(update=text))
            else:
                out.append(f)  # a kind this search does not tune
        names = {f.name for f in out}
        for f in self.base.dense if as_ids else []:
            if f.name in shape.id_like and f"{f.name}_id" not in names:
                buckets = sparse_buckets(max(1, int(shape.id_like[f.name] * max(scale, 1.0))))
                out.append(SparseFeature(name=f"{f.name}_id", kind="sparse", column=f.source, buckets=buckets))
        return out

    def _text(self, draw: Draw, family: str) -> dict[str, Any]:
        """The options of every text feature: bytes in order for bytecnn, else hashed n-grams."""
        p = f"{family}.text."
        longest = max(self.shape.text_bytes.values(), default=1024)
        cut = [2**k for k in range(6, 15)]  # 64 .. 16,384 bytes
        whole = min((c for c in cut if c >= longest), default=cut[-1])  # every text (99%) whole
        if family == "bytecnn":  # cost grows with every byte: at most 1,024
            choices = [c for c in cut if c <= min(whole, 1024)][-3:]
            return {"tokens": "bytes", "max_bytes": draw.choice(p + "max_bytes", choices, choices[-1])}
        choices = sorted({max(64, whole // 4), max(64, whole // 2), whole})
        low = draw.int(p + "ngram_min", 1, 3, 1)
        return {
            "tokens": "ngrams",
            "max_bytes": draw.choice(p + "max_bytes", choices, whole),
            "buckets": draw.choice(p + "buckets", [2**17, 2**18, 2**19, 2**20], 2**20 if self.shape.rows > 20_000
                                   else 2**18),
            "ngram_min": low,
            "ngram_max": low + draw.int(p + "ngram_span", 0, 4, 3 if low == 1 else 2),
            "word_ngrams": draw.int(p + "word_ngrams", 0, 3, 2),
        }

    # -- the model ------------------------------------------------------------------------------------------------
    def _model(self, draw: Draw, family: str) -> BaseModel:
        """The model config: every option of the family's config class drawn around its default."""
        cls = model_class(family)
        defaults = cls.model_validate({"name": family})
        values: dict[str, Any] = {"name": family}
        for name, info in cls.model_fields.items():
            if name == "name":
                continue
            default = getattr(defaults, name)
            p = f"{family}.{name}"
            if name == "low_rank":  # DCN-v2's cross layers: full rank (the default) or W = U V^T
                values[name] = draw.choice(p, [None, 16, 64], default)
            elif name == "embedding_dim":
                values[name] = draw.choice(p, [4, 8, 16, 32, 64] if family not in LINEAR else [8, 16, 32, 64, 128],
                                           default)
            elif isinstance(default, list) and default and all(isinstance(v, int) for v in default):
                values[name] = _layers(draw, p, default)
            elif isinstance(default, float) and "dropout" in name:
                values[name] = draw.float(p, 0.0, 0.5, default)
            elif isinstance(default, int) and not isinstance(default, bool) and default > 0:
                low, high = _bounds(info)
                choices = sorted({min(max(v, low, 1), high) for v in (default // 2, default, default * 2)})
                values[name] = draw.choice(p, choices, default)
        return cls.model_validate(values)


def _input_width(features: Sequence[Any], model: BaseModel) -> int:
    """About how wide a model's input vector is: each number with its missing flag, an embedding per table (an id
    feature, a binned number, a text bag)."""
    dim = int(getattr(model, "embedding_dim", 1))
    tables = sum(1 for f in features if isinstance(f, SparseFeature | TextFeature)
                 or (isinstance(f, DenseFeature) and f.bins))
    return 2 * sum(1 for f in features if isinstance(f, DenseFeature)) + tables * dim


def _layers(draw: Draw, name: str, default: list[int]) -> list[int]:
    """Layer widths: a depth (1 to one more than the default's) and a first width (a quarter to twice the
    default's); each later layer halves, or keeps the width when the default's widths are all equal."""
    depth = draw.int(name + ".depth", 1, len(default) + 1, len(default))
    first = default[0]
    width = draw.choice(name + ".width", sorted({max(8, first // 4), max(8, first // 2), first, first * 2}), first)
    constant = len(set(default)) == 1
    return [width if constant else max(8, width // 2**i) for i in range(depth)]


def _bounds(info: Any) -> tuple[int, int]:
    """The (ge, le) bounds pydantic puts on an integer field (1 and a large number when it has none)."""
    low, high = 1, 1 << 30
    for meta in info.metadata:
        low = int(getattr(meta, "ge", None) or low)
        high = int(getattr(meta, "le", None) or high)
    return low, high
