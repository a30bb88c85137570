"""Id hashing inside the raw ONNX graph: 64-bit FNV-1a from the feature's seed, xor the length, SplitMix64; then
the bucket (``encoding: hash``) or the vocabulary row, looked up by that hash (``encoding: vocab``).

Bit for bit the ids of :mod:`shoal.data.hashing`, in uint64 ops (opset 18). Two forms: the FNV loop unrolled over
``max_bytes`` byte columns (fixed-width inputs), or an ONNX ``Loop`` taking :data:`LOOP_BLOCK` bytes a turn (any
width). :mod:`shoal.export.raw` explains when each is faster.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from shoal.data.features.sparse import SparseColumn
from shoal.data.hashing import hash_strings
from shoal.export.raw_graph import PREFIX, GraphBuilder, mix64

__all__ = ["LOOP_BLOCK", "ML_DOMAIN", "ML_OPSET", "fnv_loop", "hash_ids", "vocab_keys"]

LOOP_BLOCK = 8  # bytes hashed per turn of the Loop form
FNV_HEAD = 16  # bytes hashed unrolled in both forms; the rest only when an id is longer (a multiple of LOOP_BLOCK)
ML_DOMAIN, ML_OPSET = "ai.onnx.ml", 2  # LabelEncoder with int64 keys: a vocabulary feature's lookup

_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3


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
             vocabularies: Sequence[np.ndarray | None] = (), per_row: Sequence[bool] = ()) -> tuple[list[str], str]:
    """Bucket ids (int64, one tensor per part) of id bytes, and the raw hashes (uint64 (T,), all parts).

    ``parts``: (bytes input (n, L) uint8, lengths input (n,) int64, seed, buckets) of each id feature; they are
    hashed together in one chain of elementwise uint64 ops. The FNV-1a step ``h = (h ^ b) * P`` is made a no-op
    past an id's length by feeding ``b = 0, P = 1`` there (ONNX Runtime has no uint64 ``Where``).
    ``vocabularies``: per part, None (hashed into its buckets) or the keys of its vocabulary (:func:`vocab_keys`):
    its ids are then looked up (``ai.onnx.ml`` ``LabelEncoder``, key -> row 1..V, any other key -> V+1).
    ``per_row``: per part, True when it has one id per row (all such parts have N ids: one Shape serves them).
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
    if max_bytes is None:  # FNV_HEAD bytes unrolled, then LOOP_BLOCK a turn: pad to FNV_HEAD + k LOOP_BLOCK
        w = g.op("Slice", [g.op("Shape", [raw_bytes]), g.const([1], np.int64), g.const([2], np.int64)])
        short = g.op("Mod", [g.op("Sub", [g.const([LOOP_BLOCK], np.int64), g.op("Mod", [w, g.const([LOOP_BLOCK],
                                                                                                    np.int64)])]),
                             g.const([LOOP_BLOCK], np.int64)])
        short = g.op("Sub", [g.op("Max", [g.op("Add", [w, short]), g.i64([FNV_HEAD])]), w])
        raw_bytes = g.op("Pad", [raw_bytes, g.op("Concat", [g.const([0, 0, 0], np.int64), short], axis=0)])
    lengths = cat([n for _, n, _, _ in parts])  # (T,)
    seeds = np.array([(_FNV_OFFSET ^ seed) & 0xFFFFFFFFFFFFFFFF for _, _, seed, _ in parts], u64)
    moduli = np.array([buckets - 1 for _, _, _, buckets in parts], u64)
    sizes = None
    if len(parts) > 1:
        one = list(per_row) or [False] * len(parts)
        rows = g.op("Shape", [parts[one.index(True)][1]]) if any(one) else ""
        sizes = g.op("Concat", [rows if single else g.op("Shape", [n])
                                for (_, n, _, _), single in zip(parts, one, strict=True)], axis=0)
    if sizes is None:
        basis = g.op("Expand", [g.const(seeds, u64, "basis"), g.op("Shape", [lengths])])
        modulus = g.op("Expand", [g.const(moduli, u64, "modulus"), g.op("Shape", [lengths])])
    elif all(per_row):  # F parts of N ids each: the F constants repeated N times
        rows = g.op("Shape", [parts[0][1]])
        grid = g.op("Concat", [g.i64([len(parts)]), rows], axis=0)  # (F, N)
        basis, modulus = (g.op("Reshape", [g.op("Expand", [g.const(c.reshape(-1, 1), u64, hint), grid]),
                                           g.i64([-1])], hint) for c, hint in ((seeds, "basis"), (moduli, "modulus")))
    else:  # each id's part: a 1 at each part's end, summed up to the id (a few nodes, not four per part)
        ends = g.op("CumSum", [sizes, g.i64(0)])
        total = g.op("Shape", [lengths])
        marks = g.op("ScatterElements", [g.op("ConstantOfShape", [g.op("Add", [total, g.i64([1])])],
                                              value=helper.make_tensor("zero", T.INT64, [1], [0])),
                                         ends, g.op("Expand", [g.i64([1]), g.op("Shape", [ends])])],
                     reduction="add")  # (T + 1,)
        part = g.op("CumSum", [g.slice(marks, 0, -1, 0), g.i64(0)], "part")  # (T,): the part of each id
        basis = g.take(g.const(seeds, u64, "basis"), part)
        modulus = g.take(g.const(moduli, u64, "modulus"), part)
    h = fnv(g, raw_bytes, lengths, basis, max_bytes)
    length_u64 = g.op("Cast", [g.op("Max", [lengths, g.const(0, np.int64)])], to=T.UINT64)
    h = g.op("BitwiseXor", [h, length_u64])
    hashes = mix64(g, h)  # SplitMix64's finalizer
    ids = g.op("Add", [g.op("Cast", [g.op("Mod", [hashes, modulus], fmod=0)], to=T.INT64), g.const(1, np.int64)])
    ids = g.op("Where", [g.op("Less", [lengths, g.const(1, np.int64)]), g.const(0, np.int64), ids], "ids")
    vocabularies = list(vocabularies) or [None] * len(parts)
    if len(parts) == 1:
        per_part, per_hash = [ids], [hashes]
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
    return per_part, hashes


