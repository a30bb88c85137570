"""Bad input, end to end through ``shoal train``.

The requirement: wrong column count, a non-numeric dense value, an invalid label, an empty file, a
header-only file, a missing file -> a clear error naming file, line, column and value (exit code 2); with
``on_bad_rows: quarantine`` the rows go to a quarantine file and are counted in the run's summary. No row is
ever dropped silently.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from shoal.artifacts.registry import Registry
from shoal.cli.main import app

N_ROWS = 300
HEADER = "d0,c0,y"

runner = CliRunner()


def good_lines(n: int = N_ROWS, seed: int = 0) -> list[str]:
    """Data rows (no header) of a learnable problem: the label follows d0 and the category."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        d = float(rng.normal())
        c = str(rng.choice(["a", "b", "c", "d"]))
        logit = 2.5 * d + (1.5 if c in ("a", "b") else -1.5)
        y = int(rng.random() < 1 / (1 + np.exp(-logit)))
        out.append(f"{d:.4f},{c},{y}")
    return out


def write_data(path: Path, replace: dict[int, str] | None = None) -> Path:
    """A CSV with a header; ``replace`` maps a physical line number (header = line 1) to its new text."""
    lines = [HEADER, *good_lines()]
    for line_no, text in (replace or {}).items():
        lines[line_no - 1] = text
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_config(tmp_path: Path, data: str = "data.csv", **data_options) -> Path:
    cfg = {
        "name": "bad-input",
        "data": {"train": data, "valid_fraction": 0.2, **data_options},
        "label": {"column": "y"},
        "features": [{"name": "d0", "kind": "dense", "transform": "standardize"},
                     {"name": "c0", "kind": "sparse", "buckets": 64}],
        "model": {"name": "logistic"},
        "train": {"epochs": 1, "batch_size": 64, "lr": 0.05, "pictures": False},  # no PNGs (~1 s): none is read
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def train(tmp_path: Path, cfg_path: Path):
    return runner.invoke(app, ["train", str(cfg_path), "--home", str(tmp_path / "home")])


def one_line(output: str) -> str:
    return " ".join(output.split())  # rich may wrap; compare on normalized whitespace


# -- the happy path, so the failures below are failures of the data only -----------------------------------
def test_clean_file_trains(tmp_path: Path) -> None:
    write_data(tmp_path / "data.csv")
    result = train(tmp_path, write_config(tmp_path))
    assert result.exit_code == 0, result.output
    s = Registry(tmp_path / "home").get("latest").summary
    assert s["quarantined_rows"] == 0
    assert s["train_rows"] + s["valid_rows"] == N_ROWS
    assert s["valid_rows"] > 20


# -- error mode (the default): exit 2 with file, line, column and value --------------------------------------
@pytest.mark.parametrize("line_no, text, expected", [
    (17, "0.5,a", ["line 17", "'0.5,a'", "wrong column count: expected 3, got 2"]),
    (123, "0.5,a,1,extra", ["line 123", "'0.5,a,1,extra'", "wrong column count: expected 3, got 4"]),
    (45, "abc,a,1", ["line 45", "column 'd0'", "value 'abc'", "not a number"]),
    (250, "inf,b,0", ["line 250", "column 'd0'", "value 'inf'"]),
    (88, "0.1,c,maybe", ["line 88", "column 'y'", "value 'maybe'", "invalid label", "'0'", "'1'", "'true'"]),
], ids=["too-few-columns", "too-many-columns", "non-numeric-dense", "infinite-dense", "invalid-label"])
def test_bad_row_fails_naming_file_line_column_value(tmp_path: Path, line_no: int, text: str,
                                                     expected: list[str]) -> None:
    data = write_data(tmp_path / "data.csv", {line_no: text})
    result = train(tmp_path, write_config(tmp_path))
    assert result.exit_code == 2, result.output
    out = one_line(result.output)
    assert "error:" in out
    assert str(data) in out
    for part in expected:
        assert part in out, f"{part!r} not in {out!r}"
    assert "on_bad_rows: quarantine" in out  # says how to go on
    assert "Traceback" not in result.output
    assert Registry(tmp_path / "home").get("latest").status == "failed"


@pytest.mark.parametrize("content, expected", [
    ("", "file is empty (0 bytes)"),
    (HEADER + "\n", "file has only a header"),
    (HEADER, "file has only a header"),
], ids=["empty", "header-only", "header-only-no-newline"])
def test_unusable_file_fails_naming_file(tmp_path: Path, content: str, expected: str) -> None:
    data = tmp_path / "data.csv"
    data.write_text(content, encoding="utf-8")
    result = train(tmp_path, write_config(tmp_path))
    assert result.exit_code == 2, result.output
    out = one_line(result.output)
    assert f"{data}: {expected}" in out
    assert "Traceback" not in result.output


def test_missing_file_fails_naming_file(tmp_path: Path) -> None:
    result = train(tmp_path, write_config(tmp_path, data="nope.csv"))
    assert result.exit_code == 2, result.output
    assert f"{tmp_path / 'nope.csv'}: file does not exist" in one_line(result.output)


def test_missing_column_fails_naming_file_and_column(tmp_path: Path) -> None:
    data = tmp_path / "data.csv"
    data.write_text("d0,c0,label\n0.5,a,1\n", encoding="utf-8")
    result = train(tmp_path, write_config(tmp_path))
    assert result.exit_code == 2, result.output
    out = one_line(result.output)
    assert f"{data}: column(s) ['y'] not found; the file has ['d0', 'c0', 'label']" in out


# -- quarantine mode: rows set aside, counted, and every row accounted for -----------------------------------
BAD_ROWS = {
    5: "0.5,a",  # wrong column count
    60: "1.0,b,1,x",  # wrong column count
    61: "oops,c,0",  # non-numeric dense
    150: "0.2,d,2",  # invalid label
    151: "-inf,a,1",  # not a number
    299: ",b,",  # missing label (the missing dense value alone would be fine)
    301: "1e999,a,0",  # infinite; the last line
}


@pytest.mark.parametrize("epochs, chunk_rows", [(1, 65_536), (2, 40)])
def test_quarantine_counts_and_lists_every_bad_row(tmp_path: Path, epochs: int, chunk_rows: int) -> None:
    data = write_data(tmp_path / "data.csv", BAD_ROWS)
    cfg = write_config(tmp_path, on_bad_rows="quarantine", chunk_rows=chunk_rows)
    if epochs != 1:
        raw = yaml.safe_load(cfg.read_text())
        raw["train"]["epochs"] = epochs
        cfg.write_text(yaml.safe_dump(raw))
    result = train(tmp_path, cfg)
    assert result.exit_code == 0, result.output
    assert f"{len(BAD_ROWS)} bad rows quarantined" in one_line(result.output)

    record = Registry(tmp_path / "home").get("latest")
    assert record.status == "completed"
    s = record.summary
    assert s["quarantined_rows"] == len(BAD_ROWS)  # counted once, whatever the number of epochs
    assert s["quarantined_by_reason"] == {"wrong column count": 2, "not a number (dense feature)": 2,
                                          "infinite value (dense feature)": 1, "invalid label": 2}
    # no silent drop: every data row is trained on, validated on, or quarantined
    assert s["train_rows"] + s["valid_rows"] + s["quarantined_rows"] == N_ROWS
    assert s["rows_trained"] == s["train_rows"] * epochs

    qfile = Path(s["quarantine_file"])
    assert qfile.is_file() and qfile.parent == record.artifact_dir
    records = [json.loads(x) for x in qfile.read_text(encoding="utf-8").splitlines()]
    assert [r["line"] for r in records] == sorted(BAD_ROWS)
    assert all(r["file"] == str(data) for r in records)
    by_line = {r["line"]: r for r in records}
    assert by_line[5]["value"] == "0.5,a" and by_line[5]["column"] is None
    assert by_line[60]["value"] == "1.0,b,1,x"
    assert (by_line[61]["column"], by_line[61]["value"]) == ("d0", "oops")
    assert (by_line[150]["column"], by_line[150]["value"]) == ("y", "2")
    assert (by_line[151]["column"], by_line[151]["value"]) == ("d0", "-inf")
    assert (by_line[299]["column"], by_line[299]["value"]) == ("y", None)
    assert (by_line[301]["column"], by_line[301]["value"]) == ("d0", "1e999")
    assert "invalid label" in by_line[150]["reason"]
    # the model still learned the clean rows
    assert record.metrics["valid_auc"] > 0.75


def test_quarantine_of_a_file_with_only_bad_rows_still_fails(tmp_path: Path) -> None:
    data = tmp_path / "data.csv"
    data.write_text(HEADER + "\n1,a\n2,b\n", encoding="utf-8")
    result = train(tmp_path, write_config(tmp_path, on_bad_rows="quarantine"))
    assert result.exit_code == 2, result.output
    assert f"{data}: file has only a header; expected at least one data row" in one_line(result.output)


# -- config errors --------------------------------------------------------------------------------------------
def test_unknown_config_key_names_file_and_allowed_keys(tmp_path: Path) -> None:
    write_data(tmp_path / "data.csv")
    cfg = write_config(tmp_path, shuffle=True)
    result = train(tmp_path, cfg)
    assert result.exit_code == 2, result.output
    out = one_line(result.output)
    assert str(cfg) in out
    assert "data.shuffle: unknown key 'shuffle'" in out
    assert ("allowed keys: chunk_rows, columns, delimiter, filter, format, header, missing, on_bad_rows, quoting, "
            "test, train, valid, valid_fraction") in out
    assert not (tmp_path / "home").exists() or Registry(tmp_path / "home").list() == []


def test_bad_on_bad_rows_value_names_allowed_values(tmp_path: Path) -> None:
    write_data(tmp_path / "data.csv")
    cfg = write_config(tmp_path, on_bad_rows="skip")
    result = train(tmp_path, cfg)
    assert result.exit_code == 2, result.output
    out = one_line(result.output)
    assert str(cfg) in out and "data.on_bad_rows" in out and "'error'" in out and "'quarantine'" in out
    assert "'skip'" in out


def test_missing_config_file(tmp_path: Path) -> None:
    result = train(tmp_path, tmp_path / "none.yaml")
    assert result.exit_code == 2, result.output
    assert "none.yaml" in one_line(result.output) and "does not exist" in result.output
