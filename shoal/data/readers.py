"""Stream CSV/TSV, Parquet, JSONL and Arrow IPC (Feather) files in bounded chunks through pyarrow.

A source is one file, a folder of files (Spark/Hive output: ``date=2026-11-30/part-0.parquet``, its ``key=value``
folder names read as columns), a glob (``logs/*.csv.gz``) or a list of those (:mod:`shoal.data.sources`), or a
DuckDB query (a ``.sql`` file, :mod:`shoal.data.sql`); CSV/TSV/JSONL may be gzip-, zstd-, bz2- or lz4-compressed,
streamed (line numbers still right). ``row_filter`` (``data.filter``, :mod:`shoal.data.filters`) keeps the rows that
pass it, skipping the partitions and Parquet row groups that cannot.

Every chunk carries the physical line number (CSV/TSV, header counted, and the line breaks inside quoted cells)
or the 1-based row number (Parquet, JSONL) of each row, so later stages can name the exact place of a bad value.
Rows with the wrong number of columns never reach the caller: they go to a :class:`BadRowSink`, which either raises
a :class:`BadInputError` naming file, line and content, or quarantines them (``on_bad_rows: quarantine``).

Memory stays bounded by ``chunk_rows`` whatever the file size.
"""

from __future__ import annotations

import csv
import functools
import json
import logging
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from shoal.config import RowFilter
from shoal.data.csv_records import BlockLines, OverCap, Syntax, record_blocks, run_ahead
from shoal.data.filters import filter_columns, keep_mask, parquet_row_groups, partition_may_match, where
from shoal.data.sources import BadInputError, is_multi, partition_values, source_files, source_parts
from shoal.data.sql import sql_chunks, sql_header

__all__ = ["BadInputError", "BadRow", "BadRowSink", "ByteRange", "Chunk", "byte_ranges", "check_file", "compression",
           "detect_format", "first_line_of", "head_bytes", "is_multi", "partition_values", "read_chunks",
           "read_header", "read_parquet_chunks", "read_range", "source_files"]

log = logging.getLogger(__name__)

_EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".txt": "tsv", ".parquet": "parquet", ".pq": "parquet",
               ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".data": "csv", ".test": "csv",
               ".arrow": "arrow", ".feather": "arrow", ".ipc": "arrow", ".sql": "sql"}
# Blocks are sized from chunk_rows within [MIN, MAX]. A CSV/TSV block grows to hold a longer row whole
# (shoal.data.csv_records); a JSONL file with a longer row is read again with a block fitted to its longest line
# (found by a streaming scan). A row over ROW_BYTES_CAP is one bad row. Module constants, so that tests can make
# them small.
CSV_BLOCK_MIN_BYTES = 1 << 16
CSV_BLOCK_MAX_BYTES = 64 << 20
ROW_BYTES_CAP = 256 << 20
_SCAN_LINES_BYTES = 4 << 20  # read size of the line-length scan
_DETAIL = re.compile(r" \((?=[^)]*\d)")  # a reason's parenthesis holding a figure: that row's own detail
_COMPRESSION_SUFFIXES = {".gz": "gzip", ".gzip": "gzip", ".zst": "zstd", ".zstd": "zstd", ".bz2": "bz2", ".lz4": "lz4"}


@dataclass(frozen=True)
class BadRow:
    """One rejected row and why."""

    file: str
    line: int | None
    column: str | None
    value: str | None
    reason: str

    def message(self) -> str:
        where = f"{self.file}, line {self.line}" if self.line is not None else self.file
        col = f", column {self.column!r}" if self.column is not None else ""
        val = f": value {self.value!r}" if self.value is not None else ""
        return f"{where}{col}{val}: {self.reason}"


class BadRowSink:
    """Where bad rows go: ``error`` raises on the first one, ``quarantine`` writes JSONL and counts.

    ``count`` only counts: for later passes over rows that an earlier pass already reported. ``keep`` counts
    and keeps them in :attr:`rows`, for a caller that answers with them (a server rejecting a request's rows).

    >>> sink = BadRowSink("error")
    >>> sink.add(BadRow("a.csv", 3, "age", "x", "not a number"))
    Traceback (most recent call last):
    ...
    shoal.data.sources.BadInputError: a.csv, line 3, column 'age': value 'x': not a number ...
    """

    def __init__(self, mode: Literal["error", "quarantine", "count", "keep"], path: Path | None = None) -> None:
        if mode == "quarantine" and path is None:
            raise ValueError("quarantine mode needs a path for the quarantine file")
        self.mode = mode
        self.path = path
        self.count = 0
        self.by_reason: dict[str, int] = {}
        self.rows: list[BadRow] = []  # mode "keep" only
        self.first: BadRow | None = None  # the first bad row, in every mode but error: an example to show
        self._fh: IO[str] | None = None

    def add(self, row: BadRow) -> None:
        if self.mode == "error":
            raise BadInputError(
                f"{row.message()} (set data.on_bad_rows: quarantine to set such rows aside and go on)"
            )
        self.count += 1
        if self.first is None:
            self.first = row
        # "invalid label; allowed: [...]" -> "invalid label"; a parenthesis with a figure is the row's own
        # detail: "not a WAV file (14 bytes starting ...)" -> "not a WAV file"
        key = _DETAIL.split(row.reason.split(":")[0].split(";")[0])[0]
        self.by_reason[key] = self.by_reason.get(key, 0) + 1
        if self.mode == "count":
            return
        if self.mode == "keep":
            self.rows.append(row)
            return
        if self._fh is None:
            assert self.path is not None
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = self.path.open("a", encoding="utf-8")
        self._fh.write(json.dumps(asdict(row)) + "\n")

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def summary(self) -> dict[str, object]:
        return {"quarantined_rows": self.count, "quarantined_by_reason": dict(self.by_reason),
                "quarantine_file": str(self.path) if self.count and self.path is not None else None}


