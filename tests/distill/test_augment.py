"""The augmented transfer set: Tang et al.'s text rules and MUNGE on raw rows, seeded; held-out rows never used;
``distill(..., augment=K)`` and ``shoal distill --augment K`` end to end."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from shoal.artifacts.registry import Registry
from shoal.cli import main as cli
from shoal.config import parse_config
from shoal.data.stream import valid_mask
from shoal.distill import TEACHER_FILE, Augmentation, TeacherOutputs, augment_rows, distill
from shoal.distill.augment import augment_text, column_kinds, munge
from shoal.training.runs import train

runner = CliRunner()

sys.path.insert(0, str(Path(__file__).resolve().parent))
from distill_data import click_config, clicks  # noqa: E402

TEXTS = ["a gripping , funny film", "", None, "  Naïve   CAFÉ\tü  end ", "one", "x y z w v u t s r q"]


# -- text: masking and n-gram sampling --------------------------------------------------------------------------
def test_text_copies_are_masked_words_or_spans_of_the_source() -> None:
    a = Augmentation(copies=40, p_mask=0.3, p_ngram=0.5)
    out = augment_text(pa.array(TEXTS), a, np.random.default_rng(0))
    assert out.type == pa.string() and len(out) == 40 * len(TEXTS)
    spans = 0
    for i, new in enumerate(out.to_pylist()):
        source = TEXTS[i % len(TEXTS)]  # copy-major: copy c of row j is row c * N + j
        if source is None:
            assert new is None
            continue
        words, got = source.split(), new.split(" ") if new else []
        assert new == " ".join(got) and all(got)  # words joined by one space
        if len(got) < len(words):  # n-gram sampling kept a span of 1..5 words
            spans += 1
            assert 1 <= len(got) <= 5
            assert any(all(g in ("[MASK]", w) for g, w in zip(got, words[s:s + len(got)], strict=True))
                       for s in range(len(words) - len(got) + 1))
        else:
            assert all(g in ("[MASK]", w) for g, w in zip(got, words, strict=True))
    assert spans > 10
    words = " ".join(x for x in out.to_pylist() if x).split()
    assert {"Naïve", "CAFÉ", "ü"} <= set(words)  # bytes kept as they are: no lowercasing, no normalising
    assert 0.2 < words.count("[MASK]") / len(words) < 0.4


def test_text_keeps_invalid_utf8_bytes_in_a_binary_column() -> None:
    texts = pa.array([b"\xff\xfe bad \x80bytes", b"ok \xc3\xa9t\xc3\xa9", b""], pa.binary())
    out = augment_text(texts, Augmentation(copies=20, mask="<m>"), np.random.default_rng(1))
    assert out.type == pa.binary() and len(out) == 60
    pieces = {w for x in out.to_pylist() for w in x.split(b" ") if x}
    assert pieces <= {b"\xff\xfe", b"bad", b"\x80bytes", b"ok", b"\xc3\xa9t\xc3\xa9", b"<m>"}
    assert {b"\xff\xfe", b"\x80bytes", b"<m>"} <= pieces


def test_augmentation_is_seeded() -> None:
    table = pa.table({"text": pa.array(TEXTS * 20), "label": pa.array(["1", "0", "1", "0", "1", "0"] * 20)})
    kinds = {"text": "text"}
    a = Augmentation(copies=3)
    first, again = augment_rows(table, kinds, a, seed=5), augment_rows(table, kinds, a, seed=5)
    assert first.equals(again) and first.num_rows == 3 * table.num_rows
    assert not first.equals(augment_rows(table, kinds, a, seed=6))
    assert not first.equals(augment_rows(table, kinds, a, seed=5, chunk=1))
    assert first.column("label").to_pylist() == table.column("label").to_pylist() * 3  # the source row's label


# -- tabular rows: MUNGE ----------------------------------------------------------------------------------------
def _tabular(n: int = 200) -> pa.Table:
    """Two far-apart clusters; counts (log1p), a float, ids and missing values, as strings (read from CSV)."""
    rng = np.random.default_rng(0)
    far = np.arange(n) >= n // 2
    count = np.where(far, rng.integers(500, 900, n), rng.integers(0, 9, n)).astype(str).astype(object)
    count[::17] = None
    x = np.round(np.where(far, 50.0, -50.0) + rng.normal(size=n), 3).astype(str).astype(object)
    cat = np.array([f"{'far' if f else 'near'}{rng.integers(5)}" for f in far], dtype=object)
    cat[::13] = None
    age = rng.integers(20, 60, n).astype(str)  # all far from 0: the range is the column's own
    return pa.table({"count": pa.array(count, pa.string()), "x": pa.array(x, pa.string()), "age": pa.array(age),
                     "cat": pa.array(cat, pa.string()), "y": pa.array((rng.random(n) < 0.5).astype(int).astype(str))})


KINDS = {"count": "log1p", "x": "dense", "age": "dense", "cat": "nominal"}


def test_munge_keeps_the_schema_and_the_ranges() -> None:
    table = _tabular()
    out = augment_rows(table, KINDS, Augmentation(copies=4), seed=0)
    assert out.schema == table.schema and out.num_rows == 4 * table.num_rows
    count = np.array([float(v) for v in table.column("count").to_pylist() if v is not None])
    new_count = [v for v in out.column("count").to_pylist() if v is not None]
    assert all(re.fullmatch(r"\d+", v) for v in new_count)  # counts stay whole numbers
    assert count.min() <= min(map(float, new_count)) and max(map(float, new_count)) <= count.max()
    x = np.array([float(v) for v in table.column("x").to_pylist()])
    new_x = np.array([float(v) for v in out.column("x").to_pylist()])
    assert x.min() <= new_x.min() and new_x.max() <= x.max() and len(set(new_x) - set(x)) > 100
    assert set(out.column("cat").to_pylist()) <= set(table.column("cat").to_pylist())
    # nearest neighbours: every new row stays in its source row's cluster
    source_far = np.tile(x > 0, 4)
    assert np.all((new_x > 0) == source_far)
    cats = np.array(out.column("cat").to_pylist(), dtype=object)
    assert all(c is None or c.startswith("far") == f for c, f in zip(cats, source_far, strict=True))


def test_munge_draws_stay_within_the_column_range() -> None:
    table = _tabular().select(["age", "count"])
    wide = Augmentation(copies=4, p_swap=1.0, s=0.01)  # draws a hundred distances away: most are clipped
    out = munge(table, KINDS, wide, np.random.default_rng(0))
    for c in ("age", "count"):
        old = [int(v) for v in table.column(c).to_pylist() if v is not None]
        new = [v for v in out.column(c).to_pylist() if v is not None]
        assert all(re.fullmatch(r"\d+", v) for v in new)  # whole numbers stay whole
        assert min(old) == min(map(int, new)) and max(map(int, new)) == max(old)


def test_munge_without_swaps_copies_the_rows_exactly() -> None:
    table = _tabular(50)
    columns = ["count", "x", "age", "cat"]
    out = munge(table.select(columns), KINDS, Augmentation(copies=2, p_swap=0.0), np.random.default_rng(0))
    assert out.to_pylist() == table.select(columns).to_pylist() * 2


def test_column_kinds_follow_the_features() -> None:
    cfg = parse_config({
        "name": "k", "data": {"train": "t.csv"}, "label": {"column": "y"},
        "features": [{"name": "n", "kind": "dense", "transform": "log1p"}, {"name": "s", "kind": "dense"},
                     {"name": "s_id", "column": "s", "kind": "sparse"}, {"name": "c", "kind": "sparse"},
                     {"name": "t", "kind": "text"}],
        "model": {"name": "logistic"}})
    assert column_kinds([cfg]) == {"n": "log1p", "s": "dense", "c": "nominal", "t": "text"}


@pytest.mark.parametrize(("settings", "message"), [
    ({"copies": -1}, "augment (copies) must be an integer from 0 to 100, not -1"),
    ({"copies": 2.5}, "augment (copies) must be an integer from 0 to 100, not 2.5"),
    ({"copies": True}, "augment (copies) must be an integer from 0 to 100, not True"),
    ({"copies": 2, "p_mask": 1.5}, r"p_mask must be a probability in \[0, 1\], not 1.5"),
    ({"copies": 2, "max_ngram": 0}, "max_ngram must be an integer >= 1, not 0"),
    ({"copies": 2, "s": 0}, "s must be > 0, not 0"),
    ({"copies": 2, "mask": "two words"}, "mask must be one word without whitespace, not 'two words'"),
    ({"copies": 2, "mask": ""}, "mask must be one word without whitespace, not ''"),
    ({"copies": 2, "candidates": 0}, "candidates must be an integer >= 1, not 0"),
])
def test_bad_settings_say_what_to_give(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message) if "\\" not in message else message):
        Augmentation(**settings)  # type: ignore[arg-type]


# -- end to end -------------------------------------------------------------------------------------------------
def _texts(path: Path, rows: int = 300) -> Path:
    """Sentences with a sentiment word, and one word naming the row (``rowN``: where each new row came from)."""
    rng = np.random.default_rng(2)
    with path.open("w") as fh:
        fh.write("label\ttext\n")
        for i in range(rows):
            y = int(rng.random() < 0.5)
            word = rng.choice(["great", "lovely", "Superb"] if y else ["awful", "dull", "Poor"])
            fh.write(f"{y}\tthe film was {word} row{i} ok\n")
    return path


def test_distill_augments_training_rows_only(tmp_path: Path) -> None:
    data = _texts(tmp_path / "text.tsv")
    cfg = parse_config({
        "name": "text", "data": {"train": str(data), "valid_fraction": 0.3, "quoting": False},
        "label": {"column": "label"}, "features": [{"name": "text", "kind": "text", "buckets": 5000}],
        "model": {"name": "bag", "embedding_dim": 4},
        "train": {"epochs": 1, "batch_size": 32, "seed": 1, "pictures": False}})  # no PNGs: none is read
    home = tmp_path / "home"
    teacher = train(cfg, home)
    rec = distill(teacher.run_id, "bag", home, augment=3, train={"epochs": 1, "pictures": False})
    s = rec.summary["distill"]
    lines = np.arange(2, 302)  # the rows' physical lines (line 1: the header)
    held = {f"row{i}" for i in np.flatnonzero(valid_mask(lines, 0.3, 1))}
    kept = {f"row{i}" for i in range(300)} - held
    joined = pq.read_table(rec.artifact_dir / "train+transfer.parquet")
    texts = joined.column("text").to_pylist()
    new = texts[len(kept):]
    assert len(new) == 3 * len(kept) and s["augment"]["rows"] == len(new) and s["transfer_rows"] == len(new)
    named = {w for t in new for w in t.split() if w.startswith("row")}
    assert named <= kept and not named & held and len(named) > 0.8 * len(kept)
    assert {w for t in texts[:len(kept)] for w in t.split() if w.startswith("row")} == kept
    assert s["augment"]["copies"] == 3 and s["augment"]["p_mask"] == 0.1 and s["augment"]["seed"] == 1
    out = TeacherOutputs.load(rec.artifact_dir / TEACHER_FILE)
    assert out.labelled.sum() == len(kept) and (~out.labelled).sum() == len(new)
    assert rec.summary["valid_rows"] == teacher.summary["valid_rows"]  # the same held-out rows, held out


def test_cli_distill_augment_records_the_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli.console, "_width", 200)
    data = clicks(tmp_path / "clicks.csv", rows=600)
    home = tmp_path / "home"
    teacher = train(click_config(data, {"name": "mlp", "embedding_dim": 4, "hidden": [8]}, epochs=1), home)
    bad = runner.invoke(cli.app, ["distill", teacher.run_id, "--student", "logistic", "--augment", "-2",
                                  "--home", str(home)])
    assert bad.exit_code == 2 and "augment (copies) must be an integer from 0 to 100, not -2" in bad.output
    ok = runner.invoke(cli.app, ["distill", teacher.run_id, "--student", "logistic", "--augment", "2",
                                 "--epochs", "1", "--home", str(home)])
    assert ok.exit_code == 0, ok.output
    assert re.search(r"augmented transfer set: [\d,]+ rows \(2 per training row\), soft targets only", ok.output)
    student = Registry(home).get("latest")
    s = student.summary["distill"]
    own = s["teacher_rows"] - s["transfer_rows"]  # the training rows, held-out rows left out
    assert s["augment"]["copies"] == 2 and s["augment"]["rows"] == s["transfer_rows"] == 2 * own
    assert 400 < own < 560  # about 80% of 600
    joined = pq.read_table(student.artifact_dir / "train+transfer.parquet")
    assert joined.num_rows == 3 * own
    shown = runner.invoke(cli.app, ["show", student.run_id, "--home", str(home), "--json"])
    assert shown.exit_code == 0 and '"augment"' in shown.output and '"p_swap": 0.5' in shown.output


def test_the_guide_example_runs_as_written() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "distill.md").read_text(encoding="utf-8")
    (code,) = [b for b in re.findall(r"```python\n(.*?)```", doc, flags=re.S) if "augment_rows" in b]
    scope: dict[str, object] = {}
    exec(compile(code, "docs/distill.md", "exec"), scope)  # noqa: S102 - our own docs
    got = scope["new"].column("text").to_pylist()  # type: ignore[attr-defined]
    shown = re.search(r"# (\['a gripping.*?'CHARMING'\])", code, flags=re.S)  # the list the guide shows
    assert shown is not None
    assert got == ast.literal_eval(re.sub(r"\n#\s*", " ", shown.group(1)))
