"""Id hashing inside the raw ONNX graph: the two polynomial hashes of :mod:`shoal.data.hashing` (one float64
``MatMul`` of every id's bytes with the bases' powers, exact: every term is an integer below 2^53), the seed's
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
    hashed together: one ``MatMul`` of all their bytes (zeroed past each id's length) with the bases' powers.
    ``vocabularies``: per part, None (hashed into its buckets) or the keys of its vocabulary (:func:`vocab_keys`):
    its ids are then looked up (``ai.onnx.ml`` ``LabelEncoder``, key -> row 1..V, any other key -> V+1).
    ``per_row``: per part, True when it has one id per row (all such parts have N ids: one Shape serves them).
    ``lead``: how many of the first parts are one id per row and hashed (no vocabulary): their ids come out as one
    block too, so a model taking them side by side reads one tensor, and the parts after them are split apart
    without them (a served graph then has no node over every part).
    """
    from onnx import TensorProto as T
    from onnx import helper

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
    sizes = None
    if len(parts) > 1:
        one = list(per_row) or [False] * len(parts)
        rows = g.op("Shape", [parts[one.index(True)][1]]) if any(one) else ""
        sizes = g.op("Concat", [rows if single else g.op("Shape", [n])
                                for (_, n, _, _), single in zip(parts, one, strict=True)], axis=0)
    if sizes is None:
        basis = g.const(seeds, np.float64, "basis")  # (1, 2): broadcast over the ids
        modulus = g.op("Expand", [g.const(moduli, u64, "modulus"), g.op("Shape", [lengths])])
    elif all(per_row):  # F parts of N ids each: the F constants repeated N times
        rows = g.op("Shape", [parts[0][1]])
        grid = g.op("Concat", [g.i64([len(parts)]), rows], axis=0)  # (F, N)
        modulus = g.op("Reshape", [g.op("Expand", [g.const(moduli.reshape(-1, 1), u64, "modulus"), grid]),
                                   g.i64([-1])], "modulus")
        basis = g.op("Reshape", [g.op("Expand", [g.const(seeds.reshape(-1, 1, 2), np.float64, "basis"),
                                                 g.op("Concat", [grid, g.i64([2])], axis=0)]), g.i64([-1, 2])],
                     "basis")
    else:  # each id's part: a 1 at each part's end, summed up to the id (a few nodes, not four per part)
        ends = g.op("CumSum", [sizes, g.i64(0)])
        total = g.op("Shape", [lengths])
        marks = g.op("ScatterElements", [g.op("ConstantOfShape", [g.op("Add", [total, g.i64([1])])],
                                              value=helper.make_tensor("zero", T.INT64, [1], [0])),
                                         ends, g.op("Expand", [g.i64([1]), g.op("Shape", [ends])])],
                     reduction="add")  # (T + 1,)
        part = g.op("CumSum", [g.slice(marks, 0, -1, 0), g.i64(0)], "part")  # (T,): the part of each id
        basis = g.op("Gather", [g.const(seeds, np.float64, "basis"), part], "basis", axis=0)  # (T, 2)
        modulus = g.take(g.const(moduli, u64, "modulus"), part)
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
        cut = g.op("Mul", [g.op("Shape", [parts[0][1]]), g.i64([lead])])  # lead x N
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
                tail_sizes = g.op("Concat", [g.op("Shape", [n]) for _, n, _, _ in rest], axis=0)
                per_part += g.ops("Split", [tail, tail_sizes], len(rest), "ids", axis=0)
                per_hash += (g.ops("Split", [tail_hash, tail_sizes], len(rest), "hashes", axis=0)
                             if any(v is not None for v in vocabularies[lead:]) else [tail_hash] * len(rest))
    else:
        assert sizes is not None
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


def polynomial(g: GraphBuilder, raw: str, lengths: str, basis: str, max_bytes: int | None) -> str:
    """``(h_1 << 31) | h_2`` (T,) uint64 of the ids' bytes ``raw`` (T, L), before SplitMix64's finalizer:
    ``h_k = (S_k + L Q_k + sum_i b_i B_k^i) mod P`` with ``basis`` the ids' ``S`` ((T, 2) or (1, 2) float64).

    The bytes past each id's length are zeroed (a caller's padding is not trusted), then one float64 ``MatMul``
    with the powers ``B_k^i mod P`` sums them: every product is below 2^39 and the sum of up to
    :data:`ANY_WIDTH_MAX` of them below 2^53, so the float64 sums are exact."""
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
    table = g.op("Slice", [g.const(powers(rows).astype(f64), f64, "powers"), g.i64([0]), longest, g.i64([0])])
    positions = g.op("Slice", [g.const(np.arange(rows, dtype=np.int64).reshape(1, -1), np.int64, "position"),
                               g.i64([0]), longest, g.i64([1])])  # (1, W)
    inside = g.op("Less", [positions, g.unsqueeze(length, 1)], "inside")
    data = g.op("Cast", [g.op("Where", [inside, cut, g.const(0, np.uint8)])], "bytes_f64", to=T.DOUBLE)  # (T, W)
    weighted = g.op("Mul", [g.unsqueeze(g.op("Cast", [length], to=T.DOUBLE), 1),
                            g.const(np.array([LENGTH_WEIGHTS], f64), f64, "length_weights")])  # (T, 2)
    total = g.op("Add", [g.op("Add", [g.op("MatMul", [data, table], "byte_sums"), basis]), weighted])
    halves = g.op("Cast", [g.op("Mod", [total, g.const(float(PRIME), f64)], "mod_p", fmod=1)], to=T.UINT64)
    high, low = g.ops("Split", [halves], 2, "half", axis=1, num_outputs=2)  # (T, 1) each; uint64: exact
    joined = g.op("BitwiseOr", [g.op("BitShift", [high, g.const(31, np.uint64)], direction="LEFT"), low])
    return g.op("Reshape", [joined, g.i64([-1])], "poly")