@dataclass
class Chunk:
    """A slice of a file: the wanted columns (strings for CSV/TSV) and where each row came from."""

    table: pa.Table
    lines: np.ndarray  # (N,) int64: physical line (CSV/TSV) or 1-based row number (Parquet/JSONL)
    file: str

    def __len__(self) -> int:
        return self.table.num_rows

    def rows(self, mask: np.ndarray) -> Chunk:
        """The rows where ``mask`` (N,) is True, with their line numbers."""
        return Chunk(self.table.filter(pa.array(mask)), self.lines[mask], self.file)


def compression(path: Path) -> str | None:
    """The codec of a compressed file (gzip, zstd, bz2, lz4: from its first bytes), or None."""
    try:
        with path.open("rb") as fh:
            head = fh.read(8)
    except OSError:
        return None
    kind = next((k for magic, k in _COMPRESSED.items() if head.startswith(magic)), None)
    return {"bzip2": "bz2"}.get(kind or "", kind)


def _suffix(path: Path) -> str:
    """The format suffix, past a compression suffix: ``x.csv.gz`` -> ``.csv``."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in _COMPRESSION_SUFFIXES:
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def detect_format(path: Path, explicit: str | None) -> str:
    if explicit is not None:
        return explicit
    path = Path(path)
    probe = source_files(path)[0] if is_multi(path) else path
    fmt = _EXTENSIONS.get(_suffix(probe))
    if fmt is None:
        raise BadInputError(
            f"{probe}: cannot tell the format from the extension {_suffix(probe)!r}; "
            f"set data.format to one of csv, tsv, parquet, jsonl, arrow, sql"
        )
    return fmt


_COMPRESSED = {b"\x1f\x8b": "gzip", b"BZh": "bzip2", b"\x28\xb5\x2f\xfd": "zstd", b"\xfd7zXZ\x00": "xz",
               b"\x04\x22\x4d\x18": "lz4", b"PK\x03\x04": "zip"}
_STREAMED = ("gzip", "zstd", "bz2", "lz4")  # codecs read as a stream (Arrow's CompressedInputStream)


def check_file(path: Path) -> None:
    """Raise :class:`BadInputError` unless ``path`` is a regular, non-empty file, uncompressed or compressed with a
    codec shoal streams (gzip, zstd, bz2, lz4), or a folder/glob with at least one such file."""
    path = Path(path)
    if is_multi(path):
        for f in source_files(path):
            check_file(f)
        return
    if not path.exists():
        raise BadInputError(f"{path}: file does not exist")
    if not path.is_file():
        raise BadInputError(f"{path}: not a regular file")
    if path.stat().st_size == 0:
        raise BadInputError(f"{path}: file is empty (0 bytes); expected rows of data")
    kind = compression(path)
    if kind is not None and kind not in _STREAMED:
        raise BadInputError(f"{path}: a {kind}-compressed file; shoal streams gzip, zstd, bz2 and lz4 CSV/TSV/JSONL "
                            "(and Parquet, whose columns may be compressed inside): recompress it with one of those")


def _open(path: Path) -> pa.NativeFile:
    """A readable stream of the file's bytes, decompressed as it is read."""
    return pa.input_stream(str(path), compression=compression(path))


def head_bytes(path: Path, limit: int = 1 << 20) -> bytes:
    """The first ``limit`` bytes of a file, decompressed."""
    with _open(path) as fh:
        return bytes(fh.read(limit))


def first_line_of(path: Path, block: int = 1 << 16) -> bytes:
    """The file's first line, without its end (decompressed; read in blocks, so a long line is read whole)."""
    out = bytearray()
    with _open(path) as fh:
        while True:
            data = bytes(fh.read(block))
            cut = min((i for i in (data.find(b"\n"), data.find(b"\r")) if i >= 0), default=-1)
            if cut >= 0:
                return bytes(out + data[:cut])
            out += data
            if len(data) < block:
                return bytes(out)


def read_header(path: Path, fmt: str, delimiter: str | None = None) -> list[str]:
    """Column names of a source: the CSV/TSV header line, or the Parquet/JSONL/Arrow schema (a folder's: its first
    file's, then its ``key=value`` partition names)."""
    path = Path(path)
    check_file(path)
    if is_multi(path):
        entry, first = source_parts(path)[0]
        names = read_header(first, fmt, delimiter)
        return names + [k for k in partition_values(entry, first) if k not in names]
    if fmt == "sql":
        return sql_header(path)
    if fmt == "parquet":
        return list(pq.ParquetFile(path).schema_arrow.names)
    if fmt == "arrow":
        return list(_open_ipc(path).schema.names)
    first_line = first_line_of(path)
    if fmt == "jsonl":
        try:
            row = json.loads(first_line)
        except json.JSONDecodeError as err:
            raise BadInputError(f"{path}, line 1: not valid JSON ({err.msg})") from None
        if not isinstance(row, dict):
            raise BadInputError(f"{path}, line 1: a JSONL row must be an object, not {type(row).__name__}")
        return list(row)
    line = first_line.decode("utf-8-sig", errors="replace")  # a UTF-8 byte-order mark is not part of a name
    sep = delimiter or ("\t" if fmt == "tsv" else ",")
    return [c.strip() for c in next(csv.reader([line.rstrip("\r\n")], delimiter=sep))]


def _open_ipc(path: Path) -> pa.ipc.RecordBatchFileReader | pa.ipc.RecordBatchStreamReader:
    """An Arrow IPC file (Feather v2) or stream."""
    try:
        return pa.ipc.open_file(str(path))
    except pa.ArrowInvalid:
        try:
            return pa.ipc.open_stream(str(path))
        except pa.ArrowInvalid as err:
            raise BadInputError(f"{path}: not a readable Arrow IPC / Feather file: {err}") from None


