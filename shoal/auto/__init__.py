"""``shoal auto``: the best model for a file within a wall-clock budget, searched with Optuna (docs/auto.md).

- :mod:`.space`: the model families that fit the columns and each one's hyperparameters, sized from the data;
- :mod:`.budget`: the wall-clock budget: what is left, whether a trial fits, each trial's deadline;
- :mod:`.files`: DATA profiled into its starter config, the validation and test files beside it;
- :mod:`.trial`: one trial, a child run reported to Optuna after every validation (pruning, time cap);
- :mod:`.report`: the leaderboard, the PNG of the metric against trial and time, the best config as YAML;
- :mod:`.search`: the study from start to end (:func:`auto`, :func:`resume`).
"""

from shoal.auto.budget import parse_duration
from shoal.auto.report import TrialRow
from shoal.auto.search import METRICS, AutoResult, AutoSettings, SearchView, auto, resume
from shoal.auto.trial import Metric

__all__ = ["METRICS", "AutoResult", "AutoSettings", "Metric", "SearchView", "TrialRow", "auto", "parse_duration",
           "resume"]