def _masked(g: GraphBuilder, raw: str, lengths: str, start: int) -> tuple[str, str]:
    """(bytes, primes), (w, T) uint64, of the id bytes ``raw`` (T, w) that are bytes ``start``.. of each id: past an
    id's length the byte is 0 and the prime 1, so the FNV-1a step ``h = (h ^ b) * P`` does nothing there (ONNX
    Runtime has no uint64 ``Where``)."""
    from onnx import TensorProto as T

    columns = g.op("Cast", [g.op("Transpose", [raw], perm=[1, 0])], "bytes_u64", to=T.UINT64)
    position = g.unsqueeze(g.op("Range", [g.i64(start), g.op("Add", [g.dim(raw, 1), g.i64(start)]), g.i64(1)]), 1)
    inside = g.op("Cast", [g.op("Less", [position, g.unsqueeze(lengths, 0)])], "inside", to=T.UINT64)
    data = g.op("Mul", [columns, inside], "bytes_masked")
    primes = g.op("Add", [g.op("Mul", [inside, g.const(_FNV_PRIME - 1, np.uint64)]), g.const(1, np.uint64)], "primes")
    return data, primes


def fnv(g: GraphBuilder, raw: str, lengths: str, basis: str, max_bytes: int | None) -> str:
    """FNV-1a (T,) uint64 of the ids' bytes ``raw`` (T, L), before the length and SplitMix64's finalizer.

    The first :data:`FNV_HEAD` bytes are unrolled (most ids end there); the rest, unrolled up to ``max_bytes`` or
    a ``Loop`` (``max_bytes`` None: L is HEAD + k :data:`LOOP_BLOCK`), runs inside an ``If`` taken only when an
    id is longer than the head, so a batch of short ids pays for HEAD bytes, not L."""
    from onnx import TensorProto as T
    from onnx import helper

    h = g.unsqueeze(basis, 0)  # (1, T)
    head = min(max_bytes, FNV_HEAD) if max_bytes is not None else FNV_HEAD
    data, primes = _masked(g, raw if head == max_bytes else g.slice(raw, 0, head, 1), lengths, 0)
    h = fnv_unrolled(g, data, primes, head, h)
    if head == max_bytes:
        return g.op("Squeeze", [h, g.i64([0])])
    outer, g.nodes = g.nodes, []  # the If's then-branch: its nodes read the outer graph's values
    tail_data, tail_primes = _masked(g, g.slice(raw, FNV_HEAD, 2**62, 1), lengths, FNV_HEAD)
    if max_bytes is not None:
        tail = fnv_unrolled(g, tail_data, tail_primes, max_bytes - FNV_HEAD, h)
    else:
        blocks = g.op("Div", [g.op("Sub", [g.dim(raw, 1), g.i64(FNV_HEAD)]), g.i64(LOOP_BLOCK)])
        shape = g.op("Concat", [g.unsqueeze(blocks, 0), g.i64([LOOP_BLOCK]), g.op("Shape", [lengths])], axis=0)
        tail = fnv_loop(g, g.op("Reshape", [tail_data, shape]), g.op("Reshape", [tail_primes, shape]), blocks, h)
    branch, g.nodes = g.nodes, outer
    short = g.name("fnv_head")
    longest = g.op("ReduceMax", [g.op("Concat", [lengths, g.i64([0])], axis=0)], keepdims=0)
    h = g.op("If", [g.op("Greater", [longest, g.i64(FNV_HEAD)])], "fnv",
             then_branch=helper.make_graph(branch, "fnv_tail", [], [
                 helper.make_tensor_value_info(tail, T.UINT64, [1, None])]),
             else_branch=helper.make_graph([helper.make_node("Identity", [h], [short])], "fnv_head", [], [
                 helper.make_tensor_value_info(short, T.UINT64, [1, None])]))
    return g.op("Squeeze", [h, g.i64([0])])


