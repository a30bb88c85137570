"""``shoal auto``: from a raw file to the best model found within a wall-clock budget.

    DATA ──> inspect (profile + starter config) ──> families that fit the columns ──> Optuna study (TPE, median
    pruning, SQLite in the run folder) ──> trials = child runs ──> leaderboard, PNG, best.yaml ──> test once
    ──> (--latency-budget-ms) compress the winner

Everything is registered: the auto run (kind ``auto``) holds the settings as its config, the leaderboard, the
budget spent, the seeds and the winner's metrics and bundle; each trial is a training run whose parent is the auto
run. Trials validate on the trainer's held-out rows (or ``valid``); the ``test`` file is read once, at the end, for
the winner. Ctrl-C stops the trial in flight, keeps the best so far and records the auto run ``killed``;
:func:`resume` continues the same study with a new budget::

    import shoal.auto
    result = shoal.auto.auto(shoal.auto.AutoSettings(data="clicks.csv", label="clicked", budget_s=600))
    print(result.best.value, result.best_config)        # the validation metric, best.yaml
"""

from __future__ import annotations

import logging
import math
import os
import random
import shutil
import statistics
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import optuna
from optuna.trial import TrialState

from shoal.artifacts.registry import Registry, RunKind, RunRecord, RunStatus
from shoal.auto.budget import Budget
from shoal.auto.files import STARTER_FILE, file_spec, prepare, profile_data, search_config, test_report
from shoal.auto.report import TrialRow, best_yaml, family_bests, leaderboard, progress_png, rows_of
from shoal.auto.space import STARTER, DataShape, Draw, Space, check_families, families
from shoal.auto.trial import Metric, TrialOutcome, run_trial
from shoal.config import DataConfig, FileSpec, load_config, parse_config
from shoal.data.readers import check_file
from shoal.training.callbacks import Callbacks
from shoal.training.checkpoints import BEST_FILE, CHECKPOINT_FILE
from shoal.training.runs import fit_run

__all__ = ["METRICS", "AutoResult", "AutoSettings", "SearchView", "auto", "resume"]

log = logging.getLogger(__name__)

METRICS = {"auc": True, "ne": False, "accuracy": True, "macro_f1": True, "rmse": False, "mae": False, "r2": True,
           "nmse": False, "micro_f1": True, "mean_auc": True, "mean_task_score": True,
           "mean_ne": False}  # name -> maximize
BINARY_METRICS = ("auc", "ne", "accuracy")
MULTICLASS_METRICS = ("accuracy", "macro_f1", "ne")
REGRESSION_METRICS = ("rmse", "mae", "r2", "nmse")
MULTILABEL_METRICS = ("micro_f1", "macro_f1", "mean_auc", "ne")
MULTITASK_METRICS = ("mean_task_score", "mean_ne")
STUDY = "auto"
STUDY_FILE = "optuna.db"
FAILURES_IN_A_ROW = 3  # then the search stops: something is wrong beyond one bad draw
#: a family whose trials took this share of the budget, none better than the starter (and not the leading family),
#: is drawn no more: a slow family that keeps losing (a byte CNN on a large text set) no longer eats the search
RETIRE_SHARE = 0.2
SKIPS_IN_A_ROW = 30  # drawn trials that did not fit the time left, in a row: the search is over (a safety stop;
# it ends once every family still to draw was drawn and did not fit, see _nothing_fits)
PRUNE_AFTER = 2  # validations a trial makes before the median pruner may stop it
KEEP_BUNDLES = 5  # the best trials, and each family's best, keep their bundles; the others' are removed (their
# configs stay): the ensemble's candidates (shoal.auto.ensemble)
ENSEMBLE_MAX = 5  # --ensemble K: at most this many distinct trials


@dataclass(frozen=True)
class AutoSettings:
    """What ``shoal auto`` was asked: stored as the auto run's config, read back by :func:`resume`."""

    data: Path
    label: str | None = None
    valid: Path | None = None
    test: Path | None = None
    budget_s: float = 600.0
    metric: str | None = None  # None: auc (binary), accuracy (multiclass), rmse (regression), micro_f1 (tags)
    seed: int = 0
    latency_budget_ms: float | None = None
    families: tuple[str, ...] | None = None  # None: every family that fits the columns
    max_trials: int | None = None  # None: as many as the budget allows
    ensemble: int = 0  # >= 2: report the mean of the best trials' probabilities (shoal.auto.ensemble)
    header: bool | None = None  # whether DATA's first line names its columns (CSV/TSV); None: guessed
    label_kind: str | None = None  # binary, multiclass, regression or multilabel; None: as inspect guesses
    refit: bool = True  # train the kept config again on every row of DATA (shoal.auto.refit)
    recheck: bool = True  # on few validation rows, the leaders trained again on fresh splits (shoal.auto.recheck)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AutoSettings:
        paths = {k: Path(d[k]) if d.get(k) is not None else None for k in ("data", "valid", "test")}
        fams = tuple(d["families"]) if d.get("families") is not None else None
        return cls(**{**d, **paths, "families": fams})


class SearchView(Protocol):
    """What a search tells a display (the command line's live view). Subclass it to inherit hooks that do
    nothing, or give any object these methods (``on_retire`` may be left out)."""

    def on_begin(self, run_id: str, families: list[str], budget_s: float, metric: Metric) -> None:
        return None

    def on_trial(self, number: int, family: str, params: dict[str, Any]) -> Callbacks | None:
        """A trial starts; returns the training callbacks to follow it with (None: none)."""
        return None

    def on_trial_end(self, row: TrialRow, best: TrialRow | None, spent_s: float) -> None:
        return None

    def on_phase(self, text: str) -> None:
        """The search moves on to ``text`` (the winner's test evaluation, compress, ...)."""
        return None

    def on_retire(self, family: str, why: str) -> None:
        """``family`` is drawn no more (see RETIRE_SHARE)."""
        return None


