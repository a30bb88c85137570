"""Multiclass labels end to end: config, encoder, metrics, training (bag, bytecnn), bundle, eval, CLI."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from sklearn.metrics import f1_score
from sklearn.metrics import log_loss as sk_log_loss
from typer.testing import CliRunner

import shoal
from shoal.cli.main import app
from shoal.config import ConfigError, FeatureConfig, LabelConfig, parse_config
from shoal.data.encoder import Encoder
from shoal.data.readers import BadRowSink, Chunk
from shoal.metrics import confusion_matrix, multiclass_report

CLASSES = ["World", "Sports", "Business", "Sci/Tech"]
WORDS = {
    "World": "minister election border treaty capital troops",
    "Sports": "match goal season coach league striker",
    "Business": "shares profit market quarterly investors bank",
    "Sci/Tech": "software chip internet space research browser",
}
NOISE = ["the", "a", "of", "to", "in", "and", "said", "on", "for", "with", "after", "new"]


def _texts(n: int, seed: int) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for _ in range(n):
        c = CLASSES[int(rng.integers(4))]
        topic = WORDS[c].split()
        words = list(rng.choice(topic, 3)) + list(rng.choice(NOISE, 5))
        if rng.random() < 0.15:  # a little label noise: some rows read like another class
            words = list(rng.choice(WORDS[CLASSES[int(rng.integers(4))]].split(), 3)) + words[3:]
        rng.shuffle(words)
        texts.append(" ".join(words).capitalize() + ".")
        labels.append(c)
    return texts, labels


def _write(tmp_path: Path, n_train: int = 3000, n_test: int = 600) -> tuple[Path, Path]:
    """Train: TSV without a header (text, class name). Test: CSV with class numbers first (like AG News)."""
    texts, labels = _texts(n_train, 0)
    train = tmp_path / "train.tsv"
    train.write_text("".join(f"{t}\t{c}\n" for t, c in zip(texts, labels, strict=True)), encoding="utf-8")
    texts, labels = _texts(n_test, 1)
    test = tmp_path / "test.csv"
    with test.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, quoting=csv.QUOTE_ALL)
        for t, c in zip(texts, labels, strict=True):
            w.writerow([str(CLASSES.index(c) + 1), "a title", t])
    return train, test


def _config(train: Path, test: Path, model: dict, tokens: str = "ngrams", **label: object) -> dict:
    text = ({"name": "text", "kind": "text", "tokens": "bytes", "max_bytes": 128} if tokens == "bytes" else
            {"name": "text", "kind": "text", "buckets": 50_000, "ngram_min": 3, "ngram_max": 4, "word_ngrams": 1})
    return {
        "name": "topics",
        "data": {"train": str(train), "format": "tsv", "header": False, "columns": ["text", "class"],
                 "quoting": False,
                 "test": {"path": str(test), "format": "csv", "columns": ["class", "title", "text"], "quoting": True}},
        "label": {"column": "class", "kind": "multiclass",
                  "aliases": {str(i + 1): c for i, c in enumerate(CLASSES)}, **label},
        "features": [text],
        "model": model,
        "train": {"epochs": 4, "batch_size": 64, "lr": 0.01, "embedding_lr": 0.2, "seed": 0},
    }


# -- config ---------------------------------------------------------------------------------------------------
def test_label_config_rules() -> None:
    LabelConfig(column="y", kind="multiclass", classes=["a", "b"], aliases={"1": "a"})
    with pytest.raises(ValueError, match="classes and aliases apply to kind: multiclass"):
        LabelConfig(column="y", classes=["a", "b"])
    with pytest.raises(ValueError, match=r"aliases point to \['c'\], which are not in classes"):
        LabelConfig(column="y", kind="multiclass", classes=["a", "b"], aliases={"3": "c"})
    with pytest.raises(ValueError, match=r"classes \['a'\] are listed twice"):
        LabelConfig(column="y", kind="multiclass", classes=["a", "b", "a"])


def test_file_spec_options_and_relative_paths(tmp_path: Path) -> None:
    cfg = parse_config(_config(Path("train.tsv"), Path("sub/test.csv"), {"name": "bag"}), base_dir=tmp_path)
    found = cfg.data.file("test")
    assert found is not None
    path, options = found
    assert path == tmp_path / "sub" / "test.csv"
    assert (options.format, options.columns, options.quoting, options.header) == (
        "csv", ["class", "title", "text"], True, False)  # header not set on the file: follows data
    train_path, train_options = cfg.data.file("train")  # type: ignore[misc]
    assert train_path == tmp_path / "train.tsv" and train_options is cfg.data
    assert cfg.data.file("valid") is None


def test_bytecnn_needs_a_bytes_text_feature(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="give at least one text feature `tokens: bytes`"):
        parse_config(_config(tmp_path / "a", tmp_path / "b", {"name": "bytecnn"}))
    with pytest.raises(ValueError, match="tokens applies to text features only"):
        FeatureConfig(name="x", kind="sparse", tokens="bytes")


# -- encoder -----------------------------------------------------------------------------------------------------
def _chunk(labels: list[str | None]) -> Chunk:
    table = pa.table({"t": ["x"] * len(labels), "y": pa.array(labels, pa.string())})
    return Chunk(table, np.arange(1, len(labels) + 1), "f.csv")


def test_encoder_maps_classes_and_aliases_and_reports_unknown_ones(tmp_path: Path) -> None:
    label = LabelConfig(column="y", kind="multiclass", classes=["cat", "dog", "eel"], aliases={"2": "dog"})
    enc = Encoder([FeatureConfig(name="t", kind="text")], label)
    assert enc.outputs == 3 and not enc.needs_classes
    sink = BadRowSink("quarantine", tmp_path / "q.jsonl")
    batch = enc.encode(_chunk(["eel", "2", "dog", "bird", None, "cat"]), sink)
    sink.close()
    assert batch.label is not None
    assert batch.label.tolist() == [2, 1, 1, 0]
    assert batch.lines.tolist() == [1, 2, 3, 6]
    assert sink.count == 2
    text = (tmp_path / "q.jsonl").read_text()
    assert "unknown class" in text and "bird" in text and '"line": 5' in text


def test_classes_found_in_the_training_file_sorted_as_numbers_when_numeric() -> None:
    enc = Encoder([FeatureConfig(name="t", kind="text")], LabelConfig(column="y", kind="multiclass"))
    assert enc.needs_classes
    enc.fit_classes([_chunk(["10", "9", None]), _chunk(["2", "9"])])
    assert enc.classes_ == ["2", "9", "10"] and enc.outputs == 3
    enc.fit_classes([_chunk(["b", "a", "10"])])
    assert enc.classes_ == ["10", "a", "b"]
    with pytest.raises(ValueError, match="needs at least 2"):
        enc.fit_classes([_chunk(["a", "a"])])
    restored = Encoder.from_dict(enc.to_dict())
    assert restored.classes_ == ["10", "a", "b"]


# -- metrics -----------------------------------------------------------------------------------------------------
def test_multiclass_metrics_match_sklearn() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 500)
    p = rng.dirichlet(np.ones(4), 500)
    p[np.arange(500), y] += 0.5
    p /= p.sum(axis=1, keepdims=True)
    r = multiclass_report(y, p, prior=[0.25, 0.25, 0.25, 0.25])
    assert r["accuracy"] == pytest.approx(np.mean(p.argmax(1) == y))
    assert r["macro_f1"] == pytest.approx(f1_score(y, p.argmax(1), average="macro"))
    assert r["logloss"] == pytest.approx(sk_log_loss(y, p, labels=range(4)))
    assert r["ne"] == pytest.approx(r["logloss"] / np.log(4))
    cm = confusion_matrix(y, p)
    assert cm.sum() == 500 and np.trace(cm) == round(r["accuracy"] * 500)
    with pytest.raises(ValueError, match="class indices in"):
        multiclass_report([0, 4], p[:2])


# -- training ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("model", "tokens", "min_accuracy"), [
    ({"name": "bag", "embedding_dim": 8}, "ngrams", 0.80),
    ({"name": "logistic"}, "ngrams", 0.80),
    ({"name": "bytecnn", "embedding_dim": 8, "channels": [32, 32], "kernel_size": 3, "hidden": [32]}, "bytes", 0.70),
])
def test_trains_multiclass_text_and_evaluates_the_test_file(tmp_path: Path, model: dict, tokens: str,
                                                            min_accuracy: float) -> None:
    train, test = _write(tmp_path)
    cfg = parse_config(_config(train, test, model, tokens))
    run = shoal.train(cfg, home=tmp_path / "home")
    m = run.metrics
    assert m["test_rows"] == 600 and m["test_accuracy"] >= min_accuracy, m  # the noise-free ceiling is ~0.89
    assert m["test_macro_f1"] >= min_accuracy - 0.02 and m["test_ne"] < 0.8, m
    s = run.summary
    assert s["classes"] == sorted(CLASSES) and sum(s["train_class_counts"]) == s["train_rows"]
    assert np.asarray(s["test_confusion"]).sum() == 600
    assert Path(s["test_confusion_png"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bundle = shoal.load(run.run_id, home=tmp_path / "home")
    assert bundle.classes == sorted(CLASSES)  # not configured: found in the training file, sorted
    # shoal eval on the test file reads it with the test file's own options and gives the same metrics
    again = shoal.evaluate_file(run.run_id, test, home=tmp_path / "home")
    assert again["accuracy"] == pytest.approx(m["test_accuracy"]) and again["classes"] == sorted(CLASSES)
    assert np.asarray(again["confusion"]).tolist() == s["test_confusion"]


def test_probabilities_are_a_distribution_over_the_classes(tmp_path: Path) -> None:
    train, test = _write(tmp_path, n_train=800, n_test=50)
    cfg = parse_config(_config(train, test, {"name": "bag", "embedding_dim": 4}, classes=CLASSES))
    run = shoal.train(cfg, home=tmp_path / "h")
    bundle = shoal.load(run.run_id, home=tmp_path / "h")
    table = pa.table({"text": ["Goal! The striker and coach won the match.", "", None]})
    batch = bundle.encoder.encode(Chunk(table, np.arange(1, 4), "req"), BadRowSink("error"), with_label=False)
    p = bundle.predict_proba(batch)
    assert p.shape == (3, 4)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-9)
    assert bundle.classes == CLASSES and CLASSES[int(p[0].argmax())] == "Sports"  # configured order


def test_cli_train_and_eval_print_the_confusion_matrix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import yaml

    train, test = _write(tmp_path, n_train=800, n_test=100)
    cfg_path = tmp_path / "topics.yaml"
    cfg_path.write_text(yaml.safe_dump(_config(train, test, {"name": "bag", "embedding_dim": 4})))
    runner = CliRunner()
    home = str(tmp_path / "home")
    out = runner.invoke(app, ["train", str(cfg_path), "--home", home])
    assert out.exit_code == 0, out.output
    assert "test confusion matrix" in out.output and "macro_f1" in out.output and "Sci/Tech" in out.output
    out = runner.invoke(app, ["eval", "latest", "--data", str(test), "--home", home])
    assert out.exit_code == 0, out.output
    assert "confusion matrix" in out.output and "accuracy" in out.output
    from shoal.cli import main as cli

    monkeypatch.setattr(cli.console, "width", 200)
    out = runner.invoke(app, ["runs", "--home", home])
    assert out.exit_code == 0 and "%" in out.output  # accuracy shown where a binary run shows its AUC
