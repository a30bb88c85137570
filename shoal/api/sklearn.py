"""scikit-learn estimators over :func:`shoal.fit`: ``ShoalClassifier`` and ``ShoalRegressor`` work in ``Pipeline``,
``cross_val_score`` and ``GridSearchCV``::

    from shoal.api.sklearn import ShoalClassifier, ShoalRegressor
    clf = ShoalClassifier(model="dlrm", epochs=3)
    cross_val_score(clf, X, y, cv=3, scoring="roc_auc")            # X: a DataFrame (or an array: columns x0, x1, ...)
    GridSearchCV(clf, {"epochs": [2, 4], "overrides": [None, {"model.embedding_dim": 8}]}).fit(X, y)
    ShoalRegressor(model="mlp").fit(X, amount).predict(X_new)      # values; score() is R^2

Each ``fit`` trains a run in ``home`` (default: a temporary registry of its own, removed when the fit returns: the
fitted model is in memory), so cross-validation fills neither ``./shoal-runs`` nor the temp folder; and draws no
pictures (``train.pictures: false``: the learning and ROC curves took 0.7 of a small fit's 0.75 s, for a registry
nobody opens; ``overrides={"train.pictures": True}`` draws them).
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Mapping
from contextlib import nullcontext
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import NotFittedError

from shoal.api.model import Model, fit

__all__ = ["ShoalClassifier", "ShoalRegressor"]

LABEL = "_shoal_label"  # the label's column name in the rows handed to shoal.fit


def _frame(X: Any) -> pd.DataFrame:
    """Features as a DataFrame with string column names (an array's columns are x0, x1, ...)."""
    if isinstance(X, pd.DataFrame):
        frame = X.reset_index(drop=True)
        frame.columns = [str(c) for c in frame.columns]
        return frame
    if hasattr(X, "tocsr") or type(X).__module__.startswith("scipy.sparse"):
        raise TypeError("sparse input is not supported: pass a dense array or a DataFrame (X.toarray())")
    arr = np.asarray(X)
    if np.iscomplexobj(arr):
        raise ValueError("Complex data not supported: pass real numbers (e.g. the real and imaginary parts as two "
                         "columns)")
    if arr.ndim != 2:
        raise ValueError(f"expected 2-D features (rows x columns), got an array of shape {arr.shape}. Reshape "
                         "your data either using array.reshape(-1, 1) if your data has a single feature or "
                         "array.reshape(1, -1) if it contains a single sample.")
    return pd.DataFrame(arr, columns=[f"x{i}" for i in range(arr.shape[1])])


class _ShoalEstimator(BaseEstimator):
    """What both estimators share: X checked as scikit-learn checks it, training through :func:`shoal.fit`, and X
    checked again against the fitted columns. Parameters stay in each subclass's ``__init__`` (scikit-learn reads
    them from its signature)."""

    model: str | None
    epochs: int | None
    overrides: Mapping[str, Any] | None
    home: str | None
    seed: int

    def _features(self, X: Any, y: Any) -> pd.DataFrame:
        frame = _frame(X)
        if frame.shape[1] == 0:
            raise ValueError(f"Found array with 0 feature(s) (shape={frame.shape}) while a minimum of 1 is required.")
        if frame.shape[0] == 0:
            raise ValueError(f"Found array with 0 sample(s) (shape={frame.shape}) while a minimum of 1 is required.")
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y is None")
        return frame

    def _train(self, frame: pd.DataFrame, defaults: Mapping[str, Any], fixed: Mapping[str, Any],
               task: str | None = None) -> None:
        """Train on ``frame`` (features, then the label in :data:`LABEL`): ``defaults`` that ``overrides`` may
        change, then ``epochs``, then ``fixed`` settings that follow from ``y``."""
        settings = {"train.seed": self.seed, "train.pictures": False, **defaults, **dict(self.overrides or {})}
        if self.epochs is not None:
            settings["train.epochs"] = self.epochs
        settings.update(fixed)
        # without a home, the fitted model lives in memory and its registry goes when the fit returns
        with (nullcontext(self.home) if self.home is not None
              else tempfile.TemporaryDirectory(prefix="shoal-sklearn-")) as home:
            self.model_: Model = fit(frame, LABEL, model=self.model, task=task, home=home, overrides=settings)
        self.n_features_in_ = frame.shape[1] - 1
        self.feature_names_in_ = np.asarray(frame.columns[:-1], dtype=object)

    def _checked(self, X: Any) -> pd.DataFrame:
        name = type(self).__name__
        if "model_" not in self.__dict__:
            raise NotFittedError(f"this {name} is not fitted yet: call fit(X, y) first")
        frame = _frame(X)
        if frame.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {frame.shape[1]} features, but {name} is expecting "
                             f"{self.n_features_in_} features as input")
        return frame


