"""One trial of the search: a child run trained with a drawn config, reported to Optuna after every validation.

    Trainer ── on_eval(metrics) ──> TrialCallbacks ── trial.report(value, n) ──> pruner: stop? ── TrialPruned
            ── on_step ───────────> TrialCallbacks ── past the trial's deadline? ── stop_requested
            ── on_scan ───────────> TrialCallbacks ── past it in the first pass? ────── TrialTimeout

A trial at its deadline once training has begun ends as early stopping does: validated once more if it had not
been yet, its best weights so far become its bundle and it completes (``auto.cut`` in the registry, ``cut`` on the
leaderboard), so a slow but strong config (a first epoch longer than the trial's share) still competes. A trial
that ends early otherwise is recorded as it ended, never as a crash: ``killed`` in the registry with
``auto.stopped`` = ``pruned``, ``timeout`` (its first pass, before training, ran past the deadline; or, once
another trial has finished an epoch, its first epoch's pace says it would end well past it) or
``interrupted`` (Ctrl-C), and Optuna's trial ``PRUNED`` (its validations so far still inform the sampler) or
``FAIL`` (interrupted, or an error).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import optuna

from shoal.artifacts.registry import Registry, RunKind, RunStatus
from shoal.config import RunConfig
from shoal.training.callbacks import Callbacks
from shoal.training.loop import Trainer

__all__ = ["Metric", "TrialCallbacks", "TrialOutcome", "TrialTimeout", "run_trial"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Metric:
    """The validation metric the search optimizes: its name in the trainer's reports and its direction."""

    name: str  # auc, ne, accuracy or macro_f1
    maximize: bool

    @property
    def direction(self) -> str:
        return "maximize" if self.maximize else "minimize"

    def better(self, a: float, b: float) -> bool:
        return a > b if self.maximize else a < b


MEASURE_S = 3.0  # training seconds before a trial's pace is judged
SLOW_MARGIN = 1.25  # a first epoch projected past this many times the trial's time is stopped


class TrialTimeout(Exception):  # noqa: N818 - a stop signal, like optuna.TrialPruned
    """Raised from a training step when a trial runs past its deadline."""


class TrialCallbacks(Callbacks):
    """Reports each validation to the Optuna trial, prunes, enforces the trial's deadline, and forwards every
    event to ``view`` (the live display's callbacks)."""

    def __init__(self, trial: optuna.Trial, metric: Metric, deadline: float, view: Callbacks | None = None,
                 clock: Callable[[], float] = time.monotonic, stop_slow: bool = False) -> None:
        self.trial = trial
        self.metric = metric
        self.deadline = deadline
        self.stop_slow = stop_slow  # stop a trial whose first epoch cannot end by its deadline (a timeout)
        self.view = view or Callbacks()
        self.clock = clock
        self.evals = 0
        self.last: float | None = None  # the metric at the latest validation
        self.train_started: float | None = None  # clock() when the first pass ended and training began
        self.cut = False  # past the deadline after a validation: training is asked to stop with its best weights
        self.rows_per_epoch = 0
        self.rows = 0  # rows trained so far

    @property
    def passes(self) -> float:
        """Epochs trained so far, a fraction while the first is under way."""
        return self.rows / self.rows_per_epoch if self.rows_per_epoch else 0.0

    def on_scan(self, rows: int) -> None:
        self.view.on_scan(rows)
        self._check_time()

    def on_start(self, rows_per_epoch: int, epochs: int, resumed_rows: int) -> None:
        self.train_started = self.clock()
        self.rows_per_epoch, self.rows = rows_per_epoch, resumed_rows
        self.view.on_start(rows_per_epoch, epochs, resumed_rows)

    def on_step(self, rows: int, loss: float, rows_per_s: float) -> None:
        self.view.on_step(rows, loss, rows_per_s)
        self.rows = rows
        self._check_time()

    def _check_time(self) -> None:
        now = self.clock()
        if now <= self.deadline:
            if self.stop_slow and not self.evals:
                self._check_pace(now)
            return
        if self.train_started is None:  # still in the first pass: nothing trained to keep
            raise TrialTimeout(f"trial {self.trial.number} ran past its share of the time budget before training")
        self.cut = True  # the trainer stops, validating once if it had not yet, and keeps its best weights

    def _check_pace(self, now: float) -> None:
        """Once the first epoch's pace is measured (MEASURE_S, or a twentieth of the trial's time), stop a trial
        whose first epoch would end well past its deadline (SLOW_MARGIN): its time goes to trials that can
        validate. The first pass's rows make the pace; the start-up of the first steps counts against it."""
        if self.train_started is None or not self.rows or not self.rows_per_epoch:
            return
        spent, room = now - self.train_started, self.deadline - self.train_started
        if spent < max(MEASURE_S, room / 20):
            return
        epoch = spent * self.rows_per_epoch / self.rows
        if epoch > SLOW_MARGIN * room:
            raise TrialTimeout(f"trial {self.trial.number}: its first epoch would take about {epoch:.0f} s "
                               f"({self.rows:,} of {self.rows_per_epoch:,} rows in {spent:.1f} s), more than its "
                               f"{room:.0f} s; stopped before it validates")

    def stop_requested(self) -> str | None:
        if not self.cut:
            return None
        return f"trial {self.trial.number} reached its share of the time budget after {self.evals} validations"

    def on_eval(self, epoch: int, step: int, metrics: dict[str, float]) -> None:
        self.view.on_eval(epoch, step, metrics)
        value = metrics.get(self.metric.name)
        self.evals += 1
        if value is None or not math.isfinite(value):
            return
        self.last = float(value)
        self.trial.report(float(value), self.evals)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"trial {self.trial.number}: valid {self.metric.name} {value:.4f} after "
                                     f"{self.evals} validations is worse than the median trial's")

    def on_end(self, stopped_early: bool) -> None:
        self.view.on_end(stopped_early)


