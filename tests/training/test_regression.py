"""Regression labels end to end: config, encoder, metrics, training, bundle, export, predict, serve, distil, API."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import torch
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

import shoal
from shoal.config import LabelConfig, parse_config
from shoal.data.encoder import Encoder
from shoal.data.readers import BadRowSink, Chunk
from shoal.metrics import regression_report
from shoal.training.loop import training_loss

NOISE = 0.5  # the planted target's noise: the best RMSE any model can reach


def _frame(n: int, seed: int) -> pd.DataFrame:
    """y = 100 + 3 x1 + 2 log1p(x2) + effect(shop) + noise: a mean far from 0 and a scale far from 1."""
    rng = np.random.default_rng(seed)
    x1, x2, shop = rng.normal(size=n), rng.exponential(size=n), rng.integers(0, 12, n)
    y = 100 + 3 * x1 + 2 * np.log1p(x2) + (shop % 4) - 1.5 + rng.normal(scale=NOISE, size=n)
    return pd.DataFrame({"x1": x1, "x2": x2, "shop": [f"s{v}" for v in shop], "amount": y})


def _config(train: Path, **label: object) -> dict:
    return {
        "name": "amounts",
        "data": {"train": str(train), "valid_fraction": 0.2},
        "label": {"column": "amount", "kind": "regression", **label},
        "features": [{"name": "x1", "kind": "dense"}, {"name": "x2", "kind": "dense", "transform": "log1p"},
                     {"name": "shop", "kind": "sparse", "buckets": 64}],
        "model": {"name": "mlp", "embedding_dim": 4, "hidden": [32]},
        "train": {"epochs": 6, "batch_size": 64, "lr": 0.005, "seed": 0, "pictures": False},
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, shoal.RunRecord]:
    root = tmp_path_factory.mktemp("regression")
    _frame(3000, 0).to_csv(root / "train.csv", index=False)
    run = shoal.train(parse_config(_config(root / "train.csv")), home=root / "home")
    return root, root / "home", run


# -- config and encoder ----------------------------------------------------------------------------------------------
def test_label_config_rules() -> None:
    LabelConfig(column="y", kind="regression", loss="huber", huber_delta=2.0)
    with pytest.raises(ValueError, match="loss and huber_delta apply to kind: regression"):
        LabelConfig(column="y", loss="huber")
    with pytest.raises(ValueError, match=r"classes and aliases apply to kind: multiclass \(this label is regression\)"):
        LabelConfig(column="y", kind="regression", classes=["a", "b"])


def test_encoder_reads_numbers_and_reports_each_bad_label() -> None:
    enc = Encoder([], LabelConfig(column="y", kind="regression"))
    table = pa.table({"y": ["1.5", "-2e3", "abc", None, "1e39", " 7 "]})
    sink = BadRowSink("keep")
    batch = enc.encode(Chunk(table, np.arange(2, 8), "f.csv"), sink)
    assert batch.label is not None and batch.label.tolist() == [1.5, -2000.0, 7.0]
    assert batch.lines.tolist() == [2, 3, 7]
    reasons = {r.line: r.reason for r in sink.rows}
    assert set(reasons) == {4, 5, 6}
    assert "a regression label must be a number" in reasons[4] and reasons[5] == "missing label (regression)"
    assert "outside float32's range" in reasons[6]
    typed = enc.encode(Chunk(pa.table({"y": pa.array([1, 2, None], pa.int64())}), np.arange(1, 4), "p.parquet"),
                       sink)
    assert typed.label is not None and typed.label.tolist() == [1.0, 2.0]


def test_metrics_match_sklearn_and_nmse_is_against_the_training_mean() -> None:
    rng = np.random.default_rng(1)
    y = rng.normal(10, 2, 500)
    p = y + rng.normal(0, 1, 500)
    r = regression_report(y, p, train_mean=9.0)
    assert r["rmse"] == pytest.approx(math.sqrt(mean_squared_error(y, p)))
    assert r["mae"] == pytest.approx(mean_absolute_error(y, p))
    assert r["r2"] == pytest.approx(r2_score(y, p))
    assert r["nmse"] == pytest.approx(mean_squared_error(y, p) / np.mean((y - 9.0) ** 2))
    assert regression_report(y, np.full(500, 9.0), train_mean=9.0)["nmse"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="pred must hold finite numbers; 1 do not"):
        regression_report([1.0, 2.0], [1.0, float("nan")])


def test_losses_are_in_standard_deviations_of_the_label() -> None:
    label = LabelConfig(column="y", kind="regression")
    pred, y = torch.tensor([110.0, 100.0]), torch.tensor([100.0, 100.0])
    assert training_loss(pred, y, None, label, (100.0, 10.0)).item() == pytest.approx(0.5)  # ((1)^2 + 0) / 2
    huber = LabelConfig(column="y", kind="regression", loss="huber", huber_delta=0.5)
    # error of 1 std beyond delta 0.5: 0.5 * (1 - 0.25) = 0.375, halved over two rows
    assert training_loss(pred, y, None, huber, (100.0, 10.0)).item() == pytest.approx(0.1875)


def test_a_constant_label_is_refused(tmp_path: Path) -> None:
    frame = _frame(200, 0).assign(amount=5.0)
    frame.to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(ValueError, match="has the same value \\(5\\) in every training row"):
        shoal.train(parse_config(_config(tmp_path / "t.csv")), home=tmp_path / "h")


# -- training and every path out of it -------------------------------------------------------------------------------
def test_trains_to_near_the_noise_floor_and_answers_in_label_units(trained: tuple[Path, Path, shoal.RunRecord]) -> None:
    root, home, run = trained
    m, s = run.metrics, run.summary
    assert m["valid_rmse"] < 1.6 * NOISE and m["valid_r2"] > 0.9 and m["valid_nmse"] < 0.1, m  # mean alone: NMSE 1
    assert 99 < s["train_label_mean"] < 102 and 2 < s["train_label_std"] < 5
    bundle = shoal.load(run.run_id, home=home)
    assert bundle.task == "regression" and bundle.prior == {"mean": s["train_label_mean"], "std": s["train_label_std"]}
    rows = pa.table({"x1": [0.0, 1.0], "x2": [1.0, 1.0], "shop": ["s0", "s0"]})
    batch = bundle.encoder.encode(Chunk(rows, np.arange(1, 3), "req"), BadRowSink("error"), with_label=False)
    values = bundle.predict_proba(batch)
    assert 95 < values[0] < 105 and 1.5 < values[1] - values[0] < 4.5  # in the label's units; slope of x1 is 3
    again = shoal.evaluate_file(run.run_id, root / "train.csv", home=home)
    assert again["rmse"] < 1.6 * NOISE and again["rows"] == 3000


def test_export_predict_and_serve_give_values(trained: tuple[Path, Path, shoal.RunRecord]) -> None:
    from fastapi.testclient import TestClient

    from shoal.serving.app import ServeSettings, create_app
    from shoal.serving.offline import predict_file

    root, home, run = trained
    report = shoal.export_onnx(home / "runs" / run.run_id / "bundle", parity_rows=300)
    fp32 = report.parity["fp32"]
    assert fp32["ok"] and fp32["max_abs_logit_diff"] < 1e-4 and abs(fp32["rmse"] - fp32["torch_rmse"]) < 1e-4
    assert json.loads((report.dir / "export.json").read_text())["task"] == "regression"
    from shoal.export.raw import RawOnnxModel, export_raw_onnx

    raw = export_raw_onnx(home / "runs" / run.run_id / "bundle", report.dir / "model.raw.onnx", parity_rows=64)
    assert raw.max_abs_proba_diff < 1e-4  # in standard deviations of the label
    served = RawOnnxModel(raw.path)
    assert served.contract["task"] == "regression" and "predictions" in served.contract["outputs"]
    assert 95 < served.predict_proba([{"x1": 0.0, "x2": 1.0, "shop": "s1"}])[0] < 105
    out = root / "pred.csv"
    predict_file(run.run_id, root / "train.csv", out, home=home)
    pred = pd.read_csv(out)
    assert list(pred.columns) == ["line", "prediction"] and len(pred) == 3000
    truth = pd.read_csv(root / "train.csv")["amount"].to_numpy()
    assert math.sqrt(np.mean((pred["prediction"].to_numpy() - truth) ** 2)) < 1.6 * NOISE
    with TestClient(create_app(home / "runs" / run.run_id / "bundle", ServeSettings())) as client:
        model = client.get("/model").json()
        assert model["output"] == {"kind": "regression", "field": "prediction"}
        answer = client.post("/predict", json={"rows": [{"x1": 0.0, "x2": 1.0, "shop": "s1"}]})
        assert answer.status_code == 200, answer.text
        assert 95 < answer.json()["predictions"][0]["prediction"] < 105


def test_distils_a_regression_teacher_into_a_linear_student(trained: tuple[Path, Path, shoal.RunRecord]) -> None:
    from shoal.distill import distill

    _, home, run = trained
    student = distill(run.run_id, "logistic", home=home, train={"epochs": 4, "lr": 0.03})
    assert student.summary["distill"]["scale"] == pytest.approx(run.summary["train_label_std"])
    assert student.metrics["valid_r2"] > 0.85, student.metrics  # a linear model of the same inputs


def test_inspect_tells_a_number_from_classes(tmp_path: Path) -> None:
    from shoal.inspect import inspect_file

    frame = _frame(400, 2)
    frame["rating"] = np.random.default_rng(0).integers(1, 6, 400)
    frame.to_csv(tmp_path / "f.csv", index=False)
    amount = inspect_file(tmp_path / "f.csv", label="amount")
    assert amount.label_kind == "regression" and "regression: numbers" in amount.column("amount").reason
    rating = inspect_file(tmp_path / "f.csv", label="rating")
    assert rating.label_kind == "multiclass" and rating.label_classes == ("1", "2", "3", "4", "5")
    frame.drop(columns="rating").rename(columns={"amount": "target"}).to_csv(tmp_path / "g.csv", index=False)
    chosen = inspect_file(tmp_path / "g.csv")  # named like a label, numbers: chosen, as a regression
    assert chosen.label == "target" and chosen.label_kind == "regression"


def test_python_api_and_sklearn_regressor(tmp_path: Path) -> None:
    from sklearn.model_selection import cross_val_score

    from shoal.api.sklearn import ShoalRegressor

    frame = _frame(1200, 3)
    m = shoal.fit(frame, label="amount", model="mlp", home=tmp_path / "h", train__epochs=4, train__pictures=False)
    assert m.task == "regression" and m.predict(frame.head(5)).shape == (5,)
    assert m.evaluate(frame)["r2"] > 0.8
    with pytest.raises(TypeError, match="predicts a number"):
        m.predict_proba(frame.head(2))
    X, y = frame[["x1", "x2"]], frame["amount"]
    scores = cross_val_score(ShoalRegressor(model="logistic", epochs=3, home=str(tmp_path / "cv")), X, y, cv=2)
    assert (scores > 0.5).all(), scores  # R^2: x1 and log1p(x2) explain most of the variance


def test_fit_as_regression_gets_the_regression_starter_settings(tmp_path: Path) -> None:
    """Integer ratings 1-5 look like classes to inspect; task="regression" also brings the regression starter's
    L2 on embedding rows (shoal.inspect.starter.REGRESSION_TRAIN)."""
    from shoal.inspect.starter import REGRESSION_TRAIN

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x1": rng.normal(size=300), "shop": [f"s{v}" for v in rng.integers(0, 9, 300)],
                          "stars": rng.integers(1, 6, 300)})
    m = shoal.fit(frame, label="stars", task="regression", home=tmp_path / "h", train__epochs=1,
                  train__pictures=False)
    assert m.task == "regression"
    assert m.bundle.config.train.embedding_weight_decay == REGRESSION_TRAIN["embedding_weight_decay"]
