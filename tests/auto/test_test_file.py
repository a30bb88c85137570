"""The test file's bad rows: left out of the test metrics, counted by reason, the first named by file, line, column
and value (a regression label missing in some test rows, as a flights log's cancelled flights)."""

from __future__ import annotations

import random
from pathlib import Path

from typer.testing import CliRunner

from shoal.auto import AutoSettings, auto
from shoal.cli.main import app


def _numbers(path: Path, rows: int, bad: tuple[str, ...] = ()) -> Path:
    rng = random.Random(len(path.name))
    lines = ["x,z,y"] + [f"{x:.3f},{rng.gauss(0, 1):.3f},{3 * x + rng.gauss(0, 0.1):.3f}"
                         for x in (rng.uniform(0, 2) for _ in range(rows))]
    path.write_text("\n".join([*lines, *bad]) + "\n", encoding="utf-8")
    return path


def test_the_test_files_bad_rows_are_counted_by_reason_and_the_first_named(tmp_path: Path) -> None:
    train = _numbers(tmp_path / "train.csv", 400)
    test = _numbers(tmp_path / "test.csv", 100, ("1.0,0.5,", "0.5,0.1,", "0.2,0.3,abc"))
    result = auto(AutoSettings(data=train, label="y", test=test, budget_s=30, families=("logistic",), max_trials=2,
                               refit=False, recheck=False), tmp_path / "home")
    tested = result.record.summary["auto"]["test"]
    assert tested["bad_rows"] == 3 and tested["rows"] == 100
    assert tested["bad_reasons"] == {"missing label (regression)": 2, "invalid label": 1}
    assert tested["bad_example"].startswith(f"{test}, line 102, column 'y'")
    assert not any(k.startswith("test_bad") for k in result.record.metrics)

    out = CliRunner().invoke(app, ["auto", str(train), "--label", "y", "--test", str(test), "--time-budget", "6s",
                                   "--family", "logistic", "--no-recheck", "--home", str(tmp_path / "cli")])
    said = " ".join(out.output.split())
    assert out.exit_code == 0, out.output
    assert ("3 rows of the test file could not be read (missing label (regression): 2, invalid label: 1) and are "
            "left out of the test metrics; the first: ") in said
    assert f"{test},line102,column'y':missinglabel(regression)" in "".join(out.output.split())  # paths may wrap
