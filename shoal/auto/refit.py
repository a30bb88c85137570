"""The refit (``shoal auto``'s default; ``--no-refit``): the kept trial's config trained once more on every row of
DATA, its validation rows too, for the epochs it took to its best validation; the test file then scores that model.

The search holds out a tenth of DATA to choose a model; once one is chosen, those rows can teach it too. The number
of epochs cannot be chosen again without validation rows, so it is the one the trial's own validation chose::

    search:  DATA = train rows (90 %) + validation rows (10 %)  ->  trial k, best validation at epoch E
    refit:   DATA = train rows (100 %), E epochs, no validation  ->  the model the test file scores, best.yaml

Only where the validation rows were held out of DATA: a ``--valid`` file is the user's to validate on, never
trained on. The refit must fit in the time left (the budget and its 10 %), else the trial's model stands.
"""

from __future__ import annotations

import copy
import math
from typing import Any

from shoal.training.evaluation import selection_loss

__all__ = ["best_epochs", "refit_config", "refit_seconds"]


def best_epochs(history: list[dict[str, Any]]) -> int | None:
    """The epochs a run trained up to its best validation (its kept weights): the epoch of the lowest selection
    loss in ``history`` (the first, on a tie), an epoch begun but not ended counted whole; None without one."""
    try:
        scored = [(selection_loss(h), i, h) for i, h in enumerate(history) if "epoch" in h]
    except KeyError:  # a history without the loss the trainer keeps its weights by
        return None
    if not scored:
        return None
    _, _, best = min(scored, key=lambda s: (s[0], s[1]))
    return max(1, math.ceil(float(best["epoch"])))


def refit_config(config: dict[str, Any], epochs: int) -> dict[str, Any]:
    """``config`` (a run's resolved config) to train on all of DATA's rows for ``epochs`` epochs."""
    out = copy.deepcopy(config)
    out["name"] = f"{out.get('name') or 'auto'}-refit"
    out["data"]["valid_fraction"] = 0.0
    out["train"]["epochs"] = epochs
    return out


def refit_seconds(trial_seconds: float, trial_epochs: int, epochs: int, valid_fraction: float) -> float:
    """What the refit should take: the trial's time per epoch (its start-up included: a bound from above) for
    ``epochs`` epochs, on ``1 / (1 - valid_fraction)`` times the rows."""
    return trial_seconds * epochs / max(trial_epochs, 1) / max(1.0 - valid_fraction, 1e-6)
