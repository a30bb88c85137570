"""Distillation from an ensemble of teachers: the mean of their probabilities against a hand computation, the
check that the teachers share their training data, the registry, the CLI with several runs, the docs' examples."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from shoal.artifacts.bundle import load_bundle
from shoal.artifacts.registry import Registry
from shoal.cli import main as cli
from shoal.data.readers import BadRowSink
from shoal.data.stream import batches, valid_mask
from shoal.distill import TEACHER_FILE, TeacherOutputs, distill, ensemble_logits, teacher_outputs
from shoal.training.runs import train

runner = CliRunner()
DOCS = Path(__file__).resolve().parents[2] / "docs"


sys.path.insert(0, str(Path(__file__).resolve().parent))
from distill_data import click_config, clicks, sigmoid, softmax  # noqa: E402


# -- the average ------------------------------------------------------------------------------------------------
def test_binary_ensemble_is_the_logit_of_the_mean_sigmoid() -> None:
    z1, z2, z3 = np.array([0.3, -2.0, 4.0, 0.0]), np.array([1.5, -1.0, -3.0, 0.0]), np.array([0.0, 2.0, 5.0, 0.0])
    p = (sigmoid(z1) + sigmoid(z2) + sigmoid(z3)) / 3
    got = ensemble_logits([z1, z2, z3])
    assert got.dtype == np.float32 and got.shape == (4,)
    assert got == pytest.approx(np.log(p / (1 - p)), abs=1e-6)
    assert sigmoid(got.astype(np.float64)) == pytest.approx(p, abs=1e-7)
    # not the mean of the logits: one confident teacher does not outvote an unsure one
    assert abs(got[2] - np.mean([4.0, -3.0, 5.0])) > 0.5
    # very confident teachers still give finite logits, on the right side
    sure = ensemble_logits([np.array([60.0, -60.0]), np.array([50.0, -70.0])])
    assert np.isfinite(sure).all() and sure[0] > 40 and sure[1] < -40


def test_multiclass_ensemble_is_the_log_of_the_mean_softmax() -> None:
    rng = np.random.default_rng(0)
    z1, z2 = rng.normal(size=(5, 4)) * 3, rng.normal(size=(5, 4))
    p = (softmax(z1) + softmax(z2)) / 2
    got = ensemble_logits([z1, z2])
    assert got.shape == (5, 4) and got == pytest.approx(np.log(p), abs=1e-6)
    assert softmax(got.astype(np.float64)) == pytest.approx(p, abs=1e-7)
    assert np.isfinite(ensemble_logits([np.array([[800.0, -800.0, 0.0]]), np.array([[0.0, 900.0, 1.0]])])).all()


def test_ensemble_of_unlike_logits_is_refused() -> None:
    with pytest.raises(ValueError, match=r"different shapes \[\(3,\), \(3, 2\)\]"):
        ensemble_logits([np.zeros(3), np.zeros((3, 2))])
    with pytest.raises(ValueError, match=r"no teacher logits to average"):
        ensemble_logits([])


# -- teachers on a small click log ------------------------------------------------------------------------------
def _teachers(tmp: Path, home_name: str = "home") -> tuple[Path, list[str], Path]:
    """(home, [mlp teacher, logistic teacher], data): two teachers of one click log, trained on the same rows."""
    data = clicks(tmp / "clicks.csv")
    home = tmp / home_name
    ids = [train(click_config(data, model, epochs=2), home).run_id
           for model in ({"name": "mlp", "embedding_dim": 4, "hidden": [16]}, {"name": "logistic"})]
    return home, ids, data


@pytest.fixture(scope="module")
def ensemble_home(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], Path]:
    return _teachers(tmp_path_factory.mktemp("ensemble"))


def _by_line(home: Path, run_id: str, data: Path) -> dict[int, float]:
    """One teacher's logit of every row of the data file, computed here independently of shoal.distill."""
    bundle = load_bundle(Registry(home).get(run_id).artifact_dir / "bundle")
    return {int(line): float(v) for b in batches(data, bundle.config.data, bundle.encoder, BadRowSink("error"))
            for line, v in zip(b.lines, bundle.predict_logits(b), strict=True)}


def test_ensemble_outputs_are_the_mean_probability_by_hand(ensemble_home: tuple[Path, list[str], Path]) -> None:
    home, ids, data = ensemble_home
    bundles = [load_bundle(Registry(home).get(i).artifact_dir / "bundle") for i in ids]
    out = teacher_outputs(bundles, bundles[0].config)
    each = [_by_line(home, i, data) for i in ids]
    lines = np.array(sorted(each[0]))
    kept = lines[~valid_mask(lines, 0.2, 3)]  # the held-out rows stay out
    assert out.lines.tolist() == kept.tolist() and out.labelled.all()
    by_hand = np.array([(sigmoid(each[0][x]) + sigmoid(each[1][x])) / 2 for x in kept.tolist()])
    assert sigmoid(out.logits.astype(np.float64)) == pytest.approx(by_hand, abs=1e-6)
    # the two teachers disagree, so the mean is neither of them
    assert np.abs(out.logits - np.array([each[0][x] for x in kept.tolist()])).max() > 0.01


