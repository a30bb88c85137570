"""The recheck (``shoal auto``'s default on few validation rows; ``--no-recheck``): the leading trials trained again
on fresh held-out splits of every row, and the one with the best mean kept.

On a few hundred validation rows the best of hundreds of trials is partly the best by luck (the winner's curse):
one search of a 7,609-row click log kept a trial at 0.737 validation AUC that tested at 0.709, while trials a
hair behind it on validation tested at 0.727-0.729. Scores on fresh splits do not share that luck::

    leaders    the kept trial, each other family's best, then the next best distinct complete trials (at most
               LEADERS), each within two standard errors of the best on the validation rows (the selection's
               paired bootstrap, :mod:`.select`)
    splits     SPLITS trainings of each, holding out FRACTION of every row (DATA, and a --valid file read alike)
               with the seeds seed + 1 .. seed + SPLITS: every leader meets the same splits
    kept       the leader with the best mean over its splits (a tie keeps the earlier: the kept trial first)

Only where the validation rows are fewer than RECHECK_ROWS (on more, one split already tells the leaders apart),
where a ``--valid`` file can be read with DATA as one list of sources, and in the time left (the budget and its
10 %, less the reserve and the refit's estimate): the leaders estimated to fit on SPLITS splits are rechecked, at
least two (the first two where only one split of theirs fits), split by split, stopping before a training that
would pass the time; they are compared on the splits all of them
finished. With a ``--valid`` file the splits mix its rows with DATA's: they assume one distribution; where the
validation file is chosen to differ (a later week, another market), ``--no-recheck`` leaves the choice to it.
"""

from __future__ import annotations

import copy
import json
import math
import statistics
from collections.abc import Sequence
from typing import Any

from shoal.auto.report import TrialRow
from shoal.auto.trial import Metric

__all__ = ["FRACTION", "HOLD_MARGIN", "HOLD_SHARE", "LEADERS", "RECHECK_ROWS", "SPLITS", "hold_seconds", "leaders",
           "recheck_config", "rechecked", "retrain_seconds", "split_seconds"]

RECHECK_ROWS = 10_000  # validation rows below which the leaders are rechecked
LEADERS = 4  # trials rechecked at most
SPLITS = 3  # fresh held-out splits each
FRACTION = 0.2  # the share of the rows each split holds out
HOLD_SHARE = 0.2  # the most of the budget the trials leave to the recheck (beyond the budget's 10 %)
#: the estimate's margin: the selection runs between the trials and the recheck (2 s of a 60 s search of a 442-row
#: file), and leaders' times are their trials' (the first trial's holds the search's start-up)
HOLD_MARGIN = 1.5


def hold_seconds(budget_s: float, seconds: Sequence[float], trained: int, held: int) -> float:
    """Seconds the trials stop short of the budget so that the recheck and the refit fit after them, on few
    validation rows (``held`` of them, ``trained`` training rows in a trial): SPLITS trainings of each likely leader
    (``seconds``: their retraining times, the first two those a recheck takes first, at most LEADERS + 1) and the
    refit of the slowest, each scaled by its rows, times HOLD_MARGIN, less the budget's 10 % (theirs already), at
    most HOLD_SHARE of the budget. Where the first two would not fit in that much on SPLITS splits, what they need
    on one (the recheck then takes them on the splits that fit); 0 on enough validation rows, and where even that
    would not fit: time held for a recheck that is then skipped is time no trial had."""
    if not seconds or not 0 < held < RECHECK_ROWS or trained <= 0:
        return 0.0

    def need(times: Sequence[float], splits: int = SPLITS) -> float:
        rechecks = splits * sum(split_seconds(t, trained, held) for t in times)
        trainings = rechecks + max(times) * (trained + held) / trained  # and the refit of the slowest
        return HOLD_MARGIN * trainings - 0.1 * budget_s

    most = HOLD_SHARE * budget_s
    if need(seconds[:2]) > most:
        one = need(seconds[:2], 1)
        return 0.0 if one > most else max(0.0, one)
    return min(most, max(0.0, need(seconds)))


