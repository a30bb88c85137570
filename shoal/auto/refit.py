"""The refit (``shoal auto``'s default; ``--no-refit``): the kept trial's config trained once more on every row it
was given, its validation rows too, for the epochs it took to its best validation; the test file then scores that
model.

Once a model is chosen, the rows that chose it can teach it too (AutoGluon's ``refit_full``). The number of epochs
cannot be chosen again without validation rows, so it is the one the trial's own validation chose::

    search:  DATA = train rows (90 %) + validation rows (10 %)  ->  trial k, best validation at epoch E
    refit:   DATA = train rows (100 %), E epochs, no validation  ->  the model the test file scores, best.yaml

With a ``--valid`` file the refit reads the training source and that file as one list of sources (they must be read
alike: the same format and options; a file read otherwise, or a SQL source, keeps the trial's model). The refit must
fit in the time left (the budget and its 10 %), else the trial's model stands.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

from shoal.config import DataConfig, FileSpec
from shoal.data.readers import detect_format, read_header
from shoal.training.evaluation import selection_loss

__all__ = ["best_epochs", "merged_sources", "refit_config", "refit_seconds"]


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


def merged_sources(data: DataConfig) -> dict[str, Any] | str:
    """The ``data`` fields that read the training sources and the validation file as one list of sources, for a
    refit on both: ``train`` (the list of paths), and ``columns`` where the validation file's header names DATA's
    columns differently and it is read by position under DATA's names (:func:`shoal.auto.files.file_spec`), so
    that every file is; or a sentence saying why they cannot be read as one (a validation file read with options
    of its own, a SQL source, another format)."""
    assert data.valid is not None
    valid, update = data.valid, {}
    train = str(data.train).split("\n")
    if isinstance(valid, FileSpec):
        own = {k: v for k, v in valid.model_dump(exclude={"path"}).items() if v is not None}
        differ = sorted(k for k, v in own.items() if getattr(data, k) != v)
        if differ == ["columns"] and _by_position(data, train[0], own["columns"]):
            update["columns"] = own["columns"]  # DATA's own header names: its rows read as before
        elif differ:
            return f"the validation file is read with its own {', '.join(differ)}: it cannot join the training rows"
        valid = valid.path
    held = str(valid).split("\n")
    if any(p.endswith(".sql") and Path(p).parent.name == "shoal-sql" for p in train + held):
        return "a SQL source cannot be joined with the validation file"
    formats = {detect_format(Path(p), data.format) for p in train + held}
    if len(formats) > 1:
        return f"the training and validation files are of different formats ({', '.join(sorted(formats))})"
    return {"train": train + held, **update}


def _by_position(data: DataConfig, first: str, columns: list[str]) -> bool:
    """Whether ``columns`` are the names DATA's first source gives its columns (its header), so that reading every
    file by position under them leaves DATA's rows as they were."""
    fmt = detect_format(Path(first), data.format)
    if not data.header or fmt not in ("csv", "tsv") or data.columns is not None:
        return False
    try:
        return read_header(Path(first), fmt, data.delimiter) == list(columns)
    except (OSError, ValueError):
        return False


def refit_config(config: dict[str, Any], epochs: int, merged: dict[str, Any] | None = None) -> dict[str, Any]:
    """``config`` (a run's resolved config) to train on all of DATA's rows for ``epochs`` epochs; ``merged``: the
    training and validation files read as one (:func:`merged_sources`) instead."""
    out = copy.deepcopy(config)
    out["name"] = f"{out.get('name') or 'auto'}-refit"
    if merged is not None:
        out["data"].update(copy.deepcopy(merged))
        out["data"]["valid"] = None
    out["data"]["valid_fraction"] = 0.0
    out["train"]["epochs"] = epochs
    return out


def refit_seconds(trial_seconds: float, trial_epochs: int, epochs: int, valid_fraction: float) -> float:
    """What the refit should take: the trial's time per epoch (its start-up included: a bound from above) for
    ``epochs`` epochs, on ``1 / (1 - valid_fraction)`` times the rows (the share of all rows the trial did not
    train on)."""
    return trial_seconds * epochs / max(trial_epochs, 1) / max(1.0 - valid_fraction, 1e-6)
