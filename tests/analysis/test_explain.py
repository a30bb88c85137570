"""``shoal explain``: permutation importance ranks the feature that carries the signal first, noise near 0."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

import shoal
from shoal.analysis import AnalysisError, explain
from shoal.cli import main as cli
from shoal.config import parse_config
from tests.analysis.conftest import Trained, frame

runner = CliRunner()


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli.console, "_width", 200)


def test_the_signal_ranks_first_and_noise_near_zero(trained: Trained) -> None:
    result = explain(trained.run_id, trained.home, repeats=2)
    by_name = {i.feature: i for i in result.importances}
    assert result.metric == "auc" and result.baseline > 0.9
    assert result.importances[0].feature == "x" and by_name["x"].drop > 0.2
    for name in ("noise", "shop", "note"):
        assert abs(by_name[name].drop) < 0.02, by_name[name]
    assert 300 < result.rows < 600  # the held-out 30% of 1500 rows
    assert result.source.endswith("valid-split.parquet")
    assert result.png == trained.run_dir / "importance.png" and result.png.stat().st_size > 1000
    assert len(by_name["x"].drops) == 2


def test_a_file_is_sampled_to_rows_and_seeded(trained: Trained) -> None:
    a = explain(trained.run_id, trained.home, trained.train, rows=400, repeats=1, seed=3, png=False)
    b = explain(trained.run_id, trained.home, trained.train, rows=400, repeats=1, seed=3, png=False)
    assert a.rows == 400 and a.to_dict() == b.to_dict()
    assert a.importances[0].feature == "x" and a.png is None


def test_cli_prints_the_table_and_writes_png_and_json(trained: Trained, tmp_path: Path) -> None:
    out = tmp_path / "imp.json"
    result = runner.invoke(cli.app, ["explain", trained.run_id, "--home", str(trained.home), "--json", str(out),
                                     "--repeats", "1", "--rows", "300"])
    assert result.exit_code == 0, result.output
    assert "permutation importance" in result.output and "drop in auc" in result.output
    assert str(trained.run_dir / "importance.png") in result.output.replace("\n", "")
    doc = json.loads(out.read_text())
    assert doc["metric"] == "auc" and doc["features"][0]["feature"] == "x" and doc["rows"] == 300
    assert {"importance", "std", "drops", "kind", "column"} <= set(doc["features"][0])


def test_missing_columns_are_named(trained: Trained, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    frame(50, 1).drop(columns=["noise", "click"]).to_csv(bad, index=False)
    with pytest.raises(AnalysisError, match=r"bad.csv: column\(s\) \['noise', 'click'\] not found, but run "):
        explain(trained.run_id, trained.home, bad)
    result = runner.invoke(cli.app, ["explain", trained.run_id, "--home", str(trained.home), "--data", str(bad)])
    assert result.exit_code == 2 and "['noise', 'click'] not found" in result.output


def test_empty_and_header_only_files_are_refused(trained: Trained, tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(ValueError, match=r"empty.csv: file is empty \(0 bytes\)"):
        explain(trained.run_id, trained.home, empty)
    header = tmp_path / "header.csv"
    header.write_text("x,noise,shop,note,click\n")
    with pytest.raises(ValueError, match=r"header.csv: file has only a header"):
        explain(trained.run_id, trained.home, header)


def test_one_class_and_bad_options_are_refused(trained: Trained, tmp_path: Path) -> None:
    ones = tmp_path / "ones.csv"
    frame(60, 2).assign(click=1).to_csv(ones, index=False)
    with pytest.raises(AnalysisError, match=r"ones.csv: auc is undefined on these 60 rows \(column 'click' holds one"):
        explain(trained.run_id, trained.home, ones, png=False)
    with pytest.raises(AnalysisError, match="repeats is 0"):
        explain(trained.run_id, trained.home, repeats=0)
    with pytest.raises(AnalysisError, match="rows is 0"):
        explain(trained.run_id, trained.home, rows=0)


def test_a_regression_run_ranks_by_r2(tmp_path: Path) -> None:
    data = frame(600, 4).assign(amount=lambda d: 10 + 3 * d["x"]).drop(columns=["click"])
    data.to_csv(tmp_path / "amounts.csv", index=False)
    cfg = {"name": "amounts", "data": {"train": str(tmp_path / "amounts.csv"), "valid_fraction": 0.3},
           "label": {"column": "amount", "kind": "regression"},
           "features": [{"name": "x", "kind": "dense"}, {"name": "noise", "kind": "dense"}],
           "model": {"name": "mlp", "embedding_dim": 4, "hidden": [8]},
           "train": {"epochs": 2, "batch_size": 32, "lr": 0.02, "seed": 0, "pictures": False}}
    run = shoal.train(parse_config(cfg), home=tmp_path / "home")
    result = explain(run.run_id, tmp_path / "home", repeats=1, png=False)
    assert result.metric == "r2" and result.baseline > 0.5
    assert [i.feature for i in result.importances] == ["x", "noise"] and result.importances[0].drop > 0.5


def test_a_bundle_without_its_run_folder_needs_data(trained: Trained, tmp_path: Path) -> None:
    loose = tmp_path / "copy" / "bundle"
    shutil.copytree(trained.run_dir / "bundle", loose)
    with pytest.raises(AnalysisError, match=r"has no validation rows .* pass a labelled file with --data FILE"):
        explain(str(loose), trained.home)
    result = explain(str(loose), trained.home, trained.train, repeats=1, rows=200)
    assert result.png == tmp_path / "copy" / "importance-train.png" and result.png.is_file()