class _Quiet(SearchView):
    """No display."""


@dataclass
class AutoResult:
    """A finished (or interrupted) search."""

    record: RunRecord  # the auto run
    metric: Metric
    best: TrialRow | None
    leaderboard: list[TrialRow]
    best_config: Path | None  # best.yaml
    png: Path | None
    spent_s: float  # this session's wall-clock time, compress excluded
    interrupted: bool = False
    test_metrics: dict[str, Any] = field(default_factory=dict)
    compress: Any = None  # a shoal.compress CompressResult, with --latency-budget-ms


def _nothing_fits(families: Sequence[str], too_slow: set[str], study: optuna.Study) -> bool:
    """True when every family that can still be drawn had no time for one epoch (the starter, once run, is not
    drawn again)."""
    left = {f for f in families if not (f == STARTER and _ran_starter(study))}
    return left <= too_slow


def auto(settings: AutoSettings, home: str | Path = "shoal-runs", view: SearchView | None = None,
         enqueue: Sequence[dict[str, Any]] = (), started: float | None = None) -> AutoResult:
    """Search ``settings.data`` for the best model within ``settings.budget_s`` seconds (see the module doc).

    ``enqueue`` adds trials with fixed parameters (``{"family": "mlp", "mlp.lr": 0.01, ...}``; the rest drawn)
    after each family's default trial. ``started``: the ``time.monotonic()`` the budget counts from (default: now;
    the command line gives its process's start, :func:`shoal.cli.common.command_started`).
    """
    settings = _absolute(settings)
    if not settings.budget_s > 0:
        raise ValueError(f"the time budget must be more than 0 seconds, not {settings.budget_s!r}")
    if settings.metric is not None and settings.metric not in METRICS:
        raise ValueError(f"unknown metric {settings.metric!r}; choose from {', '.join(METRICS)}")
    if settings.ensemble and not 2 <= settings.ensemble <= ENSEMBLE_MAX:
        raise ValueError(f"--ensemble takes 2 to {ENSEMBLE_MAX} trials, not {settings.ensemble}")
    for f in (settings.data, settings.valid, settings.test):  # a missing or empty file: refused, no run left behind
        if f is not None:
            check_file(f)
    budget = _budget(settings, started)  # the profile is part of the search's time
    # profiled once, before the run exists: a wrong --label or a --metric of another kind leaves no run behind
    profile = profile_data(settings.data, settings.label, header=settings.header, label_kind=settings.label_kind)
    kinds = {c.kind for c in profile.columns}
    check_families(settings.families, "text" in kinds, bool(kinds & {"dense", "sparse"}))
    kind = profile.label_kind
    metric = _metric(settings.metric, kind == "multiclass", kind == "regression", kind == "multilabel",
                     kind == "multitask")
    registry = Registry(Path(home))
    record = registry.create_run(f"{settings.data.stem}-auto", settings.to_dict(), kind=RunKind.AUTO)
    with registry.recording(record.run_id):
        base, shape = prepare(profile, settings.valid, record.artifact_dir)
        if settings.test is not None:
            file_spec(settings.test, base.data)  # a test file that cannot be read fails now, not after the budget
        fams = families(shape, base, settings.budget_s, settings.families)
        state = {"metric": metric.name, "direction": metric.direction, "families": fams, "seed": settings.seed,
                 "shape": asdict(shape), "study": str(record.artifact_dir / STUDY_FILE), "sessions": [],
                 "spent_s": 0.0}
        registry.update(record.run_id, summary={"auto": state})
        space = Space(base, shape, fams, settings.seed)
        study, seed = _study(record.artifact_dir, metric, settings.seed, len(fams))
        for params in [*space.defaults(), *enqueue]:
            study.enqueue_trial(params)
    return _search(registry, registry.get(record.run_id), settings, space, (study, seed), metric, budget, view,
                   state)


def resume(ref: str, home: str | Path = "shoal-runs", budget_s: float | None = None,
           view: SearchView | None = None, started: float | None = None) -> AutoResult:
    """Continue the search of auto run ``ref`` (id, prefix or ``latest``) with ``budget_s`` more seconds (default:
    its budget), from its Optuna study: the trials so far inform the sampler, and the leaderboard keeps them.
    ``started``: as :func:`auto`'s."""
    registry = Registry(Path(home))
    record = registry.get(ref)
    if record.kind != RunKind.AUTO:
        raise ValueError(f"run {record.run_id} is a {record.kind} run, not a `shoal auto` search; resume it with "
                         f"`shoal train --resume {record.run_id}`")
    settings = AutoSettings.from_dict(record.config)
    if budget_s is not None:
        settings = replace(settings, budget_s=budget_s)
    budget = _budget(settings, started)
    state = dict(record.summary.get("auto") or {})  # type: ignore[call-overload]
    starter = record.artifact_dir / STARTER_FILE
    if not starter.is_file() or "shape" not in state:
        raise ValueError(f"auto run {record.run_id} stopped before its data was profiled; nothing to resume "
                         f"(start again: shoal auto {settings.data} --label ...)")
    record = registry.update(record.run_id, status=RunStatus.RUNNING)
    with registry.recording(record.run_id):
        base = search_config(load_config(starter), settings.valid)
        shape = DataShape(**{**state["shape"], "dense": tuple(state["shape"]["dense"]),
                             "skewed": tuple(state["shape"]["skewed"]),
                             "cardinality": {k: tuple(v) for k, v in state["shape"]["cardinality"].items()}})
        metric = Metric(state["metric"], METRICS[state["metric"]])
        space = Space(base, shape, state["families"], settings.seed)
        study, seed = _study(record.artifact_dir, metric, settings.seed, len(state["families"]))
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)  # left by a killed process
    return _search(registry, record, settings, space, (study, seed), metric, budget, view, state)


