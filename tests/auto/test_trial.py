"""A search trial at its deadline: cut like early stopping once training has begun (validated once if it had not
been, best weights kept, the trial complete); discarded as ``timeout`` while still in its first pass."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import optuna
import pytest

from shoal.artifacts.registry import Registry, RunKind, RunStatus
from shoal.auto.files import prepare, profile_data
from shoal.auto.trial import Metric, run_trial
from shoal.data.synthetic import SynthSpec, generate
from shoal.training.callbacks import Callbacks


class Clock:
    """A clock that jumps past every deadline once ``late_after`` validations have been seen."""

    def __init__(self, late_after: int) -> None:
        self.now, self.late_after, self.evals = 0.0, late_after, 0

    def __call__(self) -> float:
        return self.now


class Watch(Callbacks):
    def __init__(self, clock: Clock) -> None:
        self.clock, self.aucs, self.losses = clock, [], []

    def on_eval(self, epoch: int, step: int, metrics: dict[str, float]) -> None:
        self.aucs.append(metrics["auc"])
        self.losses.append(metrics["logloss"])
        if len(self.aucs) >= self.clock.late_after:
            self.clock.now = 1e9


@pytest.fixture(scope="module")
def cfg(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201 - a RunConfig
    folder = tmp_path_factory.mktemp("cut")
    generate(folder / "train.parquet", SynthSpec(rows=2000, dense=3, sparse=4, base_rate=0.25, max_cardinality=300))
    base, _ = prepare(profile_data(folder / "train.parquet", "label"), None, folder)
    return base.model_copy(update={"train": base.train.model_copy(update={
        "epochs": 12, "batch_size": 64, "early_stopping_patience": 100, "pictures": False, "tensorboard": False})})


def _trial(tmp_path: Path, cfg, clock: Clock, view: Callbacks | None = None):  # noqa: ANN001, ANN202
    registry = Registry(tmp_path)
    parent = registry.create_run("search", {}, kind=RunKind.AUTO)
    study = optuna.create_study(direction="maximize")
    outcome = run_trial(registry, parent.run_id, study.ask(), cfg, Metric("auc", True), deadline=100.0,
                        view=view, clock=clock)
    return outcome, registry.get(outcome.run_id)


def test_a_validated_trial_at_its_deadline_completes_with_its_best_weights(tmp_path: Path, cfg) -> None:  # noqa: ANN001
    clock = Clock(late_after=3)
    watch = Watch(clock)
    outcome, run = _trial(tmp_path, cfg, clock, watch)
    assert outcome.state == "complete" and outcome.cut
    assert len(watch.aucs) == 3 and outcome.epochs == 3  # stopped in the fourth epoch, long before the twelfth
    assert outcome.passes == pytest.approx(run.summary["rows_trained"] / run.summary["train_rows"])
    assert 3 < outcome.passes < 4  # the time was spent on three epochs and a part of the fourth
    kept = int(np.argmin(watch.losses))  # the weights of the validation with the lowest loss, as training keeps
    assert outcome.value == pytest.approx(watch.aucs[kept], abs=1e-9)
    assert run.status == RunStatus.COMPLETED and run.summary["auto"]["cut"] is True
    assert "reached its share of the time budget after 3 validations" in run.summary["stopped_by"]
    assert (run.artifact_dir / "bundle" / "bundle.json").is_file()


class Steps(Callbacks):
    """Jumps the clock past the deadline after ``n`` training steps (in the first epoch: nothing validated yet)."""

    def __init__(self, clock: Clock, n: int) -> None:
        self.clock, self.n, self.aucs = clock, n, []

    def on_step(self, rows: int, loss: float, rows_per_s: float) -> None:
        self.n -= 1
        if self.n == 0:
            self.clock.now = 1e9

    def on_eval(self, epoch: int, step: int, metrics: dict[str, float]) -> None:
        self.aucs.append(metrics["auc"])


def test_a_trial_cut_in_its_first_epoch_is_validated_once_and_completes(tmp_path: Path, cfg) -> None:  # noqa: ANN001
    clock = Clock(late_after=10**6)
    watch = Steps(clock, 5)
    outcome, run = _trial(tmp_path, cfg, clock, watch)
    assert outcome.state == "complete" and outcome.cut and outcome.epochs == 0
    assert len(watch.aucs) == 1 and outcome.value == pytest.approx(watch.aucs[0], abs=1e-9)
    assert run.summary["steps"] == 5 and run.summary["auto"]["cut"] is True
    # what the budget prices the family by: five steps of 64 rows are this share of an epoch, not none
    assert outcome.passes == pytest.approx(5 * 64 / run.summary["train_rows"])


def test_a_trial_still_in_its_first_pass_at_its_deadline_is_a_timeout(tmp_path: Path, cfg) -> None:  # noqa: ANN001
    clock = Clock(late_after=0)
    clock.now = 1e9
    outcome, run = _trial(tmp_path, cfg, clock)
    assert outcome.state == "timeout" and not outcome.cut and outcome.value is None
    assert run.status == RunStatus.KILLED and run.summary["auto"]["stopped"] == "timeout"


class Pace(Callbacks):
    """Moves the clock ``seconds`` on at every training step."""

    def __init__(self, clock: Clock, seconds: float) -> None:
        self.clock, self.seconds, self.steps = clock, seconds, 0

    def on_step(self, rows: int, loss: float, rows_per_s: float) -> None:
        self.steps += 1
        self.clock.now += self.seconds


def _paced(tmp_path: Path, cfg, seconds: float, stop_slow: bool):  # noqa: ANN001, ANN202
    clock, registry = Clock(late_after=10**6), Registry(tmp_path)
    pace = Pace(clock, seconds)
    parent = registry.create_run("search", {}, kind=RunKind.AUTO)
    outcome = run_trial(registry, parent.run_id, optuna.create_study(direction="maximize").ask(), cfg,
                        Metric("auc", True), deadline=100.0, view=pace, clock=clock, stop_slow=stop_slow)
    return outcome, registry.get(outcome.run_id), pace


def test_a_trial_whose_first_epoch_cannot_end_by_its_deadline_is_stopped_once_its_pace_shows(
        tmp_path: Path, cfg) -> None:  # noqa: ANN001
    # 10 s a step of 64 rows: the first epoch (about 28 steps) would take about 280 s of the trial's 100
    outcome, run, pace = _paced(tmp_path, cfg, 10.0, stop_slow=True)
    assert outcome.state == "timeout" and outcome.value is None and pace.steps == 1
    assert run.status == RunStatus.KILLED and "its first epoch would take about" in run.summary["auto"]["why"]
    assert 0 < outcome.passes < 0.1  # priced by what it trained: an epoch costs the budget about 280 s
    # without stop_slow (no trial has finished an epoch yet) it trains to its deadline and competes, cut
    outcome, run, pace = _paced(tmp_path / "b", cfg, 10.0, stop_slow=False)
    assert outcome.state == "complete" and outcome.cut and pace.steps == 11  # 110 s: past its deadline
    # a pace that ends the first epoch in time goes on: 1 s a step, about 28 s an epoch
    outcome, run, pace = _paced(tmp_path / "c", cfg, 1.0, stop_slow=True)
    assert outcome.state == "complete" and outcome.epochs >= 3
