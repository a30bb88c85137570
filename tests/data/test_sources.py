"""Data as teams keep it: compressed CSV/TSV/JSONL, Arrow IPC (Feather), folders of Parquet parts with hive
partitions, globs; each read in chunks with the right file and line for every row, and trainable end to end."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

import shoal
from shoal.data.readers import BadInputError, BadRowSink, detect_format, read_chunks, read_header
from shoal.inspect import inspect_file, starter_config


def _rows(n: int, seed: int = 0) -> list[tuple[int, str, float]]:
    rng = np.random.default_rng(seed)
    return [(int(rng.random() < 0.3 + 0.4 * (i % 3 == 0)), f"c{i % 3}", round(float(rng.normal()), 3))
            for i in range(n)]


def _csv_text(rows: list[tuple[int, str, float]], sep: str = ",") -> str:
    return "label" + sep + "city" + sep + "x\n" + "".join(f"{a}{sep}{b}{sep}{c}\n" for a, b, c in rows)


def _read(path: Path, **kw: object) -> tuple[pa.Table, np.ndarray, list[str], BadRowSink]:
    sink = BadRowSink("keep")
    chunks = list(read_chunks(path, fmt=None, columns=["label", "city", "x"], sink=sink, chunk_rows=64, **kw))
    table = pa.concat_tables([c.table for c in chunks])
    return table, np.concatenate([c.lines for c in chunks]), [c.file for c in chunks], sink


@pytest.mark.parametrize("codec", ["gzip", "zstd", "bz2"])
def test_compressed_csv_streams_with_exact_lines(tmp_path: Path, codec: str) -> None:
    text = _csv_text(_rows(300)).replace("c1,", "c1,extra,", 1)  # one bad row: line 3 (header is line 1)
    raw = text.encode()
    if codec == "gzip":
        path = tmp_path / "rows.csv.gz"
        path.write_bytes(gzip.compress(raw))
    elif codec == "bz2":
        path = tmp_path / "rows.csv.bz2"
        path.write_bytes(bz2.compress(raw))
    else:
        path = tmp_path / "rows.csv.zst"
        with pa.CompressedOutputStream(str(path), "zstd") as out:
            out.write(raw)
    assert detect_format(path, None) == "csv" and read_header(path, "csv") == ["label", "city", "x"]
    table, lines, files, sink = _read(path)
    assert table.num_rows == 299 and lines[0] == 2 and 3 not in lines and lines[-1] == 301
    assert [(r.line, "wrong column count" in r.reason) for r in sink.rows] == [(3, True)]
    assert set(files) == {str(path)}


def test_compressed_jsonl_and_refused_codecs(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl.gz"
    path.write_bytes(gzip.compress("".join(json.dumps({"label": a, "city": b, "x": c}) + "\n"
                                           for a, b, c in _rows(100)).encode()))
    table, lines, _, _ = _read(path)
    assert table.num_rows == 100 and list(lines[:2]) == [1, 2]
    xz = tmp_path / "rows.csv.xz"
    xz.write_bytes(lzma.compress(b"label,city,x\n1,a,2\n"))
    with pytest.raises(BadInputError, match="xz-compressed file; shoal streams gzip, zstd, bz2 and lz4"):
        list(read_chunks(xz, fmt="csv", columns=["label"], sink=BadRowSink("keep")))


def test_feather_file(tmp_path: Path) -> None:
    rows = _rows(200)
    path = tmp_path / "rows.feather"
    feather.write_feather(pa.table({"label": [r[0] for r in rows], "city": [r[1] for r in rows],
                                    "x": [r[2] for r in rows]}), path, chunksize=50)
    assert detect_format(path, None) == "arrow" and read_header(path, "arrow") == ["label", "city", "x"]
    table, lines, _, _ = _read(path)
    assert table.num_rows == 200 and list(lines[:3]) == [1, 2, 3] and lines[-1] == 200


def _parts(root: Path) -> None:
    """Spark-style output: date=.../part-N.parquet, plus a _SUCCESS marker."""
    for d, day in enumerate(("2026-11-29", "2026-11-30")):
        for k in range(2):
            rows = _rows(120, seed=10 * d + k)
            folder = root / f"date={day}"
            folder.mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.table({"label": [r[0] for r in rows], "city": [r[1] for r in rows],
                                     "x": [r[2] for r in rows]}), folder / f"part-{k}.parquet")
    (root / "_SUCCESS").write_text("")


def test_a_folder_of_parquet_parts_with_hive_partitions(tmp_path: Path) -> None:
    root = tmp_path / "logs"
    _parts(root)
    assert detect_format(root, None) == "parquet" and read_header(root, "parquet") == ["label", "city", "x", "date"]
    sink = BadRowSink("keep")
    chunks = list(read_chunks(root, fmt=None, columns=["label", "date"], sink=sink, chunk_rows=100))
    assert sum(len(c) for c in chunks) == 480
    assert {Path(c.file).name for c in chunks} == {"part-0.parquet", "part-1.parquet"}
    assert {Path(c.file).parent.name for c in chunks} == {"date=2026-11-29", "date=2026-11-30"}
    first = chunks[0]
    assert first.lines[0] == 1 and set(first.table.column("date").to_pylist()) == {"2026-11-29"}
    # inspect -> starter config -> train, with the partition column as a feature
    profile = inspect_file(root, label="label")
    assert profile.format == "parquet" and profile.rows == 480 and profile.column("date").kind == "sparse"
    cfg_path = tmp_path / "logs.yaml"
    cfg_path.write_text(starter_config(profile, cfg_path))
    run = shoal.train(cfg_path, home=tmp_path / "home", overrides={"train.epochs": 1, "train.pictures": False})
    assert run.summary["train_rows"] + run.summary["valid_rows"] == 480
    assert run.summary["lineage"]["data"]["train"]["files"] == 4


def test_a_glob_of_csv_files(tmp_path: Path) -> None:
    for k in range(3):
        (tmp_path / f"day-{k}.csv.gz").write_bytes(gzip.compress(_csv_text(_rows(50, seed=k)).encode()))
    table, lines, files, _ = _read(tmp_path / "day-*.csv.gz")
    assert table.num_rows == 150 and len(set(files)) == 3 and list(lines[:2]) == [2, 3]
    with pytest.raises(BadInputError, match="no data files found"):
        _read(tmp_path / "nothing-*.csv")


def test_feather_and_compressed_tsv_train_end_to_end(tmp_path: Path) -> None:
    rows = _rows(600)
    path = tmp_path / "rows.feather"
    feather.write_feather(pa.table({"label": [r[0] for r in rows], "city": [r[1] for r in rows],
                                    "x": [r[2] for r in rows]}), path)
    tsv = tmp_path / "rows.tsv.gz"
    tsv.write_bytes(gzip.compress(_csv_text(rows, sep="\t").encode()))
    for source in (path, tsv):
        profile = inspect_file(source, label="label")
        cfg = tmp_path / f"{source.name}.yaml"
        cfg.write_text(starter_config(profile, cfg))
        run = shoal.train(cfg, home=tmp_path / "home", overrides={"train.epochs": 1, "train.pictures": False})
        assert run.summary["train_rows"] + run.summary["valid_rows"] == 600 and run.metrics["valid_auc"] > 0.5


def test_a_list_column_where_ids_are_expected_is_named(tmp_path: Path) -> None:
    path = tmp_path / "lists.parquet"
    pq.write_table(pa.table({"label": [0, 1] * 30, "tags": [["a", "b"], ["c"]] * 30, "x": [1.0, 2.0] * 30}), path)
    from shoal.config import parse_config

    cfg = parse_config({"data": {"train": str(path)}, "label": {"column": "label"},
                        "features": [{"name": "tags", "kind": "sparse", "buckets": 64}, {"name": "x", "kind": "dense"}],
                        "model": {"name": "logistic"}, "train": {"epochs": 1}})
    with pytest.raises(BadInputError, match=r"column 'tags' holds list<element: string>, where ids are expected"):
        shoal.train(cfg, home=tmp_path / "home")


# -- lists, filters, DuckDB queries, shards by file --------------------------------------------------------------
def _config(train: object, tmp_path: Path, **data: object) -> dict[str, object]:
    return {"data": {"train": train, "valid_fraction": 0.2, **data}, "label": {"column": "label"},
            "features": [{"name": "city", "kind": "sparse", "buckets": 64}, {"name": "x", "kind": "dense"}],
            "model": {"name": "logistic"}, "train": {"epochs": 1, "batch_size": 64, "pictures": False}}


def test_a_list_of_sources_reads_in_order_with_each_parts_file_and_line(tmp_path: Path) -> None:
    from shoal.config import parse_config

    (tmp_path / "a.csv").write_text(_csv_text(_rows(40)))
    for k in range(2):
        (tmp_path / f"more-{k}.csv.gz").write_bytes(gzip.compress(_csv_text(_rows(30, seed=k)).encode()))
    (tmp_path / "more-1.csv.gz").write_bytes(gzip.compress((_csv_text(_rows(30, seed=1)) + "1,c1,2,extra\n").encode()))
    cfg = parse_config(_config(["a.csv", "more-*.csv.gz"], tmp_path), base_dir=tmp_path)
    assert cfg.resolved()["data"]["train"] == [str(tmp_path / "a.csv"), str(tmp_path / "more-*.csv.gz")]
    assert parse_config(cfg.resolved()).data == cfg.data  # the run's saved config reads back the same
    table, lines, files, sink = _read(cfg.data.train)
    assert table.num_rows == 100 and [Path(f).name for f in dict.fromkeys(files)] == ["a.csv", "more-0.csv.gz",
                                                                                        "more-1.csv.gz"]
    assert list(lines[:2]) == [2, 3] and lines[40] == 2  # each part numbers its own lines
    assert [(Path(r.file).name, r.line) for r in sink.rows] == [("more-1.csv.gz", 32)]
    with pytest.raises(BadInputError, match=r"pattern .*nothing-\*\.csv \(entry 2 of 2 of the list\): no data files"):
        _read(parse_config(_config(["a.csv", "nothing-*.csv"], tmp_path), base_dir=tmp_path).data.train)
    run = shoal.train(cfg.model_copy(update={"data": cfg.data.model_copy(update={"on_bad_rows": "quarantine"})}),
                      home=tmp_path / "home")
    assert run.summary["train_rows"] + run.summary["valid_rows"] == 100
    assert run.summary["lineage"]["data"]["train"]["files"] == 3


def test_filter_skips_partitions_and_row_groups_and_keeps_line_numbers(tmp_path: Path) -> None:
    from shoal.config import parse_config
    from shoal.data.filters import parquet_row_groups

    root = tmp_path / "logs"
    _parts(root)
    (root / "date=2026-11-29" / "part-0.parquet").write_bytes(b"not parquet: never opened when filtered out")
    cfg = parse_config(_config("logs", tmp_path, filter="date >= '2026-11-30' and date < '2026-12-01'"),
                       base_dir=tmp_path)
    assert cfg.data.filter == [("date", ">=", "2026-11-30"), ("date", "<", "2026-12-01")]
    sink = BadRowSink("keep")
    chunks = list(read_chunks(cfg.data.train, fmt=None, columns=["label", "date"], sink=sink, chunk_rows=100,
                              row_filter=cfg.data.filter))
    assert sum(len(c) for c in chunks) == 240 and {Path(c.file).parent.name for c in chunks} == {"date=2026-11-30"}
    # a text column compared with a number is read as numbers; each kept row keeps its physical line
    rows = _rows(200)
    (tmp_path / "rows.csv").write_text(_csv_text(rows))
    table, lines, _, _ = _read(tmp_path / "rows.csv", row_filter=[("x", ">", 0.5), ("city", "in", ["c0", "c2"])])
    want = [i + 2 for i, (_, c, x) in enumerate(rows) if x > 0.5 and c in ("c0", "c2")]
    assert lines.tolist() == want and table.num_rows == len(want)
    # Parquet row groups whose statistics rule the filter out are not decoded
    path = tmp_path / "sorted.parquet"
    pq.write_table(pa.table({"label": [i % 2 for i in range(1000)], "city": ["a"] * 1000,
                             "x": np.arange(1000, dtype=np.float64)}), path, row_group_size=100)
    assert parquet_row_groups(path, pq.ParquetFile(path).schema_arrow, [("x", ">=", 850.0)]) == [8, 9]
    table, lines, _, _ = _read(path, row_filter=[("x", ">=", 850.0)])
    assert lines.tolist() == list(range(851, 1001)) and table.column("x").to_pylist()[0] == 850.0
    with pytest.raises(BadInputError, match=r"no row passes data.filter 'x > 5000' \(0 rows read"):
        _read(path, row_filter=[("x", ">", 5000)])
    with pytest.raises(BadInputError, match=r"column 'x' \(double\) cannot be compared with \['high'\]"):
        _read(path, row_filter=[("x", ">", "high")])


def test_filter_errors_name_the_field_and_the_fix() -> None:
    from shoal.config import ConfigError, parse_config

    with pytest.raises(ConfigError, match=r"data.filter: Value error, cannot read 'date >> 3': write COLUMN OP VALUE "
                                          r"joined by 'and'"):
        parse_config(_config("a.csv", Path("."), filter="date >> 3"), source="c.yaml")
    with pytest.raises(ConfigError, match=r"date >= 2026-11-01: '2026-11-01' is not a value; quote text"):
        parse_config(_config("a.csv", Path("."), filter="date >= 2026-11-01"), source="c.yaml")
    with pytest.raises(ConfigError, match=r"data.filter.0.1: Input should be '=', '==', '!=', '<', '<=', '>', '>=', "
                                          r"'in' or 'not in' \(got '~'\)"):
        parse_config(_config("a.csv", Path("."), filter=[["x", "~", 3]]), source="c.yaml")


def test_a_duckdb_query_is_a_source_for_train_inspect_and_eval(tmp_path: Path) -> None:
    from shoal.config import load_config

    folder = tmp_path / "logs"
    folder.mkdir()
    for k in range(3):
        rows = _rows(200, seed=k)
        pq.write_table(pa.table({"label": [r[0] for r in rows], "city": [r[1] for r in rows],
                                 "x": [r[2] for r in rows], "day": [k] * 200}), folder / f"part-{k}.parquet")
    doc = _config({"sql": "select label, city, x from read_parquet('logs/*.parquet') where day >= 1"}, tmp_path)
    cfg_path = tmp_path / "run.yaml"
    cfg_path.write_text(json.dumps(doc))
    cfg = load_config(cfg_path)
    assert cfg.resolved()["data"]["train"] == {"sql": doc["data"]["train"]["sql"], "base": str(tmp_path)}  # type: ignore[index]
    table, lines, _, _ = _read(cfg.data.train)
    assert table.num_rows == 400 and lines.tolist() == list(range(1, 401))
    run = shoal.train(cfg_path, home=tmp_path / "home")
    assert run.summary["train_rows"] + run.summary["valid_rows"] == 400
    # a .sql file is a source too: its relative paths resolve against its own folder
    query = tmp_path / "recent.sql"
    query.write_text("select * from read_parquet('logs/part-2.parquet')\n")
    profile = inspect_file(query, label="label")
    assert profile.format == "sql" and profile.rows == 200
    assert shoal.evaluate_file(run.run_id, query, home=tmp_path / "home")["auc"] > 0.5
    for bad, message in (("selec label from x", r"SQL source 'selec label from x' .*ParserException: Parser Error"),
                         ("select * from read_parquet('nowhere/*.parquet')",
                          r"SQL source \"select \* from read_parquet\('nowhere/\*.parquet'\)\" \(relative paths from "
                          r".*\): IOException: IO Error: No files found")):
        doc["data"]["train"] = {"sql": bad}  # type: ignore[index]
        cfg_path.write_text(json.dumps(doc))
        with pytest.raises(BadInputError, match=message):
            shoal.train(cfg_path, home=tmp_path / "home")


def test_two_ranks_read_every_row_of_a_folder_of_parts_exactly_once(tmp_path: Path) -> None:
    import torch

    from shoal.config import parse_config
    from shoal.data.encoder import Encoder
    from shoal.distributed.context import RankContext
    from shoal.distributed.shards import RankRows

    root = tmp_path / "logs"
    _parts(root)
    cfg = parse_config({**_config("logs", tmp_path, valid_fraction=0.0, chunk_rows=50)}, base_dir=tmp_path)
    encoder = Encoder(cfg.features, cfg.label)
    seen: list[tuple[str, int]] = []
    for rank in range(2):
        shard = RankRows(cfg, RankContext(rank, 2, 0, torch.device("cpu")), encoder, None, None)
        own = list(shard.own_chunks())
        assert [ci for ci, _ in own] == list(range(rank, 12, 2))  # 4 parts x 3 chunks of 50 rows (120 rows each)
        seen += [(c.file, int(line)) for _, c in own for line in c.lines]
    assert len(seen) == len(set(seen)) == 480