def split_seconds(seconds: float, trained: int, held: int) -> float:
    """What one recheck training (on 1 - FRACTION of every row) of a trial that took ``seconds`` on ``trained``
    rows (``held`` more for validation) should take."""
    return seconds * (trained + held) * (1 - FRACTION) / trained


def retrain_seconds(rows: Sequence[TrialRow]) -> dict[int, float]:
    """What training each complete trial of ``rows`` again should take: its training seconds plus the median
    start-up (reading, encoding) of the trials that say theirs, not its own: the first trial's start-up holds the
    search's (imports, caches warmed), 3.2 s where the later ones take 0.5 s on a 700-row file. A trial that does
    not say its training seconds counts its whole time."""
    complete = [r for r in rows if r.state == "complete"]
    startups = [r.seconds - r.train_seconds for r in complete if r.train_seconds is not None]
    startup = statistics.median(startups) if startups else 0.0
    return {r.number: r.seconds if r.train_seconds is None else min(r.seconds, r.train_seconds + startup)
            for r in complete}


def leaders(board: Sequence[TrialRow], kept: TrialRow, metric: Metric, noise: float | None,
            usable: set[int]) -> list[TrialRow]:
    """The trials to recheck, at most LEADERS: ``kept`` first, then each other family's best, then the next best,
    among the complete trials of ``board`` (best first) within ``2 * noise`` of the best validation value
    (``noise`` None: no bound) whose settings differ from those taken, among ``usable`` trial numbers (those that
    still have their bundle). Other families first: near copies of one trial that TPE drew late tell little."""
    complete = [r for r in board if r.state == "complete" and r.value is not None and r.number in usable]
    best = max((r.value for r in complete if r.value is not None), key=lambda v: v if metric.maximize else -v,
               default=None)
    near = [r for r in complete if noise is None or best is None or abs(best - (r.value or 0.0)) <= 2 * noise]
    firsts = [r for i, r in enumerate(near) if all(o.family != r.family for o in near[:i])]
    out, seen = [kept], {_key(kept)}
    for row in [r for r in firsts if r.family != kept.family] + near:
        if len(out) == LEADERS:
            break
        if _key(row) not in seen:
            out.append(row)
            seen.add(_key(row))
    return out


def _key(row: TrialRow) -> str:
    return json.dumps([row.family, row.params], sort_keys=True, default=str)


def recheck_config(config: dict[str, Any], split: int, merged: dict[str, Any] | None = None) -> dict[str, Any]:
    """``config`` (a trial's resolved config) trained on split ``split`` (1 .. SPLITS): FRACTION of the rows held
    out with the seed ``train.seed + split``; ``merged``: DATA and the validation file read as one instead
    (:func:`shoal.auto.refit.merged_sources`)."""
    out = copy.deepcopy(config)
    out["name"] = f"{out.get('name') or 'auto'}-recheck{split}"
    if merged is not None:
        out["data"].update(copy.deepcopy(merged))
    out["data"]["valid"] = None  # held out of the sources, never the validation file alone
    out["data"]["valid_fraction"] = FRACTION
    out["train"]["seed"] = int(out["train"].get("seed") or 0) + split
    out["train"]["pictures"] = False
    return out


def rechecked(scores: dict[int, list[float]], order: Sequence[int], metric: Metric,
              losses: dict[int, list[float]] | None = None) -> int:
    """The trial number with the best mean score (``scores``: trial -> its splits' validation values); a tie goes
    to the lower mean validation loss (``losses``, the same splits': a few dozen rows' accuracy often ties where
    the log loss does not), then to the earliest in ``order``."""
    means = {n: statistics.fmean(v) for n, v in scores.items() if v}
    loss = {n: statistics.fmean(v) for n, v in (losses or {}).items() if v and all(math.isfinite(x) for x in v)}
    ranked = [n for n in order if n in means]
    return max(ranked, key=lambda n: (means[n] if metric.maximize else -means[n], -loss.get(n, math.inf),
                                      -ranked.index(n)))
