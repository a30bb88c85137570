"""CSV/TSV text cut into blocks of whole records, each record with the physical line it starts on.

pyarrow's CSV parser counts records, not lines, and a quoted cell may hold line breaks, so one record may span
several lines; every record after it starts lower than its count says::

    bytes           record  line
    a,b⏎            1       1        (the header)
    1,"two⏎         2       2-3
    lines"⏎
    2,x,9⏎          3       4        (a bad row: named "line 4", not "line 3")

:func:`record_blocks` reads a byte stream in blocks that end where a record ends, has each parsed, and gives
every record of the block its line. Most files hold no quoted line break, and a block with no quote character
cannot hold one: it is cut at its last line end and numbered one record a line, found with one ``memchr``. A
block with quotes is checked once parsed: as many records as lines, and its last line not ending inside quotes
(a cut there leaves a cell open). A file that fails the check is read from there on with :func:`scan`, which
follows Arrow's quoting over the bytes (vectorized) to cut at record ends and count each record's lines.

A record that grows past the size cap is skipped as it streams by (never held whole) and named by an
:class:`OverCap` with its line, its lines and its size; the records after it keep their lines.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol, TypeVar, cast

import numpy as np

from shoal.data.sources import BadInputError
from shoal.jit import lazy_njit

__all__ = ["BlockLines", "OverCap", "Scan", "Syntax", "record_blocks", "run_ahead", "scan"]

LF, CR = 0x0A, 0x0D
_BOM = b"\xef\xbb\xbf"
_START = -1  # "the byte before" a record's first byte: a field starts there
_NO_LINES = np.empty(0, dtype=np.int64)
_HEAD = 200  # bytes of an over-cap record kept to name it

T = TypeVar("T")


class ByteStream(Protocol):
    def read(self, nbytes: int, /) -> bytes: ...


@dataclass(frozen=True)
class Syntax:
    """The bytes that shape records: the field delimiter and the quote character (None: quotes are plain bytes)."""

    delimiter: int
    quote: int | None

    @classmethod
    def of(cls, delimiter: str, quoting: bool) -> Syntax:
        sep = delimiter.encode()
        if len(sep) != 1:
            raise BadInputError(f"delimiter {delimiter!r} is not one byte; set data.delimiter to a single character")
        return cls(sep[0], 0x22 if quoting else None)


@dataclass(frozen=True)
class Scan:
    """The line ends of some bytes, told apart by Arrow's quoting (see :func:`scan`)."""

    ends: np.ndarray  # (E,) int64: positions of line ends outside quotes, where records end ("\r\n": its "\n")
    breaks: np.ndarray  # (B,) int64: positions of line ends inside quoted cells
    inside: bool  # whether the byte at ``stop - 1`` is inside a quoted cell
    stop: int  # the bytes decided; the rest (a trailing run of quotes and "\r") hangs on the bytes to come


def scan(data: bytes | bytearray, syntax: Syntax, *, inside: bool = False, before: int = _START,
         final: bool = True) -> Scan:
    """Where the line ends of ``data`` fall, inside or outside quotes, as pyarrow parses them.

    Arrow's rules: a line ends at "\\n", "\\r\\n" or "\\r"; a quote opens a quoted cell only where a field starts
    (after the delimiter, a line end, or at the start); inside, two quotes are one quote and the next quote
    closes the cell, which goes on unquoted (quotes there are plain bytes) to the delimiter or the line end.
    ``inside`` and ``before`` (the byte before ``data``; ``_START`` at a record's start) carry the state over from
    the bytes before; ``final``: nothing follows, else a trailing run of quotes and "\\r" is left undecided.

    When the quotes alternate open, close as counting them says (every opening one where a field starts, every
    closing one before a delimiter, a line end or a quote), each line end is inside quotes after an odd count of
    them: numpy work. Otherwise (a quote inside an unquoted field, bytes after a closing quote) the rules are
    followed quote by quote.
    """
    n = stop = len(data)
    held = (CR,) if syntax.quote is None else (CR, syntax.quote)
    while not final and stop and data[stop - 1] in held:
        stop -= 1
    full = np.frombuffer(data, dtype=np.uint8)
    part = full[:stop]
    ends = np.flatnonzero(part == LF)
    if data.find(b"\r", 0, stop) >= 0:
        cr = np.flatnonzero(part == CR)
        alone = (cr + 1 == n) | (full[np.minimum(cr + 1, n - 1)] != LF)  # "\r" not followed by "\n"
        ends = np.sort(np.concatenate([ends, cr[alone]]))
    quote = syntax.quote
    if quote is None or (not inside and data.find(bytes((quote,)), 0, stop) < 0):
        return Scan(ends, _NO_LINES, inside, stop)
    quotes = np.flatnonzero(part == quote)
    toggles = quotes if _alternate(full, quotes, syntax, inside, before) else _toggles(full, quotes, syntax, inside,
                                                                                        before)
    within = ((np.searchsorted(toggles, ends) + inside) & 1).astype(bool)  # (E,) odd toggles before it: quoted
    return Scan(ends[~within], ends[within], bool((len(toggles) + inside) & 1), stop)


