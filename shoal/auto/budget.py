"""The wall-clock budget of a search: what is left, whether a trial still fits, and how long a trial may run.

    start ─────────────── trials ────────────────┬─ held ──┬─ reserve ─┐ deadline = start + budget
      profile, study      each capped at the     │ recheck │ winner,   │
                          time left (and at      │ (few    │ test, PNG │
                          MAX_TRIAL_SHARE, or    │ valid.  │           │
                          PROBE_SHARE: a probe)  │ rows)   │           │

A trial starts only when the time left before the reserve fits its estimated start-up and at least one epoch
(estimated from the earlier trials of its family); its epochs are cut to what fits, and a trial still running at
its own deadline is stopped (recorded as ``timeout``). The first trial of a family whose cost is not known yet,
once others' are, is a probe: it may take PROBE_SHARE of the budget or twice the longest trial so far, whichever
is longer, so a family far slower than the others (a convolution over every byte of a large text set) costs an
eighth of the search rather than a third before its cost is known. The reserve pays for the end: the winner's
test evaluation, the leaderboard and its PNG; twice as long with an ensemble, whose candidates are scored there too.
``held`` is time the trials leave to the steps after them that the budget's 10 % would not pay for (the recheck on
few validation rows, :func:`shoal.auto.recheck.hold_seconds`); the search sets it as the trials' cost shows.
"""

from __future__ import annotations

import math
import re
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["MAX_TRIAL_SHARE", "PROBE_SHARE", "Budget", "parse_duration"]

MAX_TRIAL_SHARE = 0.34  # no trial may take more than this share of the budget: at least three fit
PROBE_SHARE = 0.125  # a family's first trial, its cost unknown, after others': an eighth (or twice the longest)
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds in ``"90"``, ``"90s"``, ``"10m"``, ``"1.5h"`` or ``"1h30m"``; ``ValueError`` naming the format."""
    parts = re.fullmatch(r"\s*((?:\d+(?:\.\d+)?[hms]?\s*)+)", text or "")
    if parts is None:
        raise ValueError(f"time budget {text!r} is not a duration; write e.g. 90s, 10m, 1h or 1h30m")
    seconds = sum(float(n) * _UNITS[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)([hms]?)", parts.group(1)))
    if seconds <= 0:
        raise ValueError(f"time budget {text!r} must be more than 0 seconds")
    return seconds


@dataclass
class Budget:
    """``seconds`` of wall-clock time from ``start`` (``clock()`` seconds), less a reserve for the end."""

    seconds: float
    start: float = field(default_factory=time.monotonic)
    clock: Callable[[], float] = time.monotonic
    costs: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # family -> (start-up s, s/epoch)
    ensemble: bool = False  # an ensemble is built at the end: the reserve doubles
    longest: float = 0.0  # the longest trial so far, seconds
    epoch_seen: bool = False  # a trial has trained a whole epoch: a trial far slower is stopped once its pace shows
    held: float = 0.0  # seconds left to the steps after the trials (the recheck), before the reserve

    @property
    def reserve(self) -> float:
        """Seconds kept for the end: 2 s plus 3 % of the budget, at most 30 s; twice that for an ensemble."""
        return (2.0 + min(0.03 * self.seconds, 28.0)) * (2 if self.ensemble else 1)

    @property
    def spent(self) -> float:
        return self.clock() - self.start

    def left(self) -> float:
        """Seconds left for trials (before the time held and the reserve)."""
        return self.seconds - self.reserve - self.held - self.spent

    def room(self, family: str, cap: float | None = None) -> float:
        """Seconds a trial of ``family`` starting now may take: the time left, at most MAX_TRIAL_SHARE of the
        budget; a probe (``family`` not timed yet, others timed) at most PROBE_SHARE or twice the longest trial;
        at most ``cap`` (the search's allowance for a losing family) when given."""
        most = MAX_TRIAL_SHARE * self.seconds if cap is None else min(cap, MAX_TRIAL_SHARE * self.seconds)
        if self.costs and family not in self.costs:
            most = min(most, max(PROBE_SHARE * self.seconds, 2 * self.longest))
        return min(self.left(), most)

    def trial_deadline(self, family: str, cap: float | None = None) -> float:
        """The ``clock()`` time a trial of ``family`` starting now must end by."""
        return self.clock() + self.room(family, cap)

    def record(self, family: str, seconds: float, train_seconds: float, epochs: float) -> None:
        """What a finished trial cost: its start-up (seconds not training) and its seconds per epoch (``epochs``
        may be a fraction: a trial stopped inside its first)."""
        self.longest = max(self.longest, seconds)
        self.epoch_seen = self.epoch_seen or epochs >= 1
        if epochs > 0 and train_seconds > 0:
            self.costs.setdefault(family, []).append((max(seconds - train_seconds, 0.0), train_seconds / epochs))

    def estimate(self, family: str) -> tuple[float, float] | None:
        """(start-up s, s per epoch) of a trial of ``family``: the median of its earlier trials (else of every
        family's, the slowest per epoch); None before any trial finished."""
        seen = self.costs.get(family) or [c for cs in self.costs.values() for c in cs]
        if not seen:
            return None
        startup = statistics.median(c[0] for c in seen)
        per_epoch = statistics.median(c[1] for c in seen) if family in self.costs else max(c[1] for c in seen)
        return startup, per_epoch

    def epochs_that_fit(self, family: str, wanted: int, cap: float | None = None) -> int:
        """How many of ``wanted`` epochs a trial of ``family`` starting now can train (0: it does not fit)."""
        room = self.room(family, cap)
        if room <= 0:
            return 0
        cost = self.estimate(family)
        if cost is None:
            return wanted  # the first trial: its time cap decides
        startup, per_epoch = cost
        return max(0, min(wanted, math.floor((room - startup) / max(per_epoch, 1e-6))))
