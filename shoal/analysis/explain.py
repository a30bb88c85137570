"""Permutation importance: how much a run's main metric drops when one feature's column is shuffled.

Breiman (2001, "Random Forests", section 10) measured a variable's importance by permuting its values in the
out-of-bag rows; Fisher, Rudin & Dominici (2019, "All Models are Wrong, but Many are Useful", JMLR 20) call the
model-agnostic form *model reliance*. Shuffling a column across rows keeps its distribution and breaks its link
with the label and the other columns, so the drop of the score is what the model draws from that feature::

    rows    x   noise  shop  | label           shuffle `x`   ->  x'  noise  shop     score drop
    1       0.9  0.1    a    |  1                                0.2  0.1    a
    2       0.2  0.7    b    |  0                                0.9  0.7    b       baseline - score(x')
    3       0.5  0.3    a    |  1                                0.5  0.3    a

The main metric is AUC for a binary label, accuracy for a multiclass one and R^2 for a regression
(:data:`METRICS`, computed by :func:`shoal.training.evaluation.report`). Each feature is shuffled ``repeats``
times with its own seeded generator; the importance is the mean drop and its spread the standard deviation over
the repeats. The raw column is shuffled and re-encoded by the run's own encoder, so every kind (dense, sparse,
text, image, audio) is measured the same way. A feature near 0 (within its spread) adds nothing the others do
not; a negative one is noise the model fits.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from shoal.analysis.figures import importance_png
from shoal.analysis.sample import AnalysisError, Rows, run_folder, source_rows, validation_source
from shoal.artifacts.bundle import Bundle, load_bundle
from shoal.artifacts.refs import resolve
from shoal.data.readers import BadRowSink, Chunk
from shoal.metrics import HEADLINE
from shoal.training.evaluation import report

__all__ = ["METRICS", "Explanation", "Importance", "explain", "main_metric", "permutation_importance"]

log = logging.getLogger(__name__)

METRICS = HEADLINE  # the main metric of each label kind (multilabel: micro-F1; multitask: the mean task score)


@dataclass(frozen=True)
class Importance:
    """One feature's permutation importance: the mean drop of the metric over the repeats, and its spread."""

    feature: str  # the feature's name (features reading the same column are shuffled together: "a, b")
    kind: str  # dense, sparse, text, image, audio
    column: str  # the column shuffled
    drop: float  # mean over repeats of (baseline - shuffled score); larger: the model relies on it more
    std: float  # standard deviation of the drop over the repeats
    drops: tuple[float, ...]  # each repeat's drop

    def to_dict(self) -> dict[str, Any]:
        return {"feature": self.feature, "kind": self.kind, "column": self.column, "importance": self.drop,
                "std": self.std, "drops": list(self.drops)}


@dataclass(frozen=True)
class Explanation:
    """What ``shoal explain`` reports: the metric, its baseline, and each feature's importance, largest first."""

    run: str
    metric: str  # auc, accuracy or r2
    baseline: float  # the metric on the rows, nothing shuffled
    rows: int  # rows scored
    source: str  # the file (or the run's split file) they come from
    repeats: int
    seed: int
    importances: list[Importance] = field(default_factory=list)  # sorted by drop, largest first
    bad_rows: int = 0  # rows of the sample the encoder could not use (left out)
    png: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"run": self.run, "metric": self.metric, "baseline": self.baseline, "rows": self.rows,
                "source": self.source, "repeats": self.repeats, "seed": self.seed, "bad_rows": self.bad_rows,
                "png": None if self.png is None else str(self.png),
                "features": [i.to_dict() for i in self.importances]}


def main_metric(task: str) -> str:
    """The metric ``explain`` ranks by for a label kind (``binary``, ``multiclass``, ``regression``, ...)."""
    return METRICS[task]


