"""Bounded per-column state gathered while streaming a file, and the thresholds that turn it into a kind."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shoal.data.features.base import id_lists, is_id_list
from shoal.data.features.dense import NumberFormat
from shoal.data.hashing import hash_strings

Kind = Literal["label", "dense", "sparse", "text", "image", "audio", "time", "ignore"]
_HEAD = 32  # first non-missing values kept as they are (media sniffing: paths, bytes, base64)
_TEXT_SPACED_SHARE = 0.5  # a string column is text when most values contain spaces ...
_TEXT_MIN_BYTES = 16  # ... and they are not short labels

#: The missing-value markers of :class:`shoal.config.DataConfig` (its default for ``data.missing``).
DEFAULT_MISSING: tuple[str, ...] = ("", "NA", "N/A", "n/a", "#N/A", "NaN", "nan", "null", "NULL", "?")
#: Distinct values are counted exactly up to this many per column, then reported as ">=".
CARDINALITY_CAP = 1_000_000
MAX_GUESSED_CLASSES = 100  # a column with more values is not guessed to be a multiclass label
MAX_INTEGER_CLASSES = 20  # a numeric label with more integer values (or any fractional one) is a regression

#: Names that mark a label column (compared lower-cased). Without one, the label must be named (``--label``).
LABEL_NAMES = ("label", "labels", "click", "clicked", "clicks", "target", "y", "income", "class", "outcome",
               "response", "converted", "conversion", "sentiment")
#: Name parts that mark an integer column as an id or a category code (``user_id``, ``zipCode``).
ID_NAME_PARTS = ("id", "code", "zip", "zipcode", "postcode")
#: Name parts that mark a column of unique integers as an identifier or a row index (``row_id``, ``Unnamed: 0``).
IDENTIFIER_NAME_PARTS = ("id", "ids", "idx", "index", "unnamed", "uuid", "guid", "key", "pk")

_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")  # what the encoder accepts as a number
_NUMBER_PATTERN = _NUMBER.pattern
_HEX_PATTERN = r"^[0-9a-fA-F]+$"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_ .:/()\[\]#+-]*$")
_DELIMITERS = (",", "\t", ";", "|")
_LIST_SEPARATORS = ("|", ";", ",")
_SNIFF_LINES = 64
_SNIFF_BYTES = 1 << 20
_SAMPLE_SIZE = 20_000  # numeric values kept per column for skewness
COUNTED_VALUES = 64  # value counts are kept while a column has at most this many distinct values (a label of more
# distinct strings is no class label)
_SKEWED = 2.0  # sample skewness above which integer counts get log1p
_UNIQUE_SHARE = 0.95
_UNIQUE_MIN_ROWS = 1000
_LIST_SHARE = 0.10
_MIN_BUCKETS, _MAX_BUCKETS = 16, 1_000_000
_ID_MAX_DISTINCT = 4096  # an integer column with more distinct values is not read as ids
_ID_MIN_ROWS = 20  # ... nor one with fewer rows per distinct value (too few to learn an embedding row each)
_ID_SMOOTHNESS = 0.5  # lag-1 autocorrelation of log row counts in value order below which the order means nothing
_BINS, _BIN_MIN_ROWS = 32, 50  # quantile bins for a number with >= 16 distinct values, >= 50 rows each
_BIN_MIN_RARE = 16  # ... and >= 16 rows of a binary label's rarer value each (at least 4 bins)
_ALL_UNIQUE_MIN_ROWS = 20  # fewer rows than _UNIQUE_MIN_ROWS, all distinct: an id when named so or contiguous
_CONTIGUOUS_SPAN = 1.1  # unique integers spanning at most 1.1 x their count fill a range: row numbers, sequential ids
_ID_DIGITS = 1e8  # unique integers of 9 digits or more (in 99% of rows) are random or hashed ids, not amounts
#: Cells that are not numbers, of a column of numbers, read as missing up to this share of its values (a few typos)
_NOT_NUMBER_SHARE, _NOT_NUMBER_MIN_ROWS = 0.01, 100  # ... once it has at least this many values
_FORMAT_SAMPLE = 2000  # values of a chunk that choose the column's number format
_SYMBOLS = ("%", "$", "€", "£", "¥")  # dropped before or after a number ("2.1%", "$139.45")
#: (decimal, thousands) marks tried in this order (ties: the earlier); in a ';'-separated file, where ',' is the
#: decimal mark, the decimal comma comes first ("12,345" is then 12.345)
_FORMATS = ((".", None), (".", ","), (",", None), (",", "."), (".", " "), (",", " "), (".", "'"))
_FORMATS_SEMICOLON = ((".", None), (",", None), (",", "."), (".", ","), (",", " "), (".", " "), (".", "'"))
#: Share of the texts that the starter's max_bytes holds whole; the rest are cut (and counted).
TEXT_COVER = 0.99
_LENGTH_STEP, _LENGTH_CAP = 64, 8192  # text byte lengths are counted in steps of 64 bytes up to the cap


class _Reservoir:
    """A uniform random sample of at most ``size`` values of a stream (algorithm R, vectorized)."""

    def __init__(self, size: int, seed: int = 0) -> None:
        self.size = size
        self.seen = 0
        self.values = np.empty(0, dtype=np.float64)
        self._rng = np.random.default_rng(seed)

    def add(self, v: np.ndarray) -> None:
        room = self.size - len(self.values)
        if room > 0:
            self.values = np.concatenate([self.values, v[:room]])
            self.seen += min(room, len(v))
            v = v[room:]
        if len(v) == 0:
            return
        index = self.seen + np.arange(len(v), dtype=np.int64)
        slot = (self._rng.random(len(v)) * (index + 1)).astype(np.int64)
        keep = slot < self.size
        self.values[slot[keep]] = v[keep]
        self.seen += len(v)


class _DistinctSet:
    """Distinct values as sorted 64-bit hashes, exact up to ``cap`` entries."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.hashes = np.empty(0, dtype=np.uint64)
        self.capped = False

    def add(self, values: pa.Array) -> np.ndarray:
        """Add the (non-null) strings ``values``; returns the distinct hashes of this batch."""
        new = np.unique(hash_strings(values)) if len(values) else np.empty(0, dtype=np.uint64)
        if not self.capped:
            merged = np.union1d(self.hashes, new)
            if len(merged) >= self.cap:
                merged = merged[: self.cap]
                self.capped = True
            self.hashes = merged
        return new

    def __len__(self) -> int:
        return len(self.hashes)


