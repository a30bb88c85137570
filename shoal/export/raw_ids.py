"""Id hashing inside the raw ONNX graph: the two polynomial hashes of :mod:`shoal.data.hashing` (one float64
``Gemm`` of every id's bytes with the bases' powers, exact: every term is an integer below 2^53), the seed's
offsets and the length, ``mod 2^31 - 1``, joined into 62 bits, SplitMix64; then the bucket (``encoding: hash``) or
the vocabulary row, looked up by that hash (``encoding: vocab``).

Bit for bit the ids of :mod:`shoal.data.hashing`. Two forms: ``max_bytes`` wide inputs (the powers a constant of
that many rows), or any width up to :data:`ANY_WIDTH_MAX` bytes (the powers sliced to the batch's width).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from shoal.data.features.sparse import SparseColumn
from shoal.data.hashing import LENGTH_WEIGHTS, PRIME, hash_strings, offsets, powers
from shoal.export.raw_graph import GraphBuilder, mix64

__all__ = ["ANY_WIDTH_MAX", "ML_DOMAIN", "ML_OPSET", "hash_ids", "vocab_keys"]

# the any-width form's longest id: 255 * (2^31 - 1) * 8192 < 2^53, so the byte sums stay exact in float64
ANY_WIDTH_MAX = 8192
BELOW_MAX = 256  # up to this max_bytes, the byte masks are one constant (L + 1, L) uint8 (64 KiB at most)
ML_DOMAIN, ML_OPSET = "ai.onnx.ml", 2  # LabelEncoder with int64 keys: a vocabulary feature's lookup


def vocab_keys(feature: SparseColumn) -> np.ndarray | None:
    """The lookup keys of a vocabulary feature's ids, in row order (row 1 first): each id's 64-bit hash shifted
    right by one bit, so it is a non-negative int64 (``LabelEncoder`` keys are int64). None for a hashed feature.
    Two ids with the same key (odds about V^2 / 2^64) are refused: the lookup would be ambiguous."""
    if feature.vocab is None:
        return None
    values = feature.vocab.values_ or []
    keys = (hash_strings(pa.array(values, pa.string()), feature.seed) >> np.uint64(1)).astype(np.int64) \
        if values else np.zeros(0, np.int64)
    if len(np.unique(keys)) != len(keys):
        from shoal.export.onnx import ExportError

        raise ExportError(f"two ids of {feature.name!r}'s vocabulary have the same 63-bit hash; the raw export "
                          "cannot tell them apart (export with --onnx, or use encoding: hash)")
    return keys


def hash_ids(g: GraphBuilder, parts: list[tuple[str, str, int, int]], max_bytes: int | None,
             vocabularies: Sequence[np.ndarray | None] = (), per_row: Sequence[bool] = (),
             lead: int = 0) -> tuple[list[str], str, str | None]:
    """Bucket ids (int64, one tensor per part) of id bytes, the raw hashes (uint64 (T,), all parts), and the block of
    the first ``lead`` parts' ids ((lead * N,), part after part; None when ``lead`` is 0).

    ``parts``: (bytes input (n, L) uint8, lengths input (n,) int64, seed, buckets) of each id feature; they are
    hashed together: one ``Gemm`` of all their bytes (zeroed past each id's length) with the bases' powers.
    ``vocabularies``: per part, None (hashed into its buckets) or the keys of its vocabulary (:func:`vocab_keys`):
    its ids are then looked up (``ai.onnx.ml`` ``LabelEncoder``, key -> row 1..V, any other key -> V+1).
    ``per_row``: per part, True when it has one id per row (all such parts have N ids: one Shape serves them).
    ``lead``: how many of the first parts are one id per row and hashed (no vocabulary): their ids come out as one
    block too, so a model taking them side by side reads one tensor, and the parts after them are split apart
    without them (a served graph then has no node over every part).
    """
    from onnx import TensorProto as T

    u64 = np.uint64

    def cat(names: list[str], axis: int = 0) -> str:
        return names[0] if len(names) == 1 else g.op("Concat", names, axis=axis)

    byte_inputs = [b for b, _, _, _ in parts]
    if max_bytes is None and len(parts) > 1:  # widths differ by feature: pad each to the widest
        widths = [g.op("Slice", [g.op("Shape", [b]), g.const([1], np.int64), g.const([2], np.int64)])
                  for b in byte_inputs]
        widest = g.op("Max", widths)
        byte_inputs = [g.op("Pad", [b, g.op("Concat", [g.const([0, 0, 0], np.int64), g.op("Sub", [widest, w])],
                                            axis=0)], "bytes_padded") for b, w in zip(byte_inputs, widths, strict=True)]
    raw_bytes = cat(byte_inputs)  # (T, L) uint8
    lengths = cat([n for _, n, _, _ in parts])  # (T,)
    seeds = np.array([offsets(seed) for _, _, seed, _ in parts], np.float64)  # (F, 2): each part's S_1, S_2
    moduli = np.array([buckets - 1 for _, _, _, buckets in parts], u64)
    one = list(per_row) or [False] * len(parts)
    shapes = _shapes(g, parts, one)
    basis = _per_id(g, seeds.T, one, shapes, "basis")  # (2, T) or (2, 1): each id's S_1, S_2
    modulus = _per_id(g, moduli, one, shapes, "modulus")  # (T,) or (1,): each id's buckets - 1
    hashes = mix64(g, polynomial(g, raw_bytes, lengths, basis, max_bytes))  # SplitMix64's finalizer
    ids = g.op("Add", [g.op("Cast", [g.op("Mod", [hashes, modulus], fmod=0)], to=T.INT64), g.const(1, np.int64)])
    ids = g.op("Where", [g.op("Less", [lengths, g.const(1, np.int64)]), g.const(0, np.int64), ids], "ids")
    vocabularies = list(vocabularies) or [None] * len(parts)
    if lead and not all(per_row[:lead]) or any(v is not None for v in vocabularies[:lead]):
        raise ValueError("the lead parts must be one id per row and hashed")
    block = None
    if len(parts) == 1:
        per_part, per_hash = [ids], [hashes]
        block = ids if lead else None
    elif lead:
        cut = g.op("Mul", [shapes[0], g.i64([lead])])  # lead x N
        block = g.op("Slice", [ids, g.i64([0]), cut, g.i64([0])], "single_block") if lead < len(parts) else ids
        per_part = [block] if lead == 1 else g.ops("Split", [block], lead, "ids", axis=0, num_outputs=lead)
        per_hash = [hashes] * lead
        rest = parts[lead:]
        if rest:
            tail = g.op("Slice", [ids, cut, g.i64([2**62]), g.i64([0])], "tail")
            tail_hash = g.op("Slice", [hashes, cut, g.i64([2**62]), g.i64([0])], "tail_hashes")
            if len(rest) == 1:
                per_part, per_hash = per_part + [tail], per_hash + [tail_hash]
            else:
                tail_sizes = g.op("Concat", shapes[lead:], axis=0)
                per_part += g.ops("Split", [tail, tail_sizes], len(rest), "ids", axis=0)
                per_hash += (g.ops("Split", [tail_hash, tail_sizes], len(rest), "hashes", axis=0)
                             if any(v is not None for v in vocabularies[lead:]) else [tail_hash] * len(rest))
    else:
        sizes = g.op("Concat", shapes, axis=0)  # (F,) ids per part
        per_part = g.ops("Split", [ids, sizes], len(parts), "ids", axis=0)
        per_hash = (g.ops("Split", [hashes, sizes], len(parts), "hashes", axis=0)
                    if any(v is not None for v in vocabularies) else [hashes] * len(parts))
    for k, keys in enumerate(vocabularies):
        if keys is None:
            continue
        key = g.op("Cast", [g.op("BitShift", [per_hash[k], g.const(1, u64)], direction="RIGHT")], "key",
                   to=T.INT64)
        row = g.op("LabelEncoder", [key], "vocab_row", domain=ML_DOMAIN, keys_int64s=[int(x) for x in keys],
                   values_int64s=list(range(1, len(keys) + 1)), default_int64=len(keys) + 1)
        per_part[k] = g.op("Where", [g.op("Less", [parts[k][1], g.const(1, np.int64)]), g.const(0, np.int64), row],
                           "ids")
    return per_part, hashes, block


def _shapes(g: GraphBuilder, parts: list[tuple[str, str, int, int]], per_row: Sequence[bool]) -> list[str]:
    """Each part's id count as a (1,) int64: one ``Shape`` shared by the parts of one id per row (N each)."""
    rows = g.op("Shape", [parts[per_row.index(True)][1]]) if any(per_row) else ""
    return [rows if single else g.op("Shape", [n]) for (_, n, _, _), single in zip(parts, per_row, strict=True)]


def _per_id(g: GraphBuilder, values: np.ndarray, per_row: Sequence[bool], shapes: Sequence[str], hint: str) -> str:
    """Each id's constant of its part: ``values`` (F,) -> (T,), or (K, F) -> (K, T). One part, or a value every
    part shares: the constant itself ((1,) or (K, 1)), broadcast by the op that reads it. Else a run of parts of
    one id per row is one ``Expand`` ((K, F', 1) -> (K, F', N)) and a ``Reshape``, any other part one ``Expand``
    of its (K, 1) to its count::

        values [[a, b, c]]  parts s0, s1 (N = 2 each) and a list of 3 ids  ->  [[a, a, b, b, c, c, c]]
    """
    flat = values.ndim == 1
    table = values.reshape(1, -1) if flat else values  # (K, F)
    if (table == table[:, :1]).all():  # one part, or every part alike (the usual buckets): one constant
        return g.const(table[:, 0] if flat else table[:, :1], table.dtype, hint)
    pieces, start = [], 0
    while start < len(per_row):
        end = start + 1
        if per_row[start]:
            while end < len(per_row) and per_row[end]:
                end += 1
            block = g.const(table[:, start:end, None], table.dtype, hint)  # (K, F', 1)
            grid = g.op("Expand", [block, shapes[start]])  # (K, F', N)
            pieces.append(g.op("Reshape", [grid, g.i64([-1] if flat else [len(table), -1])]))
        else:
            part = g.const(table[0, start:end] if flat else table[:, start:end], table.dtype, hint)  # (1,), (K, 1)
            pieces.append(g.op("Expand", [part, shapes[start]]))
        start = end
    return g.op("Concat", pieces, hint, axis=-1) if len(pieces) > 1 else pieces[0]


def polynomial(g: GraphBuilder, raw: str, lengths: str, basis: str, max_bytes: int | None) -> str:
    """``(h_1 << 31) | h_2`` (T,) uint64 of the ids' bytes ``raw`` (T, L), before SplitMix64's finalizer:
    ``h_k = (S_k + L Q_k + sum_i b_i B_k^i) mod P`` with ``basis`` the ids' ``S`` ((2, T) or (2, 1) float64).

    The bytes past each id's length are zeroed (a caller's padding is not trusted), then one float64 ``Gemm``
    with the powers ``B_k^i mod P`` sums them: every product is below 2^39 and the sum of up to
    :data:`ANY_WIDTH_MAX` of them below 2^53, so the float64 sums are exact. Every step after the ``Gemm`` works
    on (2, T) or (T,), not (T, 2): ONNX Runtime runs an elementwise op with a scalar over a (T, 1) or (T, 2)
    tensor a row at a time."""
    from onnx import TensorProto as T

    f64 = np.float64
    rows = max_bytes if max_bytes is not None else ANY_WIDTH_MAX
    length = g.op("Max", [lengths, g.const(0, np.int64)])
    # only the batch's longest id's bytes: most ids are far shorter than the inputs' width
    longest = g.op("ReduceMax", [g.op("Concat", [length, g.i64([0])], axis=0)], keepdims=1)  # (1,)
    # a length over the bytes' width (a caller's bug) hashes the width, as many bytes as there are
    widths = [g.i64([rows])] if max_bytes is not None else [g.i64([rows]), g.op("Slice", [
        g.op("Shape", [raw]), g.i64([1]), g.i64([2])])]
    longest = g.op("Min", [longest, *widths])
    cut = g.op("Slice", [raw, g.i64([0]), longest, g.i64([1])])  # (T, W)
    # each id's mask, 1 before its length, 0 after: its row of `below` (row l: l ones, then zeros), gathered, as
    # ONNX Runtime runs a compare of (T, 1) with (1, W) a row at a time; `below` is a constant up to BELOW_MAX
    # bytes, else built per batch, and past BELOW_MAX bytes ((W + 1, W) would outgrow (T, W)) the compare
    index = g.op("Min", [length, longest])  # (T,)
    if rows <= BELOW_MAX:
        steps = np.tril(np.ones((rows + 1, rows), np.uint8), -1)  # (L + 1, L)
        mask = g.op("Gather", [g.op("Slice", [g.const(steps, np.uint8, "below"), g.i64([0]), longest, g.i64([1])]),
                               index], "mask", axis=0)  # (T, W)
    else:
        positions = g.op("Slice", [g.const(np.arange(rows), np.int64, "position"), g.i64([0]), longest])  # (W,)

        def gathered() -> str:
            counts = g.op("Slice", [g.const(np.arange(rows + 1).reshape(-1, 1), np.int64, "count"), g.i64([0]),
                                    g.op("Add", [longest, g.i64([1])])])  # (W + 1, 1)
            below = g.op("Cast", [g.op("Less", [positions, counts])], "below", to=T.UINT8)  # (W + 1, W)
            return g.op("Gather", [below, index], "mask", axis=0)

        def compared() -> str:
            return g.op("Cast", [g.op("Less", [positions, g.unsqueeze(length, 1)])], "mask", to=T.UINT8)

        mask = g.op("If", [g.op("LessOrEqual", [longest, g.i64([BELOW_MAX])])], "mask",
                    then_branch=g.branch(gathered, T.UINT8), else_branch=g.branch(compared, T.UINT8))
    # masked in uint8 (a 0/1 mask: exact), then one cast: an eighth of the bytes through the gather and the product
    data = g.op("Cast", [g.op("Mul", [cut, mask])], "bytes_f64", to=T.DOUBLE)  # (T, W)
    table = g.op("Slice", [g.const(powers(rows).T.astype(f64), f64, "powers"), g.i64([0]), longest, g.i64([1])])
    sums = g.op("Gemm", [table, data, basis], "byte_sums", transB=1)  # (2, W) x (W, T) + S: (2, T)
    weighted = g.op("Mul", [g.const(np.array(LENGTH_WEIGHTS, f64).reshape(2, 1), f64, "length_weights"),
                            g.op("Cast", [length], to=T.DOUBLE)])  # (2, T)
    # mod P in uint64 (exact: the sums are integers below 2^53), faster than a float64 fmod
    halves = g.op("Mod", [g.op("Cast", [g.op("Add", [sums, weighted])], to=T.UINT64),
                          g.const(PRIME, np.uint64)], "mod_p")  # (2, T) h_1, h_2
    # (h_1 << 31) | h_2 as [2^31, 1] @ halves: exact in uint64 (below 2^62)
    return g.op("MatMul", [g.const(np.array([1 << 31, 1], np.uint64), np.uint64, "join"), halves], "poly")  # (T,)
