"""The command line as a user runs it: synth -> inspect -> train -> runs / show / eval, and the demo."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import shoal
from shoal.artifacts.registry import Registry
from shoal.cli import main as cli
from shoal.cli.main import app
from shoal.config import RunConfig
from shoal.data.synthetic import load_truth

runner = CliRunner()


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tables as on a wide terminal, so assertions see whole cells."""
    monkeypatch.setattr(cli.console, "_width", 200)


def _ok(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_synth_inspect_train_eval_runs_show(tmp_path: Path) -> None:
    data = tmp_path / "clicks.parquet"
    out = _ok("synth", str(data), "--rows", "8000", "--dense", "3", "--sparse", "4", "--max-cardinality", "500",
              "--base-rate", "0.2")
    truth = load_truth(data)
    assert "Bayes-optimal AUC" in out and f"{truth.bayes_auc:.4f}" in out

    cfg = tmp_path / "clicks.yaml"
    out = _ok("inspect", str(data), "--write", str(cfg))
    assert "label" in out and "sparse" in out and cfg.is_file()

    home = tmp_path / "home"
    out = _ok("train", str(cfg), "--home", str(home))
    run = Registry(home).get("latest")
    assert run.status == "completed" and run.run_id in out
    assert "valid" in out and "auc" in out
    assert run.metrics["valid_auc"] > 0.55

    out = _ok("runs", "--home", str(home))
    assert run.run_id in out and "completed" in out
    out = _ok("show", run.run_id[:12], "--home", str(home))  # one screen: metrics, data, model, pictures
    assert run.run_id in out and "features: " in out and "model: name=dlrm" in out and len(out.splitlines()) < 60
    pictures = [run.summary[k] for k in ("learning_curve_png", "valid_curves_png")]
    assert all(Path(p).is_file() and Path(p).read_bytes()[:4] == b"\x89PNG" and p in out.replace("\n", "")
               for p in pictures)
    assert all("train_loss" in h and "auc" in h for h in run.summary["history"])
    out = _ok("show", run.run_id[:12], "--home", str(home), "--json")
    assert '"train_rows"' in out and run.run_id in out

    out = _ok("eval", run.run_id, "--data", str(data), "--home", str(home))
    assert "auc" in out and "ne" in out and "calibration" in out
    assert "confusion matrix" in out and "positive (1)" in out  # binary: at p >= 0.5, as accuracy counts
    report = shoal.evaluate_file(run.run_id, data, home=home)
    (tn, fp), (fn, tp) = report["confusion"]
    assert tn + fp + fn + tp == report["rows"] and abs((tn + tp) / report["rows"] - report["accuracy"]) < 1e-9


def test_env_home_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOAL_HOME", str(tmp_path / "envhome"))
    out = _ok("runs")
    assert str(tmp_path / "envhome") in out.replace("\n", "")
    assert (tmp_path / "envhome" / "registry.db").is_file()


def test_user_errors_exit_2_with_a_clear_message(tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", str(tmp_path / "missing.yaml"), "--home", str(tmp_path)])
    assert result.exit_code == 2 and "does not exist" in result.output
    result = runner.invoke(app, ["show", "nosuchrun", "--home", str(tmp_path)])
    assert result.exit_code == 2 and "nosuchrun" in result.output
    result = runner.invoke(app, ["train", "--home", str(tmp_path)])
    assert result.exit_code == 2 and "--resume" in result.output
    result = runner.invoke(app, ["synth", str(tmp_path / "x.parquet"), "--base-rate", "2"])
    assert result.exit_code == 2 and "base_rate" in result.output


@pytest.mark.slow
def test_demo_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from shoal.cli import demo

    # the side-by-side timings run 0.2 s a system, not 1 s (at least 50 calls each all the same): 14 timings took
    # half the test, and no assertion reads their values
    monkeypatch.setattr(demo, "distil_and_compare", functools.partial(demo.distil_and_compare, seconds=0.2))
    # the teacher and its student draw no PNGs (4 figures, ~2 s of matplotlib): no assertion reads them
    in_code = demo.synthetic_config

    def without_pictures(*args: Any, **kwargs: Any) -> RunConfig:
        cfg = in_code(*args, **kwargs)
        return cfg.model_copy(update={"train": cfg.train.model_copy(update={"pictures": False})})

    monkeypatch.setattr(demo, "synthetic_config", without_pictures)
    out = _ok("demo", "--rows", "50000", "--home", str(tmp_path / "home"), "--workdir", str(tmp_path / "data"))
    assert "Bayes-optimal ceiling" in out and "AUC" in out and "NE" in out
    student, run = Registry(tmp_path / "home").list(limit=2)  # newest first: the distilled student, then DLRM
    assert run.status == "completed" and run.metrics["valid_auc"] > 0.65
    assert student.kind == "distill" and student.parent == run.run_id and student.status == "completed"
    assert "teacher vs student" in out and "p99 ms (batch 1)" in out and (student.artifact_dir / "bundle/onnx").is_dir()
    # the demo ends in production: the student served on 127.0.0.1, three answers, one 422 naming the field
    assert out.count("click probability") == 3 and "(malformed)" in out and "422" in out and "field 'd0'" in out