def _ipc_chunks(path: Path, columns: Sequence[str], chunk_rows: int) -> Iterator[Chunk]:
    reader = _open_ipc(path)
    _missing_columns(path, reader.schema.names, columns)
    batches = (reader.get_batch(i) for i in range(reader.num_record_batches)) \
        if isinstance(reader, pa.ipc.RecordBatchFileReader) else iter(reader)
    row = 0
    for batch in batches:
        table = pa.Table.from_batches([batch]).select(list(columns))
        n = table.num_rows
        for start in range(0, n, chunk_rows):
            stop = min(n, start + chunk_rows)
            yield Chunk(table.slice(start, stop - start),
                        np.arange(row + start + 1, row + stop + 1, dtype=np.int64), str(path))
        row += n


def read_chunks(
    path: Path,
    *,
    fmt: str | None,
    columns: Sequence[str],
    sink: BadRowSink,
    header: bool = True,
    names: Sequence[str] | None = None,
    delimiter: str | None = None,
    missing: Sequence[str] = ("",),
    chunk_rows: int = 65_536,
    quoting: bool = True,
    row_filter: Sequence[RowFilter] | None = None,
) -> Iterator[Chunk]:
    """Yield chunks holding ``columns`` of ``path``: only the rows passing ``row_filter`` when given (each keeps
    its line number).

    ``names`` gives the column names of a headerless CSV/TSV. A file with no data rows (empty, or only a
    header), or none passing the filter, raises :class:`BadInputError` once the stream ends.
    """
    path = Path(path)
    fmt = detect_format(path, fmt)
    check_file(path)
    wanted = list(dict.fromkeys([*columns, *filter_columns(row_filter)]))
    if is_multi(path):
        stream = _multi_chunks(path, fmt, wanted, sink, header, names, delimiter, missing, chunk_rows, quoting,
                               row_filter)
    else:
        stream = _file_chunks(path, fmt, wanted, sink, header, names, delimiter, missing, chunk_rows, quoting,
                              row_filter)
    rows = read = 0
    pool = pa.default_memory_pool()
    for chunk in stream:
        read += len(chunk)
        if row_filter and len(chunk):
            chunk = chunk.rows(keep_mask(chunk.table, row_filter, chunk.file))
        if len(wanted) > len(columns):
            chunk = Chunk(chunk.table.select(list(columns)), chunk.lines, chunk.file)
        rows += len(chunk)
        if len(chunk):
            yield chunk
        # Arrow's allocator keeps freed pages for reuse; hand them back so RSS follows the chunk size,
        # not the largest row group ever decoded.
        pool.release_unused()
    if rows == 0 and row_filter:
        raise BadInputError(f"{path}: no row passes data.filter {where(row_filter)!r} ({read} rows read; the "
                            "partitions and Parquet row groups that cannot pass were skipped); widen the filter")
    if rows == 0:
        what = "only a header" if header and fmt in ("csv", "tsv") else "no rows"
        raise BadInputError(f"{path}: file has {what}; expected at least one data row")


def _file_chunks(path: Path, fmt: str, columns: Sequence[str], sink: BadRowSink, header: bool,
                 names: Sequence[str] | None, delimiter: str | None, missing: Sequence[str], chunk_rows: int,
                 quoting: bool, row_filter: Sequence[RowFilter] | None = None) -> Iterator[Chunk]:
    """The chunks of one file (``row_filter``: only to skip Parquet row groups; :func:`read_chunks` applies it)."""
    if fmt in ("csv", "tsv"):
        return _csv_chunks(path, fmt, columns, sink, header, names, delimiter, missing, chunk_rows, quoting)
    if fmt == "parquet":
        return _parquet_chunks(path, columns, chunk_rows, row_filter)
    if fmt == "sql":
        return (Chunk(t, lines, str(path)) for t, lines in sql_chunks(path, columns, chunk_rows, _missing_columns))
    if fmt == "arrow":
        return _ipc_chunks(path, columns, chunk_rows)
    return _jsonl_chunks(path, columns, chunk_rows, sink)


def _multi_chunks(root: Path, fmt: str, columns: Sequence[str], sink: BadRowSink, header: bool,
                  names: Sequence[str] | None, delimiter: str | None, missing: Sequence[str], chunk_rows: int,
                  quoting: bool, row_filter: Sequence[RowFilter] | None = None) -> Iterator[Chunk]:
    """Every file of a folder, glob or list in turn, each chunk naming its own file and lines; ``key=value``
    folder names give the columns of that name (as text) when the files lack them. A file whose partition values
    fail ``row_filter`` is skipped unopened."""
    for entry, file in source_parts(root):
        yield from _part_chunks(entry, file, fmt, columns, sink, header, names, delimiter, missing, chunk_rows,
                                quoting, row_filter)


def _part_chunks(entry: Path, file: Path, fmt: str, columns: Sequence[str], sink: BadRowSink, header: bool,
                 names: Sequence[str] | None, delimiter: str | None, missing: Sequence[str], chunk_rows: int,
                 quoting: bool, row_filter: Sequence[RowFilter] | None, select: Callable[[int], bool] | None = None,
                 ) -> Iterator[Chunk]:
    """The chunks of one file of a source, its partition columns added (``select``: Parquet chunks by index)."""
    parts = partition_values(entry, file)
    if row_filter and parts and not partition_may_match(parts, row_filter, str(file)):
        return
    inside = [c for c in columns if c not in parts]
    if fmt in ("csv", "tsv") and names is None and parts:
        have = read_header(file, fmt, delimiter)
        inside = [c for c in columns if c in have or c not in parts]
    added = [c for c in columns if c not in inside]
    stream: Iterator[Chunk]
    if select is not None:
        stream = (c for _, c in read_parquet_chunks(file, columns=inside, chunk_rows=chunk_rows, select=select))
    else:
        stream = _file_chunks(file, fmt, inside, sink, header, names, delimiter, missing, chunk_rows, quoting,
                              row_filter)
    for chunk in stream:
        table = chunk.table
        for c in added:
            table = table.append_column(c, pa.array([parts[c]] * table.num_rows, pa.string()))
        yield Chunk(table.select(list(columns)), chunk.lines, chunk.file)