@dataclass
class _ListStats:
    """How often a candidate list separator occurs in a column, and the ids it splits into."""

    rows: int = 0
    tokens: int = 0
    spaced_tokens: int = 0
    distinct: _DistinctSet = field(default_factory=lambda: _DistinctSet(CARDINALITY_CAP))


class _ColumnStats:
    """Everything :func:`inspect_file` remembers about one column while streaming (bounded)."""

    def __init__(self, name: str, separators: Sequence[str], cap: int, file_sep: str | None = None) -> None:
        self.name = name
        self.file_sep = file_sep  # the file's field delimiter (CSV/TSV), None for typed files
        self.rows = 0
        self.missing = 0
        self.padded_missing = 0  # markers with spaces around them, e.g. " ?" (not nulled by the reader)
        self.example: str | None = None
        self.arrow_type: pa.DataType | None = None
        self.unsupported: str | None = None
        self.distinct = _DistinctSet(cap)
        self.counts: dict[str, int] | None = {}
        self.numeric = True
        self.non_numeric: str | None = None
        self.integer = True
        self.whole = True  # every value an integer as written (not 1.0), of any magnitude (integer: below 2**53)
        self.number_format = NumberFormat()  # how its text reads as numbers (see _parse)
        self.not_numbers = 0  # cells of a column of numbers that are not numbers (read as missing when few)
        self.not_number_at: tuple[str, int] | None = None  # the first such cell and its line
        self.minimum = math.inf
        self.maximum = -math.inf
        self.sample = _Reservoir(_SAMPLE_SIZE)
        self.increasing = True
        self.last = -math.inf
        self.hex = True
        self.text_bytes = 0  # total UTF-8 bytes of the string values
        self.spaced = 0  # string values containing a space: prose, not ids
        self.lists = {s: _ListStats() for s in separators}
        self.list_separator: str | None = None  # a list column's (JSON-lines, Parquet): the ids joined by it
        # rows per text length: [0, 64], (64, 128], ... up to _LENGTH_CAP, then one slot for longer texts
        self.lengths = np.zeros(_LENGTH_CAP // _LENGTH_STEP + 1, dtype=np.int64)
        self.head: list[Any] = []  # the first non-missing values as read (str, bytes, ...)

    @property
    def present(self) -> int:
        return self.rows - self.missing

    def add(self, col: pa.ChunkedArray | pa.Array, markers: pa.Array | None, lines: np.ndarray | None = None) -> None:
        """Add a chunk of the column; ``lines`` (N,) are its rows' lines in the file (default: row numbers)."""
        arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
        if lines is None:
            lines = self.rows + 1 + np.arange(len(arr), dtype=np.int64)
        self.rows += len(arr)
        if self.arrow_type is None:
            self.arrow_type = arr.type
        if len(self.head) < _HEAD:
            self.head += [v for v in arr.slice(0, 4 * _HEAD).to_pylist() if v is not None][: _HEAD - len(self.head)]
        if self.unsupported is not None:
            return
        floats: np.ndarray | None = None
        if is_id_list(arr.type):  # a JSON-lines / Parquet list of ids: profiled as the cell "a|b" a list feature reads
            arr = self._joined(arr)
            self.numeric = False  # [3] is the id "3", never a number
        if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
            text = pc.utf8_trim_whitespace(arr)
        elif pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type) or pa.types.is_decimal(arr.type):
            self.whole = self.whole and pa.types.is_integer(arr.type)
            floats = np.asarray(pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
            nan = np.isnan(floats)  # nulls come out as NaN too: both are missing values
            if nan.any():
                arr = arr.filter(pa.array(~nan))
                self.missing += int(nan.sum())
                floats = floats[~nan]
            text = pc.cast(arr, pa.string())
        else:
            try:
                text = pc.utf8_trim_whitespace(pc.cast(arr, pa.string()))
            except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
                self.unsupported = str(arr.type)
                return
            self.numeric = False
        if markers is not None and len(text):
            padded = pc.fill_null(pc.is_in(text, value_set=markers), False)
            n_padded = pc.sum(padded).as_py() or 0
            if n_padded:
                self.padded_missing += n_padded
                text = pc.if_else(padded, pa.scalar(None, pa.string()), text)
        self.missing += text.null_count
        if text.null_count:
            lines = lines[np.asarray(text.is_valid().to_numpy(zero_copy_only=False), dtype=bool)]
        values = pc.drop_null(text) if text.null_count else text
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        if len(values) == 0:
            return
        if self.example is None:
            self.example = values[0].as_py()
        batch_distinct = self.distinct.add(values)
        self._count(values, len(batch_distinct))
        if floats is None and self.numeric:
            floats = self._parse(values, lines)
        if self.numeric and floats is not None:
            self._numbers(floats)
        else:
            self._strings(values)

    def _joined(self, arr: pa.Array) -> pa.Array:
        """A list column's cells joined into text by :attr:`list_separator` (the first of the list separators that
        no id of the first chunk holds, chosen once); an empty or missing list is a missing cell."""
        lists = id_lists(arr)
        if self.list_separator is None:
            items = pc.drop_null(lists.values)
            free = [sep for sep in self.lists if not pc.any(pc.match_substring(items, sep)).as_py()]
            self.list_separator = free[0] if free else next(iter(self.lists), "|")
        joined = pc.binary_join(lists, self.list_separator)
        return pc.if_else(pc.fill_null(pc.greater(pc.list_value_length(lists), 0), False), joined,
                          pa.scalar(None, pa.string()))

    def _parse(self, values: pa.Array, lines: np.ndarray) -> np.ndarray | None:
        """The numbers of text ``values`` (N,), read as :attr:`number_format` says (chosen by the first chunk whose
        text is not all plain numbers); None once the cells that are not numbers are more than a few."""
        plain = self.number_format == NumberFormat()
        if plain and pc.all(pc.match_substring_regex(values, _NUMBER_PATTERN)).as_py():
            self._written_whole(values)
            return np.asarray(pc.cast(values, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
        if plain:
            self.number_format = self._choose_format(values)
        parsed, ok = self.number_format.parse(values)
        self._written_whole(values.filter(pa.array(ok)) if not ok.all() else values)
        if not ok.all():
            first = int(np.argmax(~ok))
            self.not_number_at = self.not_number_at or (values[first].as_py(), int(lines[first]))
            self.not_numbers += int((~ok).sum())
            tolerated = _NOT_NUMBER_SHARE * self.present if self.present >= _NOT_NUMBER_MIN_ROWS else 0.0
            if self.not_numbers > tolerated:
                self.numeric = False
                self.non_numeric = self.not_number_at[0]
                return None
        return parsed[ok]

    def _written_whole(self, numbers: pa.Array) -> None:
        """Clear :attr:`whole` when a number is written with a decimal mark or an exponent (``1.0``, ``1e3``)."""
        if self.whole and len(numbers):
            fraction = rf"[eE]|{re.escape(self.number_format.decimal)}"
            self.whole = not pc.any(pc.match_substring_regex(numbers, fraction)).as_py()

    def _choose_format(self, values: pa.Array) -> NumberFormat:
        """The number format that reads the most of the first values: a symbol found in at least half of those
        that are not plain numbers, and the (decimal, thousands) marks of :data:`_FORMATS` (ties: plain first)."""
        head = values.slice(0, _FORMAT_SAMPLE)
        odd = head.filter(pc.invert(pc.match_substring_regex(head, _NUMBER_PATTERN)))
        found = [(pc.sum(pc.match_substring(odd, m)).as_py() or 0, m) for m in _SYMBOLS]
        most, symbol = max(found)
        mark = symbol if 2 * most >= len(odd) > 0 else None
        best, best_ok = NumberFormat(), -1
        # in a file whose fields ";" separates, "," is the decimal mark
        for decimal, thousands in _FORMATS if self.file_sep != ";" else _FORMATS_SEMICOLON:
            fmt = NumberFormat(decimal, thousands, mark, "bad_row")
            n = int(fmt.parse(head)[1].sum())
            if n > best_ok:
                best, best_ok = fmt, n
        return best

    def _count(self, values: pa.Array, batch_distinct: int) -> None:
        if self.counts is None:
            return
        if batch_distinct > COUNTED_VALUES:
            self.counts = None
            return
        vc = pc.value_counts(values)
        for v, n in zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist(), strict=True):
            self.counts[v] = self.counts.get(v, 0) + int(n)
        if len(self.counts) > COUNTED_VALUES:
            self.counts = None

    def _numbers(self, v: np.ndarray) -> None:
        if np.isinf(v).any():
            self.numeric = False  # the encoder rejects infinite dense values
            self.non_numeric = str(v[np.isinf(v)][0])
            return
        self.minimum = min(self.minimum, float(v.min()))
        self.maximum = max(self.maximum, float(v.max()))
        if self.whole and not np.all(v == np.floor(v)):
            self.whole = False
        if self.integer and not (self.whole and np.all(np.abs(v) < 2.0**53)):
            self.integer = False
        if self.increasing:
            self.increasing = bool(v[0] > self.last and np.all(np.diff(v) > 0))
            self.last = float(v[-1])
        self.sample.add(v)

    def _strings(self, values: pa.Array) -> None:
        lengths = np.asarray(pc.binary_length(values).to_numpy(zero_copy_only=False), dtype=np.int64)
        self.text_bytes += int(lengths.sum())
        slots = np.minimum(np.maximum(lengths - 1, 0) // _LENGTH_STEP, len(self.lengths) - 1)
        self.lengths += np.bincount(slots, minlength=len(self.lengths))
        self.spaced += pc.sum(pc.match_substring(values, " ")).as_py() or 0
        if self.hex:
            self.hex = bool(pc.all(pc.match_substring_regex(values, _HEX_PATTERN)).as_py())
        for sep, stats in self.lists.items():
            has = pc.match_substring(values, sep)
            rows = pc.sum(has).as_py() or 0
            if not rows:
                continue
            stats.rows += rows
            tokens = pc.utf8_trim_whitespace(pc.list_flatten(pc.split_pattern(values, sep)))
            tokens = tokens.filter(pc.not_equal(tokens, ""))
            stats.tokens += len(tokens)
            stats.spaced_tokens += pc.sum(pc.match_substring(tokens, " ")).as_py() or 0
            stats.distinct.add(tokens)

    # -- conclusions ---------------------------------------------------------------------------------
    def top_values(self) -> tuple[tuple[str, int], ...]:
        if self.counts is None:
            return ()
        return tuple(sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0]))[:10])

    def skewness(self) -> float:
        x = self.sample.values
        if len(x) < 3:
            return 0.0
        m, s = float(x.mean()), float(x.std())
        if s <= 0:
            return 0.0
        return float(np.mean(((x - m) / s) ** 3))

    def value_counts(self) -> tuple[np.ndarray, np.ndarray]:
        """(distinct values in increasing order, rows of each) in the numeric sample (every value up to its size)."""
        values, counts = np.unique(self.sample.values, return_counts=True)
        return values, counts

    def length_cover(self, share: float, least: int = _LENGTH_STEP) -> tuple[int, int]:
        """(max_bytes, rows longer): the multiple of 64 bytes, at least ``least`` and at most 8192, that holds
        ``share`` of the texts whole, and how many of the texts read are longer than it (cut when encoded)."""
        total = int(self.lengths.sum())
        slot = int(np.searchsorted(np.cumsum(self.lengths), share * total))  # first slot reaching the share
        slot = min(max(slot, -(-least // _LENGTH_STEP) - 1), len(self.lengths) - 2)  # past the cap: the cap
        return (slot + 1) * _LENGTH_STEP, int(self.lengths[slot + 1:].sum())

    def separator(self) -> tuple[str, _ListStats] | None:
        """The list separator found in more than 10% of the non-missing rows, if any."""
        best: tuple[str, _ListStats] | None = None
        for sep, stats in self.lists.items():
            if not self.present or stats.rows <= _LIST_SHARE * self.present or not stats.tokens:
                continue
            if stats.spaced_tokens > 0.1 * stats.tokens:  # free text with commas, not lists of ids
                continue
            if best is None or stats.rows > best[1].rows:
                best = (sep, stats)
        return best

    def dtype(self) -> str:
        if self.unsupported is not None:
            return self.unsupported
        if self.list_separator is not None and self.arrow_type is not None:
            return f"list<{self.arrow_type.value_type}>"
        if self.arrow_type is not None and pa.types.is_boolean(self.arrow_type):
            return "bool"
        if self.present == 0:
            return "empty"
        if self.numeric:
            return "int" if self.integer else "float"
        return "string"