# -- the steps ------------------------------------------------------------------------------------------------------
def _budget(settings: AutoSettings, started: float | None) -> Budget:
    """The session's budget, from ``started`` (a ``time.monotonic()`` value) or now."""
    return Budget(settings.budget_s, start=time.monotonic() if started is None else started,
                  ensemble=settings.ensemble >= 2)


def _absolute(s: AutoSettings) -> AutoSettings:
    def a(p: Path | None) -> Path | None:
        return None if p is None else Path(p).expanduser().resolve()

    return replace(s, data=Path(s.data).expanduser().resolve(), valid=a(s.valid), test=a(s.test),
                   families=tuple(s.families) if s.families is not None else None)


def _metric(name: str | None, multiclass: bool, regression: bool = False, multilabel: bool = False,
            multitask: bool = False) -> Metric:
    kind = ("multitask" if multitask else "regression" if regression else "multilabel" if multilabel
            else "multiclass" if multiclass else "binary")
    allowed = {"regression": REGRESSION_METRICS, "multiclass": MULTICLASS_METRICS, "binary": BINARY_METRICS,
               "multilabel": MULTILABEL_METRICS, "multitask": MULTITASK_METRICS}[kind]
    name = name or allowed[0]  # auc, accuracy, rmse, micro_f1 or mean_task_score
    if name not in allowed:
        hint = "; macro_f1 is for classes (label.kind: multiclass) and tags" if name == "macro_f1" else ""
        raise ValueError(f"metric {name!r} does not apply to a {kind} label; choose from {', '.join(allowed)}{hint}")
    return Metric(name, METRICS[name])