def _missing_columns(path: Path, have: Sequence[str], want: Sequence[str]) -> None:
    lost = [c for c in want if c not in set(have)]
    if lost:
        raise BadInputError(
            f"{path}: column(s) {lost} not found; the file has {list(have)[:50]}. "
            f"Fix the feature/label names in the config (or data.columns for a headerless file)."
        )


def _csv_chunks(
    path: Path, fmt: str, columns: Sequence[str], sink: BadRowSink, header: bool,
    names: Sequence[str] | None, delimiter: str | None, missing: Sequence[str], chunk_rows: int,
    quoting: bool = True,
) -> Iterator[Chunk]:
    """The chunks of a CSV/TSV file, read in one pass in blocks of whole records (:mod:`shoal.data.csv_records`):
    each row keeps the physical line it starts on, also after quoted cells that hold line breaks."""
    sep = delimiter or ("\t" if fmt == "tsv" else ",")
    file_names = list(names) if names is not None else read_header(path, fmt, sep)
    _missing_columns(path, file_names, columns)
    name = str(path)
    if header and _only_header(path):  # pyarrow's error would be cryptic
        raise BadInputError(f"{path}: file has only a header; expected at least one data row")
    # the block bounds memory; rows per chunk follow from it (about chunk_rows rows of ~100 bytes)
    block = max(CSV_BLOCK_MIN_BYTES, min(CSV_BLOCK_MAX_BYTES, chunk_rows * 128))
    parse = _CsvBlockParser(file_names, header, sep, quoting, columns, missing)
    cap = ROW_BYTES_CAP

    def blocks() -> Iterator[tuple[_ParsedBlock, BlockLines] | OverCap]:  # run by a thread a block or two ahead
        with _open(path) as stream:
            yield from record_blocks(stream, Syntax.of(sep, quoting), parse, block=block, cap=cap, name=name)

    good = 0  # rows read so far, to place an error
    try:
        for item in run_ahead(blocks) if path.stat().st_size > block else blocks():  # one block: no thread
            if isinstance(item, OverCap):
                sink.add(_over_cap_row(name, item.line, item.size, item.head, item.lines))
                continue
            (table, invalid, first_row), lines = item
            for number, text, reason in invalid:
                sink.add(BadRow(name, int(lines.of(np.array([number]))[0]), None, text, reason))
            records = _good_lines(np.arange(table.num_rows, dtype=np.int64), [n for n, _, _ in invalid],
                                  first_row)  # (N,) each good row's record number in the block
            chunk_lines = lines.of(records)  # (N,) the line each starts on
            good += table.num_rows
            table, keep = _valid_utf8(table, chunk_lines, name, sink)
            if keep is not None:
                chunk_lines = chunk_lines[keep]
            table = _trimmed_nulls(table, missing)
            n = len(chunk_lines)
            for start in range(0, n, chunk_rows):
                stop = min(n, start + chunk_rows)
                yield Chunk(table.slice(start, stop - start), chunk_lines[start:stop], name)
    except pa.ArrowInvalid as err:
        raise BadInputError(f"{path}: cannot read as {fmt.upper()} after row {good}: {err}") from None


_ParsedBlock = tuple[pa.Table, list[tuple[int, str, str]], int]


class _CsvBlockParser:
    """pyarrow's parse of one block of whole records: (the table, its rows with the wrong column count as
    (record number in the block, text, reason), the record number of its first row) and the records it parsed
    (a skipped header included)."""

    def __init__(self, file_names: Sequence[str], header: bool, sep: str, quoting: bool, columns: Sequence[str],
                 missing: Sequence[str]) -> None:
        self._options = (file_names, sep, quoting, columns, missing)
        self._header = header

    def __call__(self, data: memoryview, first: bool) -> tuple[_ParsedBlock, int]:
        invalid: list[tuple[int, str, str]] = []

        def on_invalid(row: pacsv.InvalidRow) -> str:
            invalid.append((row.number if row.number is not None else 1, row.text[:200],
                            f"wrong column count: expected {row.expected_columns}, got {row.actual_columns}"))
            return "skip"

        file_names, sep, quoting, columns, missing = self._options
        skip = 1 if first and self._header else 0
        table = pacsv.read_csv(pa.py_buffer(data), **_csv_options(file_names, skip, len(data) + 1, sep, on_invalid,
                                                                  quoting, columns, missing))
        return (table, invalid, skip + 1), table.num_rows + len(invalid) + skip


def _straddles(err: pa.ArrowInvalid) -> bool:
    """pyarrow's error for an object (JSON) longer than the block being parsed."""
    return "straddl" in str(err)


def _bigger_block(path: Path, block: int, scan: _LineScan, row: int) -> int:
    """The block for the next pass after a JSONL row straddled ``block``: one fitting the longest line kept (the
    scan's), doubled when that already failed, at most a little over :data:`ROW_BYTES_CAP`; past it a
    :class:`BadInputError` naming the file and the fix."""
    fitted = 1 << max(16, (scan.longest + 2).bit_length())  # a power of two over the longest line and its end
    bigger = fitted if fitted > block else 2 * block
    if bigger > 2 * ROW_BYTES_CAP:
        raise BadInputError(f"{path}: a row after row {row} is over {ROW_BYTES_CAP:,} bytes (the reader's limit per "
                            "row; a quoted cell holding line breaks?): close the quote, or shorten the row")
    log.info("%s: a row is longer than the %s-byte read block; reading the file again with %s-byte blocks",
             path, f"{block:,}", f"{bigger:,}")
    return bigger


