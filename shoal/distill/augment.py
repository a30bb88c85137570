"""An augmented transfer set: new rows made from the student's own training rows, for the teacher to label.

A teacher's soft targets on the rows it was trained on are close to their labels, so on a small data set they
teach the student little that the labels do not. The classic remedy is a transfer set of *new* rows near the
training rows, labelled by the teacher, on which the student learns the teacher's function where no label
exists (trained with the soft term only). Each training row gives ``copies`` (K) new rows:

* **Text** (Tang et al. 2019, "Distilling Task-Specific Knowledge from BERT into Simple Neural Networks", §3.2):
  each whitespace-separated word is replaced by a mask token with probability ``p_mask``; then, with
  probability ``p_ngram``, only a random span of n words is kept, n uniform in 1..``max_ngram``. The paper's
  third rule (part-of-speech-guided word swaps) needs a tagger by language rules; shoal has none, by design.
  Words are runs of bytes other than ASCII whitespace, so every other byte (any UTF-8, or invalid UTF-8 in a
  binary column) is kept as it is; the new text is its words joined by one space.
* **Tabular and click rows** (Buciluă, Caruana & Niculescu-Mizil 2006, "Model Compression", MUNGE): for each
  row e, its nearest neighbour e' (squared distance of the standardized dense values, plus 1 per categorical
  value or missing-ness that differs); then each attribute, with probability ``p_swap``, takes the neighbour's
  value (an id or category) or a draw from ``Normal(e'_a, |e_a - e'_a| / s)`` (a number). Two
  simplifications, for speed: the neighbour is searched among ``candidates`` rows drawn at random from the
  same chunk of the file (``data.chunk_rows`` rows: the whole file up to 65,536 rows), not among all rows; and
  only e changes, not e' too as in the paper's loop (which makes every row depend on the rows before it). A
  drawn dense value stays within the range of the column's values in the chunk (in the feature's ``log1p`` space
  where a feature reads the column so), and is rounded when all of them are whole numbers, so a count stays a
  count and an integer read as an id stays a plausible id.

A row with text and other columns gets both: MUNGE on the others (neighbours found on them alone), then the
text rules on its text. The label column is copied from the row each new row came from (the distilled student
never trains on it: :func:`shoal.distill.with_transfer` marks the new rows as transfer rows, soft term only)::

    training rows (held-out rows left out) ──> augment ──> K new rows per row ──> teacher ──> soft targets
       "a gripping , funny film"              "a [MASK] , funny film"   "gripping , funny"   ...

Everything is drawn from ``numpy.random.default_rng([seed, chunk])``: the same seed, rows and settings give
the same new rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shoal.config import DenseFeature, RunConfig
from shoal.data.features.dense import NUMBER as _NUMBER  # the numbers a dense feature reads

__all__ = ["Augmentation", "augment_rows", "augment_text", "column_kinds", "munge"]

# How a column is augmented: ``text`` (Tang et al.), ``dense`` or ``log1p`` (MUNGE, a number; ``log1p``: drawn
# in sign(v) * log1p(|v|) space) or ``nominal`` (MUNGE, a category: swapped whole).
ColumnKind = Literal["text", "dense", "log1p", "nominal"]
MAX_COPIES = 100
_WHITESPACE = np.zeros(256, dtype=bool)
_WHITESPACE[[9, 10, 11, 12, 13, 32]] = True  # \t \n \v \f \r and space: ASCII bytes, never inside a UTF-8 character
_BLOCK = 2048  # rows per block of the neighbour search: (block, candidates, columns) booleans at a time


@dataclass(frozen=True)
class Augmentation:
    """How many new rows per training row (``copies``, K) and how they are made; the defaults are the papers'.

    ``p_mask`` (0.1), ``p_ngram`` (0.25), ``max_ngram`` (5) and ``mask`` are Tang et al.'s text rules (their
    ``[MASK]`` token); ``p_swap`` and ``s`` are MUNGE's, fixed here without tuning (``p_swap`` 0.5: half of the
    attributes from the neighbour; ``s`` 1: a dense value drawn within about one distance of the neighbour's);
    ``candidates`` is how many rows the neighbour search compares each row with.
    """

    copies: int
    p_mask: float = 0.1
    p_ngram: float = 0.25
    max_ngram: int = 5
    mask: str = "[MASK]"
    p_swap: float = 0.5
    s: float = 1.0
    candidates: int = 1024

    def __post_init__(self) -> None:
        if isinstance(self.copies, bool) or not isinstance(self.copies, int) or not 0 <= self.copies <= MAX_COPIES:
            raise ValueError(f"augment (copies) must be an integer from 0 to {MAX_COPIES}, not {self.copies!r}: the "
                             "number of new rows made from each training row (0: off; try 5)")
        for name in ("p_mask", "p_ngram", "p_swap"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], not {value!r}")
        if isinstance(self.max_ngram, bool) or not isinstance(self.max_ngram, int) or self.max_ngram < 1:
            raise ValueError(f"max_ngram must be an integer >= 1, not {self.max_ngram!r} (the longest span kept "
                             "by n-gram sampling; Tang et al. use 5)")
        if not isinstance(self.s, int | float) or not self.s > 0:
            raise ValueError(f"s must be > 0, not {self.s!r} (MUNGE's local variance: a dense value is drawn with "
                             "sd |a - b| / s; try 1)")
        if isinstance(self.candidates, bool) or not isinstance(self.candidates, int) or self.candidates < 1:
            raise ValueError(f"candidates must be an integer >= 1, not {self.candidates!r} (rows compared in the "
                             "neighbour search; try 1024)")
        if not isinstance(self.mask, str) or not self.mask or any(_WHITESPACE[b] for b in self.mask.encode()):
            raise ValueError(f"mask must be one word without whitespace, not {self.mask!r} (try '[MASK]')")

    def settings(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict (recorded in the student run's ``summary.distill.augment``)."""
        return asdict(self)


