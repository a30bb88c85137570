"""A label's values read as a person reads them: the positive class its word names, rows without a label set aside,
the usual spellings of "missing"."""

from __future__ import annotations

from pathlib import Path

import pytest

from shoal.config import load_config
from shoal.inspect import inspect_file, starter_config


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(("values", "positive"), [(("yes", "no"), "yes"), (("Negative", "Positive"), "Positive"),
                                                  (("FALSE", "TRUE"), "TRUE"), (("n", "y"), "y")])
def test_the_positive_class_is_the_one_its_word_names(tmp_path: Path, values: tuple[str, str],
                                                     positive: str) -> None:
    """The word decides, not which value is rarer: the positive class here is 70% of the rows."""
    negative = values[1 - values.index(positive)]
    lines = ["x,label"] + [f"{k % 13 * 1.5},{negative if k % 10 < 3 else positive}" for k in range(200)]
    profile = inspect_file(_write(tmp_path / "d.csv", lines), label="label")
    config = tmp_path / "d.yaml"
    config.write_text(starter_config(profile, config), encoding="utf-8")
    assert load_config(config).label.positive == [positive]


def test_rows_without_a_label_are_set_aside_not_a_stop(tmp_path: Path) -> None:
    lines = ["x,label"] + [f"{k % 13 * 1.5},{'' if k % 20 == 0 else ('yes' if k % 3 else 'no')}" for k in range(200)]
    profile = inspect_file(_write(tmp_path / "d.csv", lines), label="label")
    config = tmp_path / "d.yaml"
    text = starter_config(profile, config)
    assert "on_bad_rows: quarantine  # 10 rows have no label" in text
    config.write_text(text, encoding="utf-8")
    assert load_config(config).data.on_bad_rows == "quarantine"


def test_the_usual_spellings_of_missing_are_missing(tmp_path: Path) -> None:
    lines = ["x,label"] + [f"{'n/a' if k % 7 == 0 else ('N/A' if k % 11 == 0 else k)},{k % 2}" for k in range(200)]
    profile = inspect_file(_write(tmp_path / "d.csv", lines), label="label")
    x = profile.column("x")
    assert x.kind == "dense" and x.missing == len([k for k in range(200) if k % 7 == 0 or k % 11 == 0])


def test_labels_that_differ_only_in_case_are_warned_about(tmp_path: Path) -> None:
    values = ["yes", "no", "YES", "NO"]
    lines = ["x,label"] + [f"{k % 13 * 1.5},{values[k % 4]}" for k in range(200)]
    reason = inspect_file(_write(tmp_path / "d.csv", lines), label="label").column("label").reason
    assert "warning: 'NO' and 'no'; 'YES' and 'yes' differ only in case or spaces and are different classes" in reason


def test_a_file_that_is_not_utf8_is_named_with_its_line_and_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("x,city,label\n1,Paris,0\n2,Orl\u00e9ans,1\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1.csv: line 3 is not UTF-8 \(byte 0xe9 at offset 28\); shoal reads "
                                         r"UTF-8 text: convert the file, e.g. iconv -f latin1 -t utf-8"):
        inspect_file(path, label="label")
    path.write_bytes("x,city,label\n1,Paris,0\n2,Orl\u00e9ans,1\n".encode("utf-8-sig"))  # UTF-8, with a BOM
    assert inspect_file(path, label="label").rows == 2
