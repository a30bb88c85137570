"""CSV/TSV sniffing: the delimiter and whether the first line is a header."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from shoal.inspect.stats import _DELIMITERS, _IDENTIFIER, _NUMBER, _SNIFF_BYTES, _SNIFF_LINES


def _first_lines(path: Path) -> list[str]:
    """The first non-blank lines of a text source (its first file for a folder or glob; decompressed)."""
    from shoal.data.readers import head_bytes, is_multi, source_files

    path = source_files(path)[0] if is_multi(path) else path
    head = head_bytes(path, _SNIFF_BYTES).decode("utf-8-sig", errors="replace")
    whole = len(head.encode("utf-8", errors="replace")) < _SNIFF_BYTES
    lines = head.splitlines()
    if not whole and lines:
        lines = lines[:-1]  # the last line may be cut at the limit
    return [ln for ln in lines if ln.strip()][:_SNIFF_LINES]


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


def _guess_header(lines: Sequence[str], sep: str, missing: Sequence[str]) -> bool:
    """Whether the first line names the columns: identifier-like cells over rows of another type."""
    rows = _rows(lines, sep)
    first, rest = rows[0], rows[1:]
    named = [c for c in first if c]
    if not named or len(set(named)) != len(named) or not all(_IDENTIFIER.match(c) for c in named):
        return False
    if not rest:
        return True  # a single line of names: the reader then reports "only a header"
    skip = set(missing)
    for j in range(len(first)):
        below = [r[j] for r in rest if j < len(r) and r[j] not in skip]
        if below and all(_is_number(v) for v in below):
            return True  # a name over a column of numbers
    try:
        return csv.Sniffer().has_header("\n".join(lines))
    except csv.Error:
        return False

