"""An ONNX model whose inputs are the RAW columns: the encoder's preprocessing built into the graph.

:func:`~shoal.export.onnx.export_onnx` writes a graph that starts after the Python encoder (hashed ids,
transformed numbers), so every caller needs shoal's encoder. :func:`export_raw_onnx` puts the encoding of dense
and sparse features in front of that graph, in standard ONNX ops (opset 18, ``ai.onnx``), so a caller in any
language feeds raw values and gets probabilities::

    report = export_raw_onnx("runs/2024.../bundle")        # writes bundle/onnx/model.raw.onnx + raw_inputs.json
    model = RawOnnxModel(report.path)
    model.predict_proba([{"age": 31.0, "country": "fr", "tags": "a|b"}])

The input contract (``raw_inputs.json``, and the same JSON in the model's ``metadata_props`` under
``shoal.raw_inputs``), per feature of the bundle:

- dense ``NAME``: float32 (N,), NaN for missing. In the graph, exactly what
  :class:`~shoal.data.features.DenseColumn` does: the transform (``log1p`` sign-preserving, ``standardize`` with the
  learned mean and std, computed in float64 as numpy does), 0 plus the missing flag for NaN, and with ``bins`` the
  quantile bin id. The bin edges are turned into thresholds on the float32 raw value (the smallest float32 whose
  transform reaches each edge), so the in-graph bin is the encoder's bin exactly, with no log in the comparison.
  Infinite values are refused by the encoder (the row is bad); :func:`raw_feed` refuses them too, and a graph fed
  one directly computes with it (garbage in). Values are float32: a number that float32 cannot hold exactly is
  rounded before the graph sees it.
- sparse ``NAME`` (one id per row): ``NAME.bytes`` uint8 (N, L): the UTF-8 bytes of each id, left-aligned, padded
  with 0; ``NAME.lengths`` int64 (N,): the byte length of each id; **0 or -1 means missing** (id 0, as the encoder
  maps a missing or empty cell); a length above the bytes' width is the caller's bug (only the width is hashed).
  Whitespace trimming is the caller's job (the encoder trims the 29 code points Python's ``str.isspace`` names, at
  both ends, as ``str.strip()`` does; :func:`raw_feed` does it). In the graph: 64-bit FNV-1a from the feature's
  seed, xor the length, SplitMix64, then ``hash % (buckets - 1) + 1`` (:mod:`shoal.data.hashing`), all in uint64.
- sparse ``NAME`` with a ``separator`` (a list per row): ``NAME.bytes`` (M, L) and ``NAME.lengths`` (M,) hold every
  id of the batch, row after row (split on the separator, trimmed, empty ids dropped: the caller's job), and
  ``NAME.counts`` int64 (N,) how many ids each row has; a row with none pools embedding row 0, as the encoder's
  reserved id does. The graph pads them into the ``ids_k`` / ``weights_k`` form of :mod:`shoal.runtime.feed`.
- text features: not in this export yet (:class:`~shoal.export.onnx.ExportError` says so).

``L`` is the export's ``max_bytes``: with the default ``form="unrolled"`` the FNV loop is unrolled over ``L`` byte
columns and the bytes inputs have that fixed width (ONNX Runtime refuses any other width: a longer id is refused,
never silently cut); with ``form="loop"`` the loop is an ONNX ``Loop`` taking 8 bytes a turn and the width is
whatever the caller sends (any id length; the cost follows the longest id of the batch). At equal width the unrolled
form is faster (4 id features on a shared 2-core box, hash sub-graph only: width 64, 92 vs 128 us at batch 1, 400 vs
420 us at batch 256; width 16, 46 vs 66 us), so it is the default; the Loop form wins when ids are much shorter than
``L`` or unbounded. All id features of a batch go through one hashing chain (their bytes concatenated), so the
graph's size does not grow with the number of features. Outputs: ``logits`` and ``probabilities`` ((N,) binary,
(N, C) multiclass).
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shoal.artifacts.bundle import Bundle, load_bundle
from shoal.data.encoder import Encoder
from shoal.data.features import DenseColumn, Problems, as_strings
from shoal.data.features.dense import FLOAT32_MAX
from shoal.data.readers import BadRowSink, Chunk
from shoal.export.onnx import ExportError
from shoal.export.padded import layout_for, trace_to_onnx
from shoal.runtime.feed import InputLayout

__all__ = ["DEFAULT_MAX_BYTES", "RAW_FILE", "RAW_FORMAT", "RawExportReport", "RawOnnxModel", "export_raw_onnx",
           "preprocess_model", "raw_contract", "raw_edges", "raw_feed", "synthetic_raw_rows"]

OPSET = 18
RAW_FILE = "model.raw.onnx"
CONTRACT_FILE = "raw_inputs.json"
RAW_FORMAT = "shoal-raw-onnx"
RAW_VERSION = 1
METADATA_KEY = "shoal.raw_inputs"
LOOP_BLOCK = 8  # bytes hashed per turn of the Loop form
DEFAULT_MAX_BYTES = 64  # id bytes per row the unrolled hash reads; longer ids are refused (re-export with more)
PARITY_TOLERANCE = 1e-5  # max |p(raw graph) - p(Python encoder + torch)| on synthetic raw rows
PREFIX = "raw/"  # every value the preprocessing adds is named under it, clear of the traced model's names

_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB


# -- the contract -----------------------------------------------------------------------------------------------
def raw_contract(encoder: Encoder, max_bytes: int | None = DEFAULT_MAX_BYTES) -> dict[str, Any]:
    """The input contract of a raw export of ``encoder`` (plain JSON): the features in graph order and, per ONNX
    input, its dtype, shape, missing value and an example. ``max_bytes`` None: bytes inputs of any width (Loop).

    Raises :class:`ExportError` for an encoder with text features (not exported raw yet) or an unknown kind.
    """
    if encoder.text_features:
        texts = ", ".join(f.name for f in encoder.text_features)
        raise ExportError(f"raw inputs for text features are not exported yet (text features: {texts}); export the "
                          "encoded graph instead (shoal export RUN --onnx) and encode the rows with shoal's encoder")
    known = set(map(id, encoder.dense_features)) | set(map(id, encoder.sparse_features))
    other = [f.name for f in encoder.features if id(f) not in known]
    if other:
        raise ExportError(f"features {other} are of a kind the raw export does not know")
    width: Any = max_bytes if max_bytes is not None else "L"
    features: list[dict[str, Any]] = []
    inputs: dict[str, dict[str, Any]] = {}
    for d in encoder.dense_features:
        features.append({"name": d.name, "kind": "dense", "column": d.column, "transform": d.transform,
                         "bins": d.bins, "inputs": {"value": d.name}})
        inputs[d.name] = {"dtype": "float32", "shape": ["N"], "missing": "NaN", "example": [1.5, -3.0],
                          "about": f"dense feature {d.name!r} (column {d.column!r}), the raw number"}
    for s in encoder.sparse_features:
        names = {"bytes": f"{s.name}.bytes", "lengths": f"{s.name}.lengths"}
        rows = "M" if s.separator is not None else "N"
        inputs[names["bytes"]] = {
            "dtype": "uint8", "shape": [rows, width], "missing": "(any bytes; the length says missing)",
            "example": "ids 'ab' and missing: [[97, 98, 0, ..., 0], [0, 0, 0, ..., 0]]",
            "about": f"UTF-8 bytes of each {'id of every row' if s.separator else 'id'} of {s.name!r}, whitespace "
                     "trimmed, left-aligned, padded with 0" + (f"; at most {max_bytes} bytes" if max_bytes else "")}
        inputs[names["lengths"]] = {"dtype": "int64", "shape": [rows], "missing": "0 or -1 (id 0)", "example": [2, 0],
                                    "about": f"byte length of each id of {s.name!r}; 0 or -1: missing"}
        if s.separator is not None:
            names["counts"] = f"{s.name}.counts"
            inputs[names["counts"]] = {
                "dtype": "int64", "shape": ["N"], "missing": "0 (the row pools id 0)", "example": [1, 0],
                "about": f"how many ids each row of {s.name!r} has (split on {s.separator!r}, empty ids dropped); "
                         f"the rows of {names['bytes']} are these ids, row after row"}
        features.append({"name": s.name, "kind": "sparse", "column": s.column, "separator": s.separator,
                         "buckets": s.buckets, "seed": s.seed, "inputs": names})
    if len(inputs) != sum(len(f["inputs"]) for f in features):
        raise ExportError("two features give the same raw input name; rename one (e.g. 'x' and a sparse 'x.bytes')")
    return {"format": RAW_FORMAT, "version": RAW_VERSION, "opset": OPSET, "max_bytes": max_bytes,
            "features": features, "inputs": inputs,
            "outputs": {"probabilities": "(N,) sigmoid for a binary label, (N, C) softmax for a multiclass one",
                        "logits": "the same shape, before the sigmoid/softmax"},
            "classes": list(encoder.classes_) if encoder.multiclass else None}


# -- graph building -----------------------------------------------------------------------------------------------
class _Graph:
    """Nodes and constants of the preprocessing graph, every value named under :data:`PREFIX`."""

    def __init__(self) -> None:
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self.count = 0

    def name(self, hint: str) -> str:
        self.count += 1
        return f"{PREFIX}{hint}/{self.count}"

    def const(self, value: Any, dtype: Any, hint: str = "const") -> str:
        from onnx import numpy_helper

        name = self.name(hint)
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, op_type: str, inputs: Sequence[str], hint: str | None = None, out: str | None = None,
           **attrs: Any) -> str:
        from onnx import helper

        name = out or self.name(hint or op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [name], name=f"{name}:node", **attrs))
        return name

    def ops(self, op_type: str, inputs: Sequence[str], outputs: int, hint: str, **attrs: Any) -> list[str]:
        from onnx import helper

        names = [self.name(hint) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), names, name=f"{names[0]}:node", **attrs))
        return names


def raw_edges(col: DenseColumn) -> np.ndarray:
    """Bin thresholds on the raw float32 value: for each edge, the smallest float32 whose transform (float64, as
    :meth:`DenseColumn.bin_ids` computes it) is at or above the edge (+inf when none is). ``count(x >= threshold)``
    is then ``searchsorted(edges, transformed(x), side="right")`` exactly, as the transforms are monotone."""
    edges = np.asarray(col.edges_, dtype=np.float64)
    if not len(edges):
        return np.zeros(0, np.float32)
    top = int(np.array(np.finfo(np.float32).max, np.float32).view(np.uint32))  # ordinal of the largest float32

    def value(k: np.ndarray) -> np.ndarray:  # ordinal -> float32: ..., -max, ..., -0, 0, ..., max
        mag = np.abs(k).astype(np.uint32).view(np.float32)
        return np.where(k < 0, -mag, mag).astype(np.float32)

    lo = np.full(len(edges), -top, np.int64)
    hi = np.full(len(edges), top + 1, np.int64)  # the answer is in [lo, hi]; top + 1: no float32 reaches the edge
    while (lo < hi).any():
        mid = (lo + hi) // 2
        ok = col.transformed(value(mid).astype(np.float64), standardize=False) >= edges
        active = lo < hi
        hi = np.where(active & ok, mid, hi)
        lo = np.where(active & ~ok, mid + 1, lo)
    return np.where(lo > top, np.float32(np.inf), value(np.minimum(lo, top))).astype(np.float32)


def _dense(g: _Graph, col: DenseColumn) -> tuple[str, str, str | None]:
    """(value (N,) float32, missing flag (N,) float32, bin id (N,) int64 or None) of a dense input."""
    from onnx import TensorProto as T

    x = col.name
    v = g.op("Cast", [x], "as_double", to=T.DOUBLE)
    if col.transform == "log1p":
        # sign(v) * log1p(|v|), log1p as log(u) * a / (u - 1) with u = 1 + a (exact to a few ulps; a when u == 1)
        a = g.op("Abs", [v])
        u = g.op("Add", [a, g.const(1.0, np.float64)])
        d = g.op("Sub", [u, g.const(1.0, np.float64)])
        ratio = g.op("Div", [g.op("Mul", [g.op("Log", [u]), a]), d])
        log1p = g.op("Where", [g.op("Equal", [d, g.const(0.0, np.float64)]), a, ratio])
        v = g.op("Mul", [g.op("Sign", [v]), log1p], "log1p")
    elif col.transform == "standardize":
        v = g.op("Div", [g.op("Sub", [v, g.const(col.mean_, np.float64)]), g.const(col.std_, np.float64)], "std")
    elif col.transform != "none":
        raise ExportError(f"dense feature {col.name!r}: transform {col.transform!r} is not in the raw export")
    missing = g.op("IsNaN", [v])
    value = g.op("Cast", [g.op("Where", [missing, g.const(0.0, np.float64), v])], "value", to=T.FLOAT)
    flag = g.op("Cast", [missing], "missing", to=T.FLOAT)
    if not col.bins:
        return value, flag, None
    raw_missing = g.op("IsNaN", [x])
    thresholds = raw_edges(col)
    if len(thresholds):
        above = g.op("GreaterOrEqual", [g.op("Unsqueeze", [x, g.const([1], np.int64)]),
                                        g.const(thresholds.reshape(1, -1), np.float32, "edges")])
        count = g.op("ReduceSum", [g.op("Cast", [above], to=T.INT64), g.const([1], np.int64)], keepdims=0)
        bin_id = g.op("Add", [count, g.const(1, np.int64)])
    else:  # no edges (no training values): one bin, id 1
        bin_id = g.op("Expand", [g.const(1, np.int64), g.op("Shape", [x])])
    return value, flag, g.op("Where", [raw_missing, g.const(0, np.int64), bin_id], "bin")


def _hash_ids(g: _Graph, parts: list[tuple[str, str, int, int]], max_bytes: int | None) -> tuple[list[str], str]:
    """Bucket ids (int64, one tensor per part) of id bytes, and the raw hashes (uint64 (T,), all parts).

    ``parts``: (bytes input (n, L) uint8, lengths input (n,) int64, seed, buckets) of each id feature; they are
    hashed together in one chain of elementwise uint64 ops. The FNV-1a step ``h = (h ^ b) * P`` is made a no-op
    past an id's length by feeding ``b = 0, P = 1`` there (ONNX Runtime has no uint64 ``Where``).
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
    if max_bytes is None:  # the Loop takes LOOP_BLOCK bytes a turn: pad the width to a multiple of it
        w = g.op("Slice", [g.op("Shape", [raw_bytes]), g.const([1], np.int64), g.const([2], np.int64)])
        short = g.op("Mod", [g.op("Sub", [g.const([LOOP_BLOCK], np.int64), g.op("Mod", [w, g.const([LOOP_BLOCK],
                                                                                                    np.int64)])]),
                             g.const([LOOP_BLOCK], np.int64)])
        raw_bytes = g.op("Pad", [raw_bytes, g.op("Concat", [g.const([0, 0, 0], np.int64), short], axis=0)])
    lengths = cat([n for _, n, _, _ in parts])  # (T,)
    basis = cat([g.op("Expand", [g.const([(_FNV_OFFSET ^ seed) & 0xFFFFFFFFFFFFFFFF], u64, "basis"),
                                 g.op("Shape", [n])]) for _, n, seed, _ in parts])
    modulus = cat([g.op("Expand", [g.const([buckets - 1], u64, "modulus"), g.op("Shape", [n])])
                   for _, n, _, buckets in parts])
    columns = g.op("Cast", [g.op("Transpose", [raw_bytes], perm=[1, 0])], "bytes_u64", to=T.UINT64)  # (L, T)
    width = g.op("Gather", [g.op("Shape", [raw_bytes]), g.const(1, np.int64)])  # L, a scalar
    position = g.op("Unsqueeze", [g.op("Range", [g.const(0, np.int64), width, g.const(1, np.int64)]),
                                  g.const([1], np.int64)])  # (L, 1)
    inside = g.op("Cast", [g.op("Less", [position, g.op("Unsqueeze", [lengths, g.const([0], np.int64)])])],
                  "inside", to=T.UINT64)  # (L, T): 1 for a byte of the id, 0 past its end
    data = g.op("Mul", [columns, inside], "bytes_masked")
    primes = g.op("Add", [g.op("Mul", [inside, g.const(_FNV_PRIME - 1, u64)]), g.const(1, u64)], "primes")
    h = g.op("Unsqueeze", [basis, g.const([0], np.int64)])  # (1, T)
    if max_bytes is not None:
        if max_bytes == 1:
            byte_cols, prime_cols = [data], [primes]
        else:
            byte_cols = g.ops("Split", [data], max_bytes, "byte", axis=0, num_outputs=max_bytes)
            prime_cols = g.ops("Split", [primes], max_bytes, "prime", axis=0, num_outputs=max_bytes)
        for b, p in zip(byte_cols, prime_cols, strict=True):
            h = g.op("Mul", [g.op("BitwiseXor", [h, b], "fnv_xor"), p], "fnv")
        h = g.op("Squeeze", [h, g.const([0], np.int64)])
    else:
        blocks = g.op("Div", [width, g.const(LOOP_BLOCK, np.int64)])
        shape = g.op("Concat", [g.op("Unsqueeze", [blocks, g.const([0], np.int64)]),
                                g.const([LOOP_BLOCK, -1], np.int64)], axis=0)  # (L / B, B, T)
        h = _fnv_loop(g, g.op("Reshape", [data, shape]), g.op("Reshape", [primes, shape]), blocks, h)
        h = g.op("Squeeze", [h, g.const([0], np.int64)])
    length_u64 = g.op("Cast", [g.op("Max", [lengths, g.const(0, np.int64)])], to=T.UINT64)
    h = g.op("BitwiseXor", [h, length_u64])
    for shift, mult in ((30, _M1), (27, _M2), (31, None)):  # SplitMix64's finalizer
        h = g.op("BitwiseXor", [h, g.op("BitShift", [h, g.const(shift, u64)], direction="RIGHT")])
        if mult is not None:
            h = g.op("Mul", [h, g.const(mult, u64)])
    hashes = h
    ids = g.op("Add", [g.op("Cast", [g.op("Mod", [hashes, modulus], fmod=0)], to=T.INT64), g.const(1, np.int64)])
    ids = g.op("Where", [g.op("Less", [lengths, g.const(1, np.int64)]), g.const(0, np.int64), ids], "ids")
    if len(parts) == 1:
        return [ids], hashes
    sizes = g.op("Concat", [g.op("Shape", [n]) for _, n, _, _ in parts], axis=0)
    return g.ops("Split", [ids, sizes], len(parts), "ids", axis=0), hashes


