"""Click-prediction (binary), classification (multiclass), tagging (multilabel) and regression metrics.

All functions take ``y`` (labels, 0/1) and ``p`` (predicted click probabilities in ``[0, 1]``) as
array-likes of the same length and return plain Python floats, so results can be stored as JSON
without conversion.  Inputs are validated up front; a bad input raises :class:`ValueError` with a
message that says what is wrong with the value (how many offending entries, where the first one is)
rather than silently producing ``nan``.

Normalized entropy (NE) follows He et al. 2014, "Practical Lessons from Predicting Clicks on Ads at
Facebook": the average log loss per impression divided by the entropy of the background click
rate.  Because a model that merely predicts the background rate has NE == 1, NE < 1 means the model
carries information beyond the base rate.  The paper's background rate is the *training* set's
CTR, so evaluation code should pass ``base_rate`` explicitly; it only defaults to the evaluation
labels' mean for convenience.

Regression reports RMSE, MAE and R^2 beside NMSE, the regression counterpart of NE: the mean squared error
over that of always predicting the *training* label mean, so NMSE = 1 is no better than that constant and
lower is better (R^2 compares with the evaluation set's own mean instead).

Multilabel reports micro- and macro-F1 of the tags predicted at p >= 0.5, the mean AUC over the tags that have
both values in the set, and the log loss averaged over rows and tags (NE: over the mean entropy of the training
tag rates).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "accuracy",
    "auc",
    "binary_report",
    "calibration",
    "confusion_matrix",
    "entropy",
    "log_loss",
    "multiclass_report",
    "multilabel_report",
    "sigmoid",
    "tag_aucs",
    "normalized_entropy",
    "probabilities",
    "regression_report",
    "multitask_report",
    "TaskPrior",
    "HEADLINE",
    "headline",
]

logger = logging.getLogger(__name__)

DEFAULT_EPS = 1e-7
"""Default clipping used by :func:`log_loss` so that confident mistakes cost ``-ln(eps)`` (~16.1)."""

ArrayLike = npt.ArrayLike


def _first_index(mask: np.ndarray) -> int:
    """Index of the first ``True`` in a boolean mask (caller guarantees there is one)."""
    return int(np.flatnonzero(mask)[0])


def _as_1d(name: str, values: ArrayLike, what: str) -> np.ndarray:
    """Convert ``values`` to a 1-D float64 array, raising a descriptive ValueError on failure.

    A column vector of shape ``(n, 1)`` is accepted and flattened; anything with more than one
    non-trivial dimension is rejected because its row/column meaning would be ambiguous.
    """
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} could not be converted to numbers ({exc}); {what}") from exc
    if arr.ndim == 0:
        raise ValueError(f"{name} is a scalar, not an array; {what}")
    if arr.ndim > 1:
        if sum(1 for dim in arr.shape if dim != 1) > 1:
            raise ValueError(f"{name} has shape {arr.shape}; expected a 1-D array (one value per row)")
        arr = arr.reshape(-1)
    return arr


def _validate(y: ArrayLike, p: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Check labels and predictions; return them as 1-D float64 arrays.

    Raises:
        ValueError: lengths differ, inputs are empty, ``y`` is not 0/1, or ``p`` contains NaN,
            infinities or values outside ``[0, 1]``.
    """
    y_what = "labels must be binary 0/1"
    p_what = "predictions must be finite probabilities in [0, 1]"
    y_arr = _as_1d("y", y, y_what)
    p_arr = _as_1d("p", p, p_what)
    if y_arr.shape[0] != p_arr.shape[0]:
        raise ValueError(
            f"y has {y_arr.shape[0]} rows but p has {p_arr.shape[0]}; they must be the same length"
        )
    if y_arr.shape[0] == 0:
        raise ValueError("y and p are empty; metrics need at least one row")

    bad_y = ~((y_arr == 0.0) | (y_arr == 1.0))
    if bad_y.any():
        first = _first_index(bad_y)
        raise ValueError(
            f"y contains {int(bad_y.sum())} values other than 0 and 1 "
            f"(first at index {first}: {float(y_arr[first])!r}); {y_what}"
        )

    nan = np.isnan(p_arr)
    if nan.any():
        raise ValueError(
            f"p contains {int(nan.sum())} NaN values (first at index {_first_index(nan)}); {p_what}"
        )
    inf = np.isinf(p_arr)
    if inf.any():
        first = _first_index(inf)
        raise ValueError(
            f"p contains {int(inf.sum())} infinite values "
            f"(first at index {first}: {float(p_arr[first])!r}); {p_what}"
        )
    out = (p_arr < 0.0) | (p_arr > 1.0)
    if out.any():
        first = _first_index(out)
        raise ValueError(
            f"p contains {int(out.sum())} values outside [0, 1] "
            f"(first at index {first}: {float(p_arr[first])!r}); {p_what}"
        )
    return y_arr, p_arr


