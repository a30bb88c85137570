"""``shoal drift``: the population stability index flags a shifted file and leaves an identical one alone."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from shoal.analysis import AnalysisError, drift, psi
from shoal.analysis.drift import feature_drift
from shoal.cli import main as cli
from shoal.data.features import DenseColumn, SparseColumn
from tests.analysis.conftest import Trained, frame

runner = CliRunner()


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli.console, "_width", 200)


def test_psi_formula() -> None:
    e, a = np.array([10, 20, 70]), np.array([30, 30, 40])
    shares_e, shares_a = e / e.sum(), a / a.sum()
    expected = float(np.sum((shares_a - shares_e) * np.log(shares_a / shares_e)))
    assert psi(e, a) == pytest.approx(expected) and psi(e, a) == pytest.approx(psi(a, e))
    assert psi(e, e) == 0.0
    assert np.isfinite(psi(np.array([1, 0]), np.array([0, 1])))  # an empty bin costs a finite amount
    with pytest.raises(ValueError, match="same bins"):
        psi(np.array([1, 2]), np.array([1, 2, 3]))


def test_a_shifted_file_is_flagged(trained: Trained, tmp_path: Path) -> None:
    new = frame(800, 5)
    new["x"] += 2.0
    new["note"] = new["note"] + " and then a much longer tail of words"
    new["shop"] = [f"new{i % 50}" for i in range(len(new))]
    path = tmp_path / "shifted.csv"
    new.to_csv(path, index=False)
    report = drift(trained.run_id, path, trained.home)
    by = {f.feature: f for f in report.features}
    assert set(report.flagged) == {"x", "note", "shop"}
    assert by["x"].psi is not None and by["x"].psi > 1.0 and by["x"].stats["mean_shift_std"] == pytest.approx(2, 0.1)
    assert by["shop"].oov_rate == 1.0 and "unseen in training" in by["shop"].why
    assert by["note"].stats["mean_bytes"] > by["note"].stats["train_mean_bytes"] + 30
    assert not by["noise"].flagged and by["noise"].psi is not None and by["noise"].psi < 0.1
    assert report.features[0].psi == max(f.psi or 0 for f in report.features)  # largest first
    assert report.reference == str(trained.train)


def test_the_training_file_and_a_fresh_draw_are_not_flagged(trained: Trained, tmp_path: Path) -> None:
    same = drift(trained.run_id, trained.train, trained.home)
    assert same.flagged == [] and all(f.psi == 0.0 for f in same.features)
    fresh = tmp_path / "fresh.csv"
    frame(1500, 7).to_csv(fresh, index=False)
    report = drift(trained.run_id, fresh, trained.home)
    assert report.flagged == [] and max(f.psi or 0 for f in report.features) < 0.1


def test_cli_prints_flags_and_writes_json(trained: Trained, tmp_path: Path) -> None:
    new = frame(300, 9)
    new["x"] -= 3.0
    path, out = tmp_path / "new.parquet", tmp_path / "drift.json"
    new.to_parquet(path)
    args = ["drift", trained.run_id, "--data", str(path), "--home", str(trained.home), "--json", str(out)]
    result = runner.invoke(cli.app, args)
    assert result.exit_code == 0, result.output
    assert "DRIFT" in result.output and "1 feature(s) drifted" in result.output
    doc = json.loads(out.read_text())
    assert doc["flagged"] == ["x"] and doc["threshold"] == 0.2 and doc["rows"] == 300
    assert runner.invoke(cli.app, [*args, "--strict"]).exit_code == 1
    calm = runner.invoke(cli.app, [*args, "--threshold", "100", "--strict"])
    assert calm.exit_code == 0 and "no feature above the threshold 100" in calm.output


def test_bad_input_is_named(trained: Trained, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    frame(20, 1).drop(columns=["shop"]).to_csv(bad, index=False)
    with pytest.raises(AnalysisError, match=r"bad.csv: column\(s\) \['shop'\] not found, but run .* reads them; "
                                            r"the file has \['x', 'noise', 'note', 'click'\]"):
        drift(trained.run_id, bad, trained.home)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    result = runner.invoke(cli.app, ["drift", trained.run_id, "--data", str(empty), "--home", str(trained.home)])
    assert result.exit_code == 2 and "file is empty (0 bytes)" in result.output
    with pytest.raises(AnalysisError, match="threshold is -1"):
        drift(trained.run_id, trained.train, trained.home, threshold=-1)
    missing = tmp_path / "nowhere.csv"
    with pytest.raises(AnalysisError, match="nowhere.csv: file does not exist"):
        drift(trained.run_id, missing, trained.home)


def test_dense_bins_saved_at_training_are_used_and_list_ids_are_split() -> None:
    col = DenseColumn("v", "v", 0, bins=4)
    col.edges_ = [-0.7, 0.0, 0.7]  # the training quantile bins the model embeds
    rng = np.random.default_rng(0)
    train = pa.table({"v": rng.normal(size=2000)})
    moved = feature_drift(col, train, pa.table({"v": rng.normal(size=2000) + 1}), 0.2)
    assert moved.flagged and moved.stats["bins"] == 4
    tags = SparseColumn("t", "t", 0, buckets=16, separator="|")
    old = pa.table({"t": ["a|b", "b", None, "a|c"] * 50})
    same = feature_drift(tags, old, old, 0.2)
    assert same.psi == 0.0 and same.oov_rate == 0.0 and same.stats["train_missing"] == 0.25
    new = feature_drift(tags, old, pa.table({"t": ["a|z", "y", "", "z"] * 50}), 0.2)
    assert new.flagged and new.oov_rate == pytest.approx(3 / 4)  # a is known; z, y, z are not


def test_a_time_feature_drifts_by_its_calendar_parts() -> None:
    """Evenings in training, mornings now: the hour's PSI is flagged and named; the weekday did not move."""
    import pyarrow as pa

    from shoal.analysis.drift import feature_drift
    from shoal.config import FeatureConfig
    from shoal.data.features import column_for

    f = column_for(FeatureConfig(name="ts", kind="time"))
    days = [f"2026-11-{d:02d}" for d in range(2, 30)]
    train = pa.table({"ts": [f"{d}T{h:02d}:15:00Z" for d in days for h in (18, 19, 20, 21)]})
    same = pa.table({"ts": [f"{d}T{h:02d}:45:00Z" for d in days for h in (18, 19, 20, 21)]})
    moved = pa.table({"ts": [f"{d}T{h:02d}:15:00Z" for d in days for h in (7, 8, 9, 10)]})
    calm = feature_drift(f, train, same, 0.2)
    assert not calm.flagged and calm.psi == pytest.approx(0.0, abs=1e-6)
    drifted = feature_drift(f, train, moved, 0.2)
    assert drifted.flagged and drifted.stats["psi_hour"] > 1 and drifted.stats["psi_weekday"] < 0.01
    assert "hour" in drifted.why