def _fnv_loop(g: _Graph, data: str, primes: str, blocks: str, h: str) -> str:
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


def preprocess_model(encoder: Encoder, layout: InputLayout | None = None, max_bytes: int | None = DEFAULT_MAX_BYTES,
                     ir_version: int | None = None) -> Any:
    """The preprocessing alone as an ONNX model: raw inputs (:func:`raw_contract`) -> the encoded inputs of the
    padded graph (named ``raw/out/<input name>``), plus ``raw/ids/<feature>`` (the bucket ids: (N,) one per row,
    (M,) one per listed id) and ``raw/hashes`` (the uint64 hashes of every id, features in order) for tests."""
    import onnx
    from onnx import TensorProto as T
    from onnx import helper

    contract = raw_contract(encoder, max_bytes)
    layout = layout or layout_for(encoder)
    g = _Graph()
    inputs = []
    for name, spec in contract["inputs"].items():
        dtype = {"float32": T.FLOAT, "uint8": T.UINT8, "int64": T.INT64}[spec["dtype"]]
        inputs.append(helper.make_tensor_value_info(name, dtype, [d if isinstance(d, int) else f"{name}.{d}"
                                                                  for d in spec["shape"]]))
    values, flags, bins = [], [], []
    for d in encoder.dense_features:
        value, flag, bin_id = _dense(g, d)
        values.append(value)
        flags.append(flag)
        if bin_id is not None:
            bins.append(bin_id)
    outputs: dict[str, str] = {}
    if values:
        outputs["dense"] = g.op("Concat", [g.op("Unsqueeze", [v, g.const([1], np.int64)])
                                           for v in values + flags], out=f"{PREFIX}out/dense", axis=1)
    else:  # no dense features: (N, 0) float32, N from the first id input
        first = encoder.sparse_features[0].name
        rows = g.op("Shape", [f"{first}.counts" if encoder.sparse_features[0].separator else f"{first}.lengths"])
        outputs["dense"] = g.op("ConstantOfShape", [g.op("Concat", [rows, g.const([0], np.int64)], axis=0)],
                                out=f"{PREFIX}out/dense", value=helper.make_tensor("zero", T.FLOAT, [1], [0.0]))
    sparse = encoder.sparse_features
    extra: list[Any] = []
    per_input: list[str] = []  # encoded ids of each layout position: (N,) for one per row, (M,) for lists
    if sparse:
        ids, hashes = _hash_ids(g, [(f"{s.name}.bytes", f"{s.name}.lengths", s.seed, s.buckets) for s in sparse],
                                max_bytes)
        for s, i in zip(sparse, ids, strict=True):
            named = g.op("Identity", [i], out=f"{PREFIX}ids/{s.name}")
            extra.append(helper.make_tensor_value_info(named, T.INT64, [f"{s.name}.ids"]))
            per_input.append(named)
        extra.append(helper.make_tensor_value_info(g.op("Identity", [hashes], out=f"{PREFIX}hashes"), T.UINT64,
                                                   ["all_ids"]))
    per_input += bins
    if layout.num_inputs != len(per_input):
        raise ExportError(f"the model has {layout.num_inputs} sparse inputs, the raw encoder gives {len(per_input)}")
    if layout.singles:
        outputs["single_ids"] = g.op("Concat", [g.op("Unsqueeze", [per_input[k], g.const([1], np.int64)])
                                                for k in layout.singles], out=f"{PREFIX}out/single_ids", axis=1)
    for k in layout.lists:
        if k >= len(sparse) or sparse[k].separator is None:
            raise ExportError(f"input {layout.name(k)} is a list in the model but not a sparse list feature")
        outputs[f"ids_{k}"], outputs[f"weights_{k}"] = _pool(g, per_input[k], f"{sparse[k].name}.counts", k)
    out_info = [helper.make_tensor_value_info(v, T.FLOAT if n == "dense" or n.startswith("weights_") else T.INT64,
                                              ["N", f"{n}.width"]) for n, v in outputs.items()]
    graph = helper.make_graph(g.nodes, "shoal_raw_preprocess", inputs, out_info + extra, initializer=g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="shoal")
    if ir_version is not None:
        model.ir_version = ir_version
    onnx.checker.check_model(model)
    return model