def _check_rate(name: str, rate: float) -> float:
    """Validate that ``rate`` is a finite probability and return it as a float."""
    try:
        value = float(rate)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a number in [0, 1], got {rate!r}") from exc
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a finite probability in [0, 1], got {rate!r}")
    return value


def _log_loss_unchecked(y: np.ndarray, p: np.ndarray, eps: float) -> float:
    """Mean binary cross-entropy of already-validated arrays, with ``p`` clipped to ``[eps, 1-eps]``."""
    clipped = np.clip(p, eps, 1.0 - eps)
    # np.where rather than y*log(p) + (1-y)*log(1-p): with eps=0 the latter gives 0 * -inf = nan.
    with np.errstate(divide="ignore"):
        losses = -np.where(y == 1.0, np.log(clipped), np.log1p(-clipped))
    return float(np.mean(losses))


def log_loss(y: ArrayLike, p: ArrayLike, eps: float = DEFAULT_EPS) -> float:
    """Mean binary log loss (natural log), with predictions clipped to ``[eps, 1 - eps]``.

    Args:
        y: binary labels (0/1).
        p: predicted probabilities of the positive class, same length as ``y``.
        eps: clipping applied to ``p`` so that a confident miss costs ``-ln(eps)`` instead of inf.
            Must lie in ``[0, 0.5)``; ``eps=0`` disables clipping (and can return ``inf``).

    Returns:
        ``mean(-(y ln p + (1 - y) ln(1 - p)))``.
    """
    if not (math.isfinite(eps) and 0.0 <= eps < 0.5):
        raise ValueError(f"eps must be in [0, 0.5), got {eps!r}")
    y_arr, p_arr = _validate(y, p)
    return _log_loss_unchecked(y_arr, p_arr, eps)


def entropy(rate: float) -> float:
    """Binary entropy in nats: ``-(q ln q + (1 - q) ln(1 - q))``, defined as 0 at ``q`` in {0, 1}.

    This is the log loss of a predictor that always outputs ``q`` on data whose positive rate is
    ``q``; its maximum is ``ln 2`` at ``q = 0.5``.
    """
    q = _check_rate("rate", rate)
    if q in (0.0, 1.0):
        return 0.0
    return -(q * math.log(q) + (1.0 - q) * math.log1p(-q))


def normalized_entropy(y: ArrayLike, p: ArrayLike, base_rate: float | None = None) -> float:
    """Normalized entropy (He et al. 2014): ``log_loss(y, p) / entropy(base_rate)``.

    Args:
        y: binary labels (0/1).
        p: predicted probabilities.
        base_rate: background positive rate used for normalisation.  Pass the *training* set's
            click rate (as in the paper) so that NE is comparable across evaluation sets; defaults to
            ``mean(y)``.

    Returns:
        NE; 1.0 means "no better than predicting the base rate", lower is better.  ``nan`` when the
        base rate is exactly 0 or 1, where the normaliser (its entropy) is zero and NE is undefined.
    """
    y_arr, p_arr = _validate(y, p)
    rate = float(np.mean(y_arr)) if base_rate is None else _check_rate("base_rate", base_rate)
    denominator = entropy(rate)
    if denominator == 0.0:
        logger.debug("normalized_entropy: base rate %r has zero entropy; NE is undefined", rate)
        return math.nan
    return _log_loss_unchecked(y_arr, p_arr, DEFAULT_EPS) / denominator