def _alternate(full: np.ndarray, quotes: np.ndarray, syntax: Syntax, inside: bool, before: int) -> bool:
    """Whether Arrow reads every quote as counting says, opening and closing in turn."""
    assert syntax.quote is not None
    fits = np.zeros(256, dtype=bool)
    fits[[syntax.delimiter, LF, CR, syntax.quote]] = True  # a quote next to a quote: a doubled one
    opens, closes = quotes[int(inside)::2], quotes[1 - int(inside)::2]
    if len(opens) and opens[0] == 0:
        if before != _START and not fits[before]:
            return False
        opens = opens[1:]
    if len(closes) and closes[-1] == len(full) - 1:  # the end of the data: nothing follows
        closes = closes[:-1]
    return bool(fits[full[opens - 1]].all() and fits[full[closes + 1]].all())


def _toggles(full: np.ndarray, quotes: np.ndarray, syntax: Syntax, inside: bool, before: int) -> np.ndarray:
    """The quotes (Q,) that open or close a quoted cell, by Arrow's rules followed one quote at a time: a compiled
    loop for many quotes (a block with a quote inside an unquoted value), else the same loop in Python."""
    compiled = _toggle_kernel() if len(quotes) > _COMPILE_FROM else None
    loop = compiled if compiled is not None else _toggle_loop
    return np.asarray(loop(full, quotes, syntax.delimiter, inside, before), dtype=np.int64)


def _toggle_loop(full: np.ndarray, quotes: np.ndarray, delimiter: int, inside: bool, before: int) -> np.ndarray:
    out = np.empty(len(quotes), dtype=np.int64)
    k = 0
    i = 0
    while i < len(quotes):
        p = quotes[i]
        if inside:
            if i + 1 < len(quotes) and quotes[i + 1] == p + 1:  # a doubled quote: one quote within the cell
                i += 2
                continue
            out[k] = p
            k += 1
            inside = False
        else:
            b = np.int64(full[p - 1]) if p > 0 else np.int64(before)
            if b in (delimiter, LF, CR, _START):  # a field starts here: the quote opens
                out[k] = p
                k += 1
                inside = True
        i += 1
    return out[:k]


_COMPILE_FROM = 10_000  # quotes; fewer are followed in Python (no compilation for a line or two)
_toggle_kernel = lazy_njit(globals(), "_toggle_loop")


@dataclass(frozen=True)
class BlockLines:
    """The lines of a block's records: record k (1-based in the block) starts on line
    ``first + k - 1 + shift[k - 1]`` (``shift``: the lines inside quoted cells above it; None: none)."""

    first: int
    count: int  # lines the block spans: its line ends, and a last line without one
    shift: np.ndarray | None = None  # (records,) int64

    def of(self, records: np.ndarray) -> np.ndarray:
        """The lines (N,) int64 of the records numbered ``records`` (N,) (1-based in the block)."""
        lines = np.asarray(records, dtype=np.int64) + (self.first - 1)
        return lines if self.shift is None else lines + self.shift[lines - self.first]


@dataclass(frozen=True)
class OverCap:
    """A record over the size cap, not parsed: the line it starts on, its lines, its bytes and its first bytes."""

    line: int
    lines: int
    size: int
    head: bytes


