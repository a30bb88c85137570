"""Distillation and compress: the loss against a hand computation, the teacher's outputs looked up by line,
students that learn the teacher, bytecnn -> bag on text, the registry, compress within a budget, the CLI."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from shoal.artifacts.bundle import load_bundle
from shoal.artifacts.registry import Registry
from shoal.cli import main as cli
from shoal.config import parse_config
from shoal.data.readers import BadRowSink
from shoal.data.stream import batches, valid_mask
from shoal.distill import (
    TEACHER_FILE,
    DistillLoss,
    TeacherOutputs,
    distill,
    distillation_loss,
    student_config,
    teacher_outputs,
)
from shoal.training.runs import train

runner = CliRunner()

sys.path.insert(0, str(Path(__file__).resolve().parent))
from distill_data import click_config, clicks, sigmoid, softmax  # noqa: E402


# -- the loss ---------------------------------------------------------------------------------------------------
def test_binary_loss_matches_hand_computation() -> None:
    s, t = np.array([0.3, -1.2, 2.0, 0.0]), np.array([1.0, -0.5, 3.0, -2.0])
    y = np.array([1.0, 0.0, 1.0, 1.0])
    T, a = 2.5, 0.3
    ce = -(y * np.log(sigmoid(s)) + (1 - y) * np.log(1 - sigmoid(s)))
    pt, ps = sigmoid(t / T), sigmoid(s / T)
    kl = pt * np.log(pt / ps) + (1 - pt) * np.log((1 - pt) / (1 - ps))
    want = np.mean(a * ce + (1 - a) * T**2 * kl)
    got = distillation_loss(torch.tensor(s), torch.tensor(y), torch.tensor(t), T, a)
    assert float(got) == pytest.approx(want, rel=1e-9)


def test_multiclass_loss_matches_hand_computation() -> None:
    rng = np.random.default_rng(0)
    s, t = rng.normal(size=(5, 4)), rng.normal(size=(5, 4)) * 3
    y = np.array([0, 3, 1, 2, 3])
    T, a = 3.0, 0.6
    ce = -np.log(softmax(s)[np.arange(5), y])
    pt, ps = softmax(t / T), softmax(s / T)
    kl = (pt * np.log(pt / ps)).sum(axis=1)
    want = np.mean(a * ce + (1 - a) * T**2 * kl)
    got = distillation_loss(torch.tensor(s), torch.tensor(y, dtype=torch.float32), torch.tensor(t), T, a)
    assert float(got) == pytest.approx(want, rel=1e-9)


def test_loss_edge_cases_and_transfer_rows() -> None:
    s, t, y = torch.tensor([0.5, -1.0, 2.0]), torch.tensor([1.5, 0.2, -1.0]), torch.tensor([1.0, 0.0, 0.0])
    plain = torch.nn.functional.binary_cross_entropy_with_logits(s, y)
    assert float(distillation_loss(s, y, t, 2.0, 1.0)) == pytest.approx(float(plain))  # alpha 1: the labels only
    assert float(distillation_loss(t, y, t, 2.0, 0.0)) == pytest.approx(0.0, abs=1e-7)  # KL(t || t) = 0
    # a transfer row (labelled False) takes the soft term only, whatever alpha says
    mixed = distillation_loss(s, y, t, 2.0, 0.5, torch.tensor([True, True, False]))
    each = [distillation_loss(s[i:i + 1], y[i:i + 1], t[i:i + 1], 2.0, 0.5 if i < 2 else 0.0) for i in range(3)]
    assert float(mixed) == pytest.approx(float(sum(each)) / 3)


def test_loss_settings_are_checked() -> None:
    empty = TeacherOutputs(np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros(0, bool))
    with pytest.raises(ValueError, match=r"temperature must be > 0, not 0"):
        DistillLoss(empty, temperature=0)
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\], not 1.5"):
        DistillLoss(empty, alpha=1.5)


def test_lookup_by_line_in_any_order() -> None:
    out = TeacherOutputs(np.array([2, 3, 5, 9]), np.array([0.2, 0.3, 0.5, 0.9], np.float32), np.ones(4, bool))
    logits, labelled = out.lookup(np.array([9, 2, 5]))
    assert logits.tolist() == pytest.approx([0.9, 0.2, 0.5]) and labelled.all()
    with pytest.raises(ValueError, match=r"no teacher output for line\(s\) \[4, 10\]"):
        out.lookup(np.array([3, 4, 10]))


@pytest.fixture(scope="module")
def teacher_home(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, Path]:
    """(home, teacher run id, data file): a small MLP teacher on the click log."""
    tmp = tmp_path_factory.mktemp("distill")
    data = clicks(tmp / "clicks.csv")
    home = tmp / "home"
    rec = train(click_config(data, {"name": "mlp", "embedding_dim": 4, "hidden": [16]}), home)
    return home, rec.run_id, data


def test_teacher_outputs_computed_once_and_looked_up_by_line(teacher_home: tuple[Path, str, Path],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    home, teacher, data = teacher_home
    import shoal.distill.run as d  # where distill() looks teacher_outputs up

    calls: list[int] = []
    real_outputs = d.teacher_outputs
    monkeypatch.setattr(d, "teacher_outputs", lambda *a, **k: calls.append(1) or real_outputs(*a, **k))
    seen: list[tuple[np.ndarray, np.ndarray]] = []
    real_call = DistillLoss.__call__

    def spy(self: DistillLoss, logits: torch.Tensor, batch: Any) -> torch.Tensor:
        seen.append((batch.lines.copy(), self.teacher.lookup(batch.lines)[0]))
        return real_call(self, logits, batch)

    monkeypatch.setattr(DistillLoss, "__call__", spy)
    rec = distill(teacher, "logistic", home, train={"epochs": 2})
    assert calls == [1]  # one pass of the teacher for all epochs
    assert rec.status == "completed" and (rec.artifact_dir / TEACHER_FILE).is_file()

    # the teacher's logits of each mini-batch's rows, computed here independently, row by row
    bundle = load_bundle(Registry(home).get(teacher).artifact_dir / "bundle")
    cfg = bundle.config
    every = {int(line): float(v) for b in batches(data, cfg.data, bundle.encoder, BadRowSink("error"))
             for line, v in zip(b.lines, bundle.predict_logits(b), strict=True)}
    assert any((np.diff(lines) < 0).any() for lines, _ in seen)  # batches are shuffled
    for lines, looked_up in seen:
        assert looked_up == pytest.approx([every[int(x)] for x in lines], abs=1e-5)
    # held-out rows stay held out: the student trained on exactly the teacher's training rows
    trained = np.unique(np.concatenate([lines for lines, _ in seen]))
    all_lines = np.array(sorted(every))
    assert trained.tolist() == all_lines[~valid_mask(all_lines, 0.2, 3)].tolist()
    assert rec.summary["valid_rows"] == int(valid_mask(all_lines, 0.2, 3).sum())


def test_alpha_zero_student_reproduces_teacher(teacher_home: tuple[Path, str, Path]) -> None:
    """Trained on the soft targets only (T = 1), a student as big as its teacher copies its probabilities."""
    home, teacher, data = teacher_home
    rec = distill(teacher, {"name": "mlp", "embedding_dim": 4, "hidden": [16]}, home, temperature=1.0, alpha=0.0,
                  train={"epochs": 12})
    t = load_bundle(Registry(home).get(teacher).artifact_dir / "bundle")
    s = load_bundle(rec.artifact_dir / "bundle")
    batch = next(batches(data, t.config.data, t.encoder, BadRowSink("error")))
    pt, ps = t.predict_proba(batch), s.predict_proba(batch)
    assert np.abs(pt - ps).mean() < 0.02, np.abs(pt - ps).mean()
    assert abs(rec.metrics["valid_auc"] - Registry(home).get(teacher).metrics["valid_auc"]) < 0.02


def test_registry_records_the_teacher_and_show_prints_it(teacher_home: tuple[Path, str, Path],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    home, teacher, _ = teacher_home
    monkeypatch.setattr(cli.console, "_width", 200)
    result = runner.invoke(cli.app, ["distill", teacher, "--student", "logistic", "--epochs", "1",
                                     "--temperature", "3", "--alpha", "0.2", "--home", str(home)])
    assert result.exit_code == 0, result.output
    rec = Registry(home).get("latest")
    assert rec.kind == "distill" and rec.parent == teacher and rec.config["model"] == {"name": "logistic"}
    assert rec.summary["distill"]["teacher"] == teacher
    assert (rec.summary["distill"]["temperature"], rec.summary["distill"]["alpha"]) == (3.0, 0.2)
    assert f"teacher: {teacher}" in result.output and "student" in result.output
    shown = runner.invoke(cli.app, ["show", rec.run_id, "--home", str(home)])
    assert shown.exit_code == 0 and f"teacher: {teacher}" in shown.output
    bad = runner.invoke(cli.app, ["distill", teacher, "--student", "forest", "--home", str(home)])
    assert bad.exit_code == 2 and "unknown student 'forest'" in bad.output


def test_student_config_must_keep_the_split(teacher_home: tuple[Path, str, Path], tmp_path: Path) -> None:
    home, teacher, data = teacher_home
    t_cfg = load_bundle(Registry(home).get(teacher).artifact_dir / "bundle").config
    other = click_config(data, {"name": "logistic"}).model_copy(
        update={"train": t_cfg.train.model_copy(update={"seed": 4})})
    with pytest.raises(ValueError, match=r"train.seed is 4, the teacher's is 3; the seed picks the held-out rows"):
        student_config(t_cfg, other)
    assert student_config(t_cfg, "mlp").model.name == "mlp"


def test_transfer_set_is_labelled_by_the_teacher(teacher_home: tuple[Path, str, Path], tmp_path: Path) -> None:
    home, teacher, _ = teacher_home
    extra = clicks(tmp_path / "extra.csv", rows=500, seed=7)
    rec = distill(teacher, "logistic", home, transfer=extra, train={"epochs": 1})
    s = rec.summary["distill"]
    assert rec.status == "completed" and s["transfer_rows"] == 500
    out = TeacherOutputs.load(rec.artifact_dir / TEACHER_FILE)
    assert (~out.labelled).sum() == 500 and out.labelled.sum() == s["teacher_rows"] - 500
    assert rec.summary["valid_rows"] == Registry(home).get(teacher).summary["valid_rows"]  # same held-out rows


# -- text: bytecnn -> bag ---------------------------------------------------------------------------------------
def test_bytecnn_teacher_distils_into_bag(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    good, bad = ["great", "lovely", "fine", "superb"], ["awful", "poor", "dull", "bad"]
    with (tmp_path / "text.tsv").open("w") as fh:
        fh.write("label\ttext\n")
        for _ in range(400):
            y = int(rng.random() < 0.5)
            words = rng.choice(good if y else bad, 2).tolist() + rng.choice(["a", "the", "film", "plot"], 3).tolist()
            fh.write(f"{y}\t{' '.join(rng.permutation(words))}\n")
    cfg = parse_config({
        "name": "text", "data": {"train": str(tmp_path / "text.tsv"), "valid_fraction": 0.2, "quoting": False},
        "label": {"column": "label"},
        "features": [{"name": "text", "kind": "text", "tokens": "bytes", "max_bytes": 64}],
        "model": {"name": "bytecnn", "embedding_dim": 8, "channels": [16], "kernel_size": 3, "hidden": []},
        "train": {"epochs": 2, "batch_size": 32, "lr": 0.01, "pictures": False},  # no PNGs: none is read
    })
    home = tmp_path / "home"
    teacher = train(cfg, home)
    student = student_config(cfg, "bag")
    assert student.features[0].tokens == "ngrams" and student.train.embedding_lr == 0.1
    # a teacher reading the text both as bytes and as n-grams: the student keeps one n-gram feature per column
    both = parse_config({**cfg.resolved(), "features": [
        {"name": "text_bytes", "column": "text", "kind": "text", "tokens": "bytes", "max_bytes": 64},
        {"name": "text_ngrams", "column": "text", "kind": "text"}]})
    assert [f.name for f in student_config(both, "bag").features] == ["text_ngrams"]
    rec = distill(teacher.run_id, "bag", home, train={"epochs": 2, "pictures": False})
    assert rec.status == "completed" and rec.config["features"][0]["tokens"] == "ngrams"
    assert rec.metrics["valid_auc"] > 0.8 and rec.summary["distill"]["teacher_model"] == "bytecnn"


def test_teacher_outputs_skip_held_out_rows(teacher_home: tuple[Path, str, Path]) -> None:
    home, teacher, _ = teacher_home
    bundle = load_bundle(Registry(home).get(teacher).artifact_dir / "bundle")
    out = teacher_outputs(bundle, bundle.config)
    assert not valid_mask(out.lines, 0.2, 3).any() and np.all(np.diff(out.lines) > 0)


# -- compress ---------------------------------------------------------------------------------------------------
def test_compress_picks_within_budget_and_reports_an_impossible_one(teacher_home: tuple[Path, str, Path]) -> None:
    from shoal.compress.search import StudentSpec, compress, raw_validation_rows

    home, teacher, _ = teacher_home
    students = [StudentSpec("logistic", {"name": "logistic"}), StudentSpec("mlp-2", {"name": "mlp",
                                                                                   "embedding_dim": 2, "hidden": []})]
    steps: list[str] = []
    result = compress(teacher, 1000.0, home, students=students, systems=("torch-fp32", "onnx-fp32", "onnx-raw"),
                      seconds=0.05, progress=lambda what, done, total: steps.append(what))
    assert len(result.candidates) == 9  # (teacher + 2 students) x 3 systems
    assert result.chosen is not None and result.chosen.within_budget
    assert result.chosen.quality == max(c.quality for c in result.candidates)
    # the self-contained graph: the same quality as the encoder + model (fp32), measured on the raw rows; the
    # probabilities agree to ~1e-7 (float32 sums in another order), so two near-tied rows may swap: one pair of
    # this set's positives and negatives is ~5e-6 of AUC, and wrong ids would cost far more than 1e-4
    by = {(c.student, c.system): c for c in result.candidates}
    for who in ("teacher", "logistic", "mlp-2"):
        assert by[who, "onnx-raw"].quality == pytest.approx(by[who, "onnx-fp32"].quality, abs=1e-4)
        assert by[who, "onnx-raw"].p99_ms == by[who, "onnx-raw"].model_p99_ms > 0  # one call: the whole request
    assert result.png.is_file() and result.png.stat().st_size > 1000
    rec = result.record
    assert rec.kind == "compress" and rec.parent == teacher and rec.status == "completed"
    bundle = load_bundle(Path(rec.summary["bundle"]))
    assert bundle.meta["compressed"]["system"] == result.chosen.system
    assert any(c.on_frontier for c in result.candidates) and steps[0].startswith("score")
    # latency is end to end (a raw row encoded on every call), the model call alone beside it
    assert all(c.p99_ms > 0 and 0 < c.model_p99_ms < float("inf") for c in result.candidates)
    raw = raw_validation_rows(bundle, Registry(home).get(teacher).artifact_dir)  # what the teacher was timed on
    assert raw and all(len(c) == 1 and "label" not in c.table.column_names for c in raw)

    nothing = compress(teacher, 1e-6, home, students=students[:1], systems=("onnx-fp32",), seconds=0.05,
                       include_teacher=False)
    assert nothing.chosen is None and nothing.nearest.p99_ms > 1e-6
    assert "bundle" not in nothing.record.summary and nothing.record.summary["compress"]["chosen"] is None


def test_compress_cli_says_when_no_candidate_fits(teacher_home: tuple[Path, str, Path],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import shoal.compress.search as c

    home, teacher, _ = teacher_home
    monkeypatch.setattr(cli.console, "_width", 200)
    monkeypatch.setattr(c, "default_students", lambda text: [c.StudentSpec("logistic", {"name": "logistic"})])
    result = runner.invoke(cli.app, ["compress", teacher, "--budget-ms", "0.000001", "--seconds", "0.05",
                                     "--no-teacher", "--home", str(home)])
    assert result.exit_code == 1, result.output
    assert re.search(r"no candidate meets p99 <= 1e-06 ms; the nearest is logistic \S+ at", result.output)
    ok = runner.invoke(cli.app, ["compress", teacher, "--budget-ms", "1000", "--seconds", "0.05", "--no-teacher",
                                 "--register", "tiny-ctr", "--alias", "production", "--home", str(home)])
    assert ok.exit_code == 0, ok.output
    assert "chosen:" in ok.output and "compress.png" in ok.output
    from shoal.artifacts.models import ModelRegistry

    version = ModelRegistry(home).resolve("tiny-ctr@production")  # the choice, registered as a model version
    assert Registry(home).get(version.run_id).kind == "compress" and "chosen by shoal compress" in version.note


# -- resume: one entry for every kind of run --------------------------------------------------------------------
def test_resume_goes_by_the_run_kind(tmp_path: Path) -> None:
    import shoal

    registry = Registry(tmp_path)
    trained = registry.create_run("teacher", {})
    registry.complete(trained.run_id, {}, {})
    with pytest.raises(ValueError) as info:
        shoal.resume(trained.run_id, tmp_path)
    assert str(info.value) == (f"run {trained.run_id} already completed; nothing to resume "
                               "(start a new run instead)")
    student = registry.create_run("student", {}, kind="distill", parent=trained.run_id)
    registry.fail(student.run_id, KeyboardInterrupt())
    with pytest.raises(ValueError) as info:
        shoal.resume(student.run_id, tmp_path)  # the distillation path: it needs the cached teacher outputs
    assert str(info.value) == (f"run {student.run_id} stopped before its teacher's outputs were saved; nothing to "
                               f"resume (distil again: shoal distill {trained.run_id} --student ...)")
    assert registry.get(student.run_id).status == "killed"  # refused before the run was reopened
    search = registry.create_run("search", {}, kind="compress", parent=trained.run_id)
    with pytest.raises(ValueError) as info:
        shoal.resume(search.run_id, tmp_path)
    assert str(info.value) == (f"run {search.run_id} is a compress search, which cannot be resumed; run it again: "
                               f"shoal compress {trained.run_id} --budget-ms ...")
