"""Tests for how ``shoal inspect`` reads number columns: unique integers (amounts or ids), thousands and decimal
marks, currency and percent symbols, and a few cells that are not numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shoal.config import DenseFeature, load_config
from shoal.inspect import FileProfile, inspect_file, starter_config


def _csv(path: Path, header: list[str], rows: list[list[object]], sep: str = ",") -> Path:
    def cell(v: object) -> str:
        text = str(v)
        return f'"{text}"' if sep in text else text
    path.write_text("\n".join([sep.join(header)] + [sep.join(cell(v) for v in r) for r in rows]) + "\n",
                    encoding="utf-8")
    return path


def _starter_line(profile: FileProfile, tmp_path: Path, name: str) -> str:
    text = starter_config(profile, tmp_path / "run.yaml")
    (tmp_path / "run.yaml").write_text(text, encoding="utf-8")
    load_config(tmp_path / "run.yaml")  # the starter config is valid as written
    return next(line for line in text.splitlines() if f'"{name}"' in line)


def test_unique_integer_amounts_are_numbers_and_identifiers_stay_out(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 1200
    rows = [[int(rng.integers(5_000, 250_000)), int(order), int(ident), int(rng.integers(10**8, 10**12)), i % 2]
            for i, (order, ident) in enumerate(zip(rng.permutation(n), rng.choice(10**6, n, replace=False),
                                                   strict=True))]
    rows = [r[:4] + [str(int(rng.integers(-2**63, 2**63 - 1)))] + r[4:] for r in rows]
    p = _csv(tmp_path / "t.csv", ["income", "row", "ID", "user", "h64", "label"], rows)
    profile = inspect_file(p, label="label")
    kinds = {c.name: c.kind for c in profile.columns}
    assert kinds == {"income": "dense", "row": "ignore", "ID": "ignore", "user": "ignore", "h64": "ignore",
                     "label": "label"}
    assert "filling 0..1,199, in any order (row numbers or sequential ids)" in profile.column("row").reason
    assert "named like an id or an index" in profile.column("ID").reason
    assert "9 digits or more (random or hashed ids)" in profile.column("user").reason
    assert "9 digits or more" in profile.column("h64").reason  # beyond 2**53: whole numbers all the same
    assert _starter_line(profile, tmp_path, "income").startswith('  - {name: "income", kind: dense')


def test_a_saved_pandas_index_is_left_out(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    p = _csv(tmp_path / "t.csv", ["Unnamed: 0", "x", "label"],
             [[i, round(float(rng.normal()), 3), i % 2] for i in range(300)])
    profile = inspect_file(p, label="label")
    assert profile.column("Unnamed: 0").kind == "ignore" and profile.column("x").kind == "dense"
    assert "# left out \"Unnamed: 0\": unique integer per row, named like an id or an index" in starter_config(
        profile, tmp_path / "run.yaml")


def test_thousands_separators_read_as_numbers(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    incomes = [int(v) for v in rng.integers(500, 250_000, 200)]
    p = _csv(tmp_path / "t.csv", ["income", "label"], [[f"{v:,}", i % 2] for i, v in enumerate(incomes)])
    profile = inspect_file(p, label="label")
    c = profile.column("income")
    assert (c.kind, c.number_format, c.dtype) == ("dense", {"thousands": ","}, "int")
    assert f"text read with thousands mark ',' ('{incomes[0]:,}' is {incomes[0]})" in c.reason
    line = _starter_line(profile, tmp_path, "income")
    assert 'thousands: ","}' in line


@pytest.mark.parametrize("sep", [";", ","])
def test_decimal_commas_read_as_numbers(tmp_path: Path, sep: str) -> None:
    rng = np.random.default_rng(3)
    values = [f"{v:.4f}".replace(".", ",") for v in rng.normal(0, 3, 200)]
    p = _csv(tmp_path / "t.csv", ["x", "n", "label"], [[v, "12,345", i % 2] for i, v in enumerate(values)], sep=sep)
    profile = inspect_file(p, label="label")
    c = profile.column("x")
    assert (c.kind, c.number_format, c.multi_id_separator) == ("dense", {"decimal": ","}, None)
    assert 'decimal: ","}' in _starter_line(profile, tmp_path, "x")
    # "12,345" alone is 12.345 in a ';'-separated file (a decimal comma) and 12345 elsewhere (thousands)
    assert profile.column("n").number_format is None  # constant: left out, whatever it reads as
    q = _csv(tmp_path / "q.csv", ["n", "label"], [[f"{10 + i % 50},{100 + i:03d}", i % 2] for i in range(200)],
             sep=sep)
    expected = {"decimal": ","} if sep == ";" else {"thousands": ","}
    assert inspect_file(q, label="label").column("n").number_format == expected


def test_a_few_cells_that_are_not_numbers_are_read_as_missing_with_a_warning(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    rows: list[list[object]] = [[round(float(v), 3), i % 2] for i, v in enumerate(rng.normal(size=600))]
    rows[100][0] = "abc"  # line 102: the header is line 1
    profile = inspect_file(_csv(tmp_path / "t.csv", ["x", "label"], rows), label="label")
    c = profile.column("x")
    assert (c.kind, c.number_format) == ("dense", {"not_a_number": "missing"})
    assert "warning: 1 cell is not a number (e.g. 'abc' on line 102): read as missing" in c.reason
    assert 'not_a_number: "missing"}' in _starter_line(profile, tmp_path, "x")
    for i in range(0, 600, 10):  # 10% of them: not a number column
        rows[i][0] = f"v{i}"
    assert inspect_file(_csv(tmp_path / "u.csv", ["x", "label"], rows), label="label").column("x").kind != "dense"


def test_percent_and_currency_symbols_are_dropped(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    rows = [[f"{v:.1f}%", f"${w:,.2f}", i % 2] for i, (v, w) in enumerate(zip(rng.uniform(0, 100, 300),
                                                                          rng.uniform(50, 30_000, 300), strict=True))]
    profile = inspect_file(_csv(tmp_path / "t.csv", ["pct", "price", "label"], rows), label="label")
    pct, price = profile.column("pct"), profile.column("price")
    assert (pct.kind, pct.number_format) == ("dense", {"symbol": "%"})
    assert (price.kind, price.number_format) == ("dense", {"thousands": ",", "symbol": "$"})
    line = _starter_line(profile, tmp_path, "pct")
    assert f"'{rows[0][0]}' is {float(str(rows[0][0])[:-1]):g}: a percentage reads as the number written" in line
    config = load_config(tmp_path / "run.yaml")
    assert [(f.name, f.symbol, getattr(f, "thousands", None)) for f in config.features
            if isinstance(f, DenseFeature)] == [("pct", "%", None), ("price", "$", ",")]