def record_blocks(stream: ByteStream, syntax: Syntax, parse: Callable[[memoryview, bool], tuple[T, int]], *,
                  block: int, cap: int, name: str, first_line: int = 1) -> Iterator[tuple[T, BlockLines] | OverCap]:
    """Each block of whole records of ``stream`` (about ``block`` bytes; more where one record is longer) as
    ``parse(bytes, first)`` makes it (``first``: the block starts the file) with the lines of its records, and
    each record over ``cap`` bytes as an :class:`OverCap`, in the order of the file.

    ``parse`` gives its result and the records it parsed (a skipped header and bad rows included). ``name`` names
    the stream in errors; ``first_line`` is the line of its first byte.
    """
    cutter = _Cutter(stream, syntax, block, cap)
    line, first = first_line, True
    while True:
        cut = cutter.next_cut()
        if cut is None:
            return
        over = cutter.over_cap(cut)
        if over is not None:
            size, lines_over, head = over
            yield OverCap(line, lines_over, size, head)
            line += lines_over
            first = False
            continue
        payload, records = parse(memoryview(cutter.data)[:cut], first)
        lines = cutter.lines(cut, records, line)
        if lines is None:  # a quoted cell holds a line break: from here on, cut and number by the quotes
            cutter.by_quotes()
            continue
        if lines.shift is not None and len(lines.shift) != records:
            raise BadInputError(f"{name}: from line {line}, pyarrow parsed {records} records where the quotes make "
                                f"{len(lines.shift)}; the file's quoting is not what the reader expects")
        yield payload, lines
        cutter.drop(cut)
        line += lines.count
        first = False


class _Cutter:
    """The bytes read and not yet handed out, and where the next block of whole records ends."""

    def __init__(self, stream: ByteStream, syntax: Syntax, block: int, cap: int) -> None:
        self.stream, self.syntax, self.block, self.cap = stream, syntax, block, cap
        self.data = bytearray()  # appended to and cut from the front in place: its memory is reused, block after block
        self.eof = False
        self.exact = False  # cut and number by the quotes (a quoted cell held a line break)
        self._scan: Scan | None = None  # the scan of ``data`` in exact mode
        self._fresh = True  # the next cut reads first
        self._started = False

    def _read(self, size: int) -> None:
        more = self.stream.read(size)
        if not more:
            self.eof = True
            return
        self.data += more
        if not self._started:
            self._started = True
            if self.data.startswith(_BOM):  # pyarrow drops a byte-order mark; the scan starts after it too
                del self.data[:len(_BOM)]

    def next_cut(self) -> int | None:
        """The end of the last whole record held (reading more while none is), or None at the end."""
        want = self.block
        while True:
            if self._fresh and not self.eof:
                self._read(want)
            self._fresh = True
            if not self.data:
                return None
            self._scan = None
            if self.eof:
                if self.exact:
                    self._scan = scan(self.data, self.syntax)
                return len(self.data)
            if self.exact:
                self._scan = scan(self.data, self.syntax, final=False)
                cut = int(self._scan.ends[-1]) + 1 if len(self._scan.ends) else 0
            else:
                end = len(self.data) - 1 if self.data.endswith(b"\r") else len(self.data)  # "\r" then "\n"?
                cut = _last_line_end(self.data, end) + 1
            if cut:
                return cut
            if len(self.data) > self.cap:
                self._scan = scan(self.data, self.syntax, final=False)
                if self._scan.stop > self.cap:  # the first record is over the cap, and goes on
                    return 0
            want = min(max(self.block, len(self.data)), self.cap)  # double what is held: reads stay linear

    def over_cap(self, cut: int) -> tuple[int, int, bytes] | None:
        """(size, lines, first bytes) of the first record held when it is over the cap, which is then dropped
        (read to its end when ``cut`` is 0); else None."""
        if cut and cut <= self.cap:
            return None
        head = bytes(self.data[:_HEAD])
        sc = self._scan if self._scan is not None else scan(self.data, self.syntax, final=self.eof)
        if cut:
            if not len(sc.ends) and not self.eof:  # fast mode cut inside a quoted cell: the check will see it
                return None
            if len(sc.ends):
                end = int(sc.ends[0])
                size, lines = _content(self.data, end), 1 + int(np.searchsorted(sc.breaks, end))
            else:  # the last record, without a line end of its own
                size, lines = _last_record(self.data, len(sc.breaks))
            if size <= self.cap:
                return None
            self.drop(end + 1 if len(sc.ends) else len(self.data))
            self._fresh = False
            return size, lines, head
        size, breaks, inside = sc.stop, len(sc.breaks), sc.inside
        before, carry = self.data[sc.stop - 1], bytes(self.data[sc.stop:])
        while True:  # stream the rest of the record by, keeping nothing of it
            more = bytes(self.stream.read(self.block))
            buf = carry + more
            sc = scan(buf, self.syntax, inside=inside, before=before, final=not more)
            if len(sc.ends):
                end = int(sc.ends[0])
                self.data, self.eof, self._fresh = bytearray(buf[end + 1:]), not more, False
                return size + _content(buf, end), 1 + breaks + int(np.searchsorted(sc.breaks, end)), head
            if not more:  # the file ends inside the record (a quote left open)
                self.data, self.eof = bytearray(), True
                tail, lines = _last_record(buf or bytes((before,)), breaks + len(sc.breaks))
                return size + tail - (0 if buf else 1), lines, head
            size += sc.stop
            breaks += len(sc.breaks)
            inside = sc.inside
            before = buf[sc.stop - 1] if sc.stop else before
            carry = buf[sc.stop:]

    def lines(self, cut: int, records: int, first: int) -> BlockLines | None:
        """The lines of the ``records`` records in ``data[:cut]``; None when that is not one record a line in
        fast mode (then the cut may be inside a quoted cell: cut again, by the quotes)."""
        data = self.data
        ended = data[cut - 1] in (LF, CR)
        if self.exact:
            sc = self._scan if self._scan is not None else scan(data[:cut], self.syntax)
            ends, breaks = sc.ends[sc.ends < cut], sc.breaks[sc.breaks < cut]
            n = len(ends) + int(cut > (ends[-1] + 1 if len(ends) else 0))  # a last record without its line end
            starts = np.concatenate([[-1], ends])[:n]  # (records,) the byte before each record
            return BlockLines(first, len(ends) + len(breaks) + (0 if ended else 1), np.searchsorted(breaks, starts))
        quote = self.syntax.quote
        if quote is None or data.find(bytes((quote,)), 0, cut) < 0:  # no quoted cell: one record a line
            return BlockLines(first, records)
        part = np.frombuffer(data, dtype=np.uint8, count=cut)
        count = int(np.count_nonzero(part == LF))
        if data.find(b"\r", 0, cut) >= 0:
            count += int(np.count_nonzero((part[:-1] == CR) & (part[1:] != LF))) + int(part[-1] == CR)
        if count + (0 if ended else 1) != records:
            return None
        # As many records as lines: each record is one line, or the last is cut inside a quoted cell (its one
        # quoted line break the cut itself). Only the last line, read by the quotes, tells.
        end = cut - (1 if ended else 0)
        end -= 1 if ended and data[end] == LF and end and data[end - 1] == CR else 0
        start = _last_line_end(data, end) + 1
        if scan(data[start:end], self.syntax).inside:
            return None
        return BlockLines(first, records)

    def by_quotes(self) -> None:
        """Cut the bytes held again, and every later block, at the record ends :func:`scan` finds."""
        self.exact = True
        self._fresh = False

    def drop(self, cut: int) -> None:
        del self.data[:cut]
        self._scan = None