def _study(folder: Path, metric: Metric, seed: int, families: int) -> tuple[optuna.Study, int]:
    """The run's Optuna study in ``folder/optuna.db``, created or loaded to go on, and its sampler's seed: the
    search's seed plus the trials so far, so a resumed search does not draw its first trials' points again."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(f"sqlite:///{folder / STUDY_FILE}")
    done = _trials_in(storage)
    with warnings.catch_warnings():  # group=True (conditional spaces: one group per family) is "experimental"
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.TPESampler(seed=seed + done, multivariate=True, group=True,
                                             n_startup_trials=max(5, families + 2))
    pruner = optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=PRUNE_AFTER)
    study = optuna.create_study(storage=storage, study_name=STUDY, sampler=sampler, pruner=pruner,
                                direction="maximize" if metric.maximize else "minimize", load_if_exists=True)
    return study, seed + done


def _trials_in(storage: optuna.storages.BaseStorage) -> int:
    """Trials already in the stored study (0 for a new one)."""
    try:
        trials = storage.get_all_trials(storage.get_study_id_from_name(STUDY), deepcopy=False)
        return sum(t.state.is_finished() for t in trials)
    except KeyError:
        return 0


def _search(registry: Registry, record: RunRecord, settings: AutoSettings, space: Space,
            seeded: tuple[optuna.Study, int], metric: Metric, budget: Budget, view: SearchView | None,
            state: dict[str, Any]) -> AutoResult:
    """Run trials until the budget (or ``max_trials``) is spent or Ctrl-C, then report (:func:`_finish`)."""
    view = view or _Quiet()
    study, seed = seeded
    before = float(state.get("spent_s", 0.0))
    session = {"budget_s": settings.budget_s, "sampler_seed": seed, "trials": 0, "started_at": time.time()}
    state["sessions"] = [*state.get("sessions", []), session]
    view.on_begin(record.run_id, space.families, settings.budget_s, metric)
    interrupted = False
    trial: optuna.Trial | None = None
    failures = skips = 0
    too_slow: set[str] = set()  # families drawn since the last trial ran that had no time for one epoch
    rows = rows_of(study)  # the trials that ran (a skipped draw adds none): read again after each trial
    retired = _retired(rows, settings.budget_s, metric)  # family -> why it is drawn no more
    redraws = random.Random(seed)  # the family of the trial after a skipped draw
    split: tuple[int, int] | None = None  # a trial's training and validation rows, once known (the recheck's)
    holds = settings.recheck and settings.latency_budget_ms is None and _joins(space.base.data)  # read once
    try:
        with registry.recording(record.run_id):
            while budget.left() > 0 and (settings.max_trials is None or session["trials"] < settings.max_trials):
                trial = study.ask()
                cfg = space.config(Draw(trial))
                family = trial.params["family"]
                if family == STARTER and _ran_starter(study):  # drawn again: the same config, nothing to learn
                    # PRUNED, not FAIL: TPE ignores failed trials, so it drew the starter again and again (2,533
                    # draws, a fifth of one 10-minute search); pruned ones count against it
                    trial.set_user_attr("skipped", "the starter config already ran")
                    study.tell(trial, state=TrialState.PRUNED)
                    _redraw(study, space.families, {STARTER} | too_slow | set(retired), redraws)
                    trial = None
                    continue
                if family in retired:  # as the starter drawn again: PRUNED, so TPE learns to leave it
                    trial.set_user_attr("skipped", f"family {family} retired: {retired[family]}")
                    study.tell(trial, state=TrialState.PRUNED)
                    trial, skips = None, skips + 1
                    if skips >= SKIPS_IN_A_ROW or _nothing_fits(space.families, too_slow | set(retired), study):
                        break
                    _redraw(study, space.families, {STARTER} | too_slow | set(retired), redraws)
                    continue
                # a losing family's trial may take what is left of its allowance (a fifth of the budget in all)
                allowance = _allowance(rows, family, settings.budget_s, metric)
                epochs = budget.epochs_that_fit(family, cfg.train.epochs, allowance)
                if epochs < 1:  # this family does not fit; a cheaper one may (a slow first trial must not end it)
                    trial.set_user_attr("skipped", "no time left for one epoch")
                    study.tell(trial, state=TrialState.FAIL)
                    trial, skips = None, skips + 1
                    too_slow.add(family)
                    if skips >= SKIPS_IN_A_ROW or _nothing_fits(space.families, too_slow | set(retired), study):
                        break
                    _redraw(study, space.families, too_slow | set(retired)
                            | ({STARTER} if _ran_starter(study) else set()), redraws)
                    continue
                skips = 0
                too_slow.clear()
                if epochs < cfg.train.epochs:
                    trial.set_user_attr("epochs_cut_to", epochs)
                cfg = cfg.model_copy(update={"name": f"{record.name}-t{trial.number:03d}-{family}",
                                             "train": cfg.train.model_copy(update={  # trials draw and log nothing
                                                 "epochs": epochs, "pictures": False, "tensorboard": False})})
                deadline = budget.trial_deadline(family, allowance)
                outcome = run_trial(registry, record.run_id, trial, cfg, metric, deadline,
                                    view.on_trial(trial.number, family, dict(trial.params)),
                                    stop_slow=budget.epoch_seen)
                _tell(study, trial, family, outcome, before + budget.spent)
                budget.record(family, outcome.seconds, outcome.train_seconds, outcome.passes or outcome.epochs)
                session["trials"] += 1
                number, trial = trial.number, None
                failures = failures + 1 if outcome.state == "failed" else 0
                rows = rows_of(study)
                best = _best(rows, metric)
                if holds:
                    split = split or _recheck_rows(registry, rows, space.base.data)
                    budget.held = _hold(rows, settings.budget_s, split, metric) if split else 0.0
                _tidy(registry, rows, number, metric)
                for fam, why in _retired(rows, settings.budget_s, metric).items():
                    if fam not in retired:
                        retired[fam] = why
                        if hasattr(view, "on_retire"):  # a view of the four older methods has none
                            view.on_retire(fam, why)
                        log.info("family %s retired: %s", fam, why)
                state["retired"] = dict(retired)
                state["spent_s"] = before + budget.spent
                registry.update(record.run_id, summary={"auto": {**state, "trials": _counts(rows),
                                                                 "best": best.to_dict() if best else None}})
                row = next((r for r in rows if r.number == number), None)
                if row is not None:
                    view.on_trial_end(row, best, budget.spent)
                if failures >= FAILURES_IN_A_ROW:
                    log.warning("%d trials failed in a row; stopping the search (the last: %s)", failures,
                                outcome.error)
                    break
    except KeyboardInterrupt:
        interrupted = True
        if trial is not None:  # the trial in flight: its run is already recorded killed
            trial.set_user_attr("state", "interrupted")
            trial.set_user_attr("family", trial.params.get("family", "?"))
            trial.set_user_attr("elapsed_s", before + budget.spent)
            study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
    return _finish(registry, record, settings, study, metric, budget, view, state, before, interrupted)


@dataclass(frozen=True)
class Losing:
    """A family none of whose trials has beaten the reference (the starter, else the best trial) so far."""

    spent: float  # seconds its trials took
    trials: int
    best: float | None  # its best validation (a complete trial's, or a stopped one's last)
    reference: float
    against: str  # "starter" or "best trial"

    def why(self, metric: str) -> str:
        shown = "none" if self.best is None else f"{self.best:.4f}"
        return (f"{self.spent:.0f} s in {self.trials} trials, its best valid {metric} {shown} no better than the "
                f"{self.against}'s {self.reference:.4f}")


def _losing(rows: list[TrialRow], metric: Metric) -> dict[str, Losing]:
    """The families (not the starter) whose best validation is no better than the starter's (without a starter
    trial, the best complete trial's), except the family with the best value: one is always left to search."""
    def best_of(values: list[float]) -> float | None:
        return (max if metric.maximize else min)(values) if values else None

    bests = {f: best_of([r.value for r in rows if r.family == f and r.value is not None])
             for f in {r.family for r in rows if r.family != STARTER}}
    ranked = [b for b in bests.values() if b is not None]
    leader = best_of(ranked)
    starter = [r.value for r in rows if r.family == STARTER and r.state == "complete" and r.value is not None]
    reference = starter[0] if starter else best_of([r.value for r in rows if r.state == "complete"
                                                    and r.value is not None])
    if reference is None:
        return {}
    return {f: Losing(sum(r.seconds for r in rows if r.family == f), sum(1 for r in rows if r.family == f), best,
                      reference, "starter" if starter else "best trial")
            for f, best in bests.items()
            if not (best is not None and (best == leader or metric.better(best, reference)))}


def _retired(rows: list[TrialRow], budget_s: float, metric: Metric) -> dict[str, str]:
    """The families to draw no more, each with why: losing (:func:`_losing`) after their trials took RETIRE_SHARE
    of ``budget_s`` or more."""
    return {f: lost.why(metric.name) for f, lost in _losing(rows, metric).items()
            if lost.spent >= RETIRE_SHARE * budget_s}


def _allowance(rows: list[TrialRow], family: str, budget_s: float, metric: Metric) -> float | None:
    """Seconds a trial of ``family`` may take before its family would be retired: what is left of RETIRE_SHARE of
    ``budget_s`` while it is losing; None (no cap) otherwise."""
    lost = _losing(rows, metric).get(family)
    return None if lost is None else max(RETIRE_SHARE * budget_s - lost.spent, 0.0)


def _redraw(study: optuna.Study, families: Sequence[str], exclude: set[str], rng: random.Random) -> None:
    """After a draw that was skipped, the next trial's family at random among those that can run (the sampler
    draws its other parameters), so a sampler that favours a family that cannot run does not spin on it."""
    left = [f for f in families if f not in exclude]
    if left:
        study.enqueue_trial({"family": rng.choice(left)})


