"""Tests for the streaming file readers (``shoal.data.readers``): formats, chunking, line numbers, bad rows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shoal.data.readers import (
    BadInputError,
    BadRow,
    BadRowSink,
    Chunk,
    byte_ranges,
    detect_format,
    read_chunks,
    read_header,
    read_parquet_chunks,
    read_range,
)


def read_all(path: Path, columns: list[str], sink: BadRowSink | None = None, **kw) -> list[Chunk]:
    return list(read_chunks(path, fmt=kw.pop("fmt", None), columns=columns,
                            sink=sink or BadRowSink("error"), **kw))


def rows_of(chunks: list[Chunk]) -> list[dict]:
    return [r for c in chunks for r in c.table.to_pylist()]


def lines_of(chunks: list[Chunk]) -> list[int]:
    return [int(x) for c in chunks for x in c.lines]


def write(path: Path, text: str) -> Path:
    path.write_bytes(text.encode("utf-8"))
    return path


# -- CSV / TSV ------------------------------------------------------------------------------------------------
def test_csv_with_header(tmp_path: Path) -> None:
    p = write(tmp_path / "a.csv", "x,y,z\n1,a,p\n2,b,q\n3,c,r\n")
    chunks = read_all(p, ["z", "x"])
    assert rows_of(chunks) == [{"z": "p", "x": "1"}, {"z": "q", "x": "2"}, {"z": "r", "x": "3"}]
    assert lines_of(chunks) == [2, 3, 4]
    assert chunks[0].file == str(p)
    # CSV cells always come back as strings (the encoder parses them), whatever they look like
    assert all(chunks[0].table.schema.field(c).type == pa.string() for c in ("x", "z"))


def test_csv_without_header(tmp_path: Path) -> None:
    p = write(tmp_path / "a.csv", "1,a\n2,b\n")
    chunks = read_all(p, ["y", "x"], header=False, names=["x", "y"])
    assert rows_of(chunks) == [{"y": "a", "x": "1"}, {"y": "b", "x": "2"}]
    assert lines_of(chunks) == [1, 2]


def test_csv_header_names_are_stripped(tmp_path: Path) -> None:
    p = write(tmp_path / "a.csv", " x , y\n1,2\n")
    assert rows_of(read_all(p, ["x", "y"])) == [{"x": "1", "y": "2"}]


def test_tsv_by_extension_and_by_format(tmp_path: Path) -> None:
    text = "x\ty\n1,5\tb c\n"
    p = write(tmp_path / "a.tsv", text)
    assert rows_of(read_all(p, ["x", "y"])) == [{"x": "1,5", "y": "b c"}]
    q = write(tmp_path / "a.dat", text)  # unknown extension, explicit format
    assert rows_of(read_all(q, ["x", "y"], fmt="tsv")) == [{"x": "1,5", "y": "b c"}]


def test_custom_delimiter(tmp_path: Path) -> None:
    p = write(tmp_path / "a.csv", "x;y\n1,5;a\n2;b\n")
    assert read_header(p, "csv", ";") == ["x", "y"]
    chunks = read_all(p, ["x", "y"], delimiter=";")
    assert rows_of(chunks) == [{"x": "1,5", "y": "a"}, {"x": "2", "y": "b"}]


def test_quoted_cells(tmp_path: Path) -> None:
    p = write(tmp_path / "a.csv", 'x,y\n"a,b",1\n"",2\n')
    assert rows_of(read_all(p, ["x", "y"], missing=["NA"])) == [{"x": "a,b", "y": "1"}, {"x": "", "y": "2"}]


def test_cells_are_trimmed_before_missing_markers_match(tmp_path: Path) -> None:
    # ", "-separated files (UCI Adult) give cells like " ?" and " State-gov"
    p = write(tmp_path / "a.csv", "x, y\n1, ?\n ? ,  b \n")
    assert rows_of(read_all(p, ["x", "y"], missing=["?"])) == [{"x": "1", "y": None}, {"x": None, "y": "b"}]


def test_missing_markers_become_null(tmp_path: Path) -> None:
    p = write(tmp_path / "a.csv", "x,y\nNA,1\n?,\nnull,3\nok,NaN\nna,-\n")
    chunks = read_all(p, ["x", "y"], missing=["", "NA", "?", "null", "NaN"])
    assert rows_of(chunks) == [
        {"x": None, "y": "1"}, {"x": None, "y": None}, {"x": None, "y": "3"}, {"x": "ok", "y": None},
        {"x": "na", "y": "-"},  # markers match exactly (case-sensitive), other text stays
    ]


def test_missing_markers_only_those_given(tmp_path: Path) -> None:
    p = write(tmp_path / "a.csv", "x,y\nNA,\n")
    assert rows_of(read_all(p, ["x", "y"], missing=["NA"])) == [{"x": None, "y": ""}]


def test_crlf_line_endings(tmp_path: Path) -> None:
    p = write(tmp_path / "a.csv", "x,y\r\n1,2\r\nbad\r\n3,4\r\n")
    sink = BadRowSink("quarantine", tmp_path / "q.jsonl")
    chunks = read_all(p, ["x", "y"], sink=sink)
    sink.close()
    assert rows_of(chunks) == [{"x": "1", "y": "2"}, {"x": "3", "y": "4"}]
    assert lines_of(chunks) == [2, 4]
    assert sink.count == 1
    assert json.loads((tmp_path / "q.jsonl").read_text())["line"] == 3


def test_blank_line_is_not_dropped_silently(tmp_path: Path) -> None:
    # a blank line becomes a row of nulls (the encoder then reports its missing label); it keeps its line
    p = write(tmp_path / "a.csv", "x,y\n1,2\n\n3,4\n")
    chunks = read_all(p, ["x", "y"])
    assert rows_of(chunks) == [{"x": "1", "y": "2"}, {"x": None, "y": None}, {"x": "3", "y": "4"}]
    assert lines_of(chunks) == [2, 3, 4]


# -- chunking and line numbers --------------------------------------------------------------------------------
def test_csv_chunking_in_order(tmp_path: Path) -> None:
    n = 5_000
    p = write(tmp_path / "a.csv", "i,v\n" + "".join(f"{i},{i * 3}\n" for i in range(n)))
    chunks = read_all(p, ["i"], chunk_rows=64)
    assert all(len(c) <= 64 for c in chunks)
    assert len(chunks) >= n // 64
    assert [int(r["i"]) for r in rows_of(chunks)] == list(range(n))
    assert lines_of(chunks) == list(range(2, n + 2))


def _numbered_csv(path: Path, n_lines: int, bad: set[int], header: bool) -> Path:
    """Line k holds the value k in column i, so every row names its own physical line."""
    out = ["i,v,w"] if header else []
    first = 2 if header else 1
    for k in range(first, n_lines + 1):
        if k in bad:
            out.append(f"{k},only-two" if k % 2 else f"{k},a,b,too-many")
        else:
            out.append(f"{k},{k * 2},w{k}")
    return write(path, "\n".join(out) + "\n")


@pytest.mark.parametrize("header", [True, False])
def test_line_numbers_with_skipped_rows_across_chunks(tmp_path: Path, header: bool) -> None:
    # ~40k lines, ~700 KB: several pyarrow blocks (>= 64 KB each) and many chunks of 500 rows; bad rows
    # at the start, the end, back to back, and inside different blocks
    n = 40_000
    first = 2 if header else 1
    rng = np.random.default_rng(1)
    bad = set(rng.choice(np.arange(first, n + 1), 30, replace=False).tolist())
    bad |= {first, first + 1, 9_999, 10_000, 10_001, 31_337, n}
    p = _numbered_csv(tmp_path / "a.csv", n, bad, header)
    sink = BadRowSink("quarantine", tmp_path / "q.jsonl")
    chunks = read_all(p, ["i", "w"], sink=sink, header=header, names=None if header else ["i", "v", "w"],
                      chunk_rows=500)
    sink.close()
    assert len(chunks) > 10 and all(len(c) <= 500 for c in chunks)
    for c in chunks:
        assert [int(x) for x in c.table.column("i").to_pylist()] == c.lines.tolist()
        assert c.lines.dtype == np.int64
    good = [k for k in range(first, n + 1) if k not in bad]
    assert lines_of(chunks) == good
    assert sink.count == len(bad)
    assert sink.by_reason == {"wrong column count": len(bad)}
    records = [json.loads(x) for x in (tmp_path / "q.jsonl").read_text().splitlines()]
    assert [r["line"] for r in records] == sorted(bad)
    for r in records:
        assert set(r) == {"file", "line", "column", "value", "reason"}
        assert r["file"] == str(p)
        assert r["value"].startswith(f"{r['line']},")  # the raw text of the rejected line
        assert r["reason"].startswith("wrong column count: expected 3, got ")
        assert r["column"] is None


def test_quarantine_file_and_summary(tmp_path: Path) -> None:
    p = write(tmp_path / "a.csv", "x,y\n1,2\n3\n4,5\n6,7,8\n")
    q = tmp_path / "sub" / "quarantine.jsonl"
    sink = BadRowSink("quarantine", q)
    chunks = read_all(p, ["x", "y"], sink=sink)
    sink.close()
    assert rows_of(chunks) == [{"x": "1", "y": "2"}, {"x": "4", "y": "5"}]
    assert lines_of(chunks) == [2, 4]
    records = [json.loads(x) for x in q.read_text().splitlines()]
    assert records == [
        {"file": str(p), "line": 3, "column": None, "value": "3",
         "reason": "wrong column count: expected 2, got 1"},
        {"file": str(p), "line": 5, "column": None, "value": "6,7,8",
         "reason": "wrong column count: expected 2, got 3"},
    ]
    assert sink.summary() == {"quarantined_rows": 2, "quarantined_by_reason": {"wrong column count": 2},
                              "quarantine_file": str(q)}


@pytest.mark.parametrize("bad_line", [3, 4_321])
def test_error_mode_names_file_line_and_content(tmp_path: Path, bad_line: int) -> None:
    # line 3 fails while the first block is read; 4321 fails in a later block (chunk_rows 64 -> 64 KB blocks)
    n = 8_000
    p = _numbered_csv(tmp_path / "data.csv", n, {bad_line}, header=True)
    with pytest.raises(BadInputError) as exc:
        read_all(p, ["i"], chunk_rows=64)
    msg = str(exc.value)
    assert str(p) in msg
    assert f"line {bad_line}" in msg
    assert f"{bad_line},only-two" in msg
    assert "wrong column count: expected 3, got 2" in msg
    assert "on_bad_rows: quarantine" in msg  # says how to go on


def test_count_sink_counts_without_writing(tmp_path: Path) -> None:
    p = write(tmp_path / "a.csv", "x,y\n1\n2\n3,4\n")
    sink = BadRowSink("count")
    assert lines_of(read_all(p, ["x"], sink=sink)) == [4]
    assert sink.count == 2
    assert sink.summary()["quarantine_file"] is None


def test_sink_needs_path_for_quarantine() -> None:
    with pytest.raises(ValueError, match="path"):
        BadRowSink("quarantine")


def test_bad_row_message() -> None:
    row = BadRow("f.csv", 12, "age", "abc", "not a number")
    assert row.message() == "f.csv, line 12, column 'age': value 'abc': not a number"
    assert BadRow("f.csv", None, None, None, "empty").message() == "f.csv: empty"
    with pytest.raises(BadInputError, match=r"f\.csv, line 12, column 'age': value 'abc': not a number"):
        BadRowSink("error").add(row)


# -- Parquet ----------------------------------------------------------------------------------------------------
def test_parquet_chunking_across_row_groups(tmp_path: Path) -> None:
    n = 1_000
    p = tmp_path / "a.parquet"
    pq.write_table(pa.table({"i": np.arange(n), "f": np.arange(n) * 0.5, "s": [f"s{i}" for i in range(n)]}), p,
                   row_group_size=300)
    chunks = read_all(p, ["s", "i"], chunk_rows=128)
    assert [len(c) for c in chunks] == [128] * 7 + [104]
    assert [r["i"] for r in rows_of(chunks)] == list(range(n))
    assert rows_of(chunks)[5] == {"s": "s5", "i": 5}
    assert lines_of(chunks) == list(range(1, n + 1))  # 1-based row numbers
    assert chunks[0].table.column_names == ["s", "i"]
    assert chunks[0].table.schema.field("i").type == pa.int64()  # native types are kept


def test_parquet_missing_column(tmp_path: Path) -> None:
    p = tmp_path / "a.parquet"
    pq.write_table(pa.table({"i": [1, 2]}), p)
    with pytest.raises(BadInputError) as exc:
        read_all(p, ["i", "nope"])
    assert str(p) in str(exc.value) and "'nope'" in str(exc.value) and "'i'" in str(exc.value)


def test_parquet_without_rows(tmp_path: Path) -> None:
    p = tmp_path / "a.parquet"
    pq.write_table(pa.table({"i": pa.array([], pa.int64())}), p)
    with pytest.raises(BadInputError, match="no rows") as exc:
        read_all(p, ["i"])
    assert str(p) in str(exc.value)


def test_not_a_parquet_file(tmp_path: Path) -> None:
    p = write(tmp_path / "a.parquet", "x,y\n1,2\n")
    with pytest.raises(BadInputError) as exc:
        read_all(p, ["x"])
    assert str(p) in str(exc.value) and "Parquet" in str(exc.value)


# -- JSONL ----------------------------------------------------------------------------------------------------
def test_jsonl_chunking_in_order(tmp_path: Path) -> None:
    n = 3_000
    p = tmp_path / "a.jsonl"
    p.write_text("".join(json.dumps({"i": i, "s": f"s{i}", "f": None if i % 7 == 0 else i / 2}) + "\n"
                         for i in range(n)))
    chunks = read_all(p, ["f", "i"], chunk_rows=100)
    assert all(len(c) <= 100 for c in chunks)
    assert len(chunks) >= 30  # pyarrow blocks end anywhere; each is cut into chunks of <= 100
    rows = rows_of(chunks)
    assert [r["i"] for r in rows] == list(range(n))
    assert rows[7] == {"f": None, "i": 7} and rows[8] == {"f": 4.0, "i": 8}
    assert lines_of(chunks) == list(range(1, n + 1))
    assert chunks[0].table.column_names == ["f", "i"]


def test_jsonl_missing_key_in_a_row_is_null(tmp_path: Path) -> None:
    p = write(tmp_path / "a.ndjson", '{"a": 1, "b": "x"}\n{"a": 2}\n')
    assert rows_of(read_all(p, ["a", "b"])) == [{"a": 1, "b": "x"}, {"a": 2, "b": None}]


def test_jsonl_missing_column(tmp_path: Path) -> None:
    p = write(tmp_path / "a.jsonl", '{"a": 1}\n')
    with pytest.raises(BadInputError) as exc:
        read_all(p, ["a", "zz"])
    assert str(p) in str(exc.value) and "'zz'" in str(exc.value)


def test_jsonl_first_line_not_json(tmp_path: Path) -> None:
    p = write(tmp_path / "a.jsonl", "not json\n")
    with pytest.raises(BadInputError, match="line 1") as exc:
        read_all(p, ["a"])
    assert str(p) in str(exc.value)


# -- bad files ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["x,y\n", "x,y", "x,y\r\n"])
def test_header_only_file(tmp_path: Path, text: str) -> None:
    p = write(tmp_path / "h.csv", text)
    with pytest.raises(BadInputError) as exc:
        read_all(p, ["x", "y"])
    assert str(exc.value) == f"{p}: file has only a header; expected at least one data row"


def test_file_with_only_bad_rows_is_an_error(tmp_path: Path) -> None:
    p = write(tmp_path / "b.csv", "x,y\n1\n2\n")
    sink = BadRowSink("count")
    with pytest.raises(BadInputError, match="expected at least one data row"):
        read_all(p, ["x"], sink=sink)
    assert sink.count == 2


@pytest.mark.parametrize("name", ["e.csv", "e.tsv", "e.parquet", "e.jsonl"])
def test_empty_file(tmp_path: Path, name: str) -> None:
    p = write(tmp_path / name, "")
    with pytest.raises(BadInputError) as exc:
        read_all(p, ["x"])
    assert str(exc.value) == f"{p}: file is empty (0 bytes); expected rows of data"


def test_missing_file(tmp_path: Path) -> None:
    p = tmp_path / "nope.csv"
    with pytest.raises(BadInputError) as exc:
        read_all(p, ["x"])
    assert str(exc.value) == f"{p}: file does not exist"


def test_an_empty_folder_is_named(tmp_path: Path) -> None:
    d = tmp_path / "dir.csv"
    d.mkdir()
    with pytest.raises(BadInputError, match="no data files found") as exc:
        read_all(d, ["x"])
    assert str(d) in str(exc.value)


def test_unknown_extension(tmp_path: Path) -> None:
    p = write(tmp_path / "a.xlsx", "x\n1\n")
    with pytest.raises(BadInputError) as exc:
        read_all(p, ["x"])
    msg = str(exc.value)
    assert str(p) in msg and "'.xlsx'" in msg and "data.format" in msg
    for fmt in ("csv", "tsv", "parquet", "jsonl"):
        assert fmt in msg


def test_detect_format() -> None:
    assert detect_format(Path("a.CSV"), None) == "csv"
    assert detect_format(Path("a.tsv"), None) == "tsv"
    assert detect_format(Path("a.pq"), None) == "parquet"
    assert detect_format(Path("a.ndjson"), None) == "jsonl"
    assert detect_format(Path("a.whatever"), "parquet") == "parquet"


def test_column_not_in_csv(tmp_path: Path) -> None:
    p = write(tmp_path / "a.csv", "x,y\n1,2\n")
    with pytest.raises(BadInputError) as exc:
        read_all(p, ["x", "label"])
    msg = str(exc.value)
    assert msg.startswith(f"{p}: column(s) ['label'] not found; the file has ['x', 'y']")


def test_column_not_in_headerless_names(tmp_path: Path) -> None:
    p = write(tmp_path / "a.csv", "1,2\n")
    with pytest.raises(BadInputError, match=r"\['z'\] not found") as exc:
        read_all(p, ["z"], header=False, names=["x", "y"])
    assert str(p) in str(exc.value)


# -- read_header ----------------------------------------------------------------------------------------------
def test_read_header_all_formats(tmp_path: Path) -> None:
    assert read_header(write(tmp_path / "a.csv", "a, b ,c\r\n1,2,3\n"), "csv") == ["a", "b", "c"]
    assert read_header(write(tmp_path / "a.tsv", "a\tb c\n1\t2\n"), "tsv") == ["a", "b c"]
    assert read_header(write(tmp_path / "q.csv", '"x,1",y\n'), "csv") == ["x,1", "y"]
    p = tmp_path / "a.parquet"
    pq.write_table(pa.table({"u": [1], "v": ["a"]}), p)
    assert read_header(p, "parquet") == ["u", "v"]
    assert read_header(write(tmp_path / "a.jsonl", '{"k": 1, "j": 2}\n{"z": 3}\n'), "jsonl") == ["k", "j"]


def test_read_header_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="does not exist"):
        read_header(tmp_path / "none.csv", "csv")
    with pytest.raises(BadInputError, match="empty"):
        read_header(write(tmp_path / "e.csv", ""), "csv")
    with pytest.raises(BadInputError, match="must be an object"):
        read_header(write(tmp_path / "l.jsonl", "[1, 2]\n"), "jsonl")


# -- real data ------------------------------------------------------------------------------------------------
ADULT_COLUMNS = ["age", "workclass", "fnlwgt", "education", "education_num", "marital_status", "occupation",
                 "relationship", "race", "sex", "capital_gain", "capital_loss", "hours_per_week",
                 "native_country", "income"]


@pytest.mark.data
def test_adult_census_headerless_all_rows(shared_data: Path) -> None:
    path = shared_data / "adult_census" / "adult.data"
    chunks = read_all(path, ["age", "workclass", "income"], fmt="csv", header=False, names=ADULT_COLUMNS,
                      missing=["", "?"], chunk_rows=4_096)
    assert sum(len(c) for c in chunks) == 32_561
    assert lines_of(chunks) == list(range(1, 32_562))
    first = chunks[0].table.slice(0, 1).to_pylist()[0]
    assert first == {"age": "39", "workclass": "State-gov", "income": "<=50K"}  # ", " separated, trimmed
    # "?" marks a missing value (SOURCE.txt); after the ", " separator the cell is " ?"
    assert sum(c.table.column("workclass").null_count for c in chunks) == 1_836


@pytest.mark.parametrize(("rows", "group", "chunk", "world"), [(1000, 300, 256, 2), (1000, 100, 256, 3),
                                                              (1000, 1000, 64, 2), (257, 64, 64, 4)])
def test_parquet_shard_reads_only_its_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rows: int, group: int,
                                             chunk: int, world: int) -> None:
    """read_parquet_chunks gives a rank exactly the chunks read_chunks numbers ci % world == rank, and decodes only
    the row groups holding them, each once."""
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"x": np.arange(rows), "s": [f"v{i}" for i in range(rows)], "unused": np.zeros(rows)}),
                   path, row_group_size=group)
    every = list(read_chunks(path, fmt=None, columns=["x", "s"], sink=BadRowSink("error"), chunk_rows=chunk))
    reads: list[int] = []
    real = pq.ParquetFile.read_row_group

    def counting(self: pq.ParquetFile, i: int, *args: object, **kwargs: object) -> pa.Table:
        reads.append(i)
        return real(self, i, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pq.ParquetFile, "read_row_group", counting)
    for rank in range(world):
        reads.clear()
        got = list(read_parquet_chunks(path, columns=["x", "s"], chunk_rows=chunk,
                                       select=lambda ci, r=rank: ci % world == r))  # type: ignore[misc]
        want = [(ci, c) for ci, c in enumerate(every) if ci % world == rank]
        assert [ci for ci, _ in got] == [ci for ci, _ in want]
        for (_, g), (_, w) in zip(got, want, strict=True):
            assert g.table.equals(w.table) and g.lines.tolist() == w.lines.tolist()
        needed = {i for ci, _ in want for i in range(rows // group + 1)
                  if i * group < min((ci + 1) * chunk, rows) and (i + 1) * group > ci * chunk}
        assert sorted(reads) == sorted(needed)  # only the row groups with this rank's rows, each once


def _spans(chunks: list[Chunk]) -> list[tuple[int, int, int]]:
    return [(int(c.lines[0]), int(c.lines[-1]), len(c)) for c in chunks]


def _text_file(path: Path, fmt: str, rows: int, newline: str = "\n", final_newline: bool = True) -> Path:
    """A CSV/TSV/JSONL file with quoted cells, missing values, non-ASCII text and (CSV/TSV) rows with the wrong
    column count scattered through it."""
    rng = np.random.default_rng(rows)
    out = []
    if fmt != "jsonl":
        sep = "," if fmt == "csv" else "\t"
        out.append(sep.join(["x", "s", "unused"]))
    for i in range(rows):
        text = f"t\u00e9xt {rng.integers(1000)}" if i % 7 else ""
        if fmt == "jsonl":
            out.append(json.dumps({"x": int(i), "s": text or None, "unused": 0.5}))
        elif i % 97 == 13:
            out.append(f"{i}{sep}only two")  # the wrong column count: quarantined
        else:
            cell = f'"{text}, quoted"' if fmt == "csv" and i % 5 == 0 else text
            out.append(sep.join([str(i), cell, "0.5"]))
    body = newline.join(out) + (newline if final_newline else "")
    path.write_bytes(body.encode("utf-8"))
    return path


@pytest.mark.parametrize(("fmt", "newline", "final"), [("csv", "\n", True), ("csv", "\r\n", False),
                                                       ("tsv", "\n", False), ("jsonl", "\n", True)])
@pytest.mark.parametrize("scan_bytes", [5, 64 << 20])
def test_read_range_gives_the_chunks_read_chunks_gives(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str,
                                                       newline: str, final: bool, scan_bytes: int) -> None:
    """Each chunk read from its byte range alone equals the chunk of the whole-file reader: rows, values, line
    numbers (bad rows skipped in both), whatever the scan's block size (5 bytes: every block boundary splits lines
    and "\r\n" pairs)."""
    import shoal.data.readers as readers

    monkeypatch.setattr(readers, "_SCAN_BYTES", scan_bytes)
    path = _text_file(tmp_path / f"t.{fmt}", fmt, 3_000 if scan_bytes > 5 else 400, newline, final)
    sink = BadRowSink("count")
    every = read_all(path, ["x", "s"], sink, chunk_rows=128)
    assert len(every) > 2 and (fmt == "jsonl" or sink.count > 0)
    spans = byte_ranges(path, _spans(every))
    assert spans is not None and len(spans) == len(every)
    for span, want in zip(spans, every, strict=True):
        got = read_range(path, span, fmt=None, columns=["x", "s"], chunk_rows=128)
        assert got.table.equals(want.table)
        assert got.lines.tolist() == want.lines.tolist()


@pytest.mark.parametrize(("fmt", "body"), [
    ("csv", 'x,s\n1,"two\nlines"\n2,b\n'),  # a quoted line end: the file's lines are not its records
    ("csv", "x,s\r1,a\r2,b\r"),  # "\r" alone ends lines (pyarrow reads it so)
    ("csv", "x,s\n1,a\n2,b\n3\n"),  # a bad row after the last good one
    ("jsonl", '{"x": 1, "s": "a"}\n\n{"x": 2, "s": "b"}\n'),  # a blank line (pyarrow skips it)
])
def test_byte_ranges_refuse_files_whose_lines_are_not_records(tmp_path: Path, fmt: str, body: str) -> None:
    """Where a line is not a record, no byte ranges: the caller reads the whole file instead."""
    path = write(tmp_path / f"t.{fmt}", body)
    chunks = read_all(path, ["x", "s"], BadRowSink("count"), chunk_rows=1)
    assert len(chunks) == 2
    assert byte_ranges(path, _spans(chunks)) is None


def test_read_range_names_a_file_that_changed(tmp_path: Path) -> None:
    path = _text_file(tmp_path / "t.csv", "csv", 3_000)
    every = read_all(path, ["x", "s"], BadRowSink("count"), chunk_rows=128)
    spans = byte_ranges(path, _spans(every))
    assert spans is not None
    path.write_bytes(path.read_bytes().replace(b"\n", b"\n\n", 300))  # rows moved since the first pass
    with pytest.raises(BadInputError, match=r"t\.csv: bytes \d+-\d+ hold \d+ rows, the first pass found 128"):
        read_range(path, spans[1], fmt=None, columns=["x", "s"])


@pytest.mark.parametrize(("name", "kind"), [("t.csv.gz", "gzip"), ("t.csv.bz2", "bzip2"), ("t.zip", "zip")])
def test_a_compressed_file_is_read_or_named_as_such(tmp_path: Path, name: str, kind: str) -> None:
    """gzip/bz2 text is streamed; a zip archive gets one clear error (not its binary header read as columns)."""
    import bz2
    import gzip
    import zipfile

    path = tmp_path / name
    body = b"x,s\n1,a\n"
    if kind == "gzip":
        path.write_bytes(gzip.compress(body))
    elif kind == "bzip2":
        path.write_bytes(bz2.compress(body))
    else:
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("t.csv", body)
    if kind == "zip":
        with pytest.raises(BadInputError, match=rf"{name}: a zip-compressed file; shoal streams gzip, zstd"):
            read_all(path, ["x", "s"], fmt="csv")
    else:
        assert rows_of(read_all(path, ["x", "s"], fmt="csv")) == [{"x": "1", "s": "a"}]


def test_invalid_utf8_is_one_bad_row_and_a_bom_is_not_a_name(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(b"\xef\xbb\xbfx,s\n1,paris\n2,ro\xffme\n3,oslo\n")
    sink = BadRowSink("keep")
    chunks = read_all(path, ["x", "s"], sink)
    assert rows_of(chunks) == [{"x": "1", "s": "paris"}, {"x": "3", "s": "oslo"}]
    assert [list(c.lines) for c in chunks] == [[2, 4]]
    (bad,) = sink.rows
    assert (bad.line, bad.column, "not valid UTF-8 (byte 0xff" in bad.reason) == (3, "s", True)
    with pytest.raises(BadInputError, match=r"line 3, column 's'.*not valid UTF-8"):
        read_all(path, ["x", "s"])  # error mode: named, not "cannot read as CSV"


# -- rows longer than the read block (issue 23 item 8) ------------------------------------------------------------
@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """4 KB blocks, a 50 KB cap per row and a 1 KB scan: the long-row paths in milliseconds."""
    import shoal.data.readers as readers

    monkeypatch.setattr(readers, "CSV_BLOCK_MIN_BYTES", 4096)
    monkeypatch.setattr(readers, "CSV_BLOCK_MAX_BYTES", 4096)
    monkeypatch.setattr(readers, "ROW_BYTES_CAP", 50_000)
    monkeypatch.setattr(readers, "_SCAN_LINES_BYTES", 1000)


def _long_rows_csv(path: Path, long: int, over_cap: int | None) -> Path:
    """Header (line 1), 2,000 rows, a row of ``long`` bytes (line 2002), 2,000 rows, a row of ``over_cap`` bytes
    (line 4003, when given), a row with a column too many (line 4004), one last row (line 4005); without the row
    over the cap, the last two are lines 4003 and 4004."""
    import gzip

    lines = ["a,b", *[f"{i},x" for i in range(2000)], "long," + "y" * long, *[f"{i},z" for i in range(2000)]]
    lines += [*(["huge," + "h" * over_cap] if over_cap else []), "1,2,3", "last,w"]
    data = ("\n".join(lines) + "\n").encode()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def test_a_9mb_row_among_small_ones_is_read_with_every_line_number_right(tmp_path: Path) -> None:
    path = _long_rows_csv(tmp_path / "long.csv", 9_000_000, None)  # the real block sizes: 128 KB blocks here
    sink = BadRowSink("quarantine", tmp_path / "q.jsonl")
    chunks = read_all(path, ["a", "b"], sink, chunk_rows=1000)
    rows, lines = rows_of(chunks), lines_of(chunks)
    assert len(rows) == 4002 and lines == [*range(2, 4003), 4004]  # no row over the cap: "1,2,3" is line 4003
    assert rows[2000]["a"] == "long" and len(rows[2000]["b"]) == 9_000_000 and lines[2000] == 2002
    assert rows[-1] == {"a": "last", "b": "w"} and sink.count == 1  # line 4003 (a column too many) only


@pytest.mark.parametrize("name", ["long.csv", "long.csv.gz"])
def test_a_row_longer_than_the_block_is_read_and_one_over_the_cap_is_a_bad_row(
        tmp_path: Path, small_blocks: None, name: str) -> None:
    path = _long_rows_csv(tmp_path / name, 20_000, 60_000)
    sink = BadRowSink("quarantine", tmp_path / "q.jsonl")
    chunks = read_all(path, ["a", "b"], sink, chunk_rows=100)
    sink.close()
    rows, lines = rows_of(chunks), lines_of(chunks)
    assert lines == [*range(2, 4003), 4005] and len(rows) == 4002
    assert rows[2000] == {"a": "long", "b": "y" * 20_000} and rows[-1] == {"a": "last", "b": "w"}
    bad = [json.loads(x) for x in (tmp_path / "q.jsonl").read_text().splitlines()]
    assert [(b["line"], b["reason"].split(":")[0]) for b in sorted(bad, key=lambda b: b["line"])] == [
        (4003, "row over the size limit"), (4004, "wrong column count")]
    with pytest.raises(BadInputError) as err:
        read_all(path, ["a", "b"], BadRowSink("error"), chunk_rows=100)
    assert str(err.value) == (
        f"{path}, line 4003: value \"b'huge,{'h' * 75}'...\": row over the size limit: 60,005 bytes, over the "
        "reader's limit of 50,000 bytes per row; shorten or split it (a value this long is rarely a feature) "
        "(set data.on_bad_rows: quarantine to set such rows aside and go on)")


def test_a_jsonl_row_longer_than_the_block_is_read_and_one_over_the_cap_is_a_bad_row(
        tmp_path: Path, small_blocks: None) -> None:
    import gzip

    rows = [*({"a": i, "b": "x"} for i in range(2000)), {"a": -1, "b": "y" * 20_000},
            *({"a": i, "b": "z"} for i in range(2000)), {"a": -2, "b": "h" * 60_000}, {"a": 7, "b": "w"}]
    path = tmp_path / "long.jsonl.gz"
    path.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode()))
    sink = BadRowSink("quarantine", tmp_path / "q.jsonl")
    chunks = read_all(path, ["a", "b"], sink, chunk_rows=100)
    got, lines = rows_of(chunks), lines_of(chunks)
    assert lines == [*range(1, 4002), 4003] and got == rows[:4001] + rows[-1:]
    assert sink.by_reason == {"row over the size limit": 1}

