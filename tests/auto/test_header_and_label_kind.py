"""``shoal auto --header/--no-header`` and ``--label-kind``: passed to the profile of DATA, recorded in the starter
config and the auto run's settings; a wrong one refused before a run exists."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from shoal.artifacts.registry import Registry
from shoal.auto import AutoSettings, auto
from shoal.auto.files import STARTER_FILE
from shoal.cli.main import app


def _colors(path: Path) -> Path:
    """A header that reads as data: its names are also values of their columns."""
    rng = random.Random(0)
    lines = ["red,small,yes"]
    for _ in range(300):
        color, size = rng.choice(["red", "blue"]), rng.choice(["small", "large"])
        label = "yes" if (color == "red") != (rng.random() < 0.2) else "no"
        lines.append(f"{color},{size},{label}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _codes(path: Path, classes: int = 30, rows: int = 900) -> Path:
    """Integer class codes 0..classes-1, guessed a regression (more than 20 integers)."""
    rng = random.Random(1)
    lines = ["f0,f1,label"] + [f"{i % classes + rng.gauss(0, 0.2):.3f},{rng.gauss(0, 1):.3f},{i % classes}"
                               for i in range(rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _refused(tmp_path: Path, data: Path, args: list[str]) -> str:
    """The one-line error of ``shoal auto DATA ARGS``: exit code 2 and no auto run left behind."""
    home = tmp_path / "home"
    out = CliRunner().invoke(app, ["auto", str(data), *args, "--time-budget", "5s", "--home", str(home)])
    assert out.exit_code == 2, out.output
    assert Registry(home).list() == [] and not any((home / "runs").iterdir())
    return " ".join(out.output.split())


def test_a_label_not_found_in_a_file_read_as_headerless_says_to_pass_header(tmp_path: Path) -> None:
    data = _colors(tmp_path / "colors.csv")
    said = _refused(tmp_path, data, ["--label", "yes"])
    assert (f"error: label column 'yes' not found in {data}: its first line was read as data (no header "
            "detected), so its columns are c0..c2; pass --header if the first line names the columns") in said


def test_header_is_passed_to_the_profile_and_recorded(tmp_path: Path) -> None:
    data = _colors(tmp_path / "colors.csv")
    result = auto(AutoSettings(data=data, label="yes", header=True, budget_s=60, families=("logistic",),
                               max_trials=1), tmp_path / "home")
    starter = yaml.safe_load((result.record.artifact_dir / STARTER_FILE).read_text(encoding="utf-8"))
    assert starter["data"]["header"] is True and starter["label"]["column"] == "yes"
    assert result.record.config["header"] is True and result.metric.name == "auc"


@pytest.mark.parametrize(("args", "message"), [
    (["--label", "label", "--label-kind", "binary"], "label column 'label' has 30 distinct values; --label-kind "
                                                     "binary needs exactly 2 values"),
    (["--label", "label", "--label-kind", "multiclass", "--metric", "rmse"], "metric 'rmse' does not apply to a "
                                                                             "multiclass label"),
    (["--label", "label", "--label-kind", "tags"], "unknown label kind 'tags'; choose from binary, multiclass, "
                                                   "regression, multilabel"),
], ids=["binary-on-30-values", "rmse-on-classes", "unknown-kind"])
def test_a_label_kind_the_values_do_not_allow_is_refused_before_a_run_exists(tmp_path: Path, args: list[str],
                                                                            message: str) -> None:
    said = _refused(tmp_path, _codes(tmp_path / "codes.csv"), args)
    assert f"error: {message}" in said


def test_label_kind_multiclass_searches_integer_codes_as_classes(tmp_path: Path) -> None:
    data = _codes(tmp_path / "codes.csv")
    result = auto(AutoSettings(data=data, label="label", label_kind="multiclass", budget_s=60,
                               families=("logistic",), max_trials=1), tmp_path / "home")
    assert result.metric.name == "accuracy" and result.record.config["label_kind"] == "multiclass"
    starter = yaml.safe_load((result.record.artifact_dir / STARTER_FILE).read_text(encoding="utf-8"))
    assert starter["label"]["kind"] == "multiclass" and starter["label"]["classes"] == [str(k) for k in range(30)]
    assert result.best is not None