def column_kinds(configs: Sequence[RunConfig]) -> dict[str, ColumnKind]:
    """How each feature column of ``configs`` (the teachers' and the student's) is augmented.

    A column read as text by any of them is ``text``; else one read as a number is ``log1p`` (a feature reads it
    with ``transform: log1p``) or ``dense``; else ``nominal``. The label column is not a feature: it is copied.
    """
    rank = {"nominal": 0, "dense": 1, "log1p": 2, "text": 3}
    kinds: dict[str, ColumnKind] = {}
    for cfg in configs:
        for f in cfg.features:
            if f.source == cfg.label.column:
                continue
            # a whole image or sound is swapped like a category
            kind: ColumnKind = ("text" if f.kind == "text" else "nominal" if not isinstance(f, DenseFeature)
                                else "log1p" if f.transform == "log1p" else "dense")
            if f.source not in kinds or rank[kind] > rank[kinds[f.source]]:
                kinds[f.source] = kind
    return kinds


def augment_rows(table: pa.Table, kinds: Mapping[str, ColumnKind], augmentation: Augmentation,
                 seed: int, chunk: int = 0) -> pa.Table:
    """``copies`` new rows per row of ``table``, copy-major: copy c of row i is row ``c * N + i``.

    ``kinds`` says how each column is augmented (:func:`column_kinds`); other columns (the label) are copied from
    the row each new row came from. ``seed`` and ``chunk`` (the chunk's index in its file) seed the draws.
    """
    k, n = augmentation.copies, table.num_rows
    source = np.tile(np.arange(n, dtype=np.int64), k)  # (K*N,)
    out = table.take(pa.array(source))
    if k == 0 or n == 0:
        return out
    rng = np.random.default_rng([seed & 0xFFFFFFFFFFFFFFFF, chunk])  # a negative seed too
    columns = [c for c in table.column_names if c in kinds]
    tabular = [c for c in columns if kinds[c] != "text"]
    if tabular:
        mixed = munge(table.select(tabular), {c: kinds[c] for c in tabular}, augmentation, rng)
        for c in tabular:
            out = out.set_column(out.column_names.index(c), c, mixed.column(c))
    for c in columns:
        if kinds[c] == "text":
            text = augment_text(table.column(c).combine_chunks(), augmentation, rng)
            out = out.set_column(out.column_names.index(c), c, text)
    return out


