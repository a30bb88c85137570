"""Text features inside the raw ONNX graph: UTF-8 bytes in, the text encoder's ids out, bit for bit.

:mod:`shoal.export.raw` builds the whole raw graph; this module adds a text feature
(:class:`~shoal.data.features.TextColumn`) to it, in standard ONNX operators (opset 18, ``ai.onnx``). The input of
a text feature ``NAME`` is two tensors, so any language can feed it::

    NAME.bytes    uint8 (N, W)   each text's UTF-8 bytes, left-aligned, zero-padded; W is free (the batch's longest)
    NAME.lengths  int64 (N,)     each text's byte length; 0 or -1: empty or missing (the reserved id 0)

    "ab c", "", "中"  ->  bytes [[97, 98, 32, 99], [0, 0, 0, 0], [228, 184, 173, 0]]   lengths [4, 0, 3]

The graph cuts each text to the feature's ``max_bytes`` (a cut may fall inside a character: it is bytes, as in
the encoder) and then does what :mod:`shoal.data.text` does:

- ``tokens: bytes``: ids ``byte + 1`` in order, padded, for sequence models (``bytecnn``) and bags of bytes.
- ``tokens: ngrams``: byte n-grams (``ngram_min``..``ngram_max``): a rolling FNV-1a from the feature's seed over
  columns of the byte matrix, one (N, W) uint64 step per order (zero bytes past the end), ``mix64(h ^ n)``;
  whitespace-word n-grams (up to ``word_ngrams``): the word bytes are compressed out of the matrix (``Compress``),
  each byte's position in its word comes from the word starts (``NonZero`` + ``CumSum``), its
  ``mix64(byte ^ pos << 8 ^ word seed)`` is summed per word as two 32-bit halves in int64 prefix sums (ONNX
  Runtime has no uint64 ``CumSum``; the halves never overflow and recombine to the wrapping uint64 sum), and
  consecutive words of a row chain as ``h * P ^ next``. Every id lands in the encoder's slot (its row, then its
  n-gram order, then its position) with one ``ScatterElements``, so the flat ids (``raw/ids/NAME``) equal
  ``text_bag``'s in value and order. The model takes the same ids part by part, each with its row and weight
  1/len (the flat ``ids_k`` / ``weights_k`` / ``rows_k`` of :mod:`shoal.runtime.feed`; a sum needs no order, so
  the served graph drops the scatter): nothing is padded, so one long text costs the batch only its own ids.

Whitespace is the six bytes the encoder splits words on (space, \\t, \\n, \\v, \\f, \\r); nothing is trimmed or
lowercased. Both ``tokens`` modes are exported; a mode this module does not know is refused by name.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shoal.data.features.text import TextColumn
from shoal.export.onnx import ExportError
from shoal.export.raw_graph import PREFIX, GraphBuilder, bag_weights, mix64

__all__ = ["TEXT_TOKENS", "WORD_SEED", "synthetic_texts", "text_cells_feed", "text_contract", "text_feed",
           "text_graph"]

TEXT_TOKENS = ("ngrams", "bytes")  # the tokens modes the raw graph computes
WORD_SEED = 0x5BD1E995  # as shoal.data.text: word hashes use seed ^ this
_PRIME = 0x100000001B3
_INF = 2**62  # a Slice end past any width
_IS_WORD_BYTE = np.ones(256, dtype=bool)  # the encoder's whitespace: space, \t, \n, \v, \f, \r
_IS_WORD_BYTE[[0x20, 0x09, 0x0A, 0x0B, 0x0C, 0x0D]] = False


# -- the contract -----------------------------------------------------------------------------------------------
def text_contract(col: TextColumn) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """(the feature's entry, its two inputs) in ``raw_inputs.json``; :class:`ExportError` for an unknown mode."""
    if col.tokens not in TEXT_TOKENS:
        raise ExportError(f"text feature {col.name!r}: tokens mode {col.tokens!r} cannot be built into the raw "
                          f"graph (the raw export computes {list(TEXT_TOKENS)}); export the encoded graph instead "
                          "(shoal export RUN --onnx) and encode the rows with shoal's encoder")
    names = {"bytes": f"{col.name}.bytes", "lengths": f"{col.name}.lengths"}
    feature: dict[str, Any] = {"name": col.name, "kind": "text", "column": col.column, "tokens": col.tokens,
               "max_bytes": col.max_bytes, "buckets": col.buckets, "seed": col.seed, "inputs": names}
    if col.tokens == "ngrams":
        feature |= {"ngram_min": col.ngram_min, "ngram_max": col.ngram_max, "word_ngrams": col.word_ngrams}
    inputs: dict[str, dict[str, Any]] = {
        names["bytes"]: {
            "dtype": "uint8", "shape": ["N", "W"], "missing": "(any bytes; the length says missing)",
            "example": "texts 'ab c' and '': [[97, 98, 32, 99], [0, 0, 0, 0]]",
            "about": f"UTF-8 bytes of each text of {col.name!r} (column {col.column!r}), as they are (not trimmed), "
                     f"left-aligned, padded with 0; W is free (e.g. the batch's longest text); the graph reads the "
                     f"first {col.max_bytes} bytes of each, so longer texts may be sent whole or cut"},
        names["lengths"]: {
            "dtype": "int64", "shape": ["N"], "missing": "0 or -1 (id 0, as an empty text)", "example": [4, 0],
            "about": f"byte length of each text of {col.name!r}; 0 or -1: empty or missing; at most W"}}
    return feature, inputs


# -- the graph ----------------------------------------------------------------------------------------------------
def text_graph(g: GraphBuilder, col: TextColumn, k: int) -> tuple[dict[str, str], str]:
    """Add text feature ``col`` (model input ``k``) to ``g``: returns (the model's inputs by name: an n-gram bag's
    flat ``ids_k`` / ``weights_k`` / ``rows_k`` (M,), a byte sequence's padded ``ids_k`` / ``weights_k`` (N, L);
    the flat ids ``raw/ids/<name>`` (M,) int64 = the encoder's ids)."""
    text_contract(col)  # refuses an unknown mode
    raw, lengths = f"{col.name}.bytes", f"{col.name}.lengths"
    cut = g.slice(raw, 0, col.max_bytes, axis=1)  # (N, Wc): the first max_bytes bytes
    width = g.dim(cut, 1)
    # each text's kept length: clipped to [0, Wc] (-1 = missing; a length past the width reads the width)
    n_cut = g.op("Min", [g.op("Max", [lengths, g.i64(0)]), g.op("Min", [width, g.i64(col.max_bytes)])], "n_cut")
    if col.tokens == "bytes":
        return _byte_sequence(g, col, k, cut, n_cut)
    return _ngram_bag(g, col, k, cut, n_cut)


def _byte_sequence(g: GraphBuilder, col: TextColumn, k: int, cut: str, n_cut: str) -> tuple[dict[str, str], str]:
    """``tokens: bytes``: ids byte + 1 (N, L), 0 past each end, L the longest kept text (at least 1, as
    :func:`shoal.runtime.feed.padded_feed` pads: a sequence model's pooling windows depend on the width); an empty
    text is the single id 0."""
    from onnx import TensorProto as T

    count = g.op("Max", [n_cut, g.i64(1)])  # an empty text: one id (0)
    longest = g.op("ReduceMax", [count], keepdims=1)  # (1,)
    padded = g.op("Pad", [cut, g.i64([0, 0, 0, 1])])  # one more column: never narrower than longest
    padded = g.op("Slice", [padded, g.i64([0]), longest, g.i64([1])])  # (N, L)
    col_index = g.unsqueeze(g.op("Range", [g.i64(0), g.dim(padded, 1), g.i64(1)]), 0)  # (1, L)
    inside = g.op("Less", [col_index, g.unsqueeze(n_cut, 1)])  # (N, L)
    byte_ids = g.op("Add", [g.op("Cast", [padded], to=T.INT64), g.i64(1)])
    ids = g.op("Where", [inside, byte_ids, g.i64(0)], out=f"{PREFIX}out/ids_{k}")
    share = g.op("Div", [g.const(1.0, np.float32), g.op("Cast", [count], to=T.FLOAT)])  # float32 1/len
    listed = g.op("Less", [col_index, g.unsqueeze(count, 1)])
    weights = g.op("Where", [listed, g.unsqueeze(share, 1), g.const(0.0, np.float32)], out=f"{PREFIX}out/weights_{k}")
    flat = g.op("Compress", [ids, listed], out=f"{PREFIX}ids/{col.name}")  # row-major: the encoder's order
    return {f"ids_{k}": ids, f"weights_{k}": weights}, flat


def _ngram_bag(g: GraphBuilder, col: TextColumn, k: int, cut: str, n_cut: str) -> tuple[dict[str, str], str]:
    """``tokens: ngrams``: every byte and word n-gram id, in the encoder's order, with its row and weight."""
    from onnx import TensorProto as T

    u64 = np.uint64
    seed = col.seed & 0xFFFFFFFFFFFFFFFF
    # zero bytes past the end, so every order's hashes keep the width Wc: no slice of the hashes, one position
    # and row grid for all orders (a hash past a text's end is never kept)
    b64 = g.op("Cast", [g.op("Pad", [cut, g.i64([0, 0, 0, col.ngram_max - 1])])], "bytes_u64",
               to=T.UINT64)  # (N, Wc + ngram_max - 1)
    rows = g.dim(cut, 0)
    position = g.unsqueeze(g.op("Range", [g.i64(0), g.dim(cut, 1), g.i64(1)]), 0)  # (1, Wc)
    row_grid = g.op("Expand", [g.unsqueeze(g.op("Range", [g.i64(0), rows, g.i64(1)]), 1), g.op("Shape", [cut])])
    # (values to mix (X,) uint64, their slot relative to the row's first id (X,) int64 ...) of every part, and
    # each part's ids per row (N,), in the encoder's order: byte n-grams by n, then word n-grams by n
    values: list[str] = []
    local_slots: list[str] = []
    row_of: list[str] = []
    per_row: list[str] = []

    def before() -> str:  # (N,) ids of the parts so far, per row (ONNX Runtime has no int64 Sum: Adds)
        if not per_row:
            return g.op("Expand", [g.i64(0), g.unsqueeze(rows, 0)])
        while len(per_row) > 1:  # fold, so the next call reuses the total
            per_row[:2] = [g.op("Add", per_row[:2])]
        return per_row[0]

    h = g.const([[seed]], u64, "seed")  # (1, 1), broadcast at the first step
    for n in range(1, col.ngram_max + 1):
        # h_n[:, i] covers bytes i .. i + n - 1: extend every hash by the next byte (a contiguous slice)
        end = n - col.ngram_max if n < col.ngram_max else _INF
        h = g.op("Mul", [g.op("BitwiseXor", [h, g.slice(b64, n - 1, end, axis=1)]), g.const(_PRIME, u64)],
                 f"fnv{n}")  # (N, Wc)
        if n < col.ngram_min:
            continue
        count = g.op("Max", [g.op("Sub", [n_cut, g.i64(n - 1)]), g.i64(0)])  # (N,) n-grams inside each text
        keep = g.op("Less", [position, g.unsqueeze(count, 1)])  # (N, Wc)
        slot = g.op("Add", [g.unsqueeze(before(), 1), position])
        values.append(g.op("BitwiseXor", [g.op("Compress", [h, keep]), g.const(n, u64)]))  # the kept ones only
        local_slots.append(g.op("Compress", [g.op("Expand", [slot, g.op("Shape", [h])]), keep]))
        row_of.append(g.op("Compress", [row_grid, keep]))
        per_row.append(count)
    if col.word_ngrams > 0:
        _word_ngrams(g, col, cut, n_cut, before, values, local_slots, row_of, per_row)
    found = before()  # (N,) ids of each row; an empty bag holds the one id 0
    counts = g.op("Max", [found, g.i64(1)], "counts")
    mixed = mix64(g, _concat(g, values))
    ids = g.op("Add", [g.op("Cast", [g.op("Mod", [mixed, g.const(col.buckets - 1, u64)], fmod=0)], to=T.INT64),
                       g.i64(1)])  # (X,) by part: byte n-grams by n, then word n-grams by n
    id_rows = _concat(g, row_of)  # (X,)
    # the model's bag: the ids by part, each with its row (a sum needs no order), then id 0 for each empty row
    empty = g.op("Compress", [g.op("Range", [g.i64(0), rows, g.i64(1)]), g.op("Equal", [found, g.i64(0)])])  # (E,)
    bag_rows = g.op("Concat", [id_rows, empty], out=f"{PREFIX}out/rows_{k}", axis=0)  # (M,) = (X + E,)
    out = {f"ids_{k}": g.op("Concat", [ids, g.op("Mul", [empty, g.i64(0)])], out=f"{PREFIX}out/ids_{k}", axis=0),
           f"weights_{k}": bag_weights(g, counts, bag_rows, k), f"rows_{k}": bag_rows}
    # the encoder's order (row, then part, then position), for raw/ids/<name>: tests read it, the served graph
    # drops it
    starts = g.op("CumSum", [counts, g.i64(0)], exclusive=1)  # (N,) first slot of each row
    slots = g.op("Add", [g.take(starts, id_rows), _concat(g, local_slots)])
    zeros = g.op("ConstantOfShape", [g.op("ReduceSum", [counts, g.i64([0])], keepdims=1)], value=_int64_zero())
    flat = g.op("ScatterElements", [zeros, slots, ids], out=f"{PREFIX}ids/{col.name}", axis=0)  # (M,)
    return out, flat


def _concat(g: GraphBuilder, parts: list[str]) -> str:
    return g.op("Concat", parts, axis=0) if len(parts) > 1 else parts[0]


def _word_ngrams(g: GraphBuilder, col: TextColumn, cut: str, n_cut: str, before: Any, values: list[str],
                 local_slots: list[str], row_of: list[str], per_row: list[str]) -> None:
    """Append the word n-gram parts (n = 1 .. word_ngrams) to the part lists of :func:`_ngram_bag`."""
    from onnx import TensorProto as T

    u64 = np.uint64
    word_seed = (col.seed ^ WORD_SEED) & 0xFFFFFFFFFFFFFFFF
    padded = g.op("Pad", [cut, g.i64([0, 0, 0, 1])])  # (N, Wp = Wc + 1): a last column that is never a word byte
    wp = g.dim(padded, 1)
    col_index = g.unsqueeze(g.op("Range", [g.i64(0), wp, g.i64(1)]), 0)  # (1, Wp)
    inside = g.op("Less", [col_index, g.unsqueeze(n_cut, 1)])
    flat_bytes = g.op("Reshape", [padded, g.i64([-1])])  # (N * Wp,): rows end on a non-word column, so words
    is_word = g.take(g.const(_IS_WORD_BYTE, np.bool_, "is_word"), g.op("Cast", [flat_bytes], to=T.INT64))
    flat_word = g.op("And", [is_word, g.op("Reshape", [inside, g.i64([-1])])])  # never run from one row into the next
    false = g.const([False], np.bool_)
    previous = g.op("Concat", [false, g.slice(flat_word, 0, -1, axis=0)], axis=0)
    following = g.op("Concat", [g.slice(flat_word, 1, _INF, axis=0), false], axis=0)
    begin = g.op("And", [flat_word, g.op("Not", [previous])])
    end = g.op("And", [flat_word, g.op("Not", [following])])
    first = g.op("Squeeze", [g.op("NonZero", [begin]), g.i64([0])])  # (K,) flat index of each word's first byte
    last = g.op("Squeeze", [g.op("NonZero", [end]), g.i64([0])])  # (K,) and of its last byte
    size = g.op("Add", [g.op("Sub", [last, first]), g.i64(1)])  # (K,) bytes per word
    # the word bytes alone, back to back: word w covers [word_end[w] - size[w], word_end[w])
    word_bytes = g.op("Compress", [flat_bytes, flat_word])  # (B,)
    word_end = g.op("CumSum", [size, g.i64(0)])  # (K,)
    word_start = g.op("Sub", [word_end, size])
    word_of = g.op("Sub", [g.op("CumSum", [g.op("Cast", [g.op("Compress", [begin, flat_word])], to=T.INT64),
                                           g.i64(0)]), g.i64(1)])  # (B,) the word of each word byte
    position = g.op("Sub", [g.op("Range", [g.i64(0), g.dim(word_bytes, 0), g.i64(1)]),
                            g.take(word_start, word_of)])  # (B,) position inside its word
    shifted = g.op("BitShift", [g.op("Cast", [position], to=T.UINT64), g.const(8, u64)], direction="LEFT")
    contrib = mix64(g, g.op("BitwiseXor", [g.op("BitwiseXor", [g.op("Cast", [word_bytes], to=T.UINT64), shifted]),
                                           g.const(word_seed, u64)]))  # (B,) uint64
    # the wrapping uint64 sum per word, as two exact int64 sums of 32-bit halves (B < 2^31 bytes: no overflow)
    halves = []
    for part in (g.op("BitwiseAnd", [contrib, g.const(0xFFFFFFFF, u64)]),
                 g.op("BitShift", [contrib, g.const(32, u64)], direction="RIGHT")):
        prefix = g.op("Concat", [g.i64([0]), g.op("CumSum", [g.op("Cast", [part], to=T.INT64), g.i64(0)])], axis=0)
        halves.append(g.op("Sub", [g.take(prefix, word_end), g.take(prefix, word_start)]))  # (K,)
    high = g.op("BitShift", [g.op("Cast", [halves[1]], to=T.UINT64), g.const(32, u64)], direction="LEFT")
    word_hash = g.op("Add", [high, g.op("Cast", [halves[0]], to=T.UINT64)], "word_hash")  # (K,)
    word_row = g.op("Div", [first, wp])  # (K,) row of each word
    words = g.op("ReduceSum", [g.op("Cast", [g.op("Reshape", [begin, g.op("Shape", [padded])])], to=T.INT64),
                               g.i64([1])], keepdims=0)  # (N,) words per row
    first_word = g.op("CumSum", [words, g.i64(0)], exclusive=1)  # (N,) index of each row's first word
    index = g.op("Range", [g.i64(0), g.dim(word_hash, 0), g.i64(1)])  # (K,)
    h = word_hash
    for n in range(1, col.word_ngrams + 1):
        if n > 1:  # h[i] covers words i .. i + n - 1 (valid when they share a row)
            h = g.op("BitwiseXor", [g.op("Mul", [g.slice(h, 0, -1, axis=0), g.const(_PRIME, u64)]),
                                    g.slice(word_hash, n - 1, _INF, axis=0)])
        rows_n = g.slice(word_row, 0, -(n - 1), axis=0) if n > 1 else word_row
        keep = g.op("Equal", [rows_n, g.slice(word_row, n - 1, _INF, axis=0)]) if n > 1 else None
        # slot inside the row: the parts before + the n-gram's rank among the row's n-grams (its first word's)
        rank = g.op("Sub", [g.slice(index, 0, -(n - 1), axis=0) if n > 1 else index,
                            g.take(first_word, rows_n)])
        local = g.op("Add", [g.take(before(), rows_n), rank])
        value = g.op("BitwiseXor", [h, g.const(n << 40, u64)])
        if keep is not None:
            value, local, rows_n = (g.op("Compress", [x, keep], axis=0) for x in (value, local, rows_n))
        values.append(value)
        local_slots.append(local)
        row_of.append(rows_n)
        per_row.append(g.op("Max", [g.op("Sub", [words, g.i64(n - 1)]), g.i64(0)]))


def _int64_zero() -> Any:
    from onnx import TensorProto as T
    from onnx import helper

    return helper.make_tensor("zero", T.INT64, [1], [0])


# -- feeding ------------------------------------------------------------------------------------------------------
def text_feed(col: pa.ChunkedArray | pa.Array, max_bytes: int) -> tuple[np.ndarray, np.ndarray]:
    """(bytes (N, W) uint8, lengths (N,) int64) of a text column, each text cut to ``max_bytes`` (the graph would
    cut it anyway: this only sends less). Nulls are empty texts; W is the longest kept text (at least 1)."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if pa.types.is_large_string(arr.type) or pa.types.is_large_binary(arr.type):
        arr = pc.cast(arr, pa.large_binary())
        off_type: Any = np.int64
    else:
        arr = pc.cast(arr, pa.binary())  # as the encoder reads a text: its bytes, never decoded
        off_type = np.int32
    if arr.null_count:
        arr = pc.fill_null(arr, pa.scalar(b"", arr.type))
    n = len(arr)
    offsets = np.frombuffer(arr.buffers()[1], dtype=off_type, count=n + 1 + arr.offset)[arr.offset:].astype(np.int64)
    buf = arr.buffers()[2]
    data = np.frombuffer(buf, dtype=np.uint8) if buf is not None else np.zeros(0, np.uint8)
    return _pack_texts(data, offsets, max_bytes)


def text_cells_feed(cells: Sequence[Any], max_bytes: int) -> tuple[np.ndarray, np.ndarray] | None:
    """:func:`text_feed` of a few Python cells (str, bytes, None), or None for a cell that needs pyarrow's rules."""
    texts: list[bytes] = []
    for c in cells:
        if c is None:
            texts.append(b"")
        elif type(c) is str:
            try:
                texts.append(c.encode("utf-8"))
            except UnicodeEncodeError:  # a lone surrogate: pyarrow refuses it with its own message
                return None
        elif type(c) is bytes:
            texts.append(c)
        else:
            return None
    offsets = np.zeros(len(texts) + 1, np.int64)
    np.cumsum([len(t) for t in texts], out=offsets[1:])
    return _pack_texts(np.frombuffer(b"".join(texts), np.uint8), offsets, max_bytes)


def _pack_texts(data: np.ndarray, offsets: np.ndarray, max_bytes: int) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.minimum(np.diff(offsets), max_bytes)
    width = max(int(lengths.max(initial=0)), 1)
    n = len(lengths)
    if n == 1:  # serving one row: a copy, no gather
        out = np.zeros((1, width), np.uint8)
        out[0, : lengths[0]] = data[offsets[0]: offsets[0] + lengths[0]]
        return out, lengths
    pos = np.arange(width)
    inside = pos[None, :] < lengths[:, None]
    index = np.where(inside, offsets[:-1, None] + pos[None, :], 0)
    out = np.where(inside, data[index] if len(data) else 0, 0).astype(np.uint8)
    return out, lengths


def synthetic_texts(rng: np.random.Generator, rows: int, max_bytes: int) -> list[str | None]:
    """Random texts: words of ASCII, accents, CJK and emoji between runs of the six whitespace bytes (and other
    Unicode spaces, which are word bytes to the encoder), ~5% missing, ~5% empty, ~15% longer than ``max_bytes``."""
    letters = list("abcxyz019é中🙂-") + ["\u00a0", "\u3000"]
    spaces = [" ", " ", " ", "  ", "\t", "\n", "\r\n", "\x0b", "\x0c"]
    out: list[str | None] = []
    for _ in range(rows):
        r = rng.random()
        if r < 0.05:
            out.append(None)
            continue
        if r < 0.10:
            out.append("" if r < 0.08 else " \t ")
            continue
        target = int(rng.integers(max_bytes, max_bytes + 40)) if r < 0.25 else int(rng.integers(1, 60))
        parts: list[str] = [spaces[int(rng.integers(0, len(spaces)))]] if rng.random() < 0.2 else []
        size = 0
        while size < target:
            word = "".join(letters[int(i)] for i in rng.integers(0, len(letters), int(rng.integers(1, 9))))
            parts += [word, spaces[int(rng.integers(0, len(spaces)))]]
            size += len(word.encode("utf-8")) + 1
        out.append("".join(parts))
    return out
