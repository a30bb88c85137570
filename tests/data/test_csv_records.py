"""Exact line numbers after quoted cells that hold line breaks (issue 23 item 8): ``shoal.data.csv_records`` under
the CSV/TSV reader. A row named in a bad-row error or the quarantine is named by the line it starts on."""

from __future__ import annotations

import csv
import gzip
import io
import json
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import shoal.data.readers as readers
from shoal.data import csv_records
from shoal.data.csv_records import Syntax, scan
from shoal.data.readers import BadInputError, BadRowSink, ByteRange, Chunk, read_chunks, read_range


def read_all(path: Path, sink: BadRowSink, **kw) -> list[Chunk]:
    return list(read_chunks(path, fmt=kw.pop("fmt", None), columns=kw.pop("columns", ["i", "note"]), sink=sink,
                            **kw))


SetBlock = Callable[[int], None]


def lines_of(chunks: list[Chunk]) -> list[int]:
    return [int(x) for c in chunks for x in c.lines]


@pytest.fixture
def blocks_of(monkeypatch: pytest.MonkeyPatch) -> SetBlock:
    """Read blocks of ``n`` bytes: every few rows a block ends, often inside a quoted cell."""
    def set_block(n: int) -> None:
        monkeypatch.setattr(readers, "CSV_BLOCK_MIN_BYTES", n)
        monkeypatch.setattr(readers, "CSV_BLOCK_MAX_BYTES", n)
    return set_block


def _numbered(rows: int, newline: str, inner: str, sep: str = ",", seed: int = 0) -> tuple[str, list[int], list[int]]:
    """A file whose column ``i`` holds the line each row starts on; some cells hold 1 to 4 line breaks
    (``inner``), the first and the last row among them; every 7th row has the wrong column count. Returns the
    text (no line end after the last row) and the good and the bad rows' lines."""
    rng = random.Random(seed)
    out, good, bad = [f"i{sep}note{sep}x"], [], []
    line = 2
    for r in range(rows):
        breaks = rng.choice([0, 0, 1, 2, 4]) if 0 < r < rows - 1 else 2
        note = '"' + inner.join(f'part {k}, ""quoted""' for k in range(breaks + 1)) + '"'
        cells = [str(line), note, "x"] if r % 7 != 3 else [str(line), note]
        (good if len(cells) == 3 else bad).append(line)
        out.append(sep.join(cells))
        line += breaks + 1
    return newline.join(out), good, bad


@pytest.mark.parametrize(("newline", "inner"), [("\n", "\n"), ("\r\n", "\r\n"), ("\r\n", "\n"), ("\n", "\r")])
@pytest.mark.parametrize("block", [64, 700, 1 << 16])
def test_rows_after_quoted_line_breaks_keep_their_lines(tmp_path: Path, blocks_of: SetBlock, newline: str,
                                                        inner: str, block: int) -> None:
    """Every row (column i = its line) and every quarantined row names the line it starts on, with one or several
    line breaks in quoted cells before it (in the first and the last row too), with blocks ending anywhere."""
    blocks_of(block)
    text, good, bad = _numbered(300, newline, inner)
    path = tmp_path / "t.csv"
    path.write_bytes(text.encode())
    sink = BadRowSink("quarantine", tmp_path / "q.jsonl")
    chunks = read_all(path, sink, chunk_rows=16)
    sink.close()
    assert lines_of(chunks) == good
    assert [int(x) for c in chunks for x in c.table.column("i").to_pylist()] == good
    assert chunks[0].table.column("note")[0].as_py() == inner.join(f'part {k}, "quoted"' for k in range(3))
    quarantined = [json.loads(x) for x in (tmp_path / "q.jsonl").read_text().splitlines()]
    assert [q["line"] for q in quarantined] == bad
    assert all(q["value"].startswith(f"{q['line']},\"part 0") for q in quarantined)


def test_a_block_cut_just_after_a_quoted_line_break_is_cut_again(tmp_path: Path, blocks_of: SetBlock) -> None:
    """The first 16 bytes end inside a quoted cell, just after its line break: as many rows as lines there, but the
    last line ends inside quotes, so the block is cut again at the row's real end."""
    blocks_of(16)
    path = tmp_path / "t.csv"
    path.write_text('i,note\n1,a\n2,"x\ny"\n3,b\n')
    chunks = read_all(path, BadRowSink("error"))
    assert lines_of(chunks) == [2, 3, 5]
    assert [r["note"] for c in chunks for r in c.table.to_pylist()] == ["a", "x\ny", "b"]