# -- text: Tang et al. 2019 -------------------------------------------------------------------------------------
def _words(data: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(start, end, row) of every word of every text: runs of non-whitespace bytes, never across two texts.

    ``data`` (B,) uint8 holds the texts back to back, text i at ``offsets[i]:offsets[i + 1]`` (offsets from 0).
    """
    n = len(offsets) - 1
    size = len(data)
    word = ~_WHITESPACE[data]  # (B,)
    first = np.zeros(size + 1, dtype=bool)
    first[offsets[:-1]] = True  # a text begins here (several empty texts may share a place)
    last = np.zeros(size + 1, dtype=bool)
    last[offsets[1:] - 1] = True  # a text ends on this byte (offsets[i + 1] - 1 is always some text's last byte)
    before = np.concatenate([[False], word[:-1]]) & ~first[:size]  # the byte before is a word byte of this text
    after = np.concatenate([word[1:], [False]]) & ~last[:size]
    starts = np.flatnonzero(word & ~before)
    ends = np.flatnonzero(word & ~after) + 1
    rows = np.searchsorted(offsets[1:n + 1], starts, side="right")  # (W,) the text each word belongs to
    return starts, ends, rows


def augment_text(texts: pa.Array, augmentation: Augmentation, rng: np.random.Generator) -> pa.Array:
    """``copies`` new texts per text, copy-major (copy c of text i at ``c * N + i``), of ``texts``' type.

    Tang et al.'s masking and n-gram sampling on the raw bytes, vectorized: per copy a handful of NumPy
    operations over all words of all texts. A null stays null; a text without words becomes empty.
    """
    a = augmentation
    kind = texts.type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind)
            or pa.types.is_large_binary(kind)):
        raise ValueError(f"text augmentation needs a string or binary column, not {kind}")
    n = len(texts)
    if a.copies == 0:
        return texts.slice(0, 0)
    raw = pc.cast(texts, pa.large_binary()).fill_null(b"")
    offsets = np.frombuffer(raw.buffers()[1], dtype=np.int64)[raw.offset:raw.offset + n + 1]
    buffer = raw.buffers()[2]
    data = (np.frombuffer(buffer, dtype=np.uint8)[offsets[0]:offsets[-1]] if n and buffer is not None
            else np.zeros(0, np.uint8))  # (B,) the texts' bytes back to back
    offsets = offsets - offsets[0] if n else np.zeros(1, np.int64)  # (N + 1,)
    starts, ends, rows = _words(data, offsets)  # (W,) each
    counts = np.bincount(rows, minlength=n).astype(np.int64)  # (N,) words per text
    first_word = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)  # (N,) each text's first word
    token = a.mask.encode()
    # every new text is gathered from one buffer: the texts, then the mask token, then a space
    pool = np.concatenate([data, np.frombuffer(token, dtype=np.uint8), np.frombuffer(b" ", dtype=np.uint8)])
    mask_at, space_at = len(data), len(data) + len(token)
    word_row = np.repeat(np.arange(n), counts)  # (W,)
    word_pos = np.arange(len(starts)) - first_word[word_row]  # (W,) the place of each word in its text
    piece_src: list[np.ndarray] = []  # per copy: where each piece (a word, then a space or nothing) comes from
    piece_len: list[np.ndarray] = []
    row_len: list[np.ndarray] = []  # per copy: (N,) bytes of each new text
    for _ in range(a.copies):
        # n-gram sampling: with p_ngram, keep the words [start, start + span) only
        sample = rng.random(n) < a.p_ngram  # (N,)
        span = np.minimum(rng.integers(1, a.max_ngram + 1, n), counts)
        start = (rng.random(n) * (counts - span + 1)).astype(np.int64)
        span, start = np.where(sample, span, counts), np.where(sample, start, 0)
        keep = (word_pos >= start[word_row]) & (word_pos < (start + span)[word_row])  # (W,)
        masked = rng.random(len(starts)) < a.p_mask  # (W,) drawn for every word, kept or not
        kept = np.flatnonzero(keep)
        src = np.where(masked[kept], mask_at, starts[kept])
        length = np.where(masked[kept], len(token), ends[kept] - starts[kept])
        row = word_row[kept]
        sep = np.ones(len(kept), dtype=np.int64)  # a space after each kept word but the last of its text
        sep[np.flatnonzero(np.diff(row) != 0)] = 0
        sep[-1:] = 0
        both_src, both_len = np.empty(2 * len(kept), np.int64), np.empty(2 * len(kept), np.int64)
        both_src[0::2], both_src[1::2] = src, space_at
        both_len[0::2], both_len[1::2] = length, sep
        piece_src.append(both_src)  # (2 * kept,) word, space, word, space, ...
        piece_len.append(both_len)
        row_len.append(np.bincount(row, weights=length + sep, minlength=n).astype(np.int64))
    srcs, lens = np.concatenate(piece_src), np.concatenate(piece_len)
    srcs, lens = srcs[lens > 0], lens[lens > 0]
    # the index of each output byte in the pool: +1 within a piece, a jump at each piece's first byte
    gather = np.ones(int(lens.sum()), dtype=np.int64)  # (bytes out,)
    if len(lens):
        jumps = np.cumsum(lens)[:-1]  # where pieces 1.. begin in the output
        gather[0] = srcs[0]
        gather[jumps] = srcs[1:] - (srcs[:-1] + lens[:-1] - 1)
        np.cumsum(gather, out=gather)
    out_offsets = np.concatenate([[0], np.cumsum(np.concatenate(row_len))]).astype(np.int64)  # (K*N + 1,)
    out = pa.Array.from_buffers(pa.large_binary(), n * a.copies,
                                [None, pa.py_buffer(out_offsets), pa.py_buffer(pool[gather].tobytes())])
    if texts.null_count:
        valid = np.tile(texts.is_valid().to_numpy(zero_copy_only=False), a.copies)
        out = pc.if_else(pa.array(valid), out, pa.scalar(None, pa.large_binary()))
    return pc.cast(out, kind)  # back to string: words were split at ASCII bytes, so valid UTF-8 stays valid


# -- tabular rows: MUNGE (Buciluă et al. 2006) ------------------------------------------------------------------
def _numbers(col: pa.Array) -> np.ndarray:
    """Float64 values of a column, NaN where missing or not a number."""
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        text = pc.utf8_trim_whitespace(col)
        ok = pc.fill_null(pc.match_substring_regex(text, _NUMBER), False)
        col = pc.if_else(ok, text, pa.scalar(None, text.type))
    values = pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False)
    values = np.array(values, dtype=np.float64)  # a writable copy
    values[~np.isfinite(values)] = np.nan
    return values


def _nearest(dense: np.ndarray, codes: np.ndarray, rng: np.random.Generator, candidates: int) -> np.ndarray:
    """(N,) the nearest other row of each row among ``candidates`` rows drawn at random.

    ``dense`` (N, D) standardized values, 0 where missing; ``codes`` (N, C) integer codes of the categorical
    values and of each dense value's missing-ness. Distance: squared Euclidean on ``dense`` + mismatching codes.
    """
    n = len(dense)
    if n < 2:
        return np.zeros(n, dtype=np.int64)
    cand = np.sort(rng.choice(n, size=min(candidates, n), replace=False))  # (M,)
    zc, cc = dense[cand], codes[cand]  # (M, D), (M, C)
    zc_sq = (zc * zc).sum(axis=1)  # (M,)
    out = np.empty(n, dtype=np.int64)
    for lo in range(0, n, _BLOCK):
        z, c = dense[lo:lo + _BLOCK], codes[lo:lo + _BLOCK]  # (B, D), (B, C)
        d = (z * z).sum(axis=1)[:, None] + zc_sq[None, :] - 2.0 * (z @ zc.T)  # (B, M)
        d += (c[:, None, :] != cc[None, :, :]).sum(axis=2)  # (B, M) categorical mismatches
        d[cand[None, :] == np.arange(lo, lo + len(z))[:, None]] = np.inf  # never the row itself
        out[lo:lo + len(z)] = cand[np.argmin(d, axis=1)]
    return out


def _formatted(values: np.ndarray, whole: bool, kind: pa.DataType) -> pa.Array:
    """Numbers as a column of ``kind`` (strings as read from CSV/TSV: "3", "0.25", "1e-07")."""
    arr = pa.array(np.round(values).astype(np.int64)) if whole else pa.array(values)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return pc.cast(arr, kind)
    return pc.cast(arr, kind, safe=False)


def munge(table: pa.Table, kinds: Mapping[str, ColumnKind], augmentation: Augmentation,
          rng: np.random.Generator) -> pa.Table:
    """``copies`` MUNGE rows per row of ``table`` (its columns, each ``dense``, ``log1p`` or ``nominal``), copy-major.

    The result has ``table``'s schema. A cell the draw leaves alone keeps its exact value (its string, as read); a
    categorical cell takes its neighbour's exact value; a dense cell, a new number within the column's range (see
    the module docstring). A missing dense value takes the neighbour's value (or missing-ness) with ``p_swap``.
    """
    a = augmentation
    n, k = table.num_rows, a.copies
    cols = {c: table.column(c).combine_chunks() for c in table.column_names}
    numeric = [c for c in cols if kinds[c] in ("dense", "log1p")]
    raw = {c: _numbers(cols[c]) for c in numeric}  # as read
    values = {c: np.sign(v) * np.log1p(np.abs(v)) if kinds[c] == "log1p" else v for c, v in raw.items()}
    z = np.zeros((n, len(numeric)))
    missing = np.zeros((n, len(numeric)), dtype=np.int32)
    for j, c in enumerate(numeric):
        v = values[c]
        present = ~np.isnan(v)
        if present.any():
            mean, std = v[present].mean(), v[present].std()
            z[:, j] = np.where(present, (v - mean) / (std if std > 1e-12 else 1.0), 0.0)
        missing[:, j] = ~present
    codes = [pc.fill_null(pc.dictionary_encode(cols[c]).indices, -1).to_numpy(zero_copy_only=False)
             for c in cols if kinds[c] == "nominal"]
    code_matrix = np.column_stack([*codes, missing]) if codes or numeric else np.zeros((n, 0), np.int32)
    neighbour = _nearest(z, code_matrix, rng, a.candidates)  # (N,)
    rows = np.arange(n)
    ranges = {}  # dense column -> (lowest, highest value in the draw's space, all whole numbers?)
    for c in numeric:
        present, read = values[c][~np.isnan(values[c])], raw[c][~np.isnan(raw[c])]
        lowest, highest = (float(present.min()), float(present.max())) if len(present) else (0.0, 0.0)
        ranges[c] = (lowest, highest, bool(np.all(read == np.round(read))))
    out: dict[str, list[pa.Array]] = {c: [] for c in cols}
    for _ in range(k):
        for c, col in cols.items():
            swap = rng.random(n) < a.p_swap  # (N,)
            picked = col.take(pa.array(np.where(swap, neighbour, rows)))  # the row's or the neighbour's cell
            if kinds[c] == "nominal":
                out[c].append(picked)
                continue
            v, b = values[c], values[c][neighbour]
            both = swap & ~np.isnan(v) & ~np.isnan(b)  # both present: a new number
            drawn = rng.normal(np.nan_to_num(b), np.nan_to_num(np.abs(v - b)) / a.s)  # (N,) drawn for every row
            if not both.any():
                out[c].append(picked)
                continue
            lowest, highest, whole = ranges[c]
            new = np.clip(drawn, lowest, highest)
            if kinds[c] == "log1p":
                new = np.sign(new) * np.expm1(np.abs(new))
            out[c].append(pc.if_else(pa.array(both), _formatted(new, whole, col.type), picked))
    return pa.table({c: pa.concat_arrays(parts) if parts else cols[c].slice(0, 0) for c, parts in out.items()},
                    schema=table.schema)
