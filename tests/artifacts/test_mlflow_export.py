"""``shoal export-mlflow``: a run in MLflow's file-store layout (checked file by file; MLflow 3.18 read it back
when this was written: runs, params, metric histories, artifacts)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from typer.testing import CliRunner

import shoal
from shoal.cli.main import app


def test_a_run_in_mlflow_layout(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=500)
    df = pd.DataFrame({"x": x, "g": rng.choice(["a", "b"], 500), "y": (x > 0).astype(int)})
    m = shoal.fit(df, label="y", home=tmp_path / "home", name="ctr", model="logistic", train__epochs=3)
    out = tmp_path / "mlruns"
    result = CliRunner().invoke(app, ["export-mlflow", m.run_id, "--out", str(out), "--home", str(tmp_path / "home")])
    assert result.exit_code == 0, result.output
    (exp,) = [d for d in out.iterdir() if d.is_dir()]
    assert yaml.safe_load((exp / "meta.yaml").read_text())["name"] == "ctr"
    (run,) = [d for d in exp.iterdir() if d.is_dir()]
    meta = yaml.safe_load((run / "meta.yaml").read_text())
    assert meta["status"] == 3 and meta["run_id"] == run.name and meta["start_time"] <= meta["end_time"]
    assert (run / "params" / "model.name").read_text() == "logistic"
    assert (run / "params" / "train.epochs").read_text() == "3"
    assert (run / "params" / "features.x.kind").read_text() == "dense"
    ts, value, step = (run / "metrics" / "valid_auc").read_text().split()
    assert abs(float(value) - m.metrics["valid_auc"]) < 1e-12 and step == "0"
    history = (run / "metrics" / "valid_history_logloss").read_text().splitlines()
    assert len(history) == len(m.record.summary["history"]) and all(len(h.split()) == 3 for h in history)
    at = [int(h.split()[0]) for h in history]  # each validation at its time in the run (history's seconds)
    assert at == sorted(at) and not (run / "metrics" / "valid_history_seconds").exists()
    assert (run / "tags" / "shoal.run_id").read_text() == m.run_id
    assert (run / "artifacts" / "bundle" / "bundle.json").is_file()
    assert (run / "artifacts" / "learning-curve.png").is_file()
    again = CliRunner().invoke(app, ["export-mlflow", m.run_id, "--out", str(out), "--home", str(tmp_path / "home")])
    assert again.exit_code == 0 and len([d for d in exp.iterdir() if d.is_dir()]) == 1  # the same MLflow run