@dataclass
class TrialOutcome:
    """How a trial ended: ``complete`` (``value`` is its final validation metric), ``pruned``, ``timeout``,
    ``interrupted`` or ``failed``; its child run and what it cost."""

    state: str
    run_id: str
    value: float | None
    seconds: float
    train_seconds: float = 0.0
    epochs: int = 0
    passes: float = 0.0  # epochs trained, with the fraction of an unfinished one (what the time was spent on)
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    cut: bool = False  # completed at its deadline with the best weights of its validations so far


def run_trial(registry: Registry, parent: str, trial: optuna.Trial, cfg: RunConfig, metric: Metric,
              deadline: float, view: Callbacks | None = None,
              clock: Callable[[], float] = time.monotonic, stop_slow: bool = False) -> TrialOutcome:
    """Train ``cfg`` as a child run of ``parent`` until ``deadline`` (a ``clock()`` time) and say how it ended;
    ``stop_slow``: as a ``timeout`` as soon as its first epoch's pace says it would end well past the deadline.
    KeyboardInterrupt is recorded (the run ``killed``) and re-raised; any other error is recorded (the run
    ``failed``) and returned."""
    record = registry.create_run(cfg.name, cfg.resolved(), kind=RunKind.TRAIN, parent=parent)
    trial.set_user_attr("run_id", record.run_id)
    note = {"trial": trial.number, "params": trial.params}
    registry.update(record.run_id, summary={"auto": note})
    callbacks = TrialCallbacks(trial, metric, deadline, view, clock, stop_slow)
    started = time.monotonic()

    def stopped(state: str, err: BaseException) -> TrialOutcome:
        now = time.monotonic()
        train = now - callbacks.train_started if callbacks.train_started is not None else 0.0
        registry.update(record.run_id, status=RunStatus.KILLED, finished=True,
                        summary={"auto": {**note, "stopped": state, "why": str(err), "evals": callbacks.evals}})
        return TrialOutcome(state, record.run_id, callbacks.last, now - started, train, callbacks.evals,
                            callbacks.passes)

    try:
        result = Trainer(cfg, record.artifact_dir, callbacks).fit()
    except optuna.TrialPruned as err:
        return stopped("pruned", err)
    except TrialTimeout as err:
        return stopped("timeout", err)
    except KeyboardInterrupt as err:
        stopped("interrupted", err)
        raise
    except Exception as err:  # one bad draw (e.g. out of memory) must not end the search
        registry.fail(record.run_id, err)
        log.warning("trial %d failed: %s: %s", trial.number, type(err).__name__, err)
        return TrialOutcome("failed", record.run_id, None, time.monotonic() - started,
                            error=f"{type(err).__name__}: {err}")
    seconds = time.monotonic() - started
    cut = "stopped_by" in result.summary
    summary = {**result.summary, "bundle": str(result.bundle),
               "auto": {**note, "evals": callbacks.evals, **({"cut": True} if cut else {})}}
    registry.complete(record.run_id, result.metrics, summary)
    value = result.metrics.get(f"valid_{metric.name}")
    return TrialOutcome("complete", record.run_id, None if value is None else float(value), seconds,
                        float(result.summary.get("train_seconds", 0.0)), int(result.summary.get("epochs_run", 0)),
                        callbacks.passes, result.metrics, cut=cut)
