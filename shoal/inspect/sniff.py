"""CSV/TSV sniffing: the delimiter and whether the first line is a header."""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from pathlib import Path

from shoal.inspect.stats import _DELIMITERS, _NUMBER, _SNIFF_BYTES, _SNIFF_LINES


def _first_lines(path: Path) -> list[str]:
    """The first non-blank lines of a text source (its first file for a folder or glob; decompressed)."""
    from shoal.data.readers import head_bytes, is_multi, source_files

    path = source_files(path)[0] if is_multi(path) else path
    raw = head_bytes(path, _SNIFF_BYTES)
    whole = len(raw) < _SNIFF_BYTES
    _check_utf8(path, raw if whole else raw[:-3])  # the limit may cut a character's bytes
    head = raw.decode("utf-8-sig", errors="replace")
    lines = head.splitlines()
    if not whole and lines:
        lines = lines[:-1]  # the last line may be cut at the limit
    return [ln for ln in lines if ln.strip()][:_SNIFF_LINES]


def _check_utf8(path: Path, raw: bytes) -> None:
    """Refuse text that is not UTF-8 (a Latin-1 or Windows-1252 export), naming the byte, its line and the fix: the
    readers read UTF-8 only, and such a file used to be refused as having the wrong delimiter."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        byte = raw[err.start:err.start + 1].hex()
        raise ValueError(f"{path}: line {line} is not UTF-8 (byte 0x{byte} at offset {err.start}); shoal reads UTF-8 "
                         f"text: convert the file, e.g. iconv -f latin1 -t utf-8 {path.name} > utf8.csv") from None


def _rows(lines: Sequence[str], sep: str) -> list[list[str]]:
    return [[c.strip() for c in row] for row in csv.reader(lines, delimiter=sep)]


def _consistent(lines: Sequence[str], sep: str) -> bool:
    """Every sampled line splits into the same number (> 1) of fields."""
    try:
        widths = {len(r) for r in _rows(lines, sep)}
    except csv.Error:
        return False
    return len(widths) == 1 and widths.pop() > 1


def _guess_delimiter(lines: Sequence[str], fmt: str) -> str:
    if fmt == "tsv":
        return "\t"
    # the last line may be cut short by the byte limit; leave it out of the vote
    sample = list(lines[:-1]) if len(lines) > 2 else list(lines)
    try:
        dialect = csv.Sniffer().sniff("\n".join(sample), delimiters="".join(_DELIMITERS))
        sniffed: str | None = dialect.delimiter
    except csv.Error:
        sniffed = None
    if sniffed is not None and _consistent(sample, sniffed):
        return sniffed
    for sep in _DELIMITERS:
        if _consistent(sample, sep):
            return sep
    return ","


def _is_number(text: str) -> bool:
    return bool(_NUMBER.match(text))


# A number as people write it: decimal comma, thousands separators, a currency sign, a percent ("0,13", "30,220",
# "$139.45", "2.1%"). Never a column name; a column of them is numbers for the header guess.
_NUMBERISH = re.compile(r"^[(+-]?[$€£¥]?\s?(\d+([.,' ]\d+)*|[.,]\d+)([eE][+-]?\d+)?\s?%?\)?$")
_NUMBERS_SHARE = 0.9  # a column whose values below the first line are mostly numbers (one junk value allowed)
_TEXT_MEDIAN_CHARS = 40  # a column of free text: long values below the first line, most with spaces ...
_NAME_TEXT_SHARE = 0.25  # ... under a name: a first cell shorter than this share of their median length
_REPEATS_MIN_ROWS = 8  # a column's values repeat (categories) with this many rows below the first line ...
_REPEATS_SHARE = 0.5  # ... and at most this share of distinct values


def _numberish(text: str) -> bool:
    return bool(_NUMBER.match(text) or _NUMBERISH.match(text))


def _header_votes(first: Sequence[str], rest: Sequence[Sequence[str]], skip: set[str]) -> tuple[int, int]:
    """Votes for the first line being names, and for it being values: one per column, two for a name over numbers.

    A name: over a column of numbers; over long free texts, a short cell; over a column of repeating values
    (categories), a cell none of them is. A value: a cell that also occurs below in its own column; over long free
    texts, a cell about as long as they are. Empty and missing first cells, and columns of other values (ids,
    names), say nothing.
    """
    named = data = 0
    for j, cell in enumerate(first):
        if not cell or cell in skip:
            continue
        below = [r[j] for r in rest if j < len(r) and r[j] and r[j] not in skip]
        if not below:
            continue
        if cell in set(below):
            data += 1
        elif sum(_numberish(v) for v in below) >= _NUMBERS_SHARE * len(below):
            named += 2  # the surest sign: a headerless file would need a stray word on its first line
        elif _free_text(below):
            median = sorted(len(v) for v in below)[len(below) // 2]
            if len(cell) < _NAME_TEXT_SHARE * median:
                named += 1
            else:
                data += 1
        elif len(below) >= _REPEATS_MIN_ROWS and len(set(below)) <= _REPEATS_SHARE * len(below):
            named += 1
    return named, data


def _free_text(values: Sequence[str]) -> bool:
    median = sorted(len(v) for v in values)[len(values) // 2]
    return median >= _TEXT_MEDIAN_CHARS and sum(" " in v for v in values) > len(values) / 2


def _guess_header(lines: Sequence[str], sep: str, missing: Sequence[str]) -> bool:
    """Whether the first line names the columns.

    Never when a cell of the first line is a number (names are not numbers; :func:`_numberish`). Else the columns
    vote (:func:`_header_votes`) and the larger side wins; on a tie (also when no column says anything)
    :meth:`csv.Sniffer.has_header` decides. A single line of names is a header (the reader then reports "only a
    header").
    """
    rows = _rows(lines, sep)
    first, rest = rows[0], rows[1:]
    cells = [c for c in first if c]
    if not cells or any(_numberish(c) for c in cells):
        return False
    if not rest:
        return True
    named, data = _header_votes(first, rest, set(missing))
    if named != data:
        return named > data
    try:
        return csv.Sniffer().has_header("\n".join(lines))
    except csv.Error:
        return False