def _ran_starter(study: optuna.Study) -> bool:
    """Whether a trial of the starter config finished (complete, pruned or failed by itself) in this study."""
    return any(t.user_attrs.get("family") == STARTER and "skipped" not in t.user_attrs
               for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED,
                                                                 TrialState.FAIL)))


def _tell(study: optuna.Study, trial: optuna.Trial, family: str, outcome: TrialOutcome, elapsed: float) -> None:
    """Record how a trial ended in the study: its attributes, then its state and value."""
    for key, value in (("family", family), ("run_id", outcome.run_id), ("state", outcome.state),
                       ("seconds", round(outcome.seconds, 3)), ("train_seconds", round(outcome.train_seconds, 3)),
                       ("elapsed_s", round(elapsed, 3)),
                       ("epochs", outcome.epochs)):
        trial.set_user_attr(key, value)
    if outcome.error:
        trial.set_user_attr("error", outcome.error[:500])
    if outcome.cut:
        trial.set_user_attr("cut", True)
    if outcome.state == "complete" and outcome.value is not None:
        study.tell(trial, outcome.value)
    elif outcome.state in ("pruned", "timeout"):
        study.tell(trial, state=TrialState.PRUNED)
    else:
        study.tell(trial, state=TrialState.FAIL)


def _best(rows: list[TrialRow], metric: Metric) -> TrialRow | None:
    board = leaderboard(rows, metric.maximize)
    return board[0] if board and board[0].state == "complete" else None


def _tidy(registry: Registry, rows: list[TrialRow], number: int, metric: Metric) -> None:
    """Free the disk a finished trial no longer needs: its checkpoint and best-weights files (trials are never
    resumed), and the bundles this trial displaced, or its own: a trial keeps its bundle while it is among the
    :data:`KEEP_BUNDLES` best or the best of its family (diverse candidates for the ensemble). The starter trial
    keeps its bundle: the winner is chosen against it at the end (:mod:`.select`)."""
    board = [r for r in leaderboard(rows, metric.maximize) if r.state == "complete" and r.family != STARTER]
    this = next((r for r in rows if r.number == number), None)
    if this is None or this.run_id is None:
        return
    folder = registry.get(this.run_id).artifact_dir
    for name in (CHECKPOINT_FILE, BEST_FILE):
        (folder / name).unlink(missing_ok=True)
    keep = {r.number for r in board[:KEEP_BUNDLES]} | family_bests(board)
    family = [r for r in board if r.family == this.family]
    # what this trial can have displaced: the one pushed out of the best few, its family's best before it, itself
    maybe = ([board[KEEP_BUNDLES]] if len(board) > KEEP_BUNDLES else []) + family[1:2] + [this]
    for dropped in maybe:
        if dropped.number in keep or dropped.run_id is None or dropped.state != "complete" or dropped.family == STARTER:
            continue
        record = registry.get(dropped.run_id)
        if (record.artifact_dir / "bundle").exists():
            shutil.rmtree(record.artifact_dir / "bundle")
            registry.update(record.run_id, summary={"bundle": None, "bundle_removed": (
                f"neither among the {KEEP_BUNDLES} best trials of its search nor its family's best; train its config "
                "again to rebuild it")})


def _counts(rows: list[TrialRow]) -> dict[str, int]:
    counts = {"total": len(rows)}
    for r in rows:
        counts[r.state] = counts.get(r.state, 0) + 1
    return counts


def _finish(registry: Registry, record: RunRecord, settings: AutoSettings, study: optuna.Study, metric: Metric,
            budget: Budget, view: SearchView, state: dict[str, Any], before: float, interrupted: bool) -> AutoResult:
    """The report: leaderboard, PNG, best.yaml, the winner's bundle and test metrics; then (outside the budget)
    compress the winner when a latency budget was given."""
    folder = record.artifact_dir
    with registry.recording(record.run_id):
        rows = rows_of(study)
        board = leaderboard(rows, metric.maximize)
        best = _best(rows, metric)
        if best is not None:  # after Ctrl-C too: the model kept is the one the rule keeps
            best = _select(registry, board, metric, settings, view, state) or best
        png = progress_png(rows, metric.name, metric.maximize, folder / "auto.png",
                           f"{record.name}: validation {metric.name} by trial") if rows else None
        metrics: dict[str, Any] = {}
        test: dict[str, Any] = {}
        config_path = None
        if best is not None and best.run_id is not None:
            winner = registry.get(best.run_id)
            final = winner  # the model kept: the trial's, or its refit on every row
            state.pop("refit", None)  # a resumed search's earlier refit: this session refits again, or says why not
            state.pop("recheck", None)
            if settings.recheck and not interrupted and settings.latency_budget_ms is None:
                left = 1.1 * settings.budget_s - before - budget.spent - budget.reserve  # the reserve kept
                best = _recheck(registry, record, board, best, winner, metric, left, view, state) or best
                if budget.held and "recheck" in state:  # what the trials left it, beyond the budget's 10 %
                    state["recheck"]["held_s"] = round(budget.held, 3)
                winner = final = registry.get(str(best.run_id))
            if settings.refit and not interrupted and settings.latency_budget_ms is None:
                left = 1.1 * settings.budget_s - before - budget.spent  # the budget and its 10 %
                final = _refit(registry, record, best, winner, left, view, state) or winner
            winner_data = parse_config(final.config, source=f"run {final.run_id}").data
            test_spec = file_spec(settings.test, winner_data) if settings.test is not None else None
            config_path = best_yaml(final.config, folder / "best.yaml", test_spec, refit=final is not winner)
            _link_bundle(final.artifact_dir / "bundle", folder / "bundle")
            metrics = {k: v for k, v in winner.metrics.items() if k.startswith("valid_")}
            if settings.test is not None:
                what = "its refit" if final is not winner else "the winner"
                view.on_phase(f"test: {what} (trial {best.number}) on {settings.test.name}, read once")
                assert test_spec is not None
                test = test_report(final.run_id, test_spec, winner_data, registry.home)
                metrics.update({f"test_{k}": v for k, v in test.items() if not k.startswith("bad_")})
                state["test"] = {"file": str(settings.test), "run_id": final.run_id, **test}
            if settings.ensemble >= 2 and not interrupted:
                state["ensemble"] = _ensemble(registry, board, settings, metric, winner_data, test_spec, view,
                                             best)
        state["spent_s"] = round(before + budget.spent, 3)
        state["sessions"][-1].update({"spent_s": round(budget.spent, 3), "interrupted": interrupted})
        state.update({"budget_s": sum(s["budget_s"] for s in state["sessions"]), "trials": _counts(rows),
                      "best": best.to_dict() if best else None, "best_config": str(config_path) if config_path
                      else None, "png": str(png) if png else None, "interrupted": interrupted})
        summary: dict[str, Any] = {"auto": state, "leaderboard": [r.to_dict() for r in board]}
        if best is not None:
            summary["bundle"] = str(folder / "bundle")
    if best is None and not interrupted:
        failed = [t.user_attrs.get("error") for t in study.trials if t.user_attrs.get("error")]
        registry.update(record.run_id, status=RunStatus.FAILED, finished=True, summary=summary)
        raise ValueError(f"no trial finished within the {settings.budget_s:g} s budget"
                         + (f" (a trial failed with {failed[-1]})" if failed else "; give a larger --time-budget"))
    status = RunStatus.KILLED if interrupted else RunStatus.COMPLETED
    final = registry.update(record.run_id, status=status, finished=True, metrics=metrics, summary=summary)
    result = AutoResult(final, metric, best, board, config_path, png, budget.spent, interrupted, test)
    if settings.latency_budget_ms is not None and best is not None and not interrupted:
        result.compress = _compress(registry, final, best, settings.latency_budget_ms, view, state)
        result.record = registry.get(final.run_id)
    return result