@dataclass
class _LineScan:
    """Line lengths of a text file, counted in one streaming pass: the longest line not over the cap, and the
    lines over it (1-based line -> (bytes, the line's first bytes))."""

    longest: int
    over_cap: dict[int, tuple[int, bytes]]


def _scan_lines(path: Path, on_over_cap: Callable[[int, int, bytes], None]) -> _LineScan:
    """Count the bytes of every line of ``path`` (decompressed, "\n"-ended) in blocks of :data:`_SCAN_LINES_BYTES`;
    ``on_over_cap(line, size, head)`` for each line over :data:`ROW_BYTES_CAP` (it may raise: error mode)."""
    longest = 0
    over: dict[int, tuple[int, bytes]] = {}
    line, size, head = 1, 0, b""  # the line being counted (1-based), its bytes so far, its first bytes
    with _open(path) as fh:
        while data := bytes(fh.read(_SCAN_LINES_BYTES)):
            ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10)  # (k,) positions of "\n"
            if not len(ends):
                head = head or data[:200]
                size += len(data)
                continue
            starts = np.concatenate([[0], ends[:-1] + 1])  # (k,) where each line ending here starts
            sizes = ends - starts  # (k,) bytes of each line, without its "\n"
            sizes[0] += size
            for i in np.flatnonzero(sizes > ROW_BYTES_CAP):
                first = head if i == 0 and size else data[starts[i]:starts[i] + 200]
                over[line + int(i)] = (int(sizes[i]), first)
                on_over_cap(line + int(i), int(sizes[i]), first)
            kept = sizes[sizes <= ROW_BYTES_CAP]
            longest = max(longest, int(kept.max()) if len(kept) else 0)
            line += len(ends)
            size = len(data) - int(ends[-1]) - 1
            head = data[ends[-1] + 1:ends[-1] + 201]
    if size > ROW_BYTES_CAP:
        over[line] = (size, head)
        on_over_cap(line, size, head)
    elif size:
        longest = max(longest, size)
    return _LineScan(longest, over)


class _LinesDropped:
    """A file's bytes (decompressed) with each line of ``dropped`` (1-based) replaced by ``marker``, a short line
    that the parser refuses (``{}`` for JSONL), so that every later line keeps its number. A file-like object for
    pyarrow's readers; used only for a file with a line over the cap."""

    def __init__(self, path: Path, dropped: dict[int, tuple[int, bytes]], marker: bytes) -> None:
        self._fh = _open(path)
        self._dropped = dropped
        self._marker = marker
        self._line = 1  # the line the next byte belongs to
        self._skipping = 1 in dropped
        self._pending = marker if self._skipping else b""
        self.closed = False

    def read(self, n: int = -1) -> bytes:
        want = n if n is not None and n >= 0 else 1 << 30
        out = bytearray(self._pending[:want])
        self._pending = self._pending[want:]
        while len(out) < want:
            data = bytes(self._fh.read(min(want - len(out), _SCAN_LINES_BYTES) if want < 1 << 30
                                       else _SCAN_LINES_BYTES))
            if not data:
                break
            at = 0
            while at < len(data):
                end = data.find(b"\n", at)
                stop = len(data) if end < 0 else end + 1
                if not self._skipping or end >= 0:  # keep the line's bytes, or the "\n" that ends a dropped one
                    out += data[at if not self._skipping else end:stop]
                if end < 0:
                    break
                self._line += 1
                self._skipping = self._line in self._dropped
                if self._skipping:
                    out += self._marker
                at = stop
        if len(out) > want:  # a marker past the size asked for: kept for the next read
            self._pending = bytes(out[want:]) + self._pending
            del out[want:]
        return bytes(out)

    def close(self) -> None:
        self._fh.close()
        self.closed = True


def _over_cap_row(file: str, line: int, size: int, head: bytes, lines: int = 1) -> BadRow:
    """The bad row of a row over :data:`ROW_BYTES_CAP` starting on ``line`` and spanning ``lines`` lines (quoted
    cells holding line breaks); error mode: the sink raises it, naming file and line."""
    if lines > 1:
        return BadRow(file, line, None, repr(head[:80]) + "...",
                      f"row over the size limit: {size:,} bytes on lines {line}-{line + lines - 1} (quoted cells "
                      f"holding line breaks), over the reader's limit of {ROW_BYTES_CAP:,} bytes per row; close a "
                      "quote left open (it runs on to the next quote), or shorten or split the row")
    return BadRow(file, line, None, repr(head[:80]) + "...",
                  f"row over the size limit: {size:,} bytes, over the reader's limit of {ROW_BYTES_CAP:,} bytes per "
                  "row; shorten or split it (a value this long is rarely a feature)")


def _only_header(path: Path, probe: int = 1 << 20) -> bool:
    """True when nothing follows the first line of ``path`` (ended by "\\n", "\\r\\n" or "\\r", as pyarrow reads)."""
    with _open(path) as fh:
        head = fh.read(probe)
    ends = [i for i in (head.find(b"\n"), head.find(b"\r")) if i >= 0]
    if not ends:
        return len(head) < probe  # one line with no end (or a first line longer than the probe: pyarrow decides)
    end = min(ends) + (2 if head[min(ends):min(ends) + 2] == b"\r\n" else 1)
    return end >= len(head) and len(head) < probe


