"""Header detection of CSV/TSV files (:func:`shoal.inspect.sniff._guess_header`), the ``--header/--no-header``
override, the error when a label is not found in a file read as headerless, and ``label_kind``."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from shoal.cli.main import app
from shoal.config import load_config
from shoal.inspect import inspect_file, starter_config

NEWS = ["World", "Sports", "Business", "Sci/Tech"]


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _said(output: str) -> str:
    """The command's output with rich's line wrapping undone."""
    return " ".join(output.split())


def _sentence(rng: random.Random) -> str:
    words = ["the", "team", "won", "a", "match", "market", "shares", "fell", "after", "talks", "new", "chip"]
    return " ".join(rng.choice(words) for _ in range(rng.randint(12, 40)))


def _cars(rng: random.Random, rows: int) -> list[str]:
    """UCI car shape: categories only, one of them mostly small integers ("5more")."""
    return [f"{rng.choice(['low', 'med', 'high', 'vhigh'])},{rng.choice(['2', '3', '4', '5more'])},"
            f"{rng.choice(['low', 'med', 'high'])},{rng.choice(['acc', 'unacc'])}" for _ in range(rows)]


def _audit_case(name: str, folder: Path) -> tuple[Path, str, list[str]]:
    """(file, label, expected column names) for each shape of the audit whose header was read as data."""
    rng = random.Random(0)
    if name == "all-categorical":
        lines = ["buying,doors,safety,class", *_cars(rng, 200)]
        return _write(folder / "cars.csv", lines), "class", ["buying", "doors", "safety", "class"]
    if name == "text-and-string-label":
        lines = ["text,category"] + [f'"{_sentence(rng)}",{rng.choice(NEWS)}' for _ in range(100)]
        return _write(folder / "news.csv", lines), "category", ["text", "category"]
    if name == "unicode-names":
        lines = ["température,classe"] + [f"{rng.uniform(-5, 30):.1f},{rng.choice('ab')}" for _ in range(50)]
        return _write(folder / "uni.csv", lines), "classe", ["température", "classe"]
    if name == "unicode-names-only-on-strings":
        lines = ["cépage,région,qualité"] + [f"{rng.choice(['Barolo', 'Barbera'])},{rng.choice(['nord', 'sud'])},"
                                             f"{rng.choice(['bonne', 'moyenne'])}" for _ in range(50)]
        return _write(folder / "vins.csv", lines), "cépage", ["cépage", "région", "qualité"]
    if name == "quoted-decimal-comma":
        lines = ["x,c,label"] + [f'"{rng.uniform(-1, 1):.2f}",{rng.choice("abc")},{rng.choice(["no", "yes"])}'
                                 .replace(".", ",", 1) for _ in range(60)]
        return _write(folder / "comma.csv", lines), "label", ["x", "c", "label"]
    raise AssertionError(name)


AUDIT = ["all-categorical", "text-and-string-label", "unicode-names", "unicode-names-only-on-strings",
         "quoted-decimal-comma"]


@pytest.mark.parametrize("case", AUDIT)
def test_the_header_of_each_audit_shape_is_detected(tmp_path: Path, case: str) -> None:
    path, label, names = _audit_case(case, tmp_path)
    p = inspect_file(path, label=label)
    assert p.header and [c.name for c in p.columns] == names and p.label == label


@pytest.mark.parametrize("case", AUDIT)
def test_the_command_reads_the_header_of_each_audit_shape(tmp_path: Path, case: str) -> None:
    path, label, _ = _audit_case(case, tmp_path)
    out = CliRunner().invoke(app, ["inspect", str(path), "--label", label])
    assert out.exit_code == 0, out.output
    assert "header: yes" in _said(out.output)


def test_a_name_that_is_also_a_value_of_its_column_does_not_hide_the_header(tmp_path: Path) -> None:
    """'c' over the values a, b, c reads as data, but the names over numbers and over yes/no outweigh it."""
    rng = random.Random(1)
    lines = ["x,c,label"] + [f"{rng.uniform(-1, 1):.3f},{rng.choice('abc')},{rng.choice(['no', 'yes'])}"
                             for _ in range(60)]
    lines[7] = "abc,a,no"  # one junk value in the number column
    assert inspect_file(_write(tmp_path / "x.csv", lines), label="label").header


def test_a_header_that_names_a_column_twice_is_refused_naming_it(tmp_path: Path) -> None:
    rng = random.Random(2)
    lines = ["a,a,b,label"] + [f"{rng.gauss(0, 1):.3f},{rng.gauss(0, 1):.3f},{rng.randint(1, 5)},{i % 2}"
                               for i in range(40)]
    path = _write(tmp_path / "dup.csv", lines)
    with pytest.raises(ValueError) as err:
        inspect_file(path, label="label")
    assert str(err.value) == (f"{path}: the header names column 'a' twice (columns 1 and 2); give each column its "
                              "own name in the first line (e.g. 'a' and 'a.1')")
    assert not inspect_file(path, header=False, label="c3").header  # --no-header still reads it, as data


def _headerless(name: str, folder: Path) -> Path:
    rng = random.Random(3)
    if name == "all-numeric":
        lines = [f"{i % 2},{rng.randint(0, 90)},{rng.gauss(0, 1):.4f}" for i in range(60)]
    elif name == "all-categorical":
        lines = _cars(rng, 200)
    elif name == "all-categorical-rare-first-value":  # the first line's value of one column is nowhere below
        lines = ["purple,small,yes"] + [f"{rng.choice(['red', 'blue'])},{rng.choice(['small', 'large'])},"
                                        f"{rng.choice(['yes', 'no'])}" for _ in range(60)]
    elif name == "text-and-string-label":
        lines = [f'"{_sentence(rng)}",{rng.choice(NEWS)}' for _ in range(60)]
    elif name == "adult-like":
        lines = [f"{20 + i}, {rng.choice(['Private', 'State-gov'])}, {rng.choice(['>50K', '<=50K'])}"
                 for i in range(60)]
    else:
        raise AssertionError(name)
    return _write(folder / f"{name}.csv", lines)


@pytest.mark.parametrize("case", ["all-numeric", "all-categorical", "all-categorical-rare-first-value",
                                  "text-and-string-label", "adult-like"])
def test_headerless_files_stay_headerless_and_a_missing_label_says_why(tmp_path: Path, case: str) -> None:
    path = _headerless(case, tmp_path)
    p = inspect_file(path)
    assert not p.header and p.columns[0].name == "c0"
    last = f"c{len(p.columns) - 1}"
    with pytest.raises(ValueError) as err:
        inspect_file(path, label="class")
    assert str(err.value) == (f"label column 'class' not found in {path}: its first line was read as data (no "
                              f"header detected), so its columns are c0..{last}; pass --header if the first line "
                              "names the columns")


def test_header_and_no_header_override_the_guess(tmp_path: Path) -> None:
    """A header that looks like data (names that are also values below) is read as one with --header; a first
    line of data that looks like names is read as data with --no-header; the starter config records it."""
    rng = random.Random(4)
    lines = ["red,small,yes"] + [f"{rng.choice(['red', 'blue'])},{rng.choice(['small', 'large'])},"
                                 f"{rng.choice(['yes', 'no'])}" for _ in range(60)]
    path = _write(tmp_path / "colors.csv", lines)
    assert not inspect_file(path).header
    runner = CliRunner()
    config = tmp_path / "colors.yaml"
    out = runner.invoke(app, ["inspect", str(path), "--label", "yes", "--header", "--write", str(config)])
    assert out.exit_code == 0, out.output
    assert "header: yes" in _said(out.output)
    cfg = load_config(config)
    assert cfg.data.header and cfg.data.columns is None and cfg.label.column == "yes"

    named = _write(tmp_path / "named.csv", ["kind,size"] + [f"{'ab'[i % 2]},{i}" for i in range(20)])
    out = runner.invoke(app, ["inspect", str(named), "--label", "c0", "--no-header", "--write", str(config)])
    assert out.exit_code == 0, out.output
    assert "header: no" in _said(out.output) and "21 rows read" in _said(out.output)
    cfg = load_config(config)
    assert not cfg.data.header and cfg.data.columns == ["c0", "c1"]


def _int_classes(folder: Path, classes: int = 30, rows: int = 600) -> Path:
    """Integer class codes 0..classes-1: read as a regression by default (more than 20 integers)."""
    rng = random.Random(5)
    lines = ["f0,f1,label"]
    for i in range(rows):
        k = i % classes
        lines.append(f"{k + rng.gauss(0, 0.3):.3f},{rng.gauss(0, 1):.3f},{k}")
    return _write(folder / "codes.csv", lines)


def test_label_kind_makes_integer_codes_classes(tmp_path: Path) -> None:
    path = _int_classes(tmp_path)
    assert inspect_file(path, label="label").label_kind == "regression"
    p = inspect_file(path, label="label", label_kind="multiclass")
    assert p.label_kind == "multiclass" and p.label_classes == tuple(str(k) for k in range(30))
    assert "--label-kind multiclass" in p.column("label").reason
    config = tmp_path / "codes.yaml"
    config.write_text(starter_config(p, config), encoding="utf-8")
    cfg = load_config(config)
    assert cfg.label.kind == "multiclass" and cfg.label.classes == [str(k) for k in range(30)]
    written = tmp_path / "cli.yaml"  # the command takes it too
    out = CliRunner().invoke(app, ["inspect", str(path), "--label", "label", "--label-kind", "multiclass", "-w",
                                   str(written)])
    assert out.exit_code == 0, out.output
    assert load_config(written).label.kind == "multiclass"


@pytest.mark.parametrize(("kind", "message"), [
    ("regression", "label column 'city' has values that are not numbers (e.g. 'c0'); --label-kind regression "
                   "needs numbers"),
    ("binary", "label column 'city' has 3 distinct values; --label-kind binary needs exactly 2 values"),
    ("multilabel", "label column 'city' has no tags joined by one of | ; , in its values; --label-kind multilabel "
                   "needs them"),
    ("ordinal", "unknown label kind 'ordinal'; choose from binary, multiclass, regression, multilabel"),
], ids=["regression-on-strings", "binary-on-3-values", "multilabel-without-tags", "unknown-kind"])
def test_a_label_kind_the_values_do_not_allow_is_refused(tmp_path: Path, kind: str, message: str) -> None:
    path = _write(tmp_path / "c.csv", ["x,city"] + [f"{i},c{i % 3}" for i in range(30)])
    with pytest.raises(ValueError) as err:
        inspect_file(path, label="city", label_kind=kind)
    assert str(err.value) == message


def test_multiclass_needs_the_classes_inspect_counts(tmp_path: Path) -> None:
    path = _write(tmp_path / "many.csv", ["x,code"] + [f"{i % 7},{i}" for i in range(300)])
    with pytest.raises(ValueError) as err:
        inspect_file(path, label="code", label_kind="multiclass")
    assert str(err.value) == ("label column 'code' has 300 distinct values; --label-kind multiclass needs 2 to 64 "
                              "classes (the values inspect counts)")