def _refit(registry: Registry, record: RunRecord, best: TrialRow, winner: RunRecord, left_s: float,
           view: SearchView, state: dict[str, Any]) -> RunRecord | None:
    """The kept trial's config trained on every row (DATA's, and a --valid file's) for its best epochs, as a child
    run of the auto run (:mod:`.refit`); None, with the reason in ``state["refit"]``, where it does not apply,
    would not fit in ``left_s`` seconds or fails (the trial's model then stands)."""
    from shoal.auto.refit import best_epochs, merged_sources, refit_config, refit_seconds

    data = parse_config(winner.config, source=f"run {winner.run_id}").data
    epochs = best_epochs(winner.summary.get("history") or [])
    sources = merged_sources(data) if data.valid is not None else None
    trained, held = winner.summary.get("train_rows"), winner.summary.get("valid_rows")
    share = (data.valid_fraction if data.holds_out else held / (trained + held)
             if isinstance(trained, int) and isinstance(held, int) and trained + held > 0 else 0.0)
    cost = refit_seconds(best.seconds, best.epochs, epochs or 0, share)
    skipped: str | None = None
    if isinstance(sources, str):
        skipped = sources
    elif epochs is None:
        skipped = f"trial {best.number} has no validation to take its epochs from"
    elif cost > left_s:
        skipped = f"it would take about {cost:.0f} s; {max(left_s, 0):.0f} s of the budget (and its 10 %) are left"
    if skipped is not None or epochs is None:
        state["refit"] = {"skipped": skipped}
        view.on_phase(f"refit skipped: {skipped}")
        return None
    cfg = parse_config(refit_config(winner.config, epochs, sources if isinstance(sources, dict) else None),
                       source=f"the refit of run {winner.run_id}")
    rows = "the training and validation files" if sources is not None else "every row of the data"
    view.on_phase(f"refit: trial {best.number}'s config on {rows}, {epochs} epoch{'s' * (epochs > 1)} (its best)")
    child = registry.create_run(cfg.name, cfg.resolved(), kind=RunKind.TRAIN, parent=record.run_id)
    started = time.monotonic()
    try:
        done = fit_run(registry, child, cfg)  # a failure or Ctrl-C is recorded on the child run
    except BaseException as err:  # the trial's model stands; the failure is said beside it
        if not isinstance(err, Exception | KeyboardInterrupt):
            raise
        state["refit"] = {"run_id": child.run_id, "error": "interrupted" if isinstance(err, KeyboardInterrupt)
                          else f"{type(err).__name__}: {err}"}
        return None
    state["refit"] = {"run_id": child.run_id, "trial": best.number, "epochs": epochs,
                      "rows": done.summary.get("train_rows"), "seconds": round(time.monotonic() - started, 3)}
    return registry.update(child.run_id, summary={"auto": {"refit_of": best.number}})


def _joins(data: DataConfig) -> bool:
    """Whether the recheck's splits can see every row: no --valid file, or one read with DATA as one list."""
    from shoal.auto.refit import merged_sources

    return data.valid is None or not isinstance(merged_sources(data), str)


def _recheck_rows(registry: Registry, rows: list[TrialRow], data: DataConfig) -> tuple[int, int] | None:
    """The training and validation rows of a trial (the same in every trial), where the recheck could run: None
    where no complete trial says them yet or a --valid file cannot join DATA (:func:`_joins`)."""
    complete = [r for r in rows if r.state == "complete" and r.run_id is not None]
    if not complete or not _joins(data):
        return None
    summary = registry.get(str(complete[0].run_id)).summary
    trained, held = summary.get("train_rows"), summary.get("valid_rows")
    return (trained, held) if isinstance(trained, int) and isinstance(held, int) else None


