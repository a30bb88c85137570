"""Multitask labels: config, encoder (unknown cells), heads, loss, metrics, training and the bundle."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import torch
from sklearn.metrics import roc_auc_score

import shoal
from shoal.config import DLRMConfig, HeadsConfig, LabelConfig, LogisticConfig, parse_config
from shoal.data.encoder import Encoder
from shoal.data.readers import BadRowSink, Chunk
from shoal.metrics import TaskPrior, multitask_report, sigmoid
from shoal.models.registry import build
from shoal.training.loop import multitask_loss

TASKS = [{"column": "click"}, {"column": "conv"}, {"column": "spend", "kind": "regression"}]
TASK_NAMES = ["click", "conv", "spend"]


def _frame(n: int, seed: int) -> pd.DataFrame:
    """click <- x1 + shop effect; conv only after a click, from the same shop effect; spend known after a click."""
    rng = np.random.default_rng(seed)
    x1, shop = rng.normal(size=n), rng.integers(0, 20, n)
    eff = np.random.default_rng(99).normal(size=20)[shop]
    click = rng.random(n) < 1 / (1 + np.exp(-(x1 + eff - 1)))
    conv = click & (rng.random(n) < 1 / (1 + np.exp(-(1.5 * eff - 1))))
    spend = np.where(click, 10 + 3 * eff + rng.normal(size=n), np.nan)
    return pd.DataFrame({"x1": x1, "shop": [f"s{v}" for v in shop], "click": click.astype(int),
                         "conv": conv.astype(int), "spend": spend})


def _config(train: Path, heads: str = "shared_bottom") -> dict:
    return {
        "name": "mt",
        "data": {"train": str(train), "valid_fraction": 0.2},
        "label": {"kind": "multitask", "tasks": TASKS, "heads": {"kind": heads}},
        "features": [{"name": "x1", "kind": "dense"}, {"name": "shop", "kind": "sparse", "buckets": 64}],
        "model": {"name": "mlp", "embedding_dim": 4, "hidden": [32]},
        "train": {"epochs": 4, "batch_size": 64, "lr": 0.01, "seed": 0, "pictures": False},
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, shoal.RunRecord]:
    root = tmp_path_factory.mktemp("multitask")
    _frame(3000, 0).to_csv(root / "train.csv", index=False)
    return root, shoal.train(parse_config(_config(root / "train.csv", "mmoe")), home=root / "home")


# -- config ----------------------------------------------------------------------------------------------------------
def test_config_rules() -> None:
    label = LabelConfig(kind="multitask", tasks=TASKS)
    assert label.columns == ["click", "conv", "spend"] and label.task_heads.kind == "shared_bottom"
    with pytest.raises(ValueError, match="kind: multitask needs tasks"):
        LabelConfig(kind="multitask")
    with pytest.raises(ValueError, match=r"\['column'\] of a multitask label go in each of its tasks"):
        LabelConfig(kind="multitask", column="click", tasks=TASKS)
    with pytest.raises(ValueError, match="tasks and heads apply to kind: multitask"):
        LabelConfig(column="y", tasks=TASKS)
    with pytest.raises(ValueError, match=r"tasks \['a'\] are listed twice"):
        LabelConfig(kind="multitask", tasks=[{"column": "a"}, {"column": "a"}])
    with pytest.raises(ValueError, match="label.column is required"):
        LabelConfig()
    with pytest.raises(ValueError, match="experts and expert apply to heads kind: mmoe"):
        HeadsConfig(experts=3)
    saved = LabelConfig(kind="multitask", tasks=TASKS).model_dump(mode="json")  # as a bundle saves it
    assert LabelConfig.model_validate(saved).task_heads == HeadsConfig.model_validate(saved["heads"] or {})
    assert HeadsConfig.model_validate(HeadsConfig().model_dump()).kind == "shared_bottom"
    with pytest.raises(ValueError, match="loss and huber_delta apply to kind: regression"):
        LabelConfig(kind="multitask", tasks=[{"column": "a", "loss": "huber"}, {"column": "b"}])
    with pytest.raises(ValueError, match="label column 'click' is also listed as a feature"):
        parse_config({**_config(Path("t.csv")), "features": [{"name": "click", "kind": "dense"}]})


# -- encoder ---------------------------------------------------------------------------------------------------------
def test_encoder_leaves_unknown_cells_out_and_reports_bad_ones() -> None:
    enc = Encoder([], LabelConfig(kind="multitask", tasks=TASKS))
    table = pa.table({"click": ["1", "0", "1", "yes", "1"], "conv": ["0", "", None, "0", "1"],
                      "spend": ["2.5", "", "x", "1", None]})
    sink = BadRowSink("keep")
    batch = enc.encode(Chunk(table, np.arange(2, 7), "f.csv"), sink)
    assert batch.label is not None and batch.lines.tolist() == [2, 3, 6]
    np.testing.assert_array_equal(batch.label, [[1, 0, 2.5], [0, np.nan, np.nan], [1, 1, np.nan]])
    reasons = {(b.line, b.column): b.reason for b in sink.rows}
    assert set(reasons) == {(4, "spend"), (5, "click")}
    assert "a regression label must be a number" in reasons[4, "spend"]
    assert "invalid label of task 'click'" in reasons[5, "click"] and "or an empty cell" in reasons[5, "click"]
    assert enc.outputs == 3 and enc.task == "multitask" and enc.columns() == ["click", "conv", "spend"]
    enc.targets_ = [None, None, (2.0, 1.5)]
    again = Encoder.from_dict(json.loads(json.dumps(enc.to_dict())))
    assert again.multitask and again.label == enc.label and again.targets_ == enc.targets_
    assert set(enc.to_dict()["label"]) == {"kind", "tasks", "heads"}


# -- model, loss, metrics --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["shared_bottom", "mmoe"])
@pytest.mark.parametrize("model", [DLRMConfig(name="dlrm"), LogisticConfig(name="logistic")])
def test_heads_give_one_column_per_task_in_the_labels_units(kind: str, model: object) -> None:
    torch.manual_seed(0)
    net = build(model, 4, [10, 20], outputs=2, heads=HeadsConfig(kind=kind), targets=[None, (5.0, 2.0)]).eval()
    inputs = (torch.randn(3, 4), [torch.tensor([1, 2, 3]), torch.tensor([4, 5, 6])],
              [torch.tensor([0, 1, 2]), torch.tensor([0, 1, 2])])
    out = net(*inputs)
    assert out.shape == (3, 2)
    net.std.fill_(1.0)
    net.mean.zero_()
    raw = net(*inputs)
    torch.testing.assert_close(out[:, 1], raw[:, 1] * 2.0 + 5.0)  # a regression task: mean + std * tower
    torch.testing.assert_close(out[:, 0], raw[:, 0])  # a binary task: the logit
    with pytest.raises(ValueError, match="needs 2 targets, not 1"):
        build(model, 4, [10, 20], outputs=2, heads=HeadsConfig(), targets=[None])


def test_loss_leaves_unknown_labels_out_and_weighs_tasks() -> None:
    label = LabelConfig(kind="multitask", tasks=[{"column": "a", "weight": 3.0},
                                                 {"column": "b", "kind": "regression"}])
    out = torch.tensor([[0.5, 4.0], [-1.0, 6.0], [2.0, 0.0]])
    y = torch.tensor([[1.0, 5.0], [0.0, math.nan], [math.nan, math.nan]])
    bce = torch.nn.functional.binary_cross_entropy_with_logits(out[:2, 0], y[:2, 0])
    mse = ((4.0 - 5.0) / 2.0) ** 2  # in standard deviations (std 2)
    want = (3.0 * bce.item() + mse) / 4.0
    assert multitask_loss(out, y, None, label, [None, (0.0, 2.0)]).item() == pytest.approx(want)
    weighted = multitask_loss(out, y, torch.tensor([1.0, 0.0, 1.0]), label, [None, (0.0, 2.0)])
    bce0 = torch.nn.functional.binary_cross_entropy_with_logits(out[0, 0], y[0, 0])  # the padding row weighs 0
    assert weighted.item() == pytest.approx((3.0 * bce0.item() + mse) / 4.0)


def test_metrics_per_task_on_the_rows_that_know_it() -> None:
    rng = np.random.default_rng(0)
    y = np.stack([rng.random(300) < 0.4, rng.normal(size=300) + 3], axis=1).astype(float)
    y[:100, 1] = np.nan
    out = np.stack([y[:, 0] * 2 - 1 + rng.normal(size=300), np.nan_to_num(y[:, 1], nan=0.0) + 0.1], axis=1)
    r = multitask_report(y, out, [TaskPrior("click", "binary", 0.4), TaskPrior("spend", "regression", 3.0)])
    assert r["click.auc"] == pytest.approx(roc_auc_score(y[:, 0], sigmoid(out[:, 0])))
    assert r["spend.rows"] == 200 and r["spend.rmse"] == pytest.approx(0.1)
    assert r["mean_ne"] == pytest.approx((r["click.ne"] + r["spend.nmse"]) / 2)
    assert r["mean_task_score"] == pytest.approx((r["click.auc"] + r["spend.r2"]) / 2)
    y[:, 1] = np.nan  # no row knows the task: no metric, and the means are of the others
    r = multitask_report(y, out, [TaskPrior("click", "binary", 0.4), TaskPrior("spend", "regression", 3.0)])
    assert "spend.rmse" not in r and r["mean_ne"] == r["click.ne"]


# -- training and the bundle -----------------------------------------------------------------------------------------
def test_training_learns_every_task_and_the_bundle_answers_per_task(trained: tuple[Path, shoal.RunRecord]) -> None:
    root, run = trained
    m = run.metrics
    assert m["valid_click.auc"] > 0.7 and m["valid_conv.auc"] > 0.7 and m["valid_spend.r2"] > 0.5, m
    assert m["valid_spend.rows"] < m["valid_conv.rows"] == m["valid_rows"]  # spend is known after a click only
    assert m["valid_mean_task_score"] == pytest.approx(
        (m["valid_click.auc"] + m["valid_conv.auc"] + m["valid_spend.r2"]) / 3)
    bundle = shoal.load(run.run_id, home=root / "home")
    assert bundle.task == "multitask" and bundle.tasks == ["click", "conv", "spend"]
    assert bundle.task_kinds == ["binary", "binary", "regression"]
    rows = _frame(50, 7)
    chunk = Chunk(pa.Table.from_pandas(rows, preserve_index=False), np.arange(2, 52), "x.csv")
    batch = bundle.encoder.encode(chunk, BadRowSink("raise"), with_label=False)
    proba = bundle.predict_proba(batch)
    logits = bundle.predict_logits(batch)
    assert proba.shape == (50, 3)
    np.testing.assert_allclose(proba[:, :2], sigmoid(logits[:, :2]))
    np.testing.assert_allclose(proba[:, 2], logits[:, 2], rtol=1e-6)  # spend in its own units
    assert 5 < float(np.mean(proba[:, 2])) < 20


def test_a_task_without_signal_is_refused(tmp_path: Path) -> None:
    frame = _frame(300, 1).assign(conv=0)
    frame.to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(ValueError, match="task 'conv' has the same label .0. in every training row"):
        shoal.train(parse_config(_config(tmp_path / "t.csv")), home=tmp_path / "home")


def test_predict_serve_and_export_answer_per_task(trained: tuple[Path, shoal.RunRecord]) -> None:
    from fastapi.testclient import TestClient

    from shoal.export.raw import RawOnnxModel, export_raw_onnx
    from shoal.serving.app import ServeSettings, create_app
    from shoal.serving.offline import predict_file

    root, run = trained
    home = root / "home"
    folder = home / "runs" / run.run_id / "bundle"
    out = root / "pred.csv"
    predict_file(run.run_id, root / "train.csv", out, home=home, keep=["click"])
    pred = pd.read_csv(out)
    assert list(pred.columns) == ["line", "click", "p_click", "p_conv", "predicted_spend"] and len(pred) == 3000
    assert roc_auc_score(pred["click"], pred["p_click"]) > 0.7 and pred["p_conv"].between(0, 1).all()

    rows = [{"x1": 2.0, "shop": "s0"}, {"x1": -2.0, "shop": "s9"}]
    with TestClient(create_app(folder, ServeSettings(backend="torch"))) as client:
        output = client.get("/model").json()["output"]
        assert output == {"kind": "multitask", "field": "tasks", "tasks": [
            {"name": "click", "kind": "binary"}, {"name": "conv", "kind": "binary"},
            {"name": "spend", "kind": "regression"}]}
        answer = client.post("/predict", json={"rows": rows})
        assert answer.status_code == 200, answer.text
        served = [p["tasks"] for p in answer.json()["predictions"]]
    assert [set(p) for p in served] == [{"click", "conv", "spend"}] * 2
    assert served[0]["click"] > served[1]["click"] and 0 <= served[0]["conv"] <= 1 and served[0]["spend"] > 1

    report = shoal.export_onnx(folder, parity_rows=300)
    fp32 = report.parity["fp32"]
    assert fp32["ok"] and fp32["max_abs_logit_diff"] < 1e-4
    assert abs(fp32["mean_task_score"] - fp32["torch_mean_task_score"]) < 1e-6
    doc = json.loads((report.dir / "export.json").read_text())
    assert doc["task"] == "multitask" and doc["outputs"] == 3 and [t["name"] for t in doc["tasks"]] == TASK_NAMES
    raw = export_raw_onnx(folder, report.dir / "model.raw.onnx", parity_rows=64)
    assert raw.max_abs_proba_diff < 1e-5
    graph = RawOnnxModel(raw.path)
    assert graph.contract["tasks"] == [{"name": "click", "kind": "binary"}, {"name": "conv", "kind": "binary"},
                                       {"name": "spend", "kind": "regression"}]
    got = graph.predict_proba(rows)
    np.testing.assert_allclose(got, [[p[t] for t in TASK_NAMES] for p in served], rtol=1e-5, atol=1e-5)
    with TestClient(create_app(folder, ServeSettings(backend="raw"))) as client:  # the raw graph serves it too
        raw_served = [p["tasks"] for p in client.post("/predict", json={"rows": rows}).json()["predictions"]]
    np.testing.assert_allclose([[p[t] for t in TASK_NAMES] for p in raw_served],
                               [[p[t] for t in TASK_NAMES] for p in served], rtol=1e-5, atol=1e-5)


def test_a_multitask_teacher_teaches_a_student(trained: tuple[Path, shoal.RunRecord]) -> None:
    from shoal.distill import distill

    root, run = trained
    student = distill(run.run_id, "logistic", home=root / "home", train={"epochs": 2})
    m = student.metrics
    assert m["valid_click.auc"] > 0.65 and m["valid_conv.auc"] > 0.65 and m["valid_spend.r2"] > 0.3, m
    assert [t["name"] for t in student.summary["distill"]["tasks"]] == TASK_NAMES
    with pytest.raises(ValueError, match="several tasks .label.kind: multitask.*leave out --transfer and --augment"):
        distill(run.run_id, "logistic", home=root / "home", augment=1)


def test_inspect_writes_a_multitask_starter_that_trains(tmp_path: Path) -> None:
    from shoal.inspect import inspect_file, starter_config

    _frame(600, 3).to_csv(tmp_path / "t.csv", index=False)
    profile = inspect_file(tmp_path / "t.csv", label="click, conv,spend")
    assert profile.label_kind == "multitask" and [t["column"] for t in profile.label_tasks] == TASK_NAMES
    assert [t["kind"] for t in profile.label_tasks] == ["binary", "binary", "regression"]
    assert "unknown for this task" in profile.column("spend").reason
    assert {c.name for c in profile.columns if c.kind == "label"} == set(TASK_NAMES)
    text = starter_config(profile, tmp_path / "starter.yaml")
    (tmp_path / "starter.yaml").write_text(text, encoding="utf-8")
    cfg = shoal.load_config(tmp_path / "starter.yaml")
    assert cfg.label.kind == "multitask" and cfg.label.columns == TASK_NAMES
    assert {f.source for f in cfg.features} == {"x1", "shop"}
    with pytest.raises(ValueError, match="label column 'nope' not found"):
        inspect_file(tmp_path / "t.csv", label="click,nope")
    with pytest.raises(ValueError, match="each once"):
        inspect_file(tmp_path / "t.csv", label="click,click")
    with pytest.raises(ValueError, match="'shop' has .*a task of a multitask label is binary"):
        inspect_file(tmp_path / "t.csv", label="click,shop")


def test_auto_searches_a_multitask_label_by_its_mean_task_score() -> None:
    from shoal.auto.search import _metric

    assert _metric(None, False, multitask=True).name == "mean_task_score"
    assert _metric(None, False, multitask=True).maximize and not _metric("mean_ne", False, multitask=True).maximize
    with pytest.raises(ValueError, match="'auc' does not apply to a multitask label"):
        _metric("auc", False, multitask=True)


def test_a_rank_without_scores_stands_in_with_one_column_per_task() -> None:
    """``--nproc 2``: a rank whose validation scores are not used reports stand-in scores of the label's shape."""
    from shoal.distributed.strategy import _missing_rows, _stand_in
    from shoal.training.evaluation import report

    enc = Encoder([], LabelConfig(kind="multitask", tasks=TASKS))
    labels, logits = _stand_in(enc)
    assert labels.shape == logits.shape == (2, 3)
    priors = [TaskPrior("click", "binary", 0.3), TaskPrior("conv", "binary", 0.1),
              TaskPrior("spend", "regression", 1.0)]
    assert math.isfinite(report(labels, logits, priors)["mean_ne"])
    assert _missing_rows(enc, 4).label.shape == (4, 3)


def test_explain_ranks_features_by_the_mean_task_score(trained: tuple[Path, shoal.RunRecord]) -> None:
    from shoal.analysis.explain import explain

    root, run = trained
    result = explain(run.run_id, root / "home", rows=600, repeats=1, png=False)
    assert result.metric == "mean_task_score"
    assert [i.column for i in result.importances][0] == "shop"  # every task's planted effect is per shop