def test_error_mode_names_the_line_after_quoted_line_breaks(tmp_path: Path, blocks_of: SetBlock) -> None:
    blocks_of(256)
    rows = ["i,note", *(f'{k},"a\nb\nc"' for k in range(40)), "41,fine", "bad row", "43,fine"]
    path = tmp_path / "t.csv"
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(BadInputError) as err:
        read_all(path, BadRowSink("error"))
    assert str(err.value) == (f"{path}, line 123: value 'bad row': wrong column count: expected 2, got 1 "
                              "(set data.on_bad_rows: quarantine to set such rows aside and go on)")


def test_a_gzip_tsv_with_quoted_line_breaks_keeps_its_lines(tmp_path: Path, blocks_of: SetBlock) -> None:
    blocks_of(128)
    text, good, bad = _numbered(120, "\n", "\n", sep="\t", seed=3)
    path = tmp_path / "t.tsv.gz"
    path.write_bytes(gzip.compress(text.encode()))
    sink = BadRowSink("keep")
    assert lines_of(read_all(path, sink)) == good
    assert [r.line for r in sink.rows] == bad


def test_a_row_longer_than_the_block_by_its_quoted_lines_is_read_whole(tmp_path: Path, blocks_of: SetBlock) -> None:
    blocks_of(1024)
    note = "\n".join("y" * 90 for _ in range(60))  # 5,459 bytes on 60 lines
    rows = ["i,note", *(f"{k},x" for k in range(2, 302)), f'302,"{note}"', *(f"{k},z" for k in range(362, 400))]
    path = tmp_path / "t.csv"
    path.write_text("\n".join(rows) + "\n")
    chunks = read_all(path, BadRowSink("error"), chunk_rows=8)
    assert lines_of(chunks) == [*range(2, 303), *range(362, 400)]
    assert next(r for c in chunks for r in c.table.to_pylist() if r["i"] == "302")["note"] == note


@pytest.fixture
def small_cap(monkeypatch: pytest.MonkeyPatch, blocks_of: SetBlock) -> None:
    """1 KB blocks and a 2,000-byte cap per row."""
    blocks_of(1024)
    monkeypatch.setattr(readers, "ROW_BYTES_CAP", 2000)


def test_a_row_over_the_cap_by_its_quoted_lines_is_one_bad_row_naming_the_cap(tmp_path: Path, small_cap) -> None:
    """A row longer than the cap though each of its lines is short (a quoted cell holding line breaks): in error
    mode one error naming the line, the lines, the size and the cap (before: "CSV parser got out of sync with
    chunker"); in quarantine one bad row, and every later row keeps its line."""
    note = "\n".join("y" * 90 for _ in range(60))
    rows = ["i,note", *(f"{k},x" for k in range(2, 302)), f'big,"{note}"', *(f"{k},z" for k in range(362, 662)),
            "1,2,3", "663,last"]
    path = tmp_path / "t.csv"
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(BadInputError) as err:
        read_all(path, BadRowSink("error"), chunk_rows=8)
    assert str(err.value) == (
        f"{path}, line 302: value 'b\\'big,\"{'y' * 75}\\'...': row over the size limit: 5,465 bytes on lines "
        "302-361 (quoted cells holding line breaks), over the reader's limit of 2,000 bytes per row; close a quote "
        "left open (it runs on to the next quote), or shorten or split the row (set data.on_bad_rows: quarantine "
        "to set such rows aside and go on)")
    sink = BadRowSink("keep")
    chunks = read_all(path, sink, chunk_rows=8)
    assert lines_of(chunks) == [*range(2, 302), *range(362, 662), 663]
    assert [(r.line, r.reason.split(":")[0]) for r in sink.rows] == [(302, "row over the size limit"),
                                                                    (662, "wrong column count")]


def test_a_quote_left_open_runs_to_the_end_as_one_row_over_the_cap(tmp_path: Path, small_cap) -> None:
    rows = ["i,note", *(f"{k},x" for k in range(2, 52)), '52,"never closed', *(f"{k},z" for k in range(53, 400))]
    path = tmp_path / "t.csv"
    path.write_text("\n".join(rows) + "\n")
    sink = BadRowSink("keep")
    assert lines_of(read_all(path, sink, chunk_rows=8)) == list(range(2, 52))
    (row,) = sink.rows
    assert row.line == 52 and row.reason.startswith("row over the size limit: ") and "on lines 52-399" in row.reason


