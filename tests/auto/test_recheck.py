"""``shoal auto``'s recheck (its default on few validation rows): the leading trials trained again on fresh splits
of every row, the best mean kept; where it does not apply or fit, the trial chosen on validation stands."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from shoal.artifacts.registry import Registry, RunKind
from shoal.auto import AutoSettings, auto
from shoal.auto import recheck as rc
from shoal.auto.budget import Budget
from shoal.auto.recheck import (
    FRACTION,
    LEADERS,
    SPLITS,
    hold_seconds,
    leaders,
    recheck_config,
    rechecked,
    retrain_seconds,
)
from shoal.auto.report import TrialRow
from shoal.auto.space import STARTER
from shoal.auto.trial import Metric
from shoal.cli.main import app
from tests.auto.conftest import click_log

AUC = Metric("auc", True)


def _row(number: int, value: float | None, family: str = "mlp", state: str = "complete", **params: Any) -> TrialRow:
    return TrialRow(number, family, state, value, 1.0, float(number), f"r{number}", 2, params or {"lr": number})


def test_leaders_are_the_kept_trial_then_the_best_distinct_ones_within_the_noise() -> None:
    board = [_row(5, 0.80), _row(6, 0.799, lr=5), _row(2, 0.79, state="pruned"), _row(3, 0.78), _row(4, 0.77),
             _row(1, 0.70), _row(0, 0.79, family="starter")]
    board = sorted(board, key=lambda r: -(r.value or 0))
    usable = {r.number for r in board}
    # other families first (the starter); trial 6 has trial 5's settings (a repeat draw): one of them is enough;
    # a pruned trial is not a leader
    assert [r.number for r in leaders(board, board[0], AUC, None, usable)] == [5, 0, 3, 4]
    mixed = [_row(1, 0.80), _row(2, 0.799), _row(3, 0.798), _row(4, 0.797, family="dlrm"), _row(5, 0.70, "logistic")]
    assert [r.number for r in leaders(mixed, mixed[0], AUC, 0.01, {1, 2, 3, 4, 5})] == [1, 4, 2, 3]
    assert len(leaders(board, board[0], AUC, None, usable)) == LEADERS
    # within two standard errors of the best only (0.80 - 2 * 0.006 = 0.788): the starter, not trial 3
    assert [r.number for r in leaders(board, board[0], AUC, 0.006, usable)] == [5, 0]
    # the kept trial comes first even when it is not the best (the selection kept the starter)
    starter = next(r for r in board if r.family == "starter")
    assert [r.number for r in leaders(board, starter, AUC, None, usable)][:2] == [0, 5]
    assert [r.number for r in leaders(board, board[0], AUC, None, {5, 4})] == [5, 4]  # bundles kept only
    loss = Metric("ne", False)  # lower is better: the noise bound measures from the lowest
    low = [_row(1, 0.50), _row(2, 0.51), _row(3, 0.60)]
    assert [r.number for r in leaders(low, low[0], loss, 0.01, {1, 2, 3})] == [1, 2]


def test_recheck_config_holds_out_a_fresh_split() -> None:
    config = {"name": "c-auto-t3-mlp", "data": {"train": "a.csv", "valid": "b.csv", "valid_fraction": 0.1},
              "train": {"epochs": 9, "seed": 4, "pictures": True}}
    out = recheck_config(config, 2, {"train": ["a.csv", "b.csv"]})
    assert out["name"] == "c-auto-t3-mlp-recheck2" and out["train"] == {"epochs": 9, "seed": 6, "pictures": False}
    assert out["data"] == {"train": ["a.csv", "b.csv"], "valid": None, "valid_fraction": FRACTION}
    assert config["train"]["seed"] == 4 and config["data"]["valid"] == "b.csv"  # a copy
    alone = recheck_config({**config, "data": {"train": "a.csv", "valid": None, "valid_fraction": 0.1}}, 1)
    assert alone["data"] == {"train": "a.csv", "valid": None, "valid_fraction": FRACTION}  # held out of DATA


def test_rechecked_keeps_the_best_mean_and_the_earlier_on_a_tie() -> None:
    assert rechecked({5: [0.70, 0.72, 0.71], 3: [0.73, 0.72, 0.74]}, [5, 3], AUC) == 3
    assert rechecked({5: [0.72, 0.70], 3: [0.70, 0.72]}, [5, 3], AUC) == 5  # a tie: the kept trial
    assert rechecked({5: [0.52], 3: [0.50]}, [5, 3], Metric("ne", False)) == 3
    assert rechecked({5: [0.70], 3: []}, [5, 3], AUC) == 5  # a leader whose trainings failed drops out
    accuracy = Metric("accuracy", True)  # a tie of a few dozen rows' accuracy goes to the lower log loss
    assert rechecked({5: [1.0, 1.0], 3: [1.0, 1.0]}, [5, 3], accuracy, {5: [0.30, 0.20], 3: [0.10, 0.20]}) == 3
    assert rechecked({5: [1.0, 1.0], 3: [1.0, 0.9]}, [5, 3], accuracy, {5: [0.30, 0.20], 3: [0.10, 0.20]}) == 5
    assert rechecked({5: [1.0], 3: [1.0]}, [5, 3], accuracy, {5: [float("nan")], 3: [0.1]}) == 3


def test_a_trial_retrains_in_its_training_time_and_the_median_start_up() -> None:
    first = TrialRow(0, "starter", "complete", 0.7, 3.2, 3.2, "r0", 6, {}, train_seconds=0.4)  # the search's start-up
    later = [TrialRow(n, "mlp", "complete", 0.7, 0.5 + n / 10, 9.0, f"r{n}", 4, {}, train_seconds=0.2 + n / 10)
             for n in (1, 2, 3)]
    old = TrialRow(4, "mlp", "complete", 0.7, 0.9, 9.0, "r4", 4, {})  # recorded before train_seconds was
    pruned = TrialRow(5, "mlp", "pruned", 0.6, 0.1, 9.0, "r5", 1, {}, train_seconds=0.05)
    cost = retrain_seconds([first, *later, old, pruned])
    assert cost == pytest.approx({0: 0.4 + 0.3, 1: 0.6, 2: 0.7, 3: 0.8, 4: 0.9})  # median start-up 0.3 s
    assert retrain_seconds([old]) == {4: 0.9}


def test_the_trials_leave_the_recheck_its_time_on_few_validation_rows() -> None:
    # 900 training rows, 100 validation rows; leaders of 1, 1 and 3 s: 3 splits of 800 rows each, a refit of 1,000
    need = SPLITS * 5.0 * 1000 * (1 - FRACTION) / 900 + 3.0 * 1000 / 900
    assert hold_seconds(120, [1.0, 1.0, 3.0], 900, 100) == pytest.approx(rc.HOLD_MARGIN * need - 12.0)  # less 10 %
    assert hold_seconds(60, [1.5, 1.5, 1.0], 900, 100) == rc.HOLD_SHARE * 60  # at most a fifth of the budget
    assert hold_seconds(60, [10.0, 10.0], 900, 100) == 0.0  # two leaders would not fit in it: no time is held
    # the first two fit on one split, not on three: what one split of theirs and the refit need is held
    one = 2 * 3.0 * 1000 * (1 - FRACTION) / 900 + 3.0 * 1000 / 900
    assert hold_seconds(60, [3.0, 3.0, 3.0], 900, 100) == pytest.approx(rc.HOLD_MARGIN * one - 6.0)
    assert hold_seconds(60, [0.5, 0.5, 10.0], 900, 100) == rc.HOLD_SHARE * 60  # the first two fit: held
    assert hold_seconds(600, [1.0, 1.0], 900, 100) == 0.0  # the budget's 10 % pays for it
    assert hold_seconds(60, [1.0], 90_000, rc.RECHECK_ROWS) == 0.0  # enough validation rows: no recheck
    assert hold_seconds(60, [], 900, 100) == 0.0  # no trial's time known yet
    budget = Budget(60, start=0.0, clock=lambda: 10.0)  # 10 s spent
    assert budget.left() == pytest.approx(60 - budget.reserve - 10)
    budget.held = 12.0
    assert budget.left() == pytest.approx(60 - budget.reserve - 12 - 10)  # trials stop 12 s sooner


@pytest.fixture(scope="module")
def clicks(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A training file of 1,600 rows, a validation file of 400 (few: the recheck applies) and a test file."""
    import pyarrow.parquet as pq

    folder = tmp_path_factory.mktemp("clicks")
    train, test = click_log(folder, rows=2500, train_rows=2000, dense=3, max_cardinality=300)
    table = pq.read_table(train)
    pq.write_table(table.slice(0, 1600), folder / "fit.parquet")
    pq.write_table(table.slice(1600), folder / "valid.parquet")
    return folder / "fit.parquet", folder / "valid.parquet", test


