"""Tests for ``shoal.inspect``: file profiling (kinds, label, header, delimiter) and the starter config."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shoal.config import DataConfig, TrainConfig, load_config
from shoal.data.readers import BadInputError
from shoal.inspect import (
    DEFAULT_MISSING,
    FileProfile,
    inspect_file,
    sparse_buckets,
    starter_config,
    train_settings,
)
from shoal.inspect.starter import REGRESSION_TRAIN

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def _kinds(profile: FileProfile) -> dict[str, str]:
    return {c.name: c.kind for c in profile.columns}


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _mixed_rows(n: int = 1500, seed: int = 0) -> list[list[str]]:
    """Rows of: clicked, visits (skewed counts), price (floats), city, tags (lists), user (unique), const."""
    rng = np.random.default_rng(seed)
    cities = ["paris", "rome", "oslo", "lima", "kyiv"]
    rows = []
    for i in range(n):
        tags = "|".join(f"t{int(t)}" for t in rng.integers(0, 30, size=int(rng.integers(1, 4))))
        rows.append([
            str(int(rng.random() < 0.3)),
            str(int(rng.pareto(1.2) * 3)) if i % 10 else "",
            f"{rng.normal(50, 10):.2f}",
            cities[int(rng.integers(0, len(cities)))] if i % 20 else "NA",
            tags,
            f"user-{i:06d}",
            "x",
        ])
    return rows


# ------------------------------------------------------------------------------------------ kinds and stats


def test_csv_with_header_kinds(tmp_path: Path) -> None:
    rows = _mixed_rows()
    path = _write(tmp_path / "clicks.csv", ["clicked,visits,price,city,tags,user,const"]
                  + [",".join(r) for r in rows])
    p = inspect_file(path)
    assert (p.format, p.header, p.delimiter, p.rows, p.label) == ("csv", True, ",", 1500, "clicked")
    assert _kinds(p) == {"clicked": "label", "visits": "dense", "price": "dense", "city": "sparse",
                         "tags": "sparse", "user": "ignore", "const": "ignore"}
    visits, price, city = p.column("visits"), p.column("price"), p.column("city")
    assert visits.transform == "log1p" and visits.dtype == "int" and "counts" in visits.reason
    assert price.transform == "standardize" and price.dtype == "float"
    assert visits.missing == 150 and visits.missing_pct == 10.0
    assert city.missing == 75 and city.missing_pct == 5.0 and city.cardinality == 5
    assert city.multi_id_separator is None and not city.cardinality_capped
    tags = p.column("tags")
    assert tags.multi_id_separator == "|" and tags.cardinality == 30  # distinct ids, not distinct cells
    assert p.column("user").reason.startswith("unique per row (an identifier?)")
    assert "constant" in p.column("const").reason
    assert p.column("clicked").cardinality == 2 and p.label_positive == ()  # 0/1: the defaults fit
    assert p.column("user").example == "user-000000"
    assert json.loads(json.dumps(p.to_dict()))["columns"][0]["name"] == "clicked"


def test_tsv_without_header(tmp_path: Path) -> None:
    lines = [f"{i % 2}\t{i * 7 % 13}\tid{i % 4}" for i in range(50)]
    p = inspect_file(_write(tmp_path / "rows.tsv", lines))
    assert (p.header, p.delimiter) == (False, "\t")
    assert [c.name for c in p.columns] == ["c0", "c1", "c2"]
    assert p.label == "c0" and _kinds(p) == {"c0": "label", "c1": "dense", "c2": "sparse"}
    assert p.column("c1").cardinality == 13 and p.column("c2").cardinality == 4


def test_missing_markers(tmp_path: Path) -> None:
    a_values = ["1", "NA", "", "4", "?", "6", "nan", "8"] * 5
    b_values = ["u", "v", "-", "-"] * 10
    lines = ["y,a,b"] + [f"{i % 2},{v},{w}" for i, (v, w) in enumerate(zip(a_values, b_values, strict=True))]
    p = inspect_file(_write(tmp_path / "m.csv", lines))
    a = p.column("a")
    assert a.kind == "dense" and a.missing == 20 and a.missing_pct == 50.0 and a.cardinality == 4
    assert p.column("b").missing == 0
    custom = inspect_file(tmp_path / "m.csv", missing=("-",))
    assert custom.column("b").missing == 20 and custom.column("b").cardinality == 2
    assert custom.column("a").kind == "sparse"  # "NA", "?", "nan" are values now, not numbers
    assert custom.missing == ("-",)


def test_padded_missing_markers(tmp_path: Path) -> None:
    """Cells like ' ?' after a ', ' delimiter count as missing, as in the adult census files."""
    lines = [f"{20 + i}, {'?' if i % 4 == 0 else 'Private'}, {'>50K' if i % 3 == 0 else '<=50K'}"
             for i in range(40)]
    p = inspect_file(_write(tmp_path / "adult.data", lines))
    assert (p.header, p.delimiter, p.label) == (False, ",", "c2")
    assert p.column("c1").missing == 10 and p.column("c1").kind == "sparse"
    assert p.label_positive == (">50K",) and p.label_negative == ("<=50K",)
    assert "minority" in p.column("c2").reason


def test_parquet_typed_columns(tmp_path: Path) -> None:
    n = 400
    rng = np.random.default_rng(1)
    amount = rng.normal(size=n)
    table = pa.table({
        "target": pa.array(rng.integers(0, 2, n), pa.int64()),
        "amount": pa.array(amount, mask=np.arange(n) % 8 == 0),
        "flag": pa.array(rng.random(n) < 0.5),
        "shop": pa.array([f"s{i % 9}" for i in range(n)]),
        "empty": pa.array([None] * n, pa.string()),
        "nested": pa.array([{"a": [1, 2]}] * n),
        "same_list": pa.array([[1, 2]] * n),  # a list of ids (tests/inspect/test_list_columns.py), always the same
    })
    pq.write_table(table, tmp_path / "t.parquet")
    p = inspect_file(tmp_path / "t.parquet")
    assert (p.format, p.header, p.delimiter, p.label) == ("parquet", True, None, "target")
    assert _kinds(p) == {"target": "label", "amount": "dense", "flag": "sparse", "shop": "sparse",
                         "empty": "ignore", "nested": "ignore", "same_list": "ignore"}
    assert p.column("amount").missing == 50 and p.column("amount").dtype == "float"
    assert p.column("flag").dtype == "bool" and p.column("shop").cardinality == 9
    assert "unsupported" in p.column("nested").reason and "always missing" in p.column("empty").reason
    assert p.column("same_list").reason == "constant: every row is '1|2'"


def test_jsonl(tmp_path: Path) -> None:
    rows = [{"id": i, "is_click": bool(i % 3 == 0), "page": f"p{i % 5}", "tags": "a;b" if i % 2 else "c"}
            for i in range(60)]
    path = _write(tmp_path / "e.jsonl", [json.dumps(r) for r in rows])
    p = inspect_file(path)
    assert p.format == "jsonl" and p.label == "is_click"  # true/false values
    assert p.column("tags").multi_id_separator == ";" and p.column("tags").cardinality == 3
    assert p.column("id").kind == "ignore"  # 60 distinct whole numbers, named id (and filling 0..59)


def test_row_number_and_identifier_columns(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    ids = rng.permutation(3000)
    lines = ["row,customer_id,y"] + [f"{i},{ids[i] * 17},{i % 2}" for i in range(3000)]
    p = inspect_file(_write(tmp_path / "ids.csv", lines))
    assert p.column("row").kind == "ignore" and "row number" in p.column("row").reason
    assert p.column("customer_id").kind == "ignore" and "named like an id" in p.column("customer_id").reason


# ------------------------------------------------------------------------------------ header and delimiter


@pytest.mark.parametrize("sep", [",", ";", "|", "\t"])
def test_delimiter_detection(tmp_path: Path, sep: str) -> None:
    rows = [[str(i % 2), str(i), f"w{i % 3}"] for i in range(30)]
    lines = [sep.join(r) for r in [["label", "n", "word"], *rows]]
    p = inspect_file(_write(tmp_path / "d.csv", lines))
    assert p.delimiter == sep and p.header and [c.name for c in p.columns] == ["label", "n", "word"]


def test_list_column_does_not_fool_the_delimiter(tmp_path: Path) -> None:
    lines = ["label,tags"] + [f"{i % 2},{'a|b' if i % 3 else 'c'}" for i in range(30)]
    p = inspect_file(_write(tmp_path / "l.csv", lines))
    assert p.delimiter == "," and p.column("tags").multi_id_separator == "|"


def test_header_detection(tmp_path: Path) -> None:
    numeric_first = _write(tmp_path / "a.csv", [f"{i % 2},{i},{i * 2}" for i in range(20)])
    assert not inspect_file(numeric_first).header
    strings_first = _write(tmp_path / "b.csv", [f"x{i},y{i % 2}" for i in range(20)])
    assert not inspect_file(strings_first).header
    named = _write(tmp_path / "c.csv", ["kind,size"] + [f"{'ab'[i % 2]},{i}" for i in range(20)])
    assert inspect_file(named).header
    forced = inspect_file(named, header=False, label="c0")
    assert not forced.header and forced.rows == 21 and forced.label == "c0"
    assert inspect_file(named, delimiter=";").delimiter == ";"


# ------------------------------------------------------------------------------------------ label choice


def test_label_choice_and_values(tmp_path: Path) -> None:
    # no label-like name, no 0/1: the last column with two values wins over a binary column in the middle
    lines = [f"{i % 7},{'mf'[i % 2]},{'yes' if i % 4 == 0 else 'no'}" for i in range(40)]
    p = inspect_file(_write(tmp_path / "p.csv", lines))
    assert p.label == "c2" and p.label_positive == ("yes",) and p.label_negative == ("no",)
    assert _kinds(p)["c1"] == "sparse" and "label candidate" in p.column("c1").reason
    # numeric labels other than 0/1: the larger value is positive
    q = inspect_file(_write(tmp_path / "q.csv", ["a,b"] + [f"{i},{1 + i % 2}" for i in range(20)]))
    assert q.label == "b" and q.label_positive == ("2",) and q.label_negative == ("1",)
    # given explicitly
    r = inspect_file(tmp_path / "p.csv", label="c1")
    assert r.label == "c1" and r.column("c2").kind == "sparse" and "given" in r.column("c1").reason
    assert r.label_positive in (("f",), ("m",))


def test_no_label_candidate(tmp_path: Path) -> None:
    p = inspect_file(_write(tmp_path / "n.csv", ["a,b"] + [f"{i},w{i % 5}" for i in range(20)]))
    assert p.label is None
    with pytest.raises(ValueError, match="--label"):
        starter_config(p, tmp_path / "n.yaml")


def test_a_binary_column_in_the_middle_is_never_guessed(tmp_path: Path) -> None:
    lines = ["a,flag,b"] + [f"{i},{'yn'[i % 2]},w{i % 5}" for i in range(40)]
    p = inspect_file(_write(tmp_path / "m.csv", lines))
    assert p.label is None and p.label_candidates == ("flag",)
    with pytest.raises(ValueError, match=r"flag \(2 values\).*--label"):
        starter_config(p, tmp_path / "m.yaml")
    # a name made of label-like parts is a label; a guess at either end says it is a guess
    named = inspect_file(_write(tmp_path / "n.csv", ["x,is_click,z"] + [f"{i},{i % 2},{i % 2}" for i in range(40)]))
    assert named.label == "is_click" and "named like a label" in named.column("is_click").reason
    guessed = inspect_file(_write(tmp_path / "g.csv", ["x,z"] + [f"{i},{i % 2}" for i in range(40)]))
    assert guessed.label == "z" and "GUESSED" in guessed.column("z").reason


def test_integer_codes_become_ids(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    codes = rng.choice([3, 17, 18, 40, 41, 77, 90, 91, 120, 200], size=3000, p=[.3, .01, .2, .02, .15, .02, .1, .05,
                                                                                .05, .1])
    ages = rng.normal(40, 10, size=3000).round().astype(int)
    rows = enumerate(zip(codes, ages, strict=True))
    lines = ["label,store_id,level,age"] + [f"{i % 2},{c % 7},{c},{a}" for i, (c, a) in rows]
    p = inspect_file(_write(tmp_path / "c.csv", lines))
    assert p.column("store_id").kind == "sparse" and "named like an id" in p.column("store_id").reason
    assert p.column("level").kind == "dense" and p.column("level").also_ids  # jumpy counts: a number and ids
    assert p.column("age").kind == "dense" and not p.column("age").also_ids  # a smooth scale: a number
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(starter_config(p, cfg_path))
    cfg = load_config(cfg_path)
    twin = next(f for f in cfg.sparse if f.name == "level_id")
    assert twin.source == "level" and twin.encoding == "vocab"  # 10 codes: a row each


def test_text_max_bytes_holds_the_texts_whole(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(100, 3000, size=400)
    lines = ["label\ttext"] + [f"{i % 2}\t{' '.join(['word'] * (n // 5))}" for i, n in enumerate(lengths)]
    p = inspect_file(_write(tmp_path / "t.tsv", lines))
    col = p.column("text")
    assert col.kind == "text" and col.max_bytes is not None and col.max_bytes % 64 == 0
    longer = sum(1 for n in lengths if (n // 5) * 5 - 1 > col.max_bytes)
    assert col.long_texts == longer <= 0.01 * len(lengths) + 1 and "will be cut" in col.reason
    cfg_path = tmp_path / "t.yaml"
    cfg_path.write_text(starter_config(p, cfg_path))
    assert load_config(cfg_path).features[0].max_bytes == col.max_bytes


def test_train_settings_sized_by_rows() -> None:
    small = train_settings(1000, 0.1, text_bag=False)
    assert small["batch_size"] == 32 and small["epochs"] == 20  # 29 steps an epoch: the most epochs
    large = train_settings(2_000_000, 0.1, text_bag=False)
    assert large["batch_size"] == 1024 and large["epochs"] == TrainConfig().epochs  # 1,758 steps each: the default
    assert train_settings(None, 0.1, text_bag=False) == {}  # a file larger than was read: the defaults
    assert train_settings(100_000, 0.1, text_bag=True)["batch_size"] == 256  # a text bag's batch at most 256


def test_regression_starter_regularises_embeddings(tmp_path: Path) -> None:
    """A regression label's starter adds L2 on the embedding rows; a binary label's keeps the default (none)."""
    assert train_settings(None, 0.1, text_bag=False, regression=True) == REGRESSION_TRAIN  # also for a large file
    rng = np.random.default_rng(0)
    lines = ["shop,amount,clicked"] + [f"s{int(rng.integers(0, 20))},{rng.normal(10, 3):.3f},{i % 2}"
                                       for i in range(300)]
    path = _write(tmp_path / "r.csv", lines)
    weight_decay = {}
    for label in ("amount", "clicked"):
        profile = inspect_file(path, label=label)
        cfg_path = tmp_path / f"{label}.yaml"
        cfg_path.write_text(starter_config(profile, cfg_path))
        weight_decay[profile.label_kind] = load_config(cfg_path).train.embedding_weight_decay
    assert weight_decay == {"regression": REGRESSION_TRAIN["embedding_weight_decay"],
                            "binary": TrainConfig().embedding_weight_decay}


def test_unknown_label(tmp_path: Path) -> None:
    path = _write(tmp_path / "u.csv", ["a,b"] + [f"{i},{i % 2}" for i in range(5)])
    with pytest.raises(ValueError, match=r"'nope' not found.*a, b"):
        inspect_file(path, label="nope")


def test_a_given_label_with_more_values_is_multiclass(tmp_path: Path) -> None:
    path = _write(tmp_path / "m.csv", ["target,x"] + [f"{i % 3 * 5},{i}" for i in range(30)])
    p = inspect_file(path, label="target")
    assert p.column("target").kind == "label" and "multiclass, 3 classes" in p.column("target").reason
    assert p.label_classes == ("0", "5", "10")  # numbers sorted as numbers


# ------------------------------------------------------------------------------------------ limits and errors


def test_max_rows_and_cap(tmp_path: Path) -> None:
    path = _write(tmp_path / "big.csv", ["y,k"] + [f"{i % 2},k{i % 500}" for i in range(5000)])
    p = inspect_file(path, max_rows=1000)
    assert p.rows == 1000 and p.truncated and p.column("k").cardinality == 500
    whole = inspect_file(path)
    assert whole.rows == 5000 and not whole.truncated
    capped = inspect_file(path, cardinality_cap=100)
    assert capped.column("k").cardinality == 100 and capped.column("k").cardinality_capped


def test_bad_rows_are_counted(tmp_path: Path) -> None:
    lines = ["y,a,b"] + [f"{i % 2},{i},w{i % 3}" for i in range(20)] + ["1,2"]
    p = inspect_file(_write(tmp_path / "bad.csv", lines))
    assert p.rows == 20 and p.bad_rows == 1 and p.bad_reasons == (("wrong column count", 1),)
    assert "on_bad_rows: quarantine" in starter_config(p, tmp_path / "bad.yaml")
    from typer.testing import CliRunner

    from shoal.cli.main import app

    out = CliRunner().invoke(app, ["inspect", str(tmp_path / "bad.csv")], env={"COLUMNS": "300"})
    assert out.exit_code == 0, out.output
    # rich wraps at the console's width, which another test in the same process may have fixed: compare words
    assert ("warning: 1 row could not be read (wrong column count: 1) and are left out of these figures"
            in " ".join(out.output.split()))


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "does not exist"), ("", "empty"), ("clicked,age,city\n", "only a header"),
     ("clicked,age,city", "only a header"), ("\n\n", "blank lines")],
)
def test_bad_files(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "x.csv"
    if content is not None:
        path.write_text(content)
    with pytest.raises(BadInputError, match=message):
        inspect_file(path)


def test_defaults_match_config() -> None:
    assert list(DEFAULT_MISSING) == DataConfig.model_validate({"train": "x.csv"}).missing
    # 64 rows per value up to 4,096 rows, then 8 per value: ids rarely share a row
    assert sparse_buckets(1) == 64 and sparse_buckets(7) == 512 and sparse_buckets(100) == 4096
    assert sparse_buckets(1000) == 8192 and sparse_buckets(100_000) == 1_000_000  # the cap
    assert sparse_buckets(10**6) == 1_000_000 and sparse_buckets(5, capped=True) == 1_000_000


# ------------------------------------------------------------------------------------------ starter config


def test_starter_config_loads(tmp_path: Path) -> None:
    lines = [f"{'>50K' if i % 4 == 0 else '<=50K'}\t{i % 17}\t{'a|b' if i % 2 else 'c'}\tz{i % 40}"
             for i in range(80)]
    (tmp_path / "data").mkdir()
    data = _write(tmp_path / "data" / "rows.tsv", lines)
    cfg_path = tmp_path / "configs" / "starter.yaml"
    cfg_path.parent.mkdir()
    text = starter_config(inspect_file(data), cfg_path)
    assert text.startswith("# Starter config generated by `shoal inspect`")
    cfg_path.write_text(text)
    cfg = load_config(cfg_path)
    assert cfg.data.train == data.resolve() and cfg.data.format == "tsv" and cfg.data.delimiter == "\t"
    assert not cfg.data.header and cfg.data.columns == ["c0", "c1", "c2", "c3"]
    assert cfg.data.missing == list(DEFAULT_MISSING)
    assert cfg.label.column == "c0" and cfg.label.positive == [">50K"] and cfg.label.negative == ["<=50K"]
    assert [(f.name, f.kind) for f in cfg.features] == [("c1", "dense"), ("c2", "sparse"), ("c3", "sparse")]
    assert cfg.features[1].separator == "|" and cfg.features[2].encoding == "vocab"  # 40 ids, a row each
    assert cfg.model.name == "dlrm"
    assert "../data/rows.tsv" in text


def test_starter_config_comments_out_ignored(tmp_path: Path) -> None:
    rows = _mixed_rows(1200)
    header = "clicked,visits,price,city,tags,user,const"
    path = _write(tmp_path / "c.csv", [header] + [",".join(r) for r in rows])
    text = starter_config(inspect_file(path), tmp_path / "c.yaml")
    (tmp_path / "c.yaml").write_text(text)
    cfg = load_config(tmp_path / "c.yaml")
    assert [f.name for f in cfg.features] == ["visits", "price", "city", "tags"]
    assert '# left out "user": unique per row' in text and '# left out "const"' in text
    assert cfg.data.header and cfg.data.columns is None


def test_starter_config_parquet(tmp_path: Path) -> None:
    table = pa.table({"label": [0, 1] * 20, "x": [float(i) for i in range(40)]})
    pq.write_table(table, tmp_path / "p.parquet")
    text = starter_config(inspect_file(tmp_path / "p.parquet"), tmp_path / "p.yaml")
    (tmp_path / "p.yaml").write_text(text)
    cfg = load_config(tmp_path / "p.yaml")
    assert cfg.data.format == "parquet" and cfg.data.delimiter is None and cfg.label.column == "label"


def test_round_trip_trains(tmp_path: Path) -> None:
    """inspect -> starter config -> load_config -> Trainer.fit on a file with a learnable signal."""
    from shoal.training.loop import Trainer

    rng = np.random.default_rng(0)
    n = 2000
    x = rng.normal(size=n)
    group = rng.integers(0, 20, size=n)
    effect = np.linspace(-2, 2, 20)[group]
    y = (rng.random(n) < 1 / (1 + np.exp(-(2 * x + effect)))).astype(int)
    counts = rng.poisson(np.exp(1 + y), size=n)
    lines = ["y,x,g,n"] + [f"{y[i]},{x[i]:.4f},g{group[i]},{counts[i]}" for i in range(n)]
    path = _write(tmp_path / "signal.csv", lines)
    profile = inspect_file(path)
    assert profile.label == "y"
    assert _kinds(profile) == {"y": "label", "x": "dense", "g": "sparse", "n": "dense"}
    cfg_path = tmp_path / "signal.yaml"
    cfg_path.write_text(starter_config(profile, cfg_path))
    result = Trainer(load_config(cfg_path), tmp_path / "run").fit()
    auc = result.metrics["valid_auc"]
    assert math.isfinite(auc) and auc > 0.5


# ------------------------------------------------------------------------------------------ real data


@pytest.mark.data
@pytest.mark.skipif(not (DATA / "criteo_small" / "train.tsv").is_file(),
                    reason=f"real data not found at {DATA}/criteo_small (shared data folder absent)")
def test_criteo(tmp_path: Path) -> None:
    p = inspect_file(DATA / "criteo_small" / "train.tsv")
    kinds = [c.kind for c in p.columns]
    assert (p.format, p.header, p.delimiter, p.label, p.rows) == ("tsv", False, "\t", "c0", 7200)
    assert kinds == ["label"] + ["dense"] * 13 + ["sparse"] * 26
    assert all("hex ids" in c.reason for c in p.columns[14:])
    cfg_path = tmp_path / "criteo.yaml"
    cfg_path.write_text(starter_config(p, cfg_path))
    cfg = load_config(cfg_path)
    assert len(cfg.dense) == 13 and len(cfg.sparse) == 26


@pytest.mark.data
@pytest.mark.skipif(not (DATA / "adult_census" / "adult.data").is_file(),
                    reason=f"real data not found at {DATA}/adult_census (shared data folder absent)")
def test_adult(tmp_path: Path) -> None:
    p = inspect_file(DATA / "adult_census" / "adult.data")
    assert (p.format, p.header, p.delimiter, p.label) == ("csv", False, ",", "c14")
    assert p.label_positive == (">50K",) and p.label_negative == ("<=50K",)
    kinds = _kinds(p)
    dense = sorted(k for k, v in kinds.items() if v == "dense")
    assert dense == sorted(["c0", "c2", "c4", "c10", "c11", "c12"])
    assert sum(v == "sparse" for v in kinds.values()) == 8
    assert p.column("c1").missing_pct > 5  # " ?" cells
    assert "GUESSED" in p.column("c14").reason and "c9" in p.label_candidates  # said, not silent
    # round amounts (capital gain and loss, hours a week) are numbers and also ids; a smooth scale (age) is not
    assert [c.name for c in p.columns if c.also_ids] == ["c10", "c11", "c12"]
    assert p.column("c4").bins == 16 and p.column("c0").bins == 32  # no more bins than values
    cfg_path = tmp_path / "adult.yaml"
    cfg_path.write_text(starter_config(p, cfg_path))
    cfg = load_config(cfg_path)
    assert cfg.label.positive == [">50K"] and len(cfg.dense) == 6 and len(cfg.sparse) == 8 + 3
    assert {f.name: f.source for f in cfg.sparse if f.column} == {"c10_id": "c10", "c11_id": "c11", "c12_id": "c12"}
    assert (cfg.train.batch_size, cfg.train.epochs) == (256, 18)  # 29,305 training rows: 115 steps an epoch


def test_prose_column_is_text_and_the_starter_config_trains(tmp_path: Path) -> None:
    import random

    rng = random.Random(0)
    good = ["a wonderful film", "great acting and a fine story", "truly moving and funny"]
    bad = ["a dull mess", "boring and far too long", "the plot makes no sense at all"]
    lines = ["review,score,label"]
    for i in range(600):
        y = i % 2
        words = rng.choice(good if y else bad) + " " + rng.choice(["indeed", "overall", "so it goes", ""])
        lines.append(f"{words} number {i},{rng.randint(1, 5)},{y}")
    path = tmp_path / "reviews.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    profile = inspect_file(path)
    assert profile.column("review").kind == "text"
    assert "free text" in profile.column("review").reason
    cfg_path = tmp_path / "reviews.yaml"
    cfg_path.write_text(starter_config(profile, cfg_path), encoding="utf-8")
    cfg = load_config(cfg_path)
    assert [f.kind for f in cfg.features if f.name == "review"] == ["text"]
    from shoal.training.loop import Trainer

    # as written, the starter trains (2 epochs of batch 1024: 2 steps on these 540 rows, so no quality bar) ...
    assert Trainer(cfg, tmp_path / "run").fit().metrics["valid_auc"] > 0.5
    # ... and with enough steps the text column carries the signal (no PNGs this time: the first fit drew them)
    cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"epochs": 20, "batch_size": 64,
                                                                       "pictures": False})})
    result = Trainer(cfg, tmp_path / "run2").fit()
    assert result.metrics["valid_auc"] > 0.95


def test_text_file_with_classes_gets_a_multiclass_label_and_a_bag_model(tmp_path: Path) -> None:
    """Headerless `text<TAB>class` (AG News's layout): the last column's 3 values are the classes."""
    rng = np.random.default_rng(0)
    topics = {"sport": "the match ended with a late goal", "money": "shares fell as the bank cut rates",
              "tech": "the new chip runs the browser faster"}
    lines = []
    for _ in range(300):
        c = str(rng.choice(list(topics)))
        lines.append(f"{topics[c]} {rng.integers(1000)} times today\t{c}")
    path = tmp_path / "news.tsv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    profile = inspect_file(path)
    assert profile.label == "c1" and profile.label_classes == ("money", "sport", "tech")
    assert [c.kind for c in profile.columns] == ["text", "label"]
    cfg_path = tmp_path / "news.yaml"
    cfg_path.write_text(starter_config(profile, cfg_path), encoding="utf-8")
    cfg = load_config(cfg_path)
    assert cfg.label.kind == "multiclass" and cfg.label.classes == ["money", "sport", "tech"]
    assert cfg.model.name == "bag" and cfg.features[0].kind == "text"
    # fastText-like rates; 270 training rows: the smallest batch and the most epochs (early stopping ends sooner)
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.train.embedding_lr) == (20, 32, 0.1)


@pytest.mark.parametrize(("positives", "bins"), [(40, 4), (100, 4), (130, 8), (300, 16), (600, 32), (3000, 32),
                                                 (5870, 8)])
def test_a_rare_binary_label_gets_fewer_bins(tmp_path: Path, positives: int, bins: int) -> None:
    """Quantile bins of a number: no more than the label's rarer value can teach, 16 of its rows a bin on average
    (at least 4); the rule is the rarer value's count, whichever value is positive, and only for a binary label."""
    rng = np.random.default_rng(0)
    n = 6000
    label = np.zeros(n, np.int64)
    label[rng.choice(n, positives, replace=False)] = 1  # 5870 ones: the rarer value is 0, 130 rows
    pq.write_table(pa.table({"x": rng.standard_normal(n), "y": label}), tmp_path / "f.parquet")
    p = inspect_file(tmp_path / "f.parquet", label="y")
    assert p.column("x").bins == bins
    if bins < 32:
        rarer = min(positives, n - positives)
        assert f"no more than the label's rarer value's {rarer:,} rows can teach" in p.column("x").reason
    classes = np.where(label == 1, "a", rng.choice(["b", "c"], n))  # three classes: the rule does not apply
    pq.write_table(pa.table({"x": rng.standard_normal(n), "y": classes}), tmp_path / "m.parquet")
    assert inspect_file(tmp_path / "m.parquet", label="y").column("x").bins == 32
