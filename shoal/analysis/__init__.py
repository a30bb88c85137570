"""Looking into a trained run: which features it relies on (:mod:`.explain`, permutation importance) and how far
new data has moved from its training data (:mod:`.drift`, the population stability index).

    from shoal.analysis import drift, explain
    explain("latest", home="shoal-runs").importances[0].feature   # the feature the model relies on most
    drift("latest", "today.parquet", home="shoal-runs").flagged   # the features that moved

Both read bounded, seeded samples (:mod:`.sample`), so they take seconds on a log of any size.
"""

from __future__ import annotations

from shoal.analysis.drift import DriftReport, FeatureDrift, drift, psi
from shoal.analysis.explain import Explanation, Importance, explain, permutation_importance
from shoal.analysis.sample import AnalysisError

__all__ = ["AnalysisError", "DriftReport", "Explanation", "FeatureDrift", "Importance", "drift", "explain",
           "permutation_importance", "psi"]