def _hold(rows: list[TrialRow], budget_s: float, split: tuple[int, int], metric: Metric) -> float:
    """The seconds the trials leave to the recheck (:func:`shoal.auto.recheck.hold_seconds`): the times of its
    likely leaders (the best complete trial so far, the starter, which the selection rule may keep, then the next
    best) on ``split`` (a trial's training and validation rows, :func:`_recheck_rows`)."""
    from shoal.auto.recheck import LEADERS, hold_seconds, retrain_seconds

    complete = [r for r in rows if r.state == "complete" and r.value is not None]
    top = leaderboard(complete, metric.maximize)[:LEADERS]
    starter = [r for r in complete if r.family == STARTER and r not in top[:1]]  # the rule may keep it
    likely = top[:1] + starter + [r for r in top[1:] if r not in starter]
    cost = retrain_seconds(complete)
    return hold_seconds(budget_s, [cost[r.number] for r in likely], *split)


def _recheck(registry: Registry, record: RunRecord, board: list[TrialRow], kept: TrialRow, winner: RunRecord,
             metric: Metric, left_s: float, view: SearchView, state: dict[str, Any]) -> TrialRow | None:
    """On few validation rows, the leading trials trained again on fresh splits of every row (:mod:`.recheck`),
    as child runs of the auto run; the leader with the best mean, or None (the kept trial stands) where it does not
    apply or nothing would fit, with the reason in ``state["recheck"]``."""
    from shoal.auto.recheck import (
        FRACTION,
        RECHECK_ROWS,
        SPLITS,
        leaders,
        recheck_config,
        rechecked,
        retrain_seconds,
        split_seconds,
    )
    from shoal.auto.refit import merged_sources

    trained, held = winner.summary.get("train_rows"), winner.summary.get("valid_rows")
    if not isinstance(trained, int) or not isinstance(held, int) or not 0 < held < RECHECK_ROWS or trained <= 0:
        return None  # enough validation rows to choose by (or none known)
    data = parse_config(winner.config, source=f"run {winner.run_id}").data
    merged = merged_sources(data) if data.valid is not None else None
    if isinstance(merged, str):  # the splits would not see the validation file's rows
        state["recheck"] = {"skipped": merged}
        view.on_phase(f"recheck skipped: {merged}")
        return None
    sources = merged
    total = trained + held
    noise = (state.get("selection") or {}).get("standard_error")
    usable = {r.number for r in board if r.state == "complete" and r.run_id is not None
              and (registry.get(r.run_id).artifact_dir / "bundle").exists()}
    rows = leaders(board, kept, metric, noise, usable)
    retrain = retrain_seconds(board)  # a trial's time with the median start-up (the first trial's holds the search's)
    guess = {r.number: split_seconds(retrain[r.number], trained, held) for r in rows}  # one training on a split
    room = left_s - retrain[kept.number] * total / trained  # what the refit will want after it
    fit: list[TrialRow] = []
    cost = 0.0  # the estimated seconds of the leaders taken
    for row in rows:
        if cost + SPLITS * guess[row.number] > room:
            break
        fit.append(row)
        cost += SPLITS * guess[row.number]
    one_split = sum(guess[r.number] for r in rows[:2])
    if len(rows) >= 2 and len(fit) < 2 and one_split <= room:
        fit = rows[:2]  # the first two on the splits the clock allows: one fresh split still tells luck from skill
    if len(rows) < 2 or len(fit) < 2:
        state["recheck"] = {"skipped": "no other trial is within the validation rows' noise of the kept one"
                            if len(rows) < 2 else f"rechecking the two leaders on one split would take about "
                            f"{one_split:.0f} s; {max(room, 0):.0f} s of the budget (and its 10 %) are left beside "
                            "the refit"}
        view.on_phase(f"recheck skipped: {state['recheck']['skipped']}")
        return None
    every = sum(SPLITS * guess[r.number] for r in fit) <= room
    view.on_phase(f"recheck: {held:,} validation rows; trials {', '.join(str(r.number) for r in fit)} on "
                  f"{'' if every else 'up to '}{SPLITS} fresh splits of {total:,} rows ({FRACTION:.0%} held out "
                  "each)")
    started = time.monotonic()
    deadline = started + room
    scores: dict[int, list[float]] = {r.number: [] for r in fit}
    losses: dict[int, list[float]] = {r.number: [] for r in fit}  # a tie of the metric goes to the lower loss
    splits, pace = 0, 1.0  # the splits every leader finished; the slowest measured / estimated time so far
    try:
        for split in range(1, SPLITS + 1):  # split by split: a recheck stopped by the clock is still paired
            for row in fit:
                if time.monotonic() + guess[row.number] * pace > deadline:
                    raise TimeoutError
                config = registry.get(str(row.run_id)).config
                cfg = parse_config(recheck_config(config, split, sources), source=f"the recheck of trial {row.number}")
                child = registry.create_run(cfg.name, cfg.resolved(), kind=RunKind.TRAIN, parent=record.run_id)
                begun = time.monotonic()
                done = fit_run(registry, child, cfg)
                pace = max(pace, (time.monotonic() - begun) / max(guess[row.number], 1e-3))
                value = done.metrics.get(f"valid_{metric.name}")
                scores[row.number].append(float(value) if isinstance(value, int | float) else math.nan)
                losses[row.number].append(_valid_loss(done.metrics))
                if (done.artifact_dir / "bundle").exists():
                    shutil.rmtree(done.artifact_dir / "bundle")
                registry.update(done.run_id, summary={"bundle": None, "auto": {"recheck_of": row.number},
                                                      "bundle_removed": "a recheck: its validation score is its use"})
            splits = split
    except TimeoutError:
        log.info("recheck: stopped by the budget after %d split(s)", splits)
    except KeyboardInterrupt:
        state["recheck"] = {"error": "interrupted"}
        return None
    except Exception as err:  # noqa: BLE001 - the kept trial stands; the failure is said beside it
        state["recheck"] = {"error": f"{type(err).__name__}: {err}"}
        view.on_phase(f"recheck failed ({type(err).__name__}: {err}): trial {kept.number} is kept")
        return None
    # the splits every leader finished, and only the leaders that scored on each of them
    scores = {n: v[:splits] for n, v in scores.items() if splits and all(math.isfinite(x) for x in v[:splits])}
    if splits == 0 or kept.number not in scores:
        state["recheck"] = {"skipped": f"the budget ran out before the leaders finished a split "
                            f"({time.monotonic() - started:.0f} s)"}
        view.on_phase(f"recheck stopped: {state['recheck']['skipped']}")
        return None
    chosen = rechecked(scores, [r.number for r in fit], metric, {n: v[:splits] for n, v in losses.items()})
    row = next(r for r in fit if r.number == chosen)
    state["recheck"] = {
        "valid_rows": held, "rows": total, "splits": splits, "fraction": FRACTION, "chosen": chosen,
        "seconds": round(time.monotonic() - started, 3),
        "trials": [{"trial": r.number, "family": r.family, "valid": r.value, "scores": scores.get(r.number, []),
                    "losses": losses[r.number][:splits] if r.number in scores else [],
                    "mean": statistics.fmean(scores[r.number]) if scores.get(r.number) else None} for r in fit]}
    log.info("recheck: %s", state["recheck"])
    return row