def calibration(y: ArrayLike, p: ArrayLike) -> float:
    """Ratio of predicted to observed click rate, ``mean(p) / mean(y)``.

    1.0 is perfectly calibrated on aggregate; > 1 over-predicts, < 1 under-predicts.  ``nan`` when
    ``y`` has no positives (the observed rate is zero).
    """
    y_arr, p_arr = _validate(y, p)
    observed = float(np.mean(y_arr))
    if observed == 0.0:
        return math.nan
    return float(np.mean(p_arr)) / observed


def auc(y: ArrayLike, p: ArrayLike) -> float:
    """Area under the ROC curve (ties count one half): the Mann-Whitney U of the positives' average ranks, as
    :func:`sklearn.metrics.roc_auc_score` gives it (the tests compare them), without importing scikit-learn,
    which costs a training run ~1 s of start-up.

    Returns ``nan`` rather than raising when ``y`` contains only one class, since AUC is undefined
    there and an evaluation report should still be produced.
    """
    y_arr, p_arr = _validate(y, p)
    n = y_arr.shape[0]
    positives = int(np.count_nonzero(y_arr))
    if positives == 0 or positives == n:
        return math.nan
    order = np.argsort(p_arr, kind="stable")
    ranked = p_arr[order]
    first = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])  # where each run of equal scores starts
    ends = np.r_[first[1:], n]
    average = (first + 1 + ends) / 2.0  # the 1-based average rank of each run
    ranks = np.repeat(average, ends - first)
    u = float(ranks[y_arr[order] != 0].sum()) - positives * (positives + 1) / 2.0
    return u / (positives * (n - positives))


def accuracy(y: ArrayLike, p: ArrayLike, threshold: float = 0.5) -> float:
    """Fraction of rows where ``(p >= threshold)`` equals the label."""
    t = _check_rate("threshold", threshold)
    y_arr, p_arr = _validate(y, p)
    predicted = (p_arr >= t).astype(np.float64)
    return float(np.mean(predicted == y_arr))


def binary_report(y: ArrayLike, p: ArrayLike, base_rate: float | None = None) -> dict[str, float]:
    """All metrics at once, as a JSON-friendly dict of floats.

    Keys: ``auc``, ``logloss``, ``ne``, ``calibration``, ``accuracy``, ``rows``, ``positive_rate``.
    ``base_rate`` is forwarded to :func:`normalized_entropy` (pass the training click rate).
    """
    y_arr, p_arr = _validate(y, p)
    return {
        "auc": auc(y_arr, p_arr),
        "logloss": log_loss(y_arr, p_arr),
        "ne": normalized_entropy(y_arr, p_arr, base_rate=base_rate),
        "calibration": calibration(y_arr, p_arr),
        "accuracy": accuracy(y_arr, p_arr),
        "rows": float(y_arr.shape[0]),
        "positive_rate": float(np.mean(y_arr)),
    }


def probabilities(logits: ArrayLike) -> np.ndarray:
    """A model's logits as probabilities (float64): sigmoid of (B,) binary logits, softmax of (B, C) ones."""
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim == 1:
        return sigmoid(z)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def sigmoid(logits: ArrayLike) -> np.ndarray:
    """Element-wise sigmoid in float64, of any shape (a multilabel model's (B, T) logits: one per tag); no overflow
    warning for a logit below -709 (its probability is 0)."""
    from scipy.special import expit

    return np.asarray(expit(np.asarray(logits, dtype=np.float64)))