def fnv_unrolled(g: GraphBuilder, data: str, primes: str, width: int, h: str) -> str:
    """The FNV-1a steps over the ``width`` rows of ``data`` / ``primes`` (width, T), two nodes a byte; ``h`` (1, T)."""
    if width == 1:
        byte_cols, prime_cols = [data], [primes]
    else:
        byte_cols = g.ops("Split", [data], width, "byte", axis=0, num_outputs=width)
        prime_cols = g.ops("Split", [primes], width, "prime", axis=0, num_outputs=width)
    for b, p in zip(byte_cols, prime_cols, strict=True):
        h = g.op("Mul", [g.op("BitwiseXor", [h, b], "fnv_xor"), p], "fnv")
    return h


def fnv_loop(g: GraphBuilder, data: str, primes: str, blocks: str, h: str) -> str:
    """The FNV-1a steps as an ONNX ``Loop`` of ``blocks`` turns, each :data:`LOOP_BLOCK` steps unrolled over one
    (B, T) block of ``data`` / ``primes`` (L / B, B, T); ``h`` is (1, T). A turn per byte costs ONNX Runtime about
    twice the time of the unrolled steps; B bytes a turn make the loop's overhead small."""
    from onnx import TensorProto as T
    from onnx import helper

    loop = f"{PREFIX}loop/"
    nodes = [helper.make_node("Gather", [data, f"{loop}j"], [f"{loop}b"], axis=0),
             helper.make_node("Gather", [primes, f"{loop}j"], [f"{loop}p"], axis=0),
             helper.make_node("Split", [f"{loop}b"], [f"{loop}b{i}" for i in range(LOOP_BLOCK)], axis=0,
                              num_outputs=LOOP_BLOCK),
             helper.make_node("Split", [f"{loop}p"], [f"{loop}p{i}" for i in range(LOOP_BLOCK)], axis=0,
                              num_outputs=LOOP_BLOCK),
             helper.make_node("Identity", [f"{loop}cond"], [f"{loop}cond_out"])]
    current = f"{loop}h"
    for i in range(LOOP_BLOCK):
        step = f"{loop}h{i}" if i < LOOP_BLOCK - 1 else f"{loop}h_out"
        nodes += [helper.make_node("BitwiseXor", [current, f"{loop}b{i}"], [f"{loop}x{i}"]),
                  helper.make_node("Mul", [f"{loop}x{i}", f"{loop}p{i}"], [step])]
        current = step
    body = helper.make_graph(
        nodes, "fnv1a_block",
        [helper.make_tensor_value_info(f"{loop}j", T.INT64, []),
         helper.make_tensor_value_info(f"{loop}cond", T.BOOL, []),
         helper.make_tensor_value_info(f"{loop}h", T.UINT64, [1, "T"])],
        [helper.make_tensor_value_info(f"{loop}cond_out", T.BOOL, []),
         helper.make_tensor_value_info(f"{loop}h_out", T.UINT64, [1, "T"])])
    return g.op("Loop", [blocks, "", h], "fnv", body=body)