def _valid_loss(metrics: dict[str, Any]) -> float:
    """A run's validation loss (:func:`shoal.training.evaluation.selection_loss`), NaN without one."""
    from shoal.training.evaluation import selection_loss

    try:
        return selection_loss({k.removeprefix("valid_"): v for k, v in metrics.items() if k.startswith("valid_")})
    except KeyError:
        return math.nan


def _select(registry: Registry, board: list[TrialRow], metric: Metric, settings: AutoSettings,
            view: SearchView, state: dict[str, Any]) -> TrialRow | None:
    """The trial to keep (:mod:`.select`): the best on validation unless the starter is within its noise."""
    from shoal.auto.select import choose

    first = board[0]
    if first.family == STARTER or not any(r.family == STARTER and r.state == "complete" for r in board):
        return first
    view.on_phase(f"selection: trial {first.number} against the starter config on the validation rows")
    data = parse_config(registry.get(str(first.run_id)).config, source=f"run {first.run_id}").data
    valid = file_spec(settings.valid, data) if settings.valid is not None else None
    choice = choose(registry, board, metric, valid, data, settings.seed)
    if choice is None:
        return None
    state["selection"] = choice.details
    log.info("selection: %s", choice.details["reason"])
    return choice.row


def _ensemble(registry: Registry, board: list[TrialRow], settings: AutoSettings, metric: Metric,
              data: DataConfig, test: Path | FileSpec | None, view: SearchView, best: TrialRow) -> dict[str, Any]:
    """The ensemble of at most ``settings.ensemble`` trials that forward selection picks on the validation rows,
    scored beside the winner (:mod:`.ensemble`), and the command that distils it into one model; ``{"error": ...}``
    when it cannot be built."""
    from shoal.auto.ensemble import ensemble_candidates, ensemble_report

    candidates = ensemble_candidates(registry, board, settings.ensemble)
    if len(candidates) < 2:
        return {"error": f"only {len(candidates)} complete trial(s) with a bundle read the winner's rows; an "
                         "ensemble needs 2"}
    view.on_phase(f"ensemble: forward selection of up to {settings.ensemble} of {len(candidates)} trials")
    valid = file_spec(settings.valid, data) if settings.valid is not None else None
    try:
        out = ensemble_report(registry, candidates, valid, test, metric.name, metric.maximize, settings.ensemble)
    except ValueError as err:
        return {"candidates": candidates, "error": str(err)}
    if "members" in out:
        student = parse_config(registry.get(str(best.run_id)).config, source="the winner").model.name
        out["distill"] = f"shoal distill {' '.join(out['members'])} --student {student}"
    return out


def _link_bundle(source: Path, target: Path) -> None:
    """The winner's bundle in the auto run's folder (hard links where the file system allows), so every command
    that takes a run (serve, predict, export, eval) takes the auto run too."""
    if target.exists():
        shutil.rmtree(target)

    def link(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(source, target, copy_function=link)


def _compress(registry: Registry, record: RunRecord, best: TrialRow, budget_ms: float, view: SearchView,
              state: dict[str, Any]) -> Any:
    """``shoal compress`` on the winner; its result goes to the auto run's summary (``auto.compress``)."""
    from shoal.compress import compress

    assert best.run_id is not None
    view.on_phase(f"compress the winner to p99 <= {budget_ms:g} ms per row")
    started = time.monotonic()
    try:
        result = compress(best.run_id, budget_ms, registry.home)
    except Exception as err:  # the search's report and winner stand; the failure is said beside them
        log.debug("compress of the winner %s failed", best.run_id, exc_info=True)
        state["compress"] = {"budget_ms": budget_ms, "seconds": round(time.monotonic() - started, 3),
                             "error": str(err) or type(err).__name__}
        registry.update(record.run_id, summary={"auto": state})
        return None
    chosen = result.chosen
    state["compress"] = {"run_id": result.record.run_id, "budget_ms": budget_ms,
                         "seconds": round(time.monotonic() - started, 3),
                         "chosen": None if chosen is None else {"name": chosen.name, "p99_ms": chosen.p99_ms,
                                                                f"valid_{chosen.metric}": chosen.quality},
                         "nearest_p99_ms": result.nearest.p99_ms}
    registry.update(record.run_id, summary={"auto": state})
    return result