def test_one_teacher_outputs_are_unchanged(ensemble_home: tuple[Path, list[str], Path]) -> None:
    home, ids, data = ensemble_home
    bundle = load_bundle(Registry(home).get(ids[0]).artifact_dir / "bundle")
    one, listed = teacher_outputs(bundle, bundle.config), teacher_outputs([bundle], bundle.config)
    assert np.array_equal(one.logits, listed.logits) and np.array_equal(one.lines, listed.lines)
    each = _by_line(home, ids[0], data)
    assert one.logits.tolist() == pytest.approx([each[x] for x in one.lines.tolist()], abs=1e-6)  # its own logits


def test_distil_from_an_ensemble_records_every_teacher(ensemble_home: tuple[Path, list[str], Path]) -> None:
    home, ids, _ = ensemble_home
    rec = distill(ids, "logistic", home, train={"epochs": 1})
    assert rec.status == "completed" and rec.kind == "distill" and rec.parent == ids[0]
    s = rec.summary["distill"]
    assert s["teachers"] == ids and s["teacher"] == ids[0] and s["teacher_models"] == ["mlp", "logistic"]
    assert s["ensemble"] == "mean of probabilities"
    bundles = [load_bundle(Registry(home).get(i).artifact_dir / "bundle") for i in ids]
    cached = TeacherOutputs.load(rec.artifact_dir / TEACHER_FILE)
    assert np.array_equal(cached.logits, teacher_outputs(bundles, bundles[0].config).logits)
    assert rec.summary["valid_rows"] == Registry(home).get(ids[0]).summary["valid_rows"]  # same held-out rows
    with pytest.raises(ValueError, match=rf"teacher run {ids[1]} is given more than once"):
        distill([ids[0], ids[1], ids[1]], "logistic", home)


def test_transfer_rows_get_the_ensemble_guess(ensemble_home: tuple[Path, list[str], Path], tmp_path: Path) -> None:
    home, ids, _ = ensemble_home
    extra = clicks(tmp_path / "extra.csv", rows=300, seed=7)
    rec = distill(ids, "logistic", home, transfer=extra, train={"epochs": 1})
    out = TeacherOutputs.load(rec.artifact_dir / TEACHER_FILE)
    assert rec.status == "completed" and (~out.labelled).sum() == 300
    table = pq.read_table(rec.artifact_dir / "train+transfer.parquet")
    guessed = np.array(table.column("y").to_pylist()[-300:], dtype=int)
    assert guessed.tolist() == (out.logits[~out.labelled] > 0).astype(int).tolist()


def test_teachers_of_other_data_are_refused(ensemble_home: tuple[Path, list[str], Path], tmp_path: Path) -> None:
    home, ids, data = ensemble_home
    other_file = shutil.copy(data, tmp_path / "other.csv")
    other = train(click_config(Path(other_file), {"name": "logistic"}, epochs=1), home).run_id
    with pytest.raises(ValueError, match=re.escape(
            f"teacher {other}: data.train is '{other_file}', teacher {ids[0]}'s is '{data}'; the teachers of an "
            "ensemble must be trained on the same data")):
        distill([ids[0], other], "logistic", home)
    # the seed picks the held-out rows: teachers with other seeds held other rows out
    cfg = click_config(data, {"name": "logistic"}, epochs=1)
    reseeded = train(cfg.model_copy(update={"train": cfg.train.model_copy(update={"seed": 4})}), home).run_id
    with pytest.raises(ValueError, match=rf"teacher {reseeded}: train.seed is 4, teacher {ids[0]}'s is 3"):
        distill([ids[0], reseeded], "logistic", home)
    assert not [r for r in Registry(home).list() if r.kind == "distill" and r.status == "failed"]  # refused early


def test_cli_takes_several_teachers(ensemble_home: tuple[Path, list[str], Path],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    home, ids, _ = ensemble_home
    monkeypatch.setattr(cli.console, "_width", 200)
    result = runner.invoke(cli.app, ["distill", *ids, "--student", "logistic", "--epochs", "1", "--home", str(home)])
    assert result.exit_code == 0, result.output
    rec = Registry(home).get("latest")
    assert rec.kind == "distill" and rec.parent == ids[0] and rec.summary["distill"]["teachers"] == ids
    assert f"teachers (an ensemble, the mean of their probabilities): {ids[0]} {ids[1]}" in result.output
    assert f"teacher 1 ({ids[0]})" in result.output and f"teacher 2 ({ids[1]})" in result.output
    shown = runner.invoke(cli.app, ["show", rec.run_id, "--home", str(home)])
    assert shown.exit_code == 0 and f"teachers (an ensemble, the mean of their probabilities): {ids[0]} {ids[1]}" \
        in shown.output
    missing = runner.invoke(cli.app, ["distill", "--student", "logistic", "--home", str(home)])
    assert missing.exit_code == 2 and "Missing argument" in missing.output


def test_docs_python_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/distill.md's Python blocks, in a folder whose shoal-runs holds two teachers of one data set."""
    _teachers(tmp_path, "shoal-runs")
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", (DOCS / "distill.md").read_text(encoding="utf-8"), flags=re.S)
    assert len(blocks) >= 2
    for code in blocks:
        exec(compile(code, "docs/distill.md", "exec"), {})  # noqa: S102 - our own docs
    students = [r for r in Registry(tmp_path / "shoal-runs").list() if r.kind == "distill"]
    assert [len(r.summary["distill"]["teachers"]) for r in students] == [2, 1]  # newest first