def _csv_options(file_names: Sequence[str], skip_rows: int, block: int, sep: str,
                 on_invalid: Callable[[pacsv.InvalidRow], str], quoting: bool, columns: Sequence[str],
                 missing: Sequence[str]) -> dict[str, object]:
    """pyarrow's CSV options as shoal reads: every wanted column as text, bad rows to ``on_invalid``."""
    return {
        "read_options": pacsv.ReadOptions(column_names=list(file_names), skip_rows=skip_rows, block_size=block,
                                          use_threads=False),
        "parse_options": pacsv.ParseOptions(delimiter=sep, invalid_row_handler=on_invalid,
                                            quote_char='"' if quoting else False, ignore_empty_lines=False),
        "convert_options": pacsv.ConvertOptions(
            include_columns=list(columns), column_types={c: pa.binary() for c in columns},  # UTF-8 checked per row
            null_values=list(missing), strings_can_be_null=True, quoted_strings_can_be_null=False,
        ),
    }


def _good_lines(good: np.ndarray, skipped: Sequence[int], first_line: int) -> np.ndarray:
    """The record numbers of the good rows numbered ``good`` (0-based among good rows, from ``first_line``), jumping
    over the ``skipped`` records (rows with the wrong column count); one record a line, their lines."""
    # S_i - i - first_line = number of good rows before the i-th skipped record.
    s = np.sort(np.asarray(skipped, dtype=np.int64))
    return good + first_line + np.searchsorted(s - np.arange(len(s)) - first_line, good, side="right")


def _valid_utf8(table: pa.Table, lines: np.ndarray, file: str, sink: BadRowSink) -> tuple[pa.Table, np.ndarray | None]:
    """The binary cells of a CSV block as text, and the rows to keep (None: all). A row with a cell that is not
    valid UTF-8 is a bad row (the sink names its line, column and bytes), not the end of the file."""
    try:
        return pa.Table.from_arrays([pc.cast(c, pa.string()) for c in table.columns], names=table.column_names), None
    except pa.ArrowInvalid:
        pass
    keep = np.ones(table.num_rows, dtype=bool)
    for name, col in zip(table.column_names, table.columns, strict=True):
        for i, value in enumerate(col.to_pylist()):
            if value is None or not keep[i]:
                continue
            try:
                value.decode("utf-8")
            except UnicodeDecodeError as err:
                keep[i] = False
                sink.add(BadRow(file, int(lines[i]), name, repr(value[:80]),
                                f"not valid UTF-8 (byte {value[err.start]:#04x} at offset {err.start})"))
    kept = table.filter(pa.array(keep))
    return pa.Table.from_arrays([pc.cast(c, pa.string()) for c in kept.columns], names=kept.column_names), keep


def _trimmed_nulls(table: pa.Table, missing: Sequence[str]) -> pa.Table:
    """Trim whitespace around every cell and null the missing markers: ", "-separated files give " ?"."""
    markers = pa.array(list(missing), pa.string())
    columns = []
    for col in table.columns:
        text = pc.utf8_trim_whitespace(col)
        columns.append(pc.if_else(pc.is_in(text, value_set=markers), pa.scalar(None, pa.string()), text))
    return pa.Table.from_arrays(columns, names=table.column_names)


def _open_parquet(path: Path, columns: Sequence[str]) -> pq.ParquetFile:
    try:
        pf = pq.ParquetFile(path)
    except pa.ArrowInvalid as err:
        raise BadInputError(f"{path}: not a readable Parquet file: {err}") from None
    _missing_columns(path, pf.schema_arrow.names, columns)
    return pf


def _parquet_chunks(path: Path, columns: Sequence[str], chunk_rows: int,
                    row_filter: Sequence[RowFilter] | None = None) -> Iterator[Chunk]:
    """The file in chunks; with ``row_filter``, only the row groups whose statistics may pass it are decoded
    (the rows keep their row numbers in the file)."""
    pf = _open_parquet(path, columns)
    groups = parquet_row_groups(path, pf.schema_arrow, row_filter) if row_filter else None
    if groups is not None:
        md = pf.metadata
        starts = np.cumsum([0] + [md.row_group(g).num_rows for g in range(md.num_row_groups)])
        for g in groups:
            table = pf.read_row_group(g, columns=list(columns), use_threads=False)
            for lo in range(0, table.num_rows, chunk_rows):
                part = table.slice(lo, chunk_rows)
                first = int(starts[g]) + lo + 1
                yield Chunk(part, np.arange(first, first + part.num_rows, dtype=np.int64), str(path))
        return
    row = 0
    for batch in pf.iter_batches(batch_size=chunk_rows, columns=list(columns), use_threads=False):
        n = batch.num_rows
        yield Chunk(pa.Table.from_batches([batch]), np.arange(row + 1, row + n + 1, dtype=np.int64), str(path))
        row += n