def explain(ref: str | os.PathLike[str], home: str | os.PathLike[str] = "shoal-runs",
            data: str | os.PathLike[str] | None = None, *, rows: int = 20_000, repeats: int = 3, seed: int = 0,
            png: bool = True) -> Explanation:
    """Permutation importance of each feature of run ``ref`` on its validation rows, or on ``data``.

    At most ``rows`` rows are scored (a uniform sample, seeded); each feature is shuffled ``repeats`` times. With
    ``png``, a bar chart is saved in the run folder (``importance.png``, or ``importance-<file>.png`` for ``data``).

    Raises:
        AnalysisError: the file lacks a column the run reads (named), holds no usable row, or its labels leave the
            metric undefined (one class only); ``repeats`` or ``rows`` below 1.
    """
    if repeats < 1:
        raise AnalysisError(f"repeats is {repeats}; shuffle each feature at least once (e.g. --repeats 3)")
    found = resolve(ref, home)
    bundle = load_bundle(found.folder)
    name = found.run_id or str(ref)
    columns = bundle.encoder.columns(with_label=True)
    if data is None:
        sample = validation_source(bundle, found.folder, columns, rows, seed, name)
    else:
        sample = source_rows(bundle, Path(data), columns, rows, seed, f"run {name} reads")
    result = permutation_importance(bundle, sample, repeats=repeats, seed=seed, run=name)
    if png:
        folder = run_folder(found.folder)
        stem = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(data).name.split(".")[0]) if data is not None else ""
        out = folder / (f"importance-{stem}.png" if stem else "importance.png")
        importance_png(result.importances, result.metric, out,
                       f"{name}: permutation importance ({result.rows:,} rows)")
        result = Explanation(**{**result.__dict__, "png": out})
    return result


def permutation_importance(bundle: Bundle, sample: Rows, *, repeats: int = 3, seed: int = 0,
                           run: str = "") -> Explanation:
    """Shuffle each feature's column of ``sample`` ``repeats`` times, re-encode, score; the drops of the metric."""
    metric = main_metric(bundle.task)
    table, bad = _usable(bundle, sample)
    baseline = _score(bundle, table, sample.source, metric)
    found: list[Importance] = []
    for j, (column, features) in enumerate(_columns(bundle).items()):
        rng = np.random.default_rng([seed, j])  # each column its own stream: adding a feature moves no other
        drops = []
        for _ in range(repeats):
            perm = pa.array(rng.permutation(table.num_rows))
            shuffled = table.set_column(table.column_names.index(column), column, table.column(column).take(perm))
            drops.append(baseline - _score(bundle, shuffled, sample.source, metric))
        kinds = sorted({kind for _, kind in features})
        found.append(Importance(", ".join(n for n, _ in features), "/".join(kinds), column, float(np.mean(drops)),
                                float(np.std(drops)), tuple(float(d) for d in drops)))
        log.info("%s: %s drops by %.4f", column, metric, found[-1].drop)
    found.sort(key=lambda i: -i.drop)
    return Explanation(run, metric, baseline, table.num_rows, sample.source, repeats, seed, found, bad)


def _columns(bundle: Bundle) -> dict[str, list[tuple[str, str]]]:
    """Each column the features read -> the (name, kind) of the features reading it, in config order."""
    out: dict[str, list[tuple[str, str]]] = {}
    for f in bundle.encoder.features:
        out.setdefault(f.column, []).append((f.name, f.kind))
    return out


def _usable(bundle: Bundle, sample: Rows) -> tuple[pa.Table, int]:
    """The rows of the sample the encoder can use (a shuffled good cell stays good), and how many were left out."""
    n = len(sample)
    sink = BadRowSink("keep")
    batch = bundle.encoder.encode(Chunk(sample.table, np.arange(1, n + 1, dtype=np.int64), sample.source), sink)
    if len(batch) == 0:
        first = sink.rows[0] if sink.rows else None
        why = f" (e.g. column {first.column!r}, value {first.value!r}: {first.reason})" if first else ""
        raise AnalysisError(f"{sample.source}: none of the {n:,} rows sampled can be encoded{why}; pass rows like "
                            "the run's training data")
    if sink.count:
        log.warning("%s: %d of %d rows sampled cannot be encoded and are left out", sample.source, sink.count, n)
    return sample.table.take(pa.array(batch.lines - 1)), sink.count


def _score(bundle: Bundle, table: pa.Table, source: str, metric: str) -> float:
    n = table.num_rows
    batch = bundle.encoder.encode(Chunk(table, np.arange(1, n + 1, dtype=np.int64), source), BadRowSink("count"))
    assert batch.label is not None and len(batch) == n  # only good rows are shuffled, so all stay good
    value = report(batch.label, bundle.predict_logits(batch), bundle.prior)[metric]
    if not np.isfinite(value):
        label = ",".join(bundle.encoder.label.columns) if bundle.encoder.label is not None else "label"
        raise AnalysisError(f"{source}: {metric} is undefined on these {n:,} rows (column {label!r} holds one value "
                            f"only: {sorted(set(np.ravel(batch.label).tolist()))[:5]}); pass rows of every class")
    return float(value)