def _pool(g: _Graph, flat: str, counts: str, k: int) -> tuple[str, str]:
    """A list input's flat ids (M,) + per-row counts (N,) -> padded ids (N, W) and mean weights (N, W), as
    :func:`shoal.runtime.feed.padded_feed` builds them: a row without ids holds the one id 0 (weight 1)."""
    from onnx import TensorProto as T

    one = g.const([1], np.int64)
    counts_at_least_1 = g.op("Max", [counts, g.const(1, np.int64)])
    width = g.op("ReduceMax", [counts_at_least_1], keepdims=1)  # (1,)
    col = g.op("Unsqueeze", [g.op("Range", [g.const(0, np.int64), g.op("Squeeze", [width]), g.const(1, np.int64)]),
                             g.const([0], np.int64)])  # (1, W)
    starts = g.op("Unsqueeze", [g.op("CumSum", [counts, g.const(0, np.int64)], exclusive=1), one])  # (N, 1)
    real = g.op("Less", [col, g.op("Unsqueeze", [counts, one])])  # (N, W): a listed id
    index = g.op("Where", [real, g.op("Add", [g.op("Add", [starts, col]), g.const(1, np.int64)]),
                           g.const(0, np.int64)])  # into [0, *flat]: 0 picks the reserved id
    padded_from = g.op("Concat", [g.const([0], np.int64), flat], axis=0)
    ids = g.op("Gather", [padded_from, index], out=f"{PREFIX}out/ids_{k}", axis=0)
    share = g.op("Div", [g.const(1.0, np.float32), g.op("Cast", [counts_at_least_1], to=T.FLOAT)])  # float32 1/len
    pooled = g.op("Less", [col, g.op("Unsqueeze", [counts_at_least_1, one])])
    weights = g.op("Where", [pooled, g.op("Unsqueeze", [share, one]), g.const(0.0, np.float32)],
                   out=f"{PREFIX}out/weights_{k}")
    return ids, weights