def read_parquet_chunks(path: Path, *, columns: Sequence[str], chunk_rows: int, select: Callable[[int], bool],
                        row_filter: Sequence[RowFilter] | None = None) -> Iterator[tuple[int, Chunk]]:
    """(chunk index, chunk) for the chunks ``ci`` of a Parquet file with ``select(ci)``, decoding only them.

    The chunks are those :func:`read_chunks` yields (rows ``[ci * chunk_rows, (ci + 1) * chunk_rows)``, line
    numbers from 1), but the row groups that hold no selected row are never read: a process that trains on every
    W-th chunk (:mod:`shoal.distributed`) decodes about 1/W of the file when row groups are about a chunk long.
    A row group that spans several selected chunks is decoded once. Several files (a folder, glob or list):
    the chunks of each file follow those of the files before it, so a file holding no selected chunk is never
    read. With ``row_filter`` the chunks are those that hold rows passing it: every chunk is read, the selected
    ones kept.
    """
    path = Path(path)
    check_file(path)
    if row_filter:
        stream = read_chunks(path, fmt="parquet", columns=columns, sink=BadRowSink("error"), chunk_rows=chunk_rows,
                             row_filter=row_filter)
        yield from ((ci, chunk) for ci, chunk in enumerate(stream) if select(ci))
        return
    if is_multi(path):  # a file's chunk count is in its footer: open only the files holding selected chunks
        offset = 0
        for entry, file in source_parts(path):
            n = -(-_open_parquet(file, []).metadata.num_rows // chunk_rows)
            if any(select(offset + i) for i in range(n)):
                own = functools.partial(_shifted, select, offset)
                for chunk in _part_chunks(entry, file, "parquet", columns, BadRowSink("error"), True, None, None,
                                          ("",), chunk_rows, True, None, select=own):
                    yield offset + (int(chunk.lines[0]) - 1) // chunk_rows, chunk  # chunk i holds rows from i * size
            offset += n
        return
    pf = _open_parquet(path, columns)
    md = pf.metadata
    bounds = np.zeros(md.num_row_groups + 1, dtype=np.int64)
    np.cumsum([md.row_group(g).num_rows for g in range(md.num_row_groups)], out=bounds[1:])
    total = int(bounds[-1])
    if total == 0:
        raise BadInputError(f"{path}: file has no rows; expected at least one data row")
    decoded: dict[int, pa.Table] = {}  # row groups of the current chunk, kept for the next one
    for ci in range(-(-total // chunk_rows)):
        if not select(ci):
            continue
        lo, hi = ci * chunk_rows, min((ci + 1) * chunk_rows, total)
        first = int(np.searchsorted(bounds, lo, side="right")) - 1
        last = int(np.searchsorted(bounds, hi, side="left")) - 1
        decoded = {g: decoded[g] if g in decoded else pf.read_row_group(g, columns=list(columns), use_threads=False)
                   for g in range(first, last + 1)}
        table = pa.concat_tables([decoded[g] for g in range(first, last + 1)])
        table = table.slice(lo - int(bounds[first]), hi - lo).combine_chunks()
        yield ci, Chunk(table, np.arange(lo + 1, hi + 1, dtype=np.int64), str(path))


def _shifted(select: Callable[[int], bool], offset: int, ci: int) -> bool:
    return select(offset + ci)


def _jsonl_read_options(chunk_rows: int) -> pajson.ReadOptions:
    return pajson.ReadOptions(block_size=max(CSV_BLOCK_MIN_BYTES, chunk_rows * 256), use_threads=False)


@functools.lru_cache(maxsize=8)
def _jsonl_schema(path: str, chunk_rows: int, size: int, mtime_ns: int) -> pa.Schema:
    """The column types :func:`read_chunks` gives a JSONL file: those of its first block (cached per file
    version: every chunk a rank reads by :func:`read_range` needs them)."""
    return pajson.open_json(path, read_options=_jsonl_read_options(chunk_rows)).schema


def _jsonl_chunks(path: Path, columns: Sequence[str], chunk_rows: int, sink: BadRowSink) -> Iterator[Chunk]:
    """The chunks of a JSONL file, numbered by row (1-based). A row longer than the block makes a pass with a block
    fitted to the longest line; a line over :data:`ROW_BYTES_CAP` is a bad row (its number assumes one row a line)."""
    _missing_columns(path, read_header(path, "jsonl"), columns)
    options = _jsonl_read_options(chunk_rows)
    name = str(path)
    scan: _LineScan | None = None
    done = 0  # rows already yielded: a pass after a retry skips them
    while True:
        row = 0
        try:
            if scan is not None and scan.over_cap:
                source: object = _LinesDropped(path, scan.over_cap, b"{}")
            else:
                source = _open(path) if compression(path) else path
            reader = pajson.open_json(source, read_options=options)
            while True:
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    break
                table = pa.Table.from_batches([batch])
                n = table.num_rows
                row += n
                if row <= done:  # yielded by an earlier pass
                    continue
                _missing_columns(path, table.column_names, columns)
                table = table.select(list(columns))
                lines = np.arange(row - n + 1, row + 1, dtype=np.int64)
                keep = lines > done
                if scan is not None and scan.over_cap:
                    keep &= ~np.isin(lines, np.fromiter(scan.over_cap, dtype=np.int64))  # their "{}" stand-ins
                if not keep.all():
                    table, lines = table.filter(pa.array(keep)), lines[keep]
                for start in range(0, len(lines), chunk_rows):  # a block holds any number of rows: cut to chunk_rows
                    stop = min(len(lines), start + chunk_rows)
                    yield Chunk(table.slice(start, stop - start), lines[start:stop], name)
                done = row
            return
        except pa.ArrowInvalid as err:
            if not _straddles(err):
                raise BadInputError(f"{path}: cannot read as JSONL after row {row}: {err}") from None
            if scan is None:
                scan = _scan_lines(path, lambda line, size, head: sink.add(_over_cap_row(name, line, size, head)))
            options = pajson.ReadOptions(block_size=_bigger_block(path, options.block_size, scan, row),
                                         use_threads=False)


# -- byte ranges: one chunk of a text file without parsing the rows before it ------------------------------------
@dataclass(frozen=True)
class ByteRange:
    """Where a chunk of :func:`read_chunks` lies in a CSV/TSV/JSONL file: bytes ``[start, stop)``, the line
    number of its first row and its number of (good) rows."""

    start: int
    stop: int
    first_line: int
    rows: int


_SCAN_BYTES = 64 << 20


def byte_ranges(path: Path, chunks: Sequence[tuple[int, int, int]]) -> list[ByteRange] | None:
    """The byte range of every chunk of a CSV/TSV/JSONL file, from one scan for line ends (no parsing).

    ``chunks`` holds ``(first line, last line, rows)`` of each chunk :func:`read_chunks` yielded, in order. Chunk
    ``ci`` runs from the start of its first line to the start of chunk ``ci + 1`` (the rows with the wrong column
    count in between go with it, to be skipped again). That holds when every record is one line ended by
    ``\\n``; so the scan returns None, and the caller reads the whole file, when the file's lines are not its
    records: a lone ``\\r`` ending a line, a CSV/TSV quoted value that may hold a line end (an odd count of
    quotes before a line end; a quote inside an unquoted value counts too), or JSONL blank lines (the line count
    then differs from the last chunk's last line number), or bad rows after the last good one.
    """
    path = Path(path)
    if not chunks or is_multi(path) or compression(path) is not None:  # several files, or no seeking: read it all
        return None
    wanted = np.array([first - 1 for first, _, _ in chunks], dtype=np.int64)  # line ends before each first line
    starts = np.zeros(len(wanted), dtype=np.int64)
    ends = 0  # line ends seen so far
    lone_cr = cr_pending = False  # a "\r" not followed by "\n"; the last block ended with "\r"
    quotes: int | None = None if _EXTENSIONS.get(_suffix(path)) == "jsonl" else 0  # quotes seen (JSONL: not counted)
    last = b""
    with path.open("rb") as fh:
        offset = 0
        while block := fh.read(_SCAN_BYTES):
            buf = np.frombuffer(block, dtype=np.uint8)
            at = np.flatnonzero(buf == 10)  # (k,) positions of "\n" in the block
            after = np.flatnonzero(buf == 13) + 1
            lone_cr = (lone_cr or (cr_pending and buf[0] != 10)
                       or bool(np.any(buf[after[after < len(buf)]] != 10)))
            cr_pending = bool(buf[-1] == 13)
            if quotes is not None and b'"' in block:
                marks = np.flatnonzero(buf == 34)  # (q,) positions of '"'
                if np.any((np.searchsorted(marks, at) + quotes) & 1):  # a line end after an odd count of quotes
                    return None
                quotes += len(marks)
            here = (wanted > ends) & (wanted <= ends + len(at))  # first lines that start in this block
            starts[here] = offset + at[wanted[here] - ends - 1] + 1
            ends += len(at)
            offset += len(block)
            last = block[-1:]
    lines = ends + (0 if last == b"\n" else 1)
    if lone_cr or cr_pending or lines != chunks[-1][1] or np.any(wanted > ends):
        return None
    stops = np.append(starts[1:], offset)
    return [ByteRange(int(a), int(b), first, rows)
            for a, b, (first, _, rows) in zip(starts, stops, chunks, strict=True)]


def read_range(
    path: Path,
    span: ByteRange,
    *,
    fmt: str | None,
    columns: Sequence[str],
    names: Sequence[str] | None = None,
    delimiter: str | None = None,
    missing: Sequence[str] = ("",),
    quoting: bool = True,
    chunk_rows: int = 65_536,
) -> Chunk:
    """The chunk at ``span`` of a CSV/TSV/JSONL file (see :func:`byte_ranges`), as :func:`read_chunks` yields it:
    the same rows, values and line numbers, read from those bytes alone. Rows with the wrong column count are
    skipped (the pass that found the span reported them). Raises :class:`BadInputError` when the bytes do not
    hold the span's rows (the file changed since). ``chunk_rows`` is the one the chunks were read with (JSONL: the
    column types are those of the file's first block, as in :func:`read_chunks`)."""
    path = Path(path)
    fmt = detect_format(path, fmt)
    with path.open("rb") as fh:
        fh.seek(span.start)
        data = pa.py_buffer(fh.read(span.stop - span.start))
    name = str(path)
    try:
        if fmt == "jsonl":
            stat = path.stat()
            schema = _jsonl_schema(str(path), chunk_rows, stat.st_size, stat.st_mtime_ns)
            table = pajson.read_json(pa.BufferReader(data), read_options=pajson.ReadOptions(use_threads=False),
                                     parse_options=pajson.ParseOptions(explicit_schema=schema))
            _missing_columns(path, table.column_names, columns)
            table = table.select(list(columns))
            lines = np.arange(span.first_line, span.first_line + table.num_rows, dtype=np.int64)
        else:
            sep = delimiter or ("\t" if fmt == "tsv" else ",")
            file_names = list(names) if names is not None else read_header(path, fmt, sep)
            parse = _CsvBlockParser(file_names, False, sep, quoting, columns, missing)
            tables, parts = [], []
            for item in record_blocks(pa.BufferReader(data), Syntax.of(sep, quoting), parse, block=len(data) + 1,
                                      cap=ROW_BYTES_CAP, name=name, first_line=span.first_line):
                if isinstance(item, OverCap):  # the bad rows: reported by the first pass
                    continue
                (table, invalid, first_row), block_lines = item
                rows = _good_lines(np.arange(table.num_rows, dtype=np.int64), [n for n, _, _ in invalid], first_row)
                tables.append(table)
                parts.append(block_lines.of(rows))
            if not tables:
                raise BadInputError(f"{path}: bytes {span.start}-{span.stop} hold no rows, the first pass found "
                                    f"{span.rows} there; did the file change during the run?")
            table, lines = pa.concat_tables(tables), np.concatenate(parts)
            table, keep = _valid_utf8(table, lines, name, BadRowSink("count"))  # the first pass reported them
            if keep is not None:
                lines = lines[keep]
            table = _trimmed_nulls(table, missing)
    except pa.ArrowInvalid as err:
        raise BadInputError(f"{path}: cannot read bytes {span.start}-{span.stop} (line {span.first_line} on) as "
                            f"{fmt.upper()}: {err}; did the file change during the run?") from None
    if table.num_rows != span.rows:
        raise BadInputError(f"{path}: bytes {span.start}-{span.stop} hold {table.num_rows} rows, the first pass found "
                            f"{span.rows} there (line {span.first_line} on); did the file change during the run?")
    return Chunk(table.combine_chunks(), lines, name)
