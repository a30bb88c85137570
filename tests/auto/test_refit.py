"""``shoal auto``'s refit (its default): the kept trial's config trained again on every row (DATA's, a --valid
file's) for its best epochs; the test file scores that model, best.yaml is its config, and where it does not apply
the trial's model stands."""

from __future__ import annotations

import filecmp
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from shoal import evaluate_file
from shoal.artifacts.registry import Registry, RunKind, RunStatus
from shoal.auto import AutoSettings, auto
from shoal.auto.refit import best_epochs, merged_sources, refit_config, refit_seconds
from shoal.cli.main import app
from tests.auto.conftest import click_log


@pytest.fixture(scope="module")
def clicks(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A training file (2,000 rows: 3 dense counts, 4 sparse ids) and a test file (500 more rows of the same log)."""
    return click_log(tmp_path_factory.mktemp("clicks"), rows=2500, train_rows=2000, dense=3, max_cardinality=300)


def test_best_epochs_is_the_epoch_of_the_lowest_validation_loss() -> None:
    history = [{"epoch": 1, "logloss": 0.5}, {"epoch": 2, "logloss": 0.4}, {"epoch": 3, "logloss": 0.4},
               {"epoch": 4, "logloss": 0.45}]
    assert best_epochs(history) == 2  # a tie keeps the first: the weights kept are the first to reach it
    assert best_epochs([{"epoch": 1, "nmse": 0.9}, {"epoch": 2, "nmse": 0.7}]) == 2  # a number label's loss
    assert best_epochs([{"epoch": 0.4, "logloss": 0.3}, {"epoch": 0.8, "logloss": 0.35}]) == 1  # begun: whole
    assert best_epochs([]) is None and best_epochs([{"step": 10, "logloss": 0.3}]) is None
    assert best_epochs([{"epoch": 1, "auc": 0.7}]) is None  # no loss to tell the kept weights by


def test_refit_config_trains_every_row_for_the_epochs_given() -> None:
    config = {"name": "clicks-auto-t7-mlp", "data": {"train": "a.csv", "valid": None, "valid_fraction": 0.1},
              "train": {"epochs": 20, "seed": 3}}
    out = refit_config(config, 4)
    assert out["data"] == {"train": "a.csv", "valid": None, "valid_fraction": 0.0}
    assert out["train"] == {"epochs": 4, "seed": 3} and out["name"] == "clicks-auto-t7-mlp-refit"
    assert config["data"]["valid_fraction"] == 0.1 and config["train"]["epochs"] == 20  # a copy
    # 12 s for 6 epochs on 90 % of the rows -> 4 epochs on all of them
    assert refit_seconds(12.0, 6, 4, 0.1) == pytest.approx(12.0 * 4 / 6 / 0.9)


@pytest.fixture(scope="module")
def refitted(clicks: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    """One search with --refit (logistic trials, held-out validation rows, a test file) and its registry."""
    train, test = clicks
    home = tmp_path_factory.mktemp("home")
    return auto(AutoSettings(data=train, label="label", test=test, budget_s=12, seed=1, families=("logistic",),
                             max_trials=3, refit=True), home), home


def test_the_refit_is_tested_served_and_written_as_best_yaml(clicks: tuple[Path, Path],
                                                            refitted: tuple[Any, Path]) -> None:
    _, test = clicks
    result, home = refitted
    state = result.record.summary["auto"]
    refit = state["refit"]
    assert result.best is not None and refit["trial"] == result.best.number, refit
    registry = Registry(home)
    run, winner = registry.get(refit["run_id"]), registry.get(str(result.best.run_id))
    assert run.parent == result.record.run_id and run.kind == RunKind.TRAIN and run.status == RunStatus.COMPLETED
    assert run.config["data"]["valid_fraction"] == 0.0 and run.summary["train_rows"] == 2000
    assert refit["epochs"] == best_epochs(winner.summary["history"]) == run.config["train"]["epochs"]
    assert winner.summary["train_rows"] < 2000  # the trial trained without its validation rows
    # the test file scored the refit; the validation metrics stay the trial's (the refit has no validation rows)
    assert state["test"]["run_id"] == run.run_id
    assert result.record.metrics["test_auc"] == pytest.approx(evaluate_file(run.run_id, test, home=home)["auc"])
    assert result.record.metrics["valid_auc"] == pytest.approx(result.best.value)
    # the auto run's bundle (what serve, predict and export take) is the refit's
    bundle = result.record.artifact_dir / "bundle"
    assert filecmp.cmp(bundle / "model.safetensors", run.artifact_dir / "bundle" / "model.safetensors", shallow=False)
    text = result.best_config.read_text()
    assert "every row, for the epochs the search's validation chose" in text
    doc = yaml.safe_load(text)
    assert doc["data"]["valid_fraction"] == 0.0 and doc["train"]["epochs"] == refit["epochs"]
    shown = CliRunner().invoke(app, ["show", result.record.run_id, "--home", str(home)])
    assert f"refit: trial {result.best.number}'s config on every row (2,000)" in " ".join(shown.output.split())


def test_a_refit_past_the_budget_is_skipped(refitted: tuple[Any, Path]) -> None:
    from shoal.auto.search import SearchView, _refit

    class Quiet(SearchView):  # the hooks that do nothing
        pass

    result, home = refitted
    registry = Registry(home)
    state: dict[str, Any] = {}
    runs = len(registry.list(limit=1000))
    kept = _refit(registry, result.record, result.best, registry.get(str(result.best.run_id)), 0.0, Quiet(),
                  state)
    assert kept is None and "of the budget (and its 10 %) are left" in state["refit"]["skipped"]
    assert len(registry.list(limit=1000)) == runs  # nothing trained


def test_the_refit_trains_on_a_validation_file_too(clicks: tuple[Path, Path], tmp_path: Path) -> None:
    """With --valid, the refit trains on DATA and the validation file as one list of sources (refit_full)."""
    train, test = clicks
    table = pq.read_table(train)
    pq.write_table(table.slice(0, 1700), tmp_path / "train.parquet")
    pq.write_table(table.slice(1700), tmp_path / "valid.parquet")
    out = CliRunner().invoke(app, ["auto", str(tmp_path / "train.parquet"), "--label", "label", "--valid",
                                   str(tmp_path / "valid.parquet"), "--test", str(test), "--time-budget", "6s",
                                   "--family", "logistic", "--home", str(tmp_path)])
    assert out.exit_code == 0, out.output
    assert "refit: trial" in out.output and "on every row (2,000)" in " ".join(out.output.split())
    registry = Registry(tmp_path)
    state = next(r for r in registry.list(limit=100) if r.kind == RunKind.AUTO).summary["auto"]
    run = registry.get(state["refit"]["run_id"])
    assert run.summary["train_rows"] == 2000 and run.config["data"]["valid"] is None
    assert run.config["data"]["train"] == [str(tmp_path / "train.parquet"), str(tmp_path / "valid.parquet")]
    assert registry.get(state["best"]["run_id"]).summary["train_rows"] == 1700
    assert state["test"]["run_id"] == run.run_id


def test_a_validation_file_named_otherwise_joins_the_refit(clicks: tuple[Path, Path], tmp_path: Path) -> None:
    """A --valid CSV whose header names the columns otherwise is read by position in the trials and joins the
    refit's rows; best.yaml reads every file under DATA's names and trains again as the refit did."""
    train, test = clicks
    table = pq.read_table(train).to_pandas()
    table.iloc[:1700].to_csv(tmp_path / "train.csv", index=False)
    renamed = table.iloc[1700:].rename(columns={c: f"col{i}" for i, c in enumerate(table.columns)})
    renamed.to_csv(tmp_path / "valid.csv", index=False)
    out = CliRunner().invoke(app, ["auto", str(tmp_path / "train.csv"), "--label", "label", "--valid",
                                   str(tmp_path / "valid.csv"), "--time-budget", "8s", "--family", "logistic",
                                   "--no-recheck", "--home", str(tmp_path)])
    assert out.exit_code == 0, out.output
    registry = Registry(tmp_path)
    state = next(r for r in registry.list(limit=100) if r.kind == RunKind.AUTO).summary["auto"]
    assert "run_id" in state["refit"], state["refit"]
    run = registry.get(state["refit"]["run_id"])
    assert run.summary["train_rows"] == 2000 and run.config["data"]["columns"] == list(table.columns)
    assert run.config["data"]["train"] == [str(tmp_path / "train.csv"), str(tmp_path / "valid.csv")]
    doc = yaml.safe_load(Path(state["best_config"]).read_text())
    assert doc["data"]["columns"] == list(table.columns) and doc["data"]["train"] == run.config["data"]["train"]


def test_a_validation_file_read_otherwise_is_not_joined(tmp_path: Path) -> None:
    """Files that cannot be read as one list of sources keep the trial's model, and say why."""
    from shoal.config import DataConfig

    for name in ("a.csv", "b.csv", "c.parquet"):
        (tmp_path / name).write_text("x,label\n1,0\n")
    same = DataConfig(train=tmp_path / "a.csv", valid=tmp_path / "b.csv")
    assert merged_sources(same) == {"train": [str(tmp_path / "a.csv"), str(tmp_path / "b.csv")]}
    spec = DataConfig(train=tmp_path / "a.csv", valid={"path": str(tmp_path / "b.csv"), "header": False,
                                                       "columns": ["x", "label"]})
    assert merged_sources(spec) == ("the validation file is read with its own columns, header: it cannot join the "
                                    "training rows")
    mixed = DataConfig(train=tmp_path / "a.csv", valid=tmp_path / "c.parquet")
    assert merged_sources(mixed) == "the training and validation files are of different formats (csv, parquet)"
    out = refit_config({"name": "n", "data": {"train": "a.csv", "valid": "b.csv", "valid_fraction": 0.1},
                        "train": {"epochs": 9}}, 2, {"train": ["a.csv", "b.csv"]})
    assert out["data"] == {"train": ["a.csv", "b.csv"], "valid": None, "valid_fraction": 0.0}


def test_a_validation_file_read_by_position_joins_under_datas_names(tmp_path: Path) -> None:
    """A validation file whose header names DATA's columns otherwise (read by position, files.file_spec) joins
    the refit: every file is then read by position under DATA's header names; other names are refused."""
    from shoal.auto.files import file_spec
    from shoal.config import DataConfig

    (tmp_path / "a.tsv").write_text("label\tsentence\n1\tgood\n0\tbad\n")
    (tmp_path / "b.tsv").write_text("label\tcontent\n1\tfine\n")
    data = DataConfig(train=tmp_path / "a.tsv")
    data = data.model_copy(update={"valid": file_spec(tmp_path / "b.tsv", data)})
    merged = merged_sources(data)
    assert merged == {"train": [str(tmp_path / "a.tsv"), str(tmp_path / "b.tsv")], "columns": ["label", "sentence"]}
    other = DataConfig(train=tmp_path / "a.tsv", valid={"path": str(tmp_path / "b.tsv"), "columns": ["label", "text"]})
    assert merged_sources(other) == (
        "the validation file is read with its own columns: it cannot join the training rows")
    out = refit_config({"name": "n", "data": {"train": "a.tsv", "valid": {"path": "b.tsv"}, "valid_fraction": 0.1},
                        "train": {"epochs": 9}}, 2, merged)
    assert out["data"]["columns"] == ["label", "sentence"] and out["data"]["valid"] is None


def test_no_refit_keeps_the_trials_model(clicks: tuple[Path, Path], tmp_path: Path) -> None:
    """--no-refit: the winner is the trial's model, as the search trained it."""
    train, _ = clicks
    out = CliRunner().invoke(app, ["auto", str(train), "--label", "label", "--time-budget", "8s", "--family",
                                   "logistic", "--no-refit", "--home", str(tmp_path)])
    assert out.exit_code == 0, out.output
    flat = " ".join(out.output.split())
    assert "refit:" not in flat and "refit skipped" not in flat
    run = next(r for r in Registry(tmp_path).list(limit=100) if r.kind == RunKind.AUTO)
    assert "refit" not in run.summary["auto"] and run.config["refit"] is False
    assert not any(r.config.get("name", "").endswith("-refit") for r in Registry(tmp_path).list(limit=100))