class ShoalClassifier(ClassifierMixin, _ShoalEstimator):
    """A shoal model as a scikit-learn classifier (binary or multiclass).

    Parameters: ``model`` (a model family, or None for the starter config's choice), ``epochs`` (None: sized by
    the rows), ``overrides`` (dotted config keys, as ``shoal train --set``), ``home`` (the registry; None: a
    temporary one), ``seed``.
    """

    def __init__(self, model: str | None = None, epochs: int | None = None,
                 overrides: Mapping[str, Any] | None = None, home: str | None = None, seed: int = 0) -> None:
        self.model = model
        self.epochs = epochs
        self.overrides = overrides
        self.home = home
        self.seed = seed

    def fit(self, X: Any, y: Any) -> ShoalClassifier:
        from sklearn.utils.multiclass import type_of_target

        frame = self._features(X, y)
        labels = np.asarray(y)
        kind = type_of_target(labels)
        if kind not in ("binary", "multiclass"):
            raise ValueError(f"Unknown label type: {kind!r}; ShoalClassifier learns binary or multiclass labels "
                             "(one class per row)")
        self.classes_ = np.unique(labels)
        if len(self.classes_) < 2:
            raise ValueError(f"y has one class only ({self.classes_[0]!r}); a classifier needs two or more")
        frame[LABEL] = [str(v) for v in labels]
        settings: dict[str, Any] = {}
        if len(self.classes_) == 2:  # positive: the larger class, as scikit-learn's pos_label
            settings["label.positive"] = [str(self.classes_[1])]
            settings["label.negative"] = [str(self.classes_[0])]
        self._train(frame, {}, settings)
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """(N, n_classes) probabilities, columns in ``classes_`` order."""
        frame = self._checked(X)  # first: an unfitted estimator raises NotFittedError
        p = self.model_.predict_proba(frame)
        if p.ndim == 1:
            return np.column_stack([1.0 - p, p])
        order = {name: k for k, name in enumerate(self.model_.classes or [])}
        return p[:, [order[str(c)] for c in self.classes_]]

    def predict(self, X: Any) -> np.ndarray:
        p = self.predict_proba(X)  # first: an unfitted estimator raises NotFittedError
        return self.classes_[p.argmax(axis=1)]


class ShoalRegressor(RegressorMixin, _ShoalEstimator):
    """A shoal model as a scikit-learn regressor: a number per row (``label.kind: regression``).

    Parameters as :class:`ShoalClassifier`'s; ``loss``: ``mse`` or ``huber``.
    """

    def __init__(self, model: str | None = None, epochs: int | None = None,
                 overrides: Mapping[str, Any] | None = None, home: str | None = None, seed: int = 0,
                 loss: str = "mse") -> None:
        self.model = model
        self.epochs = epochs
        self.overrides = overrides
        self.home = home
        self.seed = seed
        self.loss = loss

    def fit(self, X: Any, y: Any) -> ShoalRegressor:
        frame = self._features(X, y)
        try:
            target = np.asarray(y, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise ValueError(f"y must hold numbers for a regressor: {err}") from None
        if target.ndim != 1:
            if target.ndim == 2 and target.shape[1] == 1:
                from sklearn.exceptions import DataConversionWarning

                warnings.warn("A column-vector y was passed when a 1d array was expected; it is raveled",
                              DataConversionWarning, stacklevel=2)
                target = target.ravel()
            else:
                raise ValueError(f"y must be 1-D (one number per row), got shape {target.shape}")
        if len(target) != len(frame):
            raise ValueError(f"X has {len(frame)} rows but y has {len(target)}")
        if len(frame) < 2:
            raise ValueError(f"n_samples={len(frame)}: a regressor needs at least 2 rows to learn from")
        if not np.isfinite(target).all():
            raise ValueError("Input y contains NaN or infinity.")
        frame[LABEL] = target
        self._train(frame, {"label.loss": self.loss}, {}, task="regression")
        return self

    def predict(self, X: Any) -> np.ndarray:
        """(N,) predicted values."""
        frame = self._checked(X)  # first: an unfitted estimator raises NotFittedError
        return self.model_.predict(frame)