def _last_line_end(data: bytes | bytearray, end: int) -> int:
    """The position of the last "\\n" or "\\r" before ``end`` (-1: none); "\\r" only searched after the "\\n"."""
    lf = data.rfind(b"\n", 0, end)
    return max(lf, data.rfind(b"\r", lf + 1, end))


def _content(data: bytes | bytearray, end: int) -> int:
    """The bytes of a record (from the start of ``data``) ending at the line end at ``end``, without it."""
    return end - (1 if end and data[end] == LF and data[end - 1] == CR else 0)


def _last_record(data: bytes | bytearray, breaks: int) -> tuple[int, int]:
    """(bytes, lines) of a record running to the end of the file (from the start of ``data``) with ``breaks``
    line breaks in it: a break as its last bytes ends its last line, and is not counted in its size."""
    if data.endswith(b"\r\n"):
        return len(data) - 2, breaks
    if data.endswith((b"\n", b"\r")):
        return len(data) - 1, breaks
    return len(data), breaks + 1


def run_ahead(make: Callable[[], Iterator[T]], depth: int = 2) -> Iterator[T]:
    """The items of ``make()``, made by a thread up to ``depth`` items ahead of the caller, as pyarrow's own CSV
    reader works: the next block is read and parsed (pyarrow lets go of the GIL) while the caller converts this
    one. The thread's exceptions are raised here, in order; closing the iterator stops the thread."""
    items: queue.Queue[tuple[str, object]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(kind: str, value: object) -> bool:
        while not stop.is_set():
            try:
                items.put((kind, value), timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in make():
                if not put("item", item):
                    return
            put("end", None)
        except BaseException as err:  # raised in the caller's thread
            put("error", err)

    thread = threading.Thread(target=produce, name="shoal-csv-blocks", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = items.get()
            if kind == "end":
                return
            if kind == "error":
                assert isinstance(value, BaseException)
                raise value
            yield cast(T, value)
    finally:
        stop.set()
        while thread.is_alive():  # a put waiting for room ends
            with contextlib.suppress(queue.Empty):
                items.get(timeout=0.05)