# -- the export ---------------------------------------------------------------------------------------------------
@dataclass
class RawExportReport:
    """What :func:`export_raw_onnx` wrote, its inputs, and its parity with the Python encoder + PyTorch."""

    path: Path
    contract_path: Path
    inputs: list[str]
    max_bytes: int | None
    form: str
    nodes: int
    parity_rows: int
    max_abs_proba_diff: float
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["path"], d["contract_path"] = str(self.path), str(self.contract_path)
        return d


def export_raw_onnx(bundle_path: str | Path | Bundle, out_path: str | Path | None = None, *,
                    max_bytes: int = DEFAULT_MAX_BYTES, form: str = "unrolled", parity_rows: int = 256,
                    seed: int = 0) -> RawExportReport:
    """Write ``model.raw.onnx`` (raw inputs -> probabilities and logits) and ``raw_inputs.json`` (the contract).

    ``out_path``: a folder (default ``bundle/onnx``) or a ``.onnx`` file (the contract goes beside it).
    ``form``: ``unrolled`` (bytes inputs exactly ``max_bytes`` wide) or ``loop`` (an ONNX Loop, any width).
    The result is checked on ``parity_rows`` synthetic raw rows (missing values, unicode, empty ids) against the
    Python encoder + PyTorch; :class:`ExportError` when a probability differs by more than 1e-5.
    """
    import onnx

    started = time.perf_counter()
    if form not in ("unrolled", "loop"):
        raise ExportError(f"form must be 'unrolled' or 'loop', not {form!r}")
    if max_bytes < 1:
        raise ExportError(f"max_bytes must be at least 1 (got {max_bytes})")
    if isinstance(bundle_path, Bundle):
        if out_path is None:
            raise ExportError("export_raw_onnx(Bundle, ...) needs out_path (or pass the bundle folder instead)")
        bundle, bundle_dir = bundle_path, None
    else:
        bundle_dir = Path(bundle_path)
        bundle = load_bundle(bundle_dir)
    out = Path(out_path) if out_path is not None else Path(bundle_dir or ".") / "onnx"
    path = out if out.suffix == ".onnx" else out / RAW_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    width = max_bytes if form == "unrolled" else None
    contract = raw_contract(bundle.encoder, width)  # refuses text features before any work
    layout = layout_for(bundle.encoder, bundle.model)
    with tempfile.TemporaryDirectory(prefix="shoal-raw-") as tmp:
        traced = Path(tmp) / "model.onnx"
        trace_to_onnx(bundle.model, layout, traced, list(bundle.encoder.buckets), opset=OPSET)
        model = onnx.load(str(traced))
    pre = preprocess_model(bundle.encoder, layout, width, ir_version=model.ir_version)
    merged = _merge(pre, model, contract)
    onnx.checker.check_model(merged)
    onnx.save(merged, str(path))
    contract_path = path.parent / CONTRACT_FILE
    contract_path.write_text(json.dumps(contract, indent=2, default=str) + "\n", encoding="utf-8")
    diff = 0.0
    if parity_rows > 0:
        table = synthetic_raw_rows(bundle.encoder, parity_rows, seed=seed, max_bytes=max_bytes)
        diff = parity(bundle, RawOnnxModel(path), table)
        if not diff <= PARITY_TOLERANCE:
            raise ExportError(f"{path}: probabilities differ from the Python encoder + PyTorch by {diff:.3g} on "
                              f"{parity_rows} synthetic rows (tolerance {PARITY_TOLERANCE}); this is a bug in "
                              "shoal's raw export, please report it")
    return RawExportReport(path=path, contract_path=contract_path, inputs=list(contract["inputs"]),
                           max_bytes=width, form=form, nodes=len(merged.graph.node), parity_rows=parity_rows,
                           max_abs_proba_diff=diff, seconds=time.perf_counter() - started)


