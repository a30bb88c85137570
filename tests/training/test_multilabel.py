"""Multilabel labels end to end: config, encoder, metrics, loss, training, bundle, predict, serve, export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import yaml
from sklearn.metrics import f1_score, roc_auc_score

import shoal
from shoal.config import LabelConfig, parse_config
from shoal.data.encoder import Encoder
from shoal.data.readers import BadRowSink, Chunk
from shoal.metrics import multilabel_report, tag_aucs
from shoal.training.loop import training_loss

TAGS = ["news", "sports", "tech"]
FLIP = 0.05  # each planted tag is flipped in this share of rows


def _frame(n: int, seed: int) -> pd.DataFrame:
    """news <- x1 > 0; sports <- shop in s0..s3; tech <- x2 > 1; each flipped in FLIP of the rows. Some rows have
    no tag at all (an empty cell)."""
    rng = np.random.default_rng(seed)
    x1, x2, shop = rng.normal(size=n), rng.exponential(size=n), rng.integers(0, 12, n)
    planted = np.stack([x1 > 0, shop < 4, x2 > 1], axis=1) ^ (rng.random((n, 3)) < FLIP)
    tags = ["|".join(t for t, on in zip(TAGS, row, strict=True) if on) for row in planted]
    return pd.DataFrame({"x1": x1, "x2": x2, "shop": [f"s{v}" for v in shop], "topics": tags})


def _config(train: Path, **label: object) -> dict:
    return {
        "name": "topics",
        "data": {"train": str(train), "valid_fraction": 0.2},
        "label": {"column": "topics", "kind": "multilabel", **label},
        "features": [{"name": "x1", "kind": "dense"}, {"name": "x2", "kind": "dense", "transform": "log1p"},
                     {"name": "shop", "kind": "sparse", "buckets": 64}],
        "model": {"name": "mlp", "embedding_dim": 4, "hidden": [32]},
        "train": {"epochs": 5, "batch_size": 64, "lr": 0.01, "seed": 0, "pictures": False},
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, shoal.RunRecord]:
    root = tmp_path_factory.mktemp("multilabel")
    frame = _frame(2500, 0)
    frame.to_csv(root / "train.csv", index=False)
    run = shoal.train(parse_config(_config(root / "train.csv")), home=root / "home")
    return root, root / "home", run


# -- config and encoder ----------------------------------------------------------------------------------------------
def test_label_config_rules() -> None:
    LabelConfig(column="y", kind="multilabel", separator=";", classes=["a", "b"], aliases={"A": "a"})
    with pytest.raises(ValueError, match="separator applies to kind: multilabel"):
        LabelConfig(column="y", kind="multiclass", separator=";")
    with pytest.raises(ValueError, match="classes and aliases apply to kind: multiclass"):
        LabelConfig(column="y", kind="binary", classes=["a", "b"])


def test_encoder_reads_tags_and_reports_unknown_ones() -> None:
    enc = Encoder([], LabelConfig(column="y", kind="multilabel", aliases={"Tech": "tech"}))
    table = pa.table({"y": ["news|sports", "", None, " tech | news ", "news|cooking", "Tech"]})
    enc.fit_classes([Chunk(pa.table({"y": ["news", "sports|tech", ""]}), np.arange(2, 5), "train.csv")])
    assert enc.classes_ == ["news", "sports", "tech"] and enc.outputs == 3
    sink = BadRowSink("keep")
    batch = enc.encode(Chunk(table, np.arange(2, 8), "f.csv"), sink)
    assert batch.label is not None and batch.label.tolist() == [[1, 1, 0], [0, 0, 0], [0, 0, 0], [1, 0, 1], [0, 0, 1]]
    assert batch.lines.tolist() == [2, 3, 4, 5, 7]  # an empty or missing cell is a row with no tags
    (bad,) = sink.rows
    assert (bad.file, bad.line, bad.column) == ("f.csv", 6, "y")
    assert bad.value is not None and "cooking" in bad.value and "news|cooking" in bad.value
    assert "unknown tag" in bad.reason and "label.classes" in bad.reason
    lists = pa.table({"y": pa.array([["sports"], [], None, ["news", "tech"]], pa.list_(pa.string()))})
    typed = enc.encode(Chunk(lists, np.arange(1, 5), "p.parquet"), sink)
    assert typed.label is not None and typed.label.tolist() == [[0, 1, 0], [0, 0, 0], [0, 0, 0], [1, 0, 1]]
    again = Encoder.from_dict(json.loads(json.dumps(enc.to_dict())))
    assert again.multilabel and again.classes_ == enc.classes_ and again.label == enc.label
    assert "separator" not in Encoder([], LabelConfig(column="y")).to_dict()["label"]  # older kinds: same saved form


def test_one_tag_is_refused_as_a_binary_label() -> None:
    enc = Encoder([], LabelConfig(column="y", kind="multilabel"))
    with pytest.raises(ValueError, match="needs at least 2 tags.*kind: binary"):
        enc.fit_classes([Chunk(pa.table({"y": ["a", "", "a"]}), np.arange(2, 5), "t.csv")])


def test_metrics_match_sklearn() -> None:
    rng = np.random.default_rng(1)
    y = (rng.random((400, 4)) < [0.5, 0.2, 0.1, 0.0]).astype(float)
    p = np.clip(y * 0.6 + rng.random((400, 4)) * 0.5, 0, 1)
    r = multilabel_report(y, p, prior=[0.5, 0.2, 0.1, 0.01])
    pred = (p >= 0.5).astype(int)
    assert r["micro_f1"] == pytest.approx(f1_score(y, pred, average="micro"))
    assert r["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro", zero_division=0))
    aucs = tag_aucs(y, p)
    assert np.isnan(aucs[3])  # a tag with one value in the set: no AUC, and left out of the mean
    assert r["mean_auc"] == pytest.approx(np.mean([roc_auc_score(y[:, t], p[:, t]) for t in range(3)]))
    assert r["rows"] == 400 and r["ne"] > 0
    with pytest.raises(ValueError, match="must both be \\(rows, tags\\)"):
        multilabel_report(y[:, 0], p[:, 0])


def test_loss_is_binary_cross_entropy_per_tag() -> None:
    logits, y = torch.tensor([[0.0, 2.0], [-1.0, 0.5]]), torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    want = torch.nn.functional.binary_cross_entropy_with_logits(logits, y)
    label = LabelConfig(column="y", kind="multilabel")
    assert training_loss(logits, y, None, label).item() == pytest.approx(want.item())
    weighted = training_loss(logits, y, torch.tensor([1.0, 0.0]), label)  # a padding row weighs 0
    first = torch.nn.functional.binary_cross_entropy_with_logits(logits[0], y[0])
    assert weighted.item() == pytest.approx(first.item() / 2)


# -- training and every path out of it -------------------------------------------------------------------------------
def test_trains_and_finds_the_planted_tags(trained: tuple[Path, Path, shoal.RunRecord]) -> None:
    root, home, run = trained
    m, s = run.metrics, run.summary
    assert m["valid_micro_f1"] > 0.85 and m["valid_macro_f1"] > 0.85 and m["valid_mean_auc"] > 0.9, m
    assert m["valid_ne"] < 0.6, m
    assert s["tags"] == TAGS and len(s["train_tag_prior"]) == 3
    assert set(s["valid_tag_auc"]) == set(TAGS) and min(s["valid_tag_auc"].values()) > 0.85
    bundle = shoal.load(run.run_id, home=home)
    assert bundle.task == "multilabel" and bundle.tags == TAGS and bundle.classes is None
    assert bundle.prior == pytest.approx(s["train_tag_prior"])
    rows = pa.table({"x1": [2.0, -2.0], "x2": [3.0, 0.1], "shop": ["s0", "s9"]})
    batch = bundle.encoder.encode(Chunk(rows, np.arange(1, 3), "req"), BadRowSink("error"), with_label=False)
    proba = bundle.predict_proba(batch)
    assert proba.shape == (2, 3)
    assert (proba[0] > 0.5).all() and (proba[1] < 0.5).all(), proba  # every tag, then none
    again = shoal.evaluate_file(run.run_id, root / "train.csv", home=home)
    assert again["micro_f1"] > 0.85 and again["rows"] == 2500


def test_predict_serve_and_export(trained: tuple[Path, Path, shoal.RunRecord]) -> None:
    from fastapi.testclient import TestClient

    from shoal.export.raw import RawOnnxModel, export_raw_onnx
    from shoal.serving.app import ServeSettings, create_app
    from shoal.serving.offline import predict_file

    root, home, run = trained
    folder = home / "runs" / run.run_id / "bundle"
    out = root / "pred.csv"
    predict_file(run.run_id, root / "train.csv", out, home=home)
    pred = pd.read_csv(out, keep_default_na=False)
    assert list(pred.columns) == ["line", "tags", *(f"p_{t}" for t in TAGS)] and len(pred) == 2500
    truth = pd.read_csv(root / "train.csv", keep_default_na=False)["topics"]
    assert (pred["tags"] == truth).mean() > 0.7  # every tag of the row right (5% flips per tag: ~86% at best)
    for t in TAGS:  # the tags column is the p >= 0.5 columns
        assert ((pred[f"p_{t}"] >= 0.5) == pred["tags"].str.split("|").apply(lambda x, t=t: t in x)).all()

    with TestClient(create_app(folder, ServeSettings())) as client:
        assert client.get("/model").json()["output"] == {"kind": "multilabel", "tags": TAGS, "threshold": 0.5}
        answer = client.post("/predict", json={"rows": [{"x1": 2.0, "x2": 3.0, "shop": "s0"},
                                                        {"x1": -2.0, "x2": 0.1, "shop": "s9"}]})
        assert answer.status_code == 200, answer.text
        first, second = answer.json()["predictions"]
        assert first["tags"] == TAGS and second["tags"] == [] and set(first["probabilities"]) == set(TAGS)

    report = shoal.export_onnx(folder, parity_rows=300)
    fp32 = report.parity["fp32"]
    assert fp32["ok"] and fp32["max_abs_proba_diff"] < 1e-5 and abs(fp32["mean_auc"] - fp32["torch_mean_auc"]) < 1e-6
    doc = json.loads((report.dir / "export.json").read_text())
    assert doc["task"] == "multilabel" and doc["tags"] == TAGS and doc["outputs"] == 3
    raw = export_raw_onnx(folder, report.dir / "model.raw.onnx", parity_rows=64)
    assert raw.max_abs_proba_diff < 1e-5
    served = RawOnnxModel(raw.path)
    assert served.contract["task"] == "multilabel" and served.contract["tags"] == TAGS
    p = served.predict_proba([{"x1": 2.0, "x2": 3.0, "shop": "s0"}])
    assert p.shape == (1, 3) and (p > 0.5).all()


def test_list_column_from_parquet_trains(tmp_path: Path) -> None:
    frame = _frame(600, 4)
    table = pa.Table.from_pandas(frame.drop(columns="topics"), preserve_index=False).append_column(
        "topics", pa.array([t.split("|") if t else [] for t in frame["topics"]], pa.list_(pa.string())))
    pq.write_table(table, tmp_path / "t.parquet")
    cfg = _config(tmp_path / "t.parquet")
    cfg["train"]["epochs"] = 1
    run = shoal.train(parse_config(cfg), home=tmp_path / "h")
    assert run.summary["tags"] == TAGS and run.metrics["valid_rows"] > 0


def test_inspect_recognises_a_given_label_of_tags(tmp_path: Path) -> None:
    from shoal.inspect import inspect_file
    from shoal.inspect.starter import starter_config

    _frame(400, 2).to_csv(tmp_path / "f.csv", index=False)
    profile = inspect_file(tmp_path / "f.csv", label="topics")
    assert profile.label_kind == "multilabel" and profile.label_separator == "|"
    assert "multilabel: tags joined by '|'" in profile.column("topics").reason
    text = starter_config(profile, tmp_path / "starter.yaml")
    cfg = parse_config(yaml.safe_load(text))
    assert cfg.label.kind == "multilabel" and cfg.label.separator == "|"


def test_auto_searches_tags_by_micro_f1(trained: tuple[Path, Path, shoal.RunRecord], tmp_path: Path) -> None:
    from shoal.auto.search import AutoSettings, auto

    root, _, _ = trained
    result = auto(AutoSettings(data=root / "train.csv", label="topics", budget_s=60, max_trials=1),
                  tmp_path / "home")
    assert result.metric.name == "micro_f1" and result.metric.maximize
    assert result.best is not None and result.best.family == "starter" and result.best.value > 0.8


def test_a_multilabel_teacher_teaches_a_student_tag_by_tag(trained: tuple[Path, Path, shoal.RunRecord]) -> None:
    from shoal.distill import distill

    root, home, run = trained
    student = distill(run.run_id, "logistic", home=home, train={"epochs": 2})
    assert student.metrics["valid_mean_auc"] > 0.8, student.metrics
    assert [t["name"] for t in student.summary["distill"]["tasks"]] == TAGS
    assert shoal.load(student.run_id, home=home).tags == TAGS
    with pytest.raises(ValueError, match="predicts tags .label.kind: multilabel.*leave out --transfer"):
        distill(run.run_id, "logistic", home=home, augment=1)


def test_explain_ranks_features_by_micro_f1(trained: tuple[Path, Path, shoal.RunRecord]) -> None:
    from shoal.analysis.explain import explain

    root, home, run = trained
    result = explain(run.run_id, home, rows=500, repeats=1, png=False)
    assert result.metric == "micro_f1" and all(i.drop > 0 for i in result.importances)  # each feature plants a tag