def test_read_range_numbers_quoted_line_breaks(tmp_path: Path) -> None:
    """A chunk read from its bytes alone names the same lines as the whole-file reader."""
    text, good, _ = _numbered(60, "\r\n", "\n", seed=5)
    path = tmp_path / "t.csv"
    path.write_bytes(text.encode())
    start = text.index(f"\r\n{good[10]},") + 2
    span = ByteRange(start, len(text), good[10], len([g for g in good if g >= good[10]]))
    chunk = read_range(path, span, fmt=None, columns=["i", "note"])
    assert chunk.lines.tolist() == good[10:] == [int(x) for x in chunk.table.column("i").to_pylist()]


# -- against Python's csv module, which numbers lines as Arrow reads records ------------------------------------
_PIECES = st.sampled_from(["a", "b7", ",", '"', '"', '""', "\n", "\r\n", "\r", " ", "xyz", "\t"])


def _python_lines(text: str) -> list[tuple[int, int]]:
    """(line it starts on, cells) of every record after the header, by the csv module."""
    reader = csv.reader(io.StringIO(text, newline=""))
    out, last = [], 0
    for record in reader:
        out.append((last + 1, len(record)))
        last = reader.line_num
    return out[1:]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.lists(_PIECES, min_size=1, max_size=80).map("".join), block=st.sampled_from([3, 16, 1 << 16]))
def test_lines_match_the_csv_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str, block: int) -> None:
    """Any text of quotes, delimiters, line ends (a quote inside an unquoted value, bytes after a closing quote,
    a quote left open): the good rows and the bad rows get the lines the csv module counts."""
    monkeypatch.setattr(readers, "CSV_BLOCK_MIN_BYTES", block)
    monkeypatch.setattr(readers, "CSV_BLOCK_MAX_BYTES", block)
    text = "i,note\n" + body
    records = _python_lines(text)
    path = tmp_path / "t.csv"
    path.write_bytes(text.encode())
    sink = BadRowSink("keep")
    try:
        got = lines_of(read_all(path, sink, chunk_rows=3))
    except BadInputError as err:  # no good row at all
        assert "expected at least one data row" in str(err)
        got = []
    assert got == [line for line, cells in records if cells in (0, 2)]  # a blank line: a row of nulls
    assert [r.line for r in sink.rows] == [line for line, cells in records if cells not in (0, 2)]


@settings(max_examples=100, deadline=None)
@given(body=st.lists(_PIECES, min_size=1, max_size=200).map("".join), inside=st.booleans())
def test_counting_quotes_and_following_them_agree(body: str, inside: bool) -> None:
    """Counting quotes (numpy) and following them one by one (compiled and in Python) put every byte inside or
    outside quotes alike wherever the quotes alternate simply; the loop is the rule everywhere. A scan in two
    pieces, its state carried over, equals the scan of the whole."""
    data = body.encode()
    full = np.frombuffer(data, dtype=np.uint8)
    quotes = np.flatnonzero(full == 0x22)
    syntax = Syntax.of(",", True)
    by_rules = csv_records._toggle_loop(full, quotes, syntax.delimiter, inside, -1)
    if csv_records._alternate(full, quotes, syntax, inside, -1):
        others = np.flatnonzero(full != 0x22)  # a doubled quote toggles twice by count, never by the rules
        assert (np.searchsorted(by_rules, others) & 1).tolist() == (np.searchsorted(quotes, others) & 1).tolist()
    compiled = csv_records._toggle_kernel()
    if compiled is not None:
        assert compiled(full, quotes, syntax.delimiter, inside, -1).tolist() == by_rules.tolist()
    whole = scan(data, syntax, inside=inside)
    half = len(data) // 2  # the same bytes in two pieces, the state carried over
    first = scan(data[:half], syntax, inside=inside, final=False)
    rest = scan(data[first.stop:], syntax, inside=first.inside, before=data[first.stop - 1] if first.stop else -1)
    assert [*first.ends, *(rest.ends + first.stop)] == whole.ends.tolist()
    assert [*first.breaks, *(rest.breaks + first.stop)] == whole.breaks.tolist()
