"""The notebook API: ``shoal.fit`` on a data frame, a :class:`Model` that predicts on data frames, and
scikit-learn estimators (:mod:`shoal.api.sklearn`)."""

from shoal.api.model import Model, fit, load_model

__all__ = ["Model", "fit", "load_model"]