def _merge(pre: Any, model: Any, contract: dict[str, Any]) -> Any:
    """The preprocessing in front of the traced model, with ``probabilities`` after its ``logits``."""
    from onnx import TensorProto as T
    from onnx import helper

    model_inputs = [i.name for i in model.graph.input]
    clash = set(contract["inputs"]) & ({n.name for n in model.graph.initializer}
                                        | {o for n in model.graph.node for o in n.output} | set(model_inputs))
    if clash:
        raise ExportError(f"raw input names {sorted(clash)} clash with names inside the model; rename the features")
    inside = {n for node in pre.graph.node for n in node.output} | {t.name for t in pre.graph.initializer}
    if inside & ({t.name for t in model.graph.initializer} | {o for n in model.graph.node for o in n.output}):
        raise ExportError("the preprocessing's value names clash with the model's; this is a bug in shoal")
    # the model's inputs become values the preprocessing computes: Identity nodes (ONNX Runtime removes them)
    bridge = [helper.make_node("Identity", [f"{PREFIX}out/{n}"], [n], name=f"{PREFIX}bridge/{n}")
              for n in model_inputs]
    graph = helper.make_graph([*pre.graph.node, *bridge, *model.graph.node], "shoal_raw", list(pre.graph.input),
                              list(model.graph.output), initializer=[*pre.graph.initializer, *model.graph.initializer])
    merged = helper.make_model(graph, opset_imports=list(model.opset_import), producer_name="shoal")
    merged.ir_version = model.ir_version
    logits = merged.graph.output[0].name
    multiclass = contract["classes"] is not None
    node = (helper.make_node("Softmax", [logits], ["probabilities"], axis=1, name="probabilities") if multiclass
            else helper.make_node("Sigmoid", [logits], ["probabilities"], name="probabilities"))
    merged.graph.node.append(node)
    merged.graph.output.insert(0, helper.make_tensor_value_info("probabilities", T.FLOAT,
                                                                ["N", len(contract["classes"])] if multiclass
                                                                else ["N"]))
    helper.set_model_props(merged, {METADATA_KEY: json.dumps(contract, default=str)})
    return merged