@pytest.fixture(scope="module")
def searched(clicks: tuple[Path, Path, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    """One search over the 400-row validation file, with the recheck and the refit, and its registry."""
    train, valid, test = clicks
    home = tmp_path_factory.mktemp("home")
    return auto(AutoSettings(data=train, label="label", valid=valid, test=test, budget_s=40, seed=2,
                             families=("logistic",), max_trials=4), home), home


def test_the_leaders_are_rechecked_and_the_refit_trains_the_one_kept(searched: tuple[Any, Path]) -> None:
    result, home = searched
    state = result.record.summary["auto"]
    recheck = state["recheck"]
    assert recheck["valid_rows"] == 400 and recheck["rows"] == 2000 and recheck["splits"] == SPLITS
    assert len(recheck["trials"]) >= 2 and all(len(t["scores"]) == SPLITS for t in recheck["trials"])
    means = {t["trial"]: t["mean"] for t in recheck["trials"]}
    assert recheck["chosen"] == max(means, key=lambda n: means[n]) == result.best.number
    registry = Registry(home)
    runs = [r for r in registry.list(limit=200) if "-recheck" in r.config.get("name", "")]
    assert len(runs) == SPLITS * len(recheck["trials"])
    for run in runs:  # child runs of the search, each on its own split of every row, their bundles removed
        assert run.parent == result.record.run_id and run.kind == RunKind.TRAIN
        assert run.summary["train_rows"] + run.summary["valid_rows"] == 2000
        assert not (run.artifact_dir / "bundle").exists() and run.summary["auto"]["recheck_of"] in means
    assert len({r.config["train"]["seed"] for r in runs}) == SPLITS
    assert state["refit"]["trial"] == recheck["chosen"]  # the refit trains the trial the recheck kept
    assert recheck.get("held_s", 0.0) <= rc.HOLD_SHARE * 40
    assert all(len(t["losses"]) == SPLITS for t in recheck["trials"])
    shown = CliRunner().invoke(app, ["show", result.record.run_id, "--home", str(home)])
    flat = " ".join(shown.output.split())
    assert f"recheck (400 validation rows): mean auc on {SPLITS} fresh splits of 2,000 rows" in flat
    assert f"-> trial {recheck['chosen']}" in flat


def test_the_time_held_is_the_likely_leaders_retrained(searched: tuple[Any, Path]) -> None:
    """The search holds what its best trials (and the starter) would take to recheck and refit, from the rows of
    its trials; nothing where a --valid file cannot join DATA."""
    import optuna

    from shoal.auto.report import leaderboard, rows_of
    from shoal.auto.search import _hold, _recheck_rows
    from shoal.config import parse_config

    result, home = searched
    registry = Registry(home)
    rows = rows_of(optuna.load_study(study_name=None,
                                     storage=f"sqlite:///{result.record.artifact_dir / 'optuna.db'}"))
    complete = [r for r in rows if r.state == "complete"]
    assert complete and all(r.train_seconds is not None and r.train_seconds <= r.seconds for r in complete)
    data = parse_config(registry.get(str(complete[0].run_id)).config, source="test").data
    cost = retrain_seconds(complete)
    top = leaderboard(complete, True)[:LEADERS]
    starter = [r for r in complete if r.family == STARTER and r not in top[:1]]
    likely = [cost[r.number] for r in top[:1] + starter + [r for r in top[1:] if r not in starter]]
    # a budget where the first two fit in the most held (a fifth) and the 10 % does not pay for all of them
    two = likely[:2]
    some = 5 * rc.HOLD_MARGIN * (SPLITS * sum(two) * 2000 * (1 - FRACTION) / 1600 + max(two) * 2000 / 1600)
    split = _recheck_rows(registry, rows, data)
    assert split == (1600, 400)
    for budget_s in (4.0, some, 1000.0):
        assert _hold(rows, budget_s, split, AUC) == pytest.approx(hold_seconds(budget_s, likely, 1600, 400))
    assert _hold(rows, some, split, AUC) > 0
    apart = type(data).model_validate({**data.model_dump(mode="json"),
                                       "valid": {"path": str(data.valid), "delimiter": ";"}})
    assert _recheck_rows(registry, rows, apart) is None  # read otherwise: no recheck, nothing held


def test_a_recheck_past_the_budget_or_on_many_rows_is_not_done(searched: tuple[Any, Path],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import optuna

    from shoal.auto.report import leaderboard, rows_of
    from shoal.auto.search import SearchView, _recheck

    class Quiet(SearchView):
        pass

    result, home = searched
    registry = Registry(home)
    study = optuna.load_study(study_name=None, storage=f"sqlite:///{result.record.artifact_dir / 'optuna.db'}")
    board = leaderboard(rows_of(study), True)
    kept = next(r for r in board if r.number == result.record.summary["auto"]["recheck"]["trials"][0]["trial"])
    winner = registry.get(str(kept.run_id))
    runs = len(registry.list(limit=1000))
    state: dict[str, Any] = {}
    assert _recheck(registry, result.record, board, kept, winner, AUC, 0.0, Quiet(), state) is None
    assert "of the budget (and its 10 %) are left beside the refit" in state["recheck"]["skipped"]
    # a validation file read otherwise than DATA: the splits could not see its rows
    import dataclasses

    config = {**winner.config, "data": {**winner.config["data"], "valid": {"path": winner.config["data"]["valid"],
                                                                          "delimiter": ";"}}}
    state = {}
    assert _recheck(registry, result.record, board, kept, dataclasses.replace(winner, config=config), AUC, 1e6,
                    Quiet(), state) is None
    assert state["recheck"]["skipped"] == ("the validation file is read with its own delimiter: it cannot join the "
                                           "training rows")
    monkeypatch.setattr("shoal.auto.recheck.RECHECK_ROWS", 400)  # 400 validation rows are now enough
    state = {}
    assert _recheck(registry, result.record, board, kept, winner, AUC, 1e6, Quiet(), state) is None
    assert state == {} and len(registry.list(limit=1000)) == runs  # nothing trained, nothing said


def test_two_leaders_that_fit_one_split_are_rechecked_on_the_splits_the_clock_allows(
        searched: tuple[Any, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """Time for one split of the first two leaders, not for all of them: they are rechecked on as many splits as
    the clock allows (a 3-minute search held 36 s for a recheck its end found 7 s short of 3 splits, and skipped)."""
    import optuna

    from shoal.auto.report import leaderboard, rows_of
    from shoal.auto.search import SearchView, _recheck

    phases: list[str] = []

    class Said(SearchView):
        def on_phase(self, text: str) -> None:
            phases.append(text)

    result, home = searched
    registry = Registry(home)
    study = optuna.load_study(study_name=None, storage=f"sqlite:///{result.record.artifact_dir / 'optuna.db'}")
    board = leaderboard(rows_of(study), True)
    kept = next(r for r in board if r.number == result.record.summary["auto"]["recheck"]["trials"][0]["trial"])
    monkeypatch.setattr("shoal.auto.recheck.SPLITS", 50)  # 50 splits of two leaders: far more than 8 s
    state: dict[str, Any] = {}
    started = time.monotonic()
    _recheck(registry, result.record, board, kept, registry.get(str(kept.run_id)), AUC, 8.0, Said(), state)
    assert time.monotonic() - started < 8.0 + 5.0
    recheck = state["recheck"]
    assert len(recheck["trials"]) == 2 and 1 <= recheck["splits"] < 50, recheck
    assert any("on up to 50 fresh splits" in p for p in phases), phases


def test_no_recheck_when_asked(clicks: tuple[Path, Path, Path], tmp_path: Path) -> None:
    train, valid, _ = clicks
    out = CliRunner().invoke(app, ["auto", str(train), "--label", "label", "--valid", str(valid), "--time-budget",
                                   "6s", "--family", "logistic", "--no-recheck", "--home", str(tmp_path)])
    assert out.exit_code == 0, out.output
    assert "recheck (" not in out.output and "recheck skipped" not in out.output
    run = next(r for r in Registry(tmp_path).list(limit=100) if r.kind == RunKind.AUTO)
    assert "recheck" not in run.summary["auto"] and run.config["recheck"] is False
    assert not any("-recheck" in r.config.get("name", "") for r in Registry(tmp_path).list(limit=100))


def test_the_flags_in_the_guides_examples_are_the_commands() -> None:
    """Every option docs/auto.md's first example block gives `shoal auto` is one the command takes."""
    import re

    doc = (Path(__file__).resolve().parents[2] / "docs" / "auto.md").read_text(encoding="utf-8")
    block = doc.split("```", 2)[1]
    shown = {flag for line in block.splitlines() if line.startswith("shoal auto")
             for flag in re.findall(r"(?<=\s)--[a-z][a-z-]*", line.split("#")[0])}
    help_text = " ".join(CliRunner().invoke(app, ["auto", "--help"], terminal_width=200).output.split())
    assert {"--no-recheck", "--no-refit", "--valid"} <= shown
    assert not [f for f in shown if f not in help_text], shown