def _validate_multilabel(y: ArrayLike, p: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Tags (N, T) 0/1 and probabilities (N, T) float64, checked."""
    y_arr = np.asarray(y, dtype=np.float64)
    p_arr = np.asarray(p, dtype=np.float64)
    if y_arr.ndim != 2 or y_arr.shape != p_arr.shape:
        raise ValueError(f"y and p must both be (rows, tags), got shapes {y_arr.shape} and {p_arr.shape}")
    if y_arr.shape[0] == 0:
        raise ValueError("y and p are empty; metrics need at least one row")
    bad = (y_arr != 0) & (y_arr != 1)
    if bad.any():
        raise ValueError(f"y must hold 0/1 tags; {int(bad.sum())} do not (first: {y_arr[bad][0]!r})")
    if not np.isfinite(p_arr).all() or (p_arr < 0).any() or (p_arr > 1).any():
        raise ValueError("p must hold finite probabilities in [0, 1]")
    return y_arr, p_arr


def tag_aucs(y: ArrayLike, p: ArrayLike) -> list[float]:
    """AUC of each tag (column) of (N, T) ``y`` and ``p``; ``nan`` for a tag with one value in the set."""
    y_arr, p_arr = _validate_multilabel(y, p)
    return [auc(y_arr[:, t], p_arr[:, t]) for t in range(y_arr.shape[1])]


def multilabel_report(y: ArrayLike, p: ArrayLike, prior: ArrayLike | None = None,
                      threshold: float = 0.5) -> dict[str, float]:
    """Multilabel metrics of tags ``y`` (N, T) 0/1 and probabilities ``p`` (N, T), as a dict of floats.

    Keys: ``micro_f1`` (F1 of all (row, tag) decisions at p >= ``threshold`` pooled), ``macro_f1`` (the mean of
    per-tag F1; a tag never predicted nor present counts 0), ``mean_auc`` (over the tags with both values in the
    set; ``nan`` when none has), ``logloss`` (binary log loss averaged over rows and tags), ``ne`` (log loss over
    the mean entropy of ``prior``, the training tag rates), ``subset_accuracy`` (rows whose tags are all right),
    ``rows`` and ``tags_per_row``.
    """
    y_arr, p_arr = _validate_multilabel(y, p)
    t = _check_rate("threshold", threshold)
    pred = p_arr >= t
    truth = y_arr > 0.5
    tp = (pred & truth).sum(axis=0).astype(np.float64)
    fp = (pred & ~truth).sum(axis=0).astype(np.float64)
    fn = (~pred & truth).sum(axis=0).astype(np.float64)
    denom = 2 * tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(denom > 0, 2 * tp / denom, 0.0)
    pooled = float(denom.sum())
    q = np.clip(p_arr, DEFAULT_EPS, 1 - DEFAULT_EPS)
    loss = float(-np.mean(y_arr * np.log(q) + (1 - y_arr) * np.log(1 - q)))
    rates = y_arr.mean(axis=0) if prior is None else np.asarray(prior, dtype=np.float64)
    r = np.clip(rates, DEFAULT_EPS, 1 - DEFAULT_EPS)
    h = float(np.mean(-(r * np.log(r) + (1 - r) * np.log(1 - r))))
    aucs = [a for a in tag_aucs(y_arr, p_arr) if not math.isnan(a)]
    return {
        "micro_f1": float(2 * tp.sum() / pooled) if pooled > 0 else 0.0,
        "macro_f1": float(f1.mean()),
        "mean_auc": float(np.mean(aucs)) if aucs else math.nan,
        "logloss": loss,
        "ne": loss / h if h > 0 else math.nan,
        "subset_accuracy": float(np.mean((pred == truth).all(axis=1))),
        "rows": float(y_arr.shape[0]),
        "tags_per_row": float(y_arr.sum(axis=1).mean()),
    }


def _validate_multiclass(y: ArrayLike, p: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Class indices (N,) int64 and probabilities (N, C) float64, checked."""
    p_arr = np.asarray(p, dtype=np.float64)
    if p_arr.ndim != 2 or p_arr.shape[1] < 2:
        raise ValueError(f"p must be (rows, classes) with at least 2 classes, got shape {p_arr.shape}")
    y_arr = _as_1d("y", y, "class indices")
    if y_arr.shape[0] != p_arr.shape[0]:
        raise ValueError(f"y and p have different lengths: {y_arr.shape[0]} vs {p_arr.shape[0]}")
    if y_arr.shape[0] == 0:
        raise ValueError("y and p are empty; metrics need at least one row")
    bad = (y_arr < 0) | (y_arr >= p_arr.shape[1]) | (y_arr != np.round(y_arr))
    if bad.any():
        raise ValueError(f"y must hold class indices in [0, {p_arr.shape[1]}); {int(bad.sum())} do not "
                         f"(first at index {_first_index(bad)}: {y_arr[_first_index(bad)]!r})")
    if not np.isfinite(p_arr).all() or (p_arr < 0).any() or (p_arr > 1).any():
        raise ValueError("p must hold finite probabilities in [0, 1]")
    return y_arr.astype(np.int64), p_arr


def confusion_matrix(y: ArrayLike, p: ArrayLike) -> np.ndarray:
    """Counts (C, C): row = true class, column = predicted class (the most probable one)."""
    y_arr, p_arr = _validate_multiclass(y, p)
    c = p_arr.shape[1]
    return np.bincount(y_arr * c + p_arr.argmax(axis=1), minlength=c * c).reshape(c, c)


def multiclass_report(y: ArrayLike, p: ArrayLike, prior: ArrayLike | None = None) -> dict[str, float]:
    """Multiclass metrics as a JSON-friendly dict of floats.

    Keys: ``accuracy``, ``macro_f1`` (the unweighted mean of per-class F1; a class never predicted nor present
    counts 0), ``logloss`` (mean cross-entropy, probabilities clipped at ``DEFAULT_EPS``), ``ne`` (log loss over
    the entropy of ``prior``, the training class frequencies; NE = 1 is no better than always predicting them)
    and ``rows``.
    """
    y_arr, p_arr = _validate_multiclass(y, p)
    cm = confusion_matrix(y_arr, p_arr).astype(np.float64)
    tp = np.diag(cm)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(cm.sum(0) + cm.sum(1) > 0, 2 * tp / (cm.sum(0) + cm.sum(1)), 0.0)
    picked = np.clip(p_arr[np.arange(len(y_arr)), y_arr], DEFAULT_EPS, 1.0)
    loss = float(-np.mean(np.log(picked)))
    q = np.bincount(y_arr, minlength=p_arr.shape[1]) / len(y_arr) if prior is None else np.asarray(prior, float)
    q = q[q > 0]
    h = float(-(q * np.log(q)).sum())
    return {
        "accuracy": float(tp.sum() / len(y_arr)),
        "macro_f1": float(f1.mean()),
        "logloss": loss,
        "ne": loss / h if h > 0 else math.nan,
        "rows": float(len(y_arr)),
    }


def regression_report(y: ArrayLike, pred: ArrayLike, train_mean: float | None = None) -> dict[str, float]:
    """Regression metrics as a JSON-friendly dict of floats.

    Keys: ``rmse``, ``mae``, ``mse``, ``r2`` (1 - MSE / variance of ``y``), ``nmse`` (MSE over the MSE of
    predicting ``train_mean``, the training label mean; the evaluation labels' mean when not given), ``rows``
    and ``label_mean``.

    >>> regression_report([1.0, 2.0, 3.0], [1.0, 2.0, 4.0], train_mean=2.0)["nmse"]
    0.5
    """
    y_arr = _as_1d("y", y, "numbers")
    p_arr = _as_1d("pred", pred, "numbers")
    if y_arr.shape[0] != p_arr.shape[0]:
        raise ValueError(f"y and pred have different lengths: {y_arr.shape[0]} vs {p_arr.shape[0]}")
    if y_arr.shape[0] == 0:
        raise ValueError("y and pred are empty; metrics need at least one row")
    for name, arr in (("y", y_arr), ("pred", p_arr)):
        bad = ~np.isfinite(arr)
        if bad.any():
            raise ValueError(f"{name} must hold finite numbers; {int(bad.sum())} do not "
                             f"(first at index {_first_index(bad)}: {arr[_first_index(bad)]!r})")
    err = p_arr - y_arr
    mse = float(np.mean(err * err))
    mean = float(np.mean(y_arr)) if train_mean is None else float(train_mean)
    base = float(np.mean((y_arr - mean) ** 2))
    var = float(np.var(y_arr))
    return {
        "rmse": math.sqrt(mse),
        "mae": float(np.mean(np.abs(err))),
        "mse": mse,
        "r2": 1.0 - mse / var if var > 0 else math.nan,
        "nmse": mse / base if base > 0 else math.nan,
        "rows": float(y_arr.shape[0]),
        "label_mean": float(np.mean(y_arr)),
    }


@dataclass(frozen=True)
class TaskPrior:
    """One task of a multitask label, as its metrics need it: name, ``binary`` or ``regression``, and what NE
    (the training base rate) or NMSE (the training mean) is relative to."""

    name: str
    kind: str
    prior: float

    @classmethod
    def of(cls, task: dict[str, Any]) -> TaskPrior:
        """From a run summary's (or bundle meta's) ``tasks`` entry: its base rate, or its label mean."""
        return cls(task["name"], task["kind"],
                   float(task["train_base_rate"] if task["kind"] == "binary" else task["train_label_mean"]))


def multitask_report(y: ArrayLike, out: ArrayLike, tasks: list[TaskPrior]) -> dict[str, float]:
    """Metrics of a multitask model: each task's own, on the rows whose label it knows (not NaN), as
    ``{task}.{metric}`` (:func:`binary_report` from the sigmoid of a binary task's logit, :func:`regression_report`
    of a regression task's value); ``mean_ne`` (the mean over tasks of NE or NMSE: 1 is the prior's score, lower
    is better) and ``mean_task_score`` (the mean of each task's AUC or R^2).

    >>> r = multitask_report([[1, 2.0], [0, np.nan], [1, 4.0]], [[2.0, 2.5], [-2.0, 0.0], [1.0, 3.5]],
    ...                      [TaskPrior("click", "binary", 0.5), TaskPrior("spend", "regression", 3.0)])
    >>> r["click.auc"], r["spend.rows"], r["spend.rmse"]
    (1.0, 2.0, 0.5)
    """
    y_arr = np.asarray(y, dtype=np.float64)
    o_arr = np.asarray(out, dtype=np.float64)
    if y_arr.ndim != 2 or y_arr.shape != o_arr.shape or y_arr.shape[1] != len(tasks):
        raise ValueError(f"y and out must both be (rows, {len(tasks)} tasks), got shapes {y_arr.shape} and "
                         f"{o_arr.shape}")
    report: dict[str, float] = {"rows": float(len(y_arr))}
    losses, scores = [], []
    for t, task in enumerate(tasks):
        known = ~np.isnan(y_arr[:, t])
        if not known.any():
            continue  # no row of this set knows the task's label: no metric (not a zero)
        if task.kind == "regression":
            m = regression_report(y_arr[known, t], o_arr[known, t], train_mean=task.prior)
            loss, score = m["nmse"], m["r2"]
        else:
            m = binary_report(y_arr[known, t], sigmoid(o_arr[known, t]), base_rate=task.prior)
            loss, score = m["ne"], m["auc"]
        report.update({f"{task.name}.{k}": v for k, v in m.items()})
        losses.append(loss)
        scores.append(score)
    report["mean_ne"] = float(np.mean(losses)) if losses else math.nan
    report["mean_task_score"] = float(np.mean(scores)) if scores else math.nan
    return report


#: The one metric that sums up a model of each label kind, higher is better: what lists and comparisons show.
HEADLINE = {"binary": "auc", "multiclass": "accuracy", "multilabel": "micro_f1", "regression": "r2",
            "multitask": "mean_task_score"}


def headline(metrics: dict[str, Any], prefix: str = "") -> tuple[str, float] | None:
    """The headline metric found in ``metrics`` (keys ``prefix + name``, e.g. ``valid_auc``), as (name, value).

    >>> headline({"valid_r2": 0.8, "valid_rmse": 1.2}, "valid_")
    ('r2', 0.8)
    """
    for name in HEADLINE.values():
        if prefix + name in metrics:
            return name, float(metrics[prefix + name])
    return None