# -- feeding the graph --------------------------------------------------------------------------------------------
def _table(rows: pa.Table | Sequence[Mapping[str, Any]]) -> pa.Table:
    return rows if isinstance(rows, pa.Table) else pa.Table.from_pylist(list(rows))


def _column(table: pa.Table, column: str) -> pa.ChunkedArray:
    if column not in table.column_names:
        raise KeyError(f"the rows have no column {column!r} (the raw model reads {column!r}); send it, null for "
                       "missing")
    return table.column(column)


def _bytes_matrix(text: pa.Array, width: int | None, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(bytes (n, W) uint8, lengths (n,) int64) of a string array; nulls and "" have length 0 (missing)."""
    arr = pc.fill_null(text, "") if text.null_count else text
    if pa.types.is_large_string(arr.type):
        arr = pc.cast(arr, pa.string())
    n = len(arr)
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32, count=n + 1 + arr.offset)[arr.offset:].astype(np.int64)
    buf = arr.buffers()[2]
    data = np.frombuffer(buf, dtype=np.uint8) if buf is not None else np.zeros(0, np.uint8)
    return _pack(data, offsets, width, name)


def _pack(data: np.ndarray, offsets: np.ndarray, width: int | None, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Ids as bytes ``data[offsets[i]:offsets[i + 1]]`` -> (bytes (n, W) uint8 padded with 0, lengths (n,) int64)."""
    n = len(offsets) - 1
    lengths = np.diff(offsets)
    longest = int(lengths.max(initial=0))
    if width is not None and longest > width:
        raise ValueError(f"an id of {name!r} is {longest} bytes long; this raw export reads at most {width} bytes "
                         "per id: re-export with a larger max_bytes")
    w = width if width is not None else max(longest, 1)
    if n == 1:  # serving one row: a copy, no gather
        out = np.zeros((1, w), np.uint8)
        out[0, :longest] = data[offsets[0]: offsets[1]]
        return out, lengths
    pos = np.arange(w)
    inside = pos[None, :] < lengths[:, None]
    index = np.where(inside, offsets[:-1, None] + pos[None, :], 0)
    out = np.where(inside, data[index] if len(data) else 0, 0).astype(np.uint8)
    return out, lengths


_ABSENT = object()
FAST_ROWS = 32  # row dicts up to this many are fed in plain Python (no pyarrow call: ~10x less time at batch 1)


def _fast_feed(rows: Sequence[Mapping[str, Any]], contract: Mapping[str, Any]) -> dict[str, np.ndarray] | None:
    """:func:`raw_feed` of a few row dicts without pyarrow, or None when a cell needs pyarrow's rules (text in a
    dense column, a float or bool id, a column no row has, a value to refuse). ``str.strip()`` trims exactly the
    characters ``utf8_trim_whitespace`` does (the 29 code points Python calls whitespace; the tests check it), and
    an int id's text is its ``str``, as pyarrow's cast writes it."""
    feed: dict[str, np.ndarray] = {}
    width = contract.get("max_bytes")
    for f in contract["features"]:
        column = f["column"]
        cells = [r.get(column, _ABSENT) for r in rows]
        if all(c is _ABSENT for c in cells):
            return None
        names = f["inputs"]
        if f["kind"] == "dense":
            values = np.empty(len(cells), np.float64)
            for i, c in enumerate(cells):
                if c is None or c is _ABSENT:
                    values[i] = np.nan
                elif type(c) is float or (type(c) is int and abs(c) <= 2**53):
                    values[i] = c
                else:
                    return None
            if (np.abs(values) > FLOAT32_MAX).any():  # infinite or beyond float32: raw_feed's error says which
                return None
            feed[names["value"]] = values.astype(np.float32)
            continue
        ids: list[bytes] = []
        counts: list[int] = []
        separator = f.get("separator")
        for c in cells:
            if c is None or c is _ABSENT:
                text = ""
            elif type(c) is str:
                text = c
            elif type(c) is int:
                text = str(c)
            else:
                return None
            try:
                if separator is None:
                    ids.append(text.strip().encode("utf-8"))
                else:
                    items = [t.strip() for t in text.split(separator)] if text else []
                    kept = [t.encode("utf-8") for t in items if t]
                    ids += kept
                    counts.append(len(kept))
            except UnicodeEncodeError:  # a lone surrogate: pyarrow refuses it with its own message
                return None
        offsets = np.zeros(len(ids) + 1, np.int64)
        np.cumsum([len(b) for b in ids], out=offsets[1:])
        feed[names["bytes"]], feed[names["lengths"]] = _pack(np.frombuffer(b"".join(ids), np.uint8), offsets, width,
                                                             f["name"])
        if separator is not None:
            feed[names["counts"]] = np.array(counts, np.int64)
    return feed


def raw_feed(rows: pa.Table | Sequence[Mapping[str, Any]], contract: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The raw model's inputs for ``rows`` (a pyarrow table, or a list of row dicts keyed by column name).

    Does the caller's part of the contract as the encoder does: dense cells as numbers (text parsed; a bad or
    infinite value raises ValueError, where the encoder would leave the row out), ids as trimmed strings, lists
    split on the separator with empty ids dropped.
    """
    if not isinstance(rows, pa.Table) and len(rows) <= FAST_ROWS:
        fast = _fast_feed(rows, contract)
        if fast is not None:
            return fast
    table = _table(rows)
    feed: dict[str, np.ndarray] = {}
    width = contract.get("max_bytes")
    for f in contract["features"]:
        col = _column(table, f["column"])
        names = f["inputs"]
        if f["kind"] == "dense":
            if pa.types.is_null(col.type):  # every cell missing (row dicts with None only)
                feed[names["value"]] = np.full(len(col), np.nan, np.float32)
                continue
            if pa.types.is_floating(col.type) or pa.types.is_integer(col.type):  # numbers: no parsing to do
                values = np.asarray(pc.cast(col, pa.float64()).to_numpy(), dtype=np.float64)
                if not np.isfinite(values[~np.isnan(values)]).all() or (np.abs(values) > FLOAT32_MAX).any():
                    bad = int(np.flatnonzero(np.isinf(values) | (np.abs(values) > FLOAT32_MAX))[0])
                    raise ValueError(f"row {bad}, column {f['column']!r}: {values[bad]!r} is infinite or beyond "
                                     "float32's range (dense feature)")
                feed[names["value"]] = values.astype(np.float32)
                continue
            problems = Problems()
            values = DenseColumn(f["name"], f["column"], 0).read(pa.table({f["column"]: col}), problems)
            if problems.rows:
                bad = int(problems.rows[0][0])
                raise ValueError(f"row {bad}, column {f['column']!r}: {problems.reasons[0]} "
                                 f"(value {problems.values[0][bad].as_py()!r})")
            feed[names["value"]] = values.astype(np.float32)
            continue
        text = as_strings(col, f["column"])
        if f.get("separator") is not None:
            lists = pc.split_pattern(text, f["separator"])
            flat = pc.utf8_trim_whitespace(pc.list_flatten(lists))
            keep = np.asarray(pc.not_equal(flat, "").to_numpy(zero_copy_only=False), dtype=bool)
            parent = pc.list_parent_indices(lists).to_numpy()[keep]
            feed[names["counts"]] = np.bincount(parent, minlength=len(text)).astype(np.int64)
            text = flat.filter(pa.array(keep))
        feed[names["bytes"]], feed[names["lengths"]] = _bytes_matrix(text, width, f["name"])
    return feed


class RawOnnxModel:
    """A raw export served by ONNX Runtime: rows in (a pyarrow table or row dicts), probabilities out.

    The contract is read from the model's metadata, so the ``.onnx`` file is all it needs.
    """

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        from shoal.runtime.onnx import session_options

        path = Path(path)
        if path.is_dir():
            path = path / RAW_FILE if (path / RAW_FILE).is_file() else path / "onnx" / RAW_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist; write it with: shoal export RUN --onnx --raw")
        self.path = path
        self.session = ort.InferenceSession(str(path), session_options(threads), providers=["CPUExecutionProvider"])
        meta = self.session.get_modelmeta().custom_metadata_map
        if METADATA_KEY not in meta:
            raise ValueError(f"{path}: not a shoal raw export (no {METADATA_KEY} metadata)")
        self.contract: dict[str, Any] = json.loads(meta[METADATA_KEY])

    def feed(self, rows: pa.Table | Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
        return raw_feed(rows, self.contract)

    def _run(self, output: str, rows: pa.Table | Sequence[Mapping[str, Any]]) -> np.ndarray:
        if len(rows) == 0:
            classes = self.contract.get("classes")
            return np.zeros((0, len(classes)) if classes else (0,), np.float32)
        return self.session.run([output], self.feed(rows))[0]

    def predict_logits(self, rows: pa.Table | Sequence[Mapping[str, Any]]) -> np.ndarray:
        return self._run("logits", rows)

    def predict_proba(self, rows: pa.Table | Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Probabilities: (N,) for a binary label, (N, C) for a multiclass one (float32, from the graph)."""
        return self._run("probabilities", rows)


# -- checking -----------------------------------------------------------------------------------------------------
def synthetic_raw_rows(encoder: Encoder, rows: int, seed: int = 0, max_bytes: int = DEFAULT_MAX_BYTES) -> pa.Table:
    """Random raw rows for ``encoder``'s columns: float32-exact numbers with ~10% missing (and values around the
    bin edges), ids with unicode, spaces to trim, empty and missing cells, lists of 0..4 ids."""
    rng = np.random.default_rng(seed)
    alphabet = list("abcxyz019 _-é中🙂")
    columns: dict[str, pa.Array] = {}

    def an_id() -> str:
        size = int(rng.integers(1, 12))
        s = "".join(alphabet[i] for i in rng.integers(0, len(alphabet), size))
        while len(s.strip().encode("utf-8")) > max_bytes:
            s = s[:-1]
        return s

    for d in encoder.dense_features:
        values = (rng.standard_normal(rows) * 3 + rng.integers(-1, 3, rows) * rng.exponential(20, rows))
        edges = raw_edges(d)
        finite = edges[np.isfinite(edges)]
        if len(finite):  # some values exactly at a threshold, and one float32 below it
            at = rng.random(rows) < 0.2
            pick = finite[rng.integers(0, len(finite), rows)]
            below = rng.random(rows) < 0.5
            values = np.where(at, np.where(below, np.nextafter(pick, np.float32(-np.inf)), pick), values)
        values = values.astype(np.float32).astype(np.float64)
        values[rng.random(rows) < 0.1] = np.nan
        columns[d.column] = pa.array(values, pa.float64(), from_pandas=True)
    for s in encoder.sparse_features:
        cells: list[str | None] = []
        for _ in range(rows):
            r = rng.random()
            if r < 0.05:
                cells.append(None)
            elif r < 0.08:
                cells.append("" if rng.random() < 0.5 else "  ")
            elif s.separator is not None:
                cells.append(s.separator.join(an_id() for _ in range(int(rng.integers(0, 5)))))
            else:
                cells.append(an_id())
        columns[s.column] = pa.array(cells, pa.string())
    return pa.table(columns)


def parity(bundle: Bundle, model: RawOnnxModel, table: pa.Table) -> float:
    """Max |p(raw graph) - p(encoder + torch)| over the rows of ``table`` (which must all be good rows)."""
    batch = bundle.encoder.encode(Chunk(table, np.arange(1, table.num_rows + 1), "raw rows"), BadRowSink("error"),
                                  with_label=False)
    reference = bundle.predict_proba(batch)
    got = model.predict_proba(table).astype(np.float64)
    return float(np.abs(reference - got).max()) if len(reference) else 0.0
