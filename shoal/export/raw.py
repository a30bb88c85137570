"""An ONNX model whose inputs are the RAW columns: the encoder's preprocessing built into the graph.

:func:`~shoal.export.onnx.export_onnx` writes a graph that starts after the Python encoder (hashed ids,
transformed numbers), so every caller needs shoal's encoder. :func:`export_raw_onnx` puts the encoding of dense,
sparse, text, image and audio features in front of that graph, in standard ONNX ops (opset 18, ``ai.onnx``), so a
caller in any language feeds raw values (decoded pixels and samples for media) and gets probabilities::

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
  both ends, as ``str.strip()`` does; :func:`raw_feed` does it). In the graph: the two polynomial hashes of the bytes
  mod 2^31 - 1 from the feature's seed and the length (one exact float64 ``Gemm``), SplitMix64 of the 62 bits,
  then ``hash % (buckets - 1) + 1`` (:mod:`shoal.data.hashing`).
- sparse ``NAME`` with a ``separator`` (a list per row): ``NAME.bytes`` (M, L) and ``NAME.lengths`` (M,) hold every
  id of the batch, row after row (split on the separator, trimmed, empty ids dropped: the caller's job), and
  ``NAME.counts`` int64 (N,) how many ids each row has; a row with none pools embedding row 0, as the encoder's
  reserved id does. The graph hands them to the model flat (``ids_k`` / ``weights_k`` / ``rows_k``, the form of
  :mod:`shoal.runtime.feed`), as it does a text bag's n-gram ids: nothing is padded.
- time ``NAME``: ``NAME.instant`` int64 (N,): microseconds since 1970-01-01Z (int64's smallest value: missing),
  and for a feature in a zone other than UTC ``NAME.offset`` int64 (N,), the zone's UTC offset in seconds at that
  instant: reading the text and the zone's rules are the caller's job. The graph computes the calendar ids and the
  ages in integers (:mod:`shoal.export.raw_time`).
- text ``NAME``: ``NAME.bytes`` uint8 (N, W): each text's UTF-8 bytes as they are (not trimmed), zero-padded, W
  free; ``NAME.lengths`` int64 (N,), 0 or -1 for an empty or missing text. The graph cuts each text to the
  feature's ``max_bytes`` and computes the byte / word n-gram ids or the byte sequence bit for bit
  (:mod:`shoal.export.raw_text`).
- image ``NAME``: ``NAME.pixels`` uint8 (N, h, w, C): each image decoded (the caller's job, as UTF-8 is for text)
  and converted to grey or RGB, top-left aligned and zero-padded to the batch's largest; ``NAME.sizes`` int64 (N, 2)
  each image's (height, width). The graph resizes with Pillow's bilinear filter bit for bit, then / 255 and
  normalises: the encoder's pixels exactly (:mod:`shoal.export.raw_media`).
- audio ``NAME``: ``NAME.wave`` float32 (N, S): samples at the feature's rate (decoding and resampling are the
  caller's job); ``NAME.lengths`` int64 (N,). The graph cuts or pads to ``seconds`` and computes the log-mel
  spectrogram (DFT as a ``Conv``, mel ``MatMul``, ``Log``) within 1e-3 of the encoder's (float32 sums reordered).
  A missing or undecodable image or sound is a bad row: :func:`raw_feed` raises ValueError for it.

The pieces live beside this module: :mod:`.raw_graph` (the graph builder, SplitMix64, pooling), :mod:`.raw_ids`
(the id hash), :mod:`.raw_text` (text features), :mod:`.raw_media` (image and audio features), :mod:`.raw_feed`
(:func:`raw_feed`: raw rows -> the inputs) and :mod:`.raw_bytes` (ids packed as bytes + lengths).

``L`` is the export's ``max_bytes``: with the default ``form="unrolled"`` the bytes inputs have that fixed width
(ONNX Runtime refuses any other width: a longer id is refused, never silently cut) and the bases' powers are a
constant of ``L`` rows; with ``form="loop"`` the width is whatever the caller sends, up to
:data:`~shoal.export.raw_ids.ANY_WIDTH_MAX` bytes (the powers sliced to it; the cost follows the longest id of the
batch). All id features of a batch go through one hashing chain (their bytes concatenated), so the
graph's size does not grow with the number of features. Outputs: ``logits`` and ``probabilities`` ((N,) binary,
(N, C) multiclass).
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from shoal.artifacts.bundle import Bundle, load_bundle
from shoal.data.encoder import Encoder
from shoal.data.features import DenseColumn, Problems
from shoal.data.features.media import cell_bytes, data_folder
from shoal.data.readers import BadRowSink, Chunk
from shoal.export.onnx import ExportError
from shoal.export.padded import layout_for, trace_to_onnx
from shoal.export.raw_bound import BoundRows
from shoal.export.raw_feed import raw_feed
from shoal.export.raw_graph import OPSET, PREFIX, GraphBuilder, bag, flat_lookups, signed_log1p
from shoal.export.raw_ids import ANY_WIDTH_MAX, ML_DOMAIN, ML_OPSET, hash_ids, vocab_keys
from shoal.export.raw_media import (
    media_contract,
    media_graph,
    synthetic_media,
    usual_image_size,
    vertical_first_rule,
)
from shoal.export.raw_text import synthetic_texts, text_contract, text_graph
from shoal.export.raw_time import synthetic_times, time_contract, time_graph
from shoal.runtime.feed import InputLayout
from shoal.runtime.onnx import run_session

__all__ = ["ANY_WIDTH_MAX", "DEFAULT_MAX_BYTES", "OPSET", "RAW_FILE", "RAW_FORMAT", "RawExportReport", "RawOnnxModel",
           "choose_form", "export_raw_onnx", "preprocess_model", "raw_contract", "raw_edges", "raw_feed",
           "synthetic_raw_rows", "time_raw_graphs", "timing_rows", "usual_sizes"]

log = logging.getLogger(__name__)

RAW_FILE = "model.raw.onnx"
CONTRACT_FILE = "raw_inputs.json"
RAW_FORMAT = "shoal-raw-onnx"
# 4: time features; an audio feature's wave alone, zero-padded (3 also took NAME.lengths, a mask); 3: image and
# audio features;
# 2: text features (NAME.bytes + NAME.lengths); 1: dense and sparse
RAW_VERSION = 4
TEXT_VERSION = 2  # the version of a contract without media or time inputs (exports written before stay valid)
METADATA_KEY = "shoal.raw_inputs"
DEFAULT_MAX_BYTES = 64  # id bytes per row the unrolled hash reads; longer ids are refused (re-export with more)
FORMS = ("unrolled", "loop", "auto")
FORM_BATCHES = (1, 256)  # the batch sizes form="auto" times
PARITY_TOLERANCE = 1e-5  # max |p(raw graph) - p(Python encoder + torch)| on synthetic raw rows
VALUE_TOLERANCE = 1e-4  # a regression label's values, in its standard deviations: fp32 sums reordered, as logits


# -- the contract -----------------------------------------------------------------------------------------------
def raw_contract(encoder: Encoder, max_bytes: int | None = DEFAULT_MAX_BYTES) -> dict[str, Any]:
    """The input contract of a raw export of ``encoder`` (plain JSON): the features in graph order and, per ONNX
    input, its dtype, shape, missing value and an example. ``max_bytes`` None: bytes inputs of any width (Loop).

    Raises :class:`ExportError` for a feature of a kind (or a text ``tokens`` mode) the raw graph does not compute.
    """
    known = (set(map(id, encoder.dense_features)) | set(map(id, encoder.sparse_features))
             | set(map(id, encoder.text_features)) | set(map(id, encoder.media_features))
             | set(map(id, encoder.time_features)))
    other = [f.name for f in encoder.features if id(f) not in known]
    if other:
        raise ExportError(f"features {other} are of a kind the raw export does not know")
    width: Any = max_bytes if max_bytes is not None else "L"
    features: list[dict[str, Any]] = []
    inputs: dict[str, dict[str, Any]] = {}
    for d in encoder.dense_features:
        features.append({"name": d.name, "kind": "dense", "column": d.column, "transform": d.transform,
                         "bins": d.bins, **d.number.options(), "inputs": {"value": d.name}})  # how text reads
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
        vocab = {} if s.vocab is None else {"encoding": "vocab", "vocab_size": s.vocab.size}  # hashed: as before
        features.append({"name": s.name, "kind": "sparse", "column": s.column, "separator": s.separator,
                         "buckets": s.buckets, "seed": s.seed, **vocab, "inputs": names})
    for t in encoder.text_features:  # NAME.bytes (N, W) + NAME.lengths (N,): see shoal.export.raw_text
        feature, text_inputs = text_contract(t)
        features.append(feature)
        inputs |= text_inputs
    media = encoder.media_features
    vertical_first = any(m.kind == "image" for m in media) and vertical_first_rule()
    for m in media:  # decoded pixels + sizes, or samples + lengths: see shoal.export.raw_media
        feature, media_inputs = media_contract(m, vertical_first)
        features.append(feature)
        inputs |= media_inputs
    for tc in encoder.time_features:  # instants + the zone's offsets: see shoal.export.raw_time
        feature, time_inputs = time_contract(tc)
        features.append(feature)
        inputs |= time_inputs
    if len(inputs) != sum(len(f["inputs"]) for f in features):
        raise ExportError("two features give the same raw input name; rename one (e.g. 'x' and a sparse 'x.bytes')")
    return {"format": RAW_FORMAT, "version": RAW_VERSION if media or encoder.time_features else TEXT_VERSION,
            "opset": OPSET,
            "max_bytes": max_bytes, "features": features, "inputs": inputs,
            "outputs": ({"predictions": "(N, T): per task, the probability of a binary task (a sigmoid), the value of "
                                        "a regression one (in its label's units)",
                         "logits": "the same shape: a binary task's logit, a regression task's value"}
                        if encoder.multitask else
                        {"predictions": "(N,) the predicted values, in the label's units",
                         "logits": "the same values (a regression model has no link function)"} if encoder.regression
                        else {"probabilities": "(N,) sigmoid for a binary label, (N, C) softmax for a multiclass one, "
                                               "(N, T) a sigmoid per tag for a multilabel one",
                              "logits": "the same shape, before the sigmoid/softmax"}),
            "classes": list(encoder.classes_) if encoder.multiclass else None, "task": encoder.task,
            **({"tags": list(encoder.classes_)} if encoder.multilabel else {}),
            **({"tasks": [{"name": t.column, "kind": t.kind} for t in encoder.label.tasks]}
               if encoder.multitask and encoder.label is not None and encoder.label.tasks else {})}


# -- graph building -----------------------------------------------------------------------------------------------
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


def _dense(g: GraphBuilder, cols: Sequence[DenseColumn]) -> tuple[str, str, list[str]]:
    """(values (N, D) float32, missing flags (N, D) float32, bin ids [(N,) int64 per binned column]) of the dense
    inputs, all columns at once: a handful of nodes whatever D (one per column per op made batch 1 pay ~0.5 us a
    node). Each column's arithmetic is the one :meth:`DenseColumn.transformed` does, elementwise in float64."""
    from onnx import TensorProto as T

    for col in cols:
        if col.transform not in ("log1p", "standardize", "none"):
            raise ExportError(f"dense feature {col.name!r}: transform {col.transform!r} is not in the raw export")
    d = len(cols)
    raw = g.op("Transpose", [g.op("Reshape", [g.op("Concat", [c.name for c in cols], axis=0), g.i64([d, -1])])],
               "dense_raw", perm=[1, 0])  # (N, D) float32
    v = g.op("Cast", [raw], "as_double", to=T.DOUBLE)
    logs = [c.transform == "log1p" for c in cols]
    if any(c.transform == "standardize" for c in cols):  # (v - mean) / std; 0 and 1 leave the others as they are
        mean = [c.mean_ if c.transform == "standardize" else 0.0 for c in cols]
        std = [c.std_ if c.transform == "standardize" else 1.0 for c in cols]
        scaled = g.op("Div", [g.op("Sub", [v, g.const([mean], np.float64, "mean")]), g.const([std], np.float64, "std")],
                      "std")
    else:
        scaled = v
    if any(logs):
        logged = signed_log1p(g, v, of_float32=True)
        scaled = logged if all(logs) else g.op("Where", [g.const([logs], np.bool_, "is_log1p"), logged, scaled])
    missing = g.op("IsNaN", [scaled])
    values = g.op("Cast", [g.op("Where", [missing, g.const(0.0, np.float64), scaled])], "values", to=T.FLOAT)
    flags = g.op("Cast", [missing], "missing", to=T.FLOAT)
    binned = [k for k, c in enumerate(cols) if c.bins]
    if not binned:
        return values, flags, []
    edges = [raw_edges(cols[k]) for k in binned]
    width = max(1, *(len(t) for t in edges))  # NaN pads: a value is never >= NaN
    grid = np.full((1, len(binned), width), np.nan, np.float32)
    for j, t in enumerate(edges):
        grid[0, j, :len(t)] = t
    x = g.op("Gather", [raw, g.i64(binned)], "binned", axis=1)  # (N, B) raw float32
    above = g.op("GreaterOrEqual", [g.op("Unsqueeze", [x, g.i64([2])]), g.const(grid, np.float32, "edges")])
    count = g.op("ReduceSum", [g.op("Cast", [above], to=T.INT64), g.i64([2])], keepdims=0)  # (N, B)
    ids = g.op("Where", [g.op("IsNaN", [x]), g.const(0, np.int64), g.op("Add", [count, g.const(1, np.int64)])], "bins")
    parts = [ids] if len(binned) == 1 else g.ops("Split", [ids], len(binned), "bin", axis=1, num_outputs=len(binned))
    return values, flags, [g.op("Squeeze", [p, g.i64([1])], "bin") for p in parts]


def preprocess_model(encoder: Encoder, layout: InputLayout | None = None, max_bytes: int | None = DEFAULT_MAX_BYTES,
                     ir_version: int | None = None, usual_sizes: Mapping[str, tuple[int, int]] | None = None) -> Any:
    """The preprocessing alone as an ONNX model: raw inputs (:func:`raw_contract`) -> the inputs of the traced
    graph (named ``raw/out/<input name>``; bags flat, byte sequences padded: ``layout_for(encoder, flat=True)``),
    plus ``raw/ids/<feature>`` (the bucket ids: (N,) one per row, (M,) one per listed id or text id: the encoder's
    flat ids) and ``raw/hashes`` (the uint64 hashes of every id, features in the order hashed: the one-id-per-row
    ones first when none has a vocabulary, then the others, each in config order) for tests. ``usual_sizes``: the
    (height, width) most images of an image feature arrive at (:func:`usual_sizes`), resized with constant
    weights."""
    import onnx
    from onnx import TensorProto as T
    from onnx import helper

    contract = raw_contract(encoder, max_bytes)
    layout = layout or layout_for(encoder, flat=True)
    bags = set(layout_for(encoder, flat=True).flat)
    if set(layout.flat) != bags:
        raise ExportError(f"the raw graph takes inputs {sorted(bags)} flat, the layout {sorted(layout.flat)}; "
                          "build it with layout_for(encoder, flat=True)")
    g = GraphBuilder()
    inputs = []
    for name, spec in contract["inputs"].items():
        dtype = {"float32": T.FLOAT, "uint8": T.UINT8, "int64": T.INT64}[spec["dtype"]]
        inputs.append(helper.make_tensor_value_info(name, dtype, [d if isinstance(d, int) else f"{name}.{d}"
                                                                  for d in spec["shape"]]))
    dense = encoder.dense_features
    values, flags, bins = _dense(g, dense) if dense else ("", "", [])
    outputs: dict[str, str] = {}
    vertical_first = any(f.get("vertical_first", False) for f in contract["features"])
    usual = usual_sizes or {}
    blocks = [media_graph(g, m, vertical_first, usual.get(m.name))  # (N, C*H*W) each, config order
              for m in encoder.media_features]
    ages, age_flags, time_ids = time_graph(g, encoder.time_features) if encoder.time_features else ([], [], [])
    # [values | ages | missing flags | the ages' flags | media blocks], as Encoder.encode lays them out
    parts = ([values] if dense else []) + ages + ([flags] if dense else []) + age_flags + blocks
    if parts:
        outputs["dense"] = (g.op("Concat", parts, out=f"{PREFIX}out/dense", axis=1) if len(parts) > 1
                            else g.op("Identity", parts, out=f"{PREFIX}out/dense"))  # one block: ORT drops it
    else:  # no dense, age nor media features: (N, 0) float32, N from the first id, text or time input
        first = [*encoder.sparse_features, *encoder.text_features]
        per_row = ((f"{first[0].name}.counts" if getattr(first[0], "separator", None) else f"{first[0].name}.lengths")
                   if first else f"{encoder.time_features[0].name}.instant")
        rows = g.op("Shape", [per_row])
        outputs["dense"] = g.op("ConstantOfShape", [g.op("Concat", [rows, g.const([0], np.int64)], axis=0)],
                                out=f"{PREFIX}out/dense", value=helper.make_tensor("zero", T.FLOAT, [1], [0.0]))
    sparse = encoder.sparse_features
    extra: list[Any] = [helper.make_tensor_value_info(b, T.FLOAT, ["N", f"{m.name}.size"])
                        for m, b in zip(encoder.media_features, blocks, strict=True)]
    per_input: list[str] = []  # encoded ids of each layout position: (N,) for one per row, (M,) for lists
    block = None  # the ids of every one-per-row sparse feature, side by side, when they are all hashed
    singles = [k for k, s in enumerate(sparse) if s.separator is None]
    if sparse:
        vocabularies = [vocab_keys(s) for s in sparse]
        together = bool(singles) and all(vocabularies[k] is None for k in singles)
        order = singles + [k for k in range(len(sparse)) if k not in singles] if together else list(range(len(sparse)))
        hashed, hashes, block = hash_ids(
            g, [(f"{sparse[k].name}.bytes", f"{sparse[k].name}.lengths", sparse[k].seed, sparse[k].buckets)
                for k in order], max_bytes, [vocabularies[k] for k in order],
            [sparse[k].separator is None for k in order], lead=len(singles) if together else 0)
        ids = [hashed[order.index(k)] for k in range(len(sparse))]
        for s, i in zip(sparse, ids, strict=True):
            named = g.op("Identity", [i], out=f"{PREFIX}ids/{s.name}")
            extra.append(helper.make_tensor_value_info(named, T.INT64, [f"{s.name}.ids"]))
            per_input.append(named)
        extra.append(helper.make_tensor_value_info(g.op("Identity", [hashes], out=f"{PREFIX}hashes"), T.UINT64,
                                                   ["all_ids"]))
    texts: dict[int, dict[str, str]] = {}  # layout position -> the model inputs of each text feature
    for j, t in enumerate(encoder.text_features):
        k = len(sparse) + j
        texts[k], flat = text_graph(g, t, k)
        extra.append(helper.make_tensor_value_info(flat, T.INT64, [f"{t.name}.ids"]))
        per_input.append(flat)
    per_input += bins + time_ids  # the bins of binned numbers, then each time feature's parts, as the encoder's
    if layout.num_inputs != len(per_input):
        raise ExportError(f"the model has {layout.num_inputs} sparse inputs, the raw encoder gives {len(per_input)}")
    if layout.singles:
        # (N,) each -> (N, K): one Concat, Reshape and Transpose, not an Unsqueeze per input; the hashed sparse ids
        # (layout.singles starts with them, in order) come as the one block they were hashed as
        if block is not None and list(layout.singles[:len(singles)]) == singles:
            others = [per_input[k] for k in layout.singles[len(singles):]]
            flat = g.op("Concat", [block, *others], axis=0) if others else block
        else:
            flat = g.op("Concat", [per_input[k] for k in layout.singles], axis=0)
        outputs["single_ids"] = g.op("Transpose", [g.op("Reshape", [flat, g.i64([len(layout.singles), -1])])],
                                     out=f"{PREFIX}out/single_ids", perm=[1, 0])
    for k in layout.lists:
        if k in texts:
            outputs |= texts[k]
            continue
        if k >= len(sparse) or sparse[k].separator is None:
            raise ExportError(f"input {layout.name(k)} is a list in the model but not a sparse list or text feature")
        outputs |= bag(g, per_input[k], f"{sparse[k].name}.counts", k)
    flat_names = {f"{x}_{k}" for k in layout.flat for x in ("ids", "weights", "rows")}  # (M,); the others (N, .)
    out_info = [helper.make_tensor_value_info(v, T.FLOAT if n == "dense" or n.startswith("weights_") else T.INT64,
                                              [f"{n}.count"] if n in flat_names else ["N", f"{n}.width"])
                for n, v in outputs.items()]
    graph = helper.make_graph(g.nodes, "shoal_raw_preprocess", inputs, out_info + extra, initializer=g.inits)
    opsets = [helper.make_opsetid("", OPSET)] + ([helper.make_opsetid(ML_DOMAIN, ML_OPSET)]
                                                 if any(s.vocab is not None for s in sparse) else [])
    model = helper.make_model(graph, opset_imports=opsets, producer_name="shoal")
    if ir_version is not None:
        model.ir_version = ir_version
    onnx.checker.check_model(model)
    return model


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
    max_abs_proba_diff: float  # on parity_rows synthetic rows
    own_rows_diff: float  # on the run's own rows (held-out, validation, test or training), where they read
    own_rows_source: str  # where those rows came from; "" when none read (a bundle moved without its data)
    seconds: float
    form_ms: dict[str, dict[str, float]] = field(default_factory=dict)  # form="auto": median ms by batch size
    usual_sizes: dict[str, tuple[int, int]] = field(default_factory=dict)  # image feature -> its usual (h, w)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["path"], d["contract_path"] = str(self.path), str(self.contract_path)
        return d


def export_raw_onnx(bundle_path: str | Path | Bundle, out_path: str | Path | None = None, *,
                    max_bytes: int = DEFAULT_MAX_BYTES, form: str = "unrolled", parity_rows: int = 256,
                    seed: int = 0) -> RawExportReport:
    """Write ``model.raw.onnx`` (raw inputs -> probabilities and logits) and ``raw_inputs.json`` (the contract).

    ``out_path``: a folder (default ``bundle/onnx``) or a ``.onnx`` file (the contract goes beside it).
    ``form``: ``unrolled`` (bytes inputs exactly ``max_bytes`` wide), ``loop`` (an ONNX Loop, any width) or
    ``auto`` (both built and timed end to end on raw rows at batch 1 and 256, :func:`choose_form`; the faster is
    written, the timings go in the report; with no id features there is one form: ``unrolled``).
    The result is checked on ``parity_rows`` synthetic raw rows (missing values, unicode, empty ids) against the
    Python encoder + PyTorch; :class:`ExportError` when a probability differs by more than 1e-5.
    """
    import onnx

    started = time.perf_counter()
    if form not in FORMS:
        raise ExportError(f"form must be one of {', '.join(FORMS)}, not {form!r}")
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
    contract = raw_contract(bundle.encoder, max_bytes if form != "loop" else None)  # refusals before any work
    layout = layout_for(bundle.encoder, bundle.model, flat=True)  # bags flat: nothing padded
    usual = usual_sizes(bundle) if bundle.encoder.media_features else {}
    with tempfile.TemporaryDirectory(prefix="shoal-raw-") as tmp:
        traced = Path(tmp) / "model.onnx"
        trace_to_onnx(bundle.model, layout, traced, list(bundle.encoder.buckets), opset=OPSET)
        model = onnx.load(str(traced))
        # auto: both forms where ids are hashed (the part the form changes); with no sparse feature they are one
        forms = [form] if form != "auto" else ["unrolled", "loop"] if bundle.encoder.sparse_features else ["unrolled"]
        built: dict[str, tuple[Any, dict[str, Any]]] = {}
        for f in forms:
            width = max_bytes if f == "unrolled" else None
            shaped = raw_contract(bundle.encoder, width)
            merged = _merge(preprocess_model(bundle.encoder, layout, width, ir_version=model.ir_version,
                                             usual_sizes=usual), model, shaped)
            onnx.checker.check_model(merged)
            built[f] = merged, shaped
        timings: dict[str, dict[int, float]] = {}
        own: tuple[pa.Table, str] | None = None  # the run's own rows, read once: timed on, then checked on
        if len(built) > 1:
            files = {f: Path(tmp) / f"{f}.onnx" for f in built}
            for f, (merged, _) in built.items():
                onnx.save(merged, str(files[f]))
            own = _timing_rows(bundle, bundle_dir)
            timings = time_raw_graphs({f: RawOnnxModel(p) for f, p in files.items()}, own[0])
        form = choose_form(timings) if timings else forms[0]
        merged, contract = built[form]
        width = contract.get("max_bytes")
    # checked under another name, then moved into place: a graph that fails its parity is never served
    staged = path.with_name(path.stem + ".checking.onnx")
    onnx.save(merged, str(staged))
    contract_path = path.parent / CONTRACT_FILE
    diff, real, source = 0.0, 0.0, ""
    try:
        if parity_rows > 0:
            tolerance = VALUE_TOLERANCE if bundle.encoder.regression else PARITY_TOLERANCE
            checked = RawOnnxModel(staged)
            table = synthetic_raw_rows(bundle.encoder, parity_rows, seed=seed, max_bytes=max_bytes,
                                       usual_sizes=usual)
            diff = parity(bundle, checked, table)
            if not diff <= tolerance:
                _refuse(staged, path, f"{diff:.3g} on {parity_rows} synthetic rows (tolerance {tolerance})")
            if bundle_dir is not None:  # and on the run's own rows (real ids, texts, images, sounds) where they read
                rows, source = _own_rows(bundle, bundle_dir, parity_rows, checked, own)
                if source == "synthetic":
                    source = ""
                else:
                    real = parity(bundle, checked, rows)
                    if not real <= tolerance:
                        _refuse(staged, path, f"{real:.3g} on {rows.num_rows} rows of {source} "
                                              f"(tolerance {tolerance})")
        contract_path.write_text(json.dumps(contract, indent=2, default=str) + "\n", encoding="utf-8")
        staged.replace(path)
    finally:
        staged.unlink(missing_ok=True)  # an error on the way: nothing half-checked left behind
    return RawExportReport(path=path, contract_path=contract_path, inputs=list(contract["inputs"]),
                           max_bytes=width, form=form, nodes=len(merged.graph.node), parity_rows=parity_rows,
                           max_abs_proba_diff=diff, own_rows_diff=real, own_rows_source=source,
                           seconds=time.perf_counter() - started,
                           form_ms={f: {str(b): ms for b, ms in t.items()} for f, t in timings.items()},
                           usual_sizes=usual)


def _refuse(staged: Path, path: Path, by: str) -> None:
    """A graph whose outputs differ from the Python path ``by`` that much: kept as ``*.failed.onnx`` to inspect,
    and no ``path`` left beside the bundle (an earlier export's too: serve and predict must not pick it)."""
    failed = path.with_name(path.stem + ".failed.onnx")
    staged.replace(failed)
    for old in (path, path.parent / CONTRACT_FILE):
        old.unlink(missing_ok=True)
    raise ExportError(f"{path.name}: outputs differ from the Python encoder + PyTorch by {by}; this is a bug in "
                      f"shoal's raw export, please report it. The graph is kept to inspect as {failed}; nothing "
                      "answers from it")


def usual_sizes(bundle: Bundle, rows: int = 256) -> dict[str, tuple[int, int]]:
    """Each image feature's usual decoded (height, width) (:func:`~shoal.export.raw_media.usual_image_size`) among
    the first ``rows`` rows of the config's validation, test or training file (the first that reads), paths read
    from the file's folder as the encoder reads them; none when no file reads (a bundle moved without its data)."""
    from shoal.data.features.image import ImageColumn
    from shoal.data.features.media import data_folder

    images = [m for m in bundle.encoder.media_features if isinstance(m, ImageColumn)]
    for path, read in _data_files(bundle, rows, [m.column for m in images]) if images else []:
        try:
            chunk = read()
        except Exception as err:  # unreadable: try the next file
            log.warning("could not read image sizes from %s: %s", path, err)
            continue
        base = data_folder(chunk.file)
        found = {m.name: usual_image_size(m, chunk.table.column(m.column).to_pylist(), base) for m in images}
        return {name: size for name, size in found.items() if size is not None}
    return {}


def _timing_rows(bundle: Bundle, folder: Path | None) -> tuple[pa.Table, str]:
    """Raw rows to time the forms on, and where they came from: the run's own (held-out, validation, test or
    training rows, so the ids have their real lengths), else synthetic ones."""
    if folder is not None:
        return timing_rows(bundle, folder, FORM_BATCHES[-1])
    return synthetic_raw_rows(bundle.encoder, FORM_BATCHES[-1]), "synthetic"


def _own_rows(bundle: Bundle, folder: Path, rows: int, model: RawOnnxModel,
              read: tuple[pa.Table, str] | None) -> tuple[pa.Table, str]:
    """Up to ``rows`` of the run's own rows that ``model`` takes (:func:`timing_rows` with that check): those
    already ``read`` for timing when the model takes them (the same first source), else read again."""
    if read is not None and read[1] != "synthetic" and rows <= FORM_BATCHES[-1]:  # the timing read covers them
        table = read[0].slice(0, rows)
        try:
            model.predict_proba(table)
            return table, read[1]
        except Exception:  # noqa: BLE001 - rows the graph cannot take: timing_rows looks further, as it would
            pass
    return timing_rows(bundle, folder, rows, model.predict_proba)


def _data_files(bundle: Bundle, rows: int, columns: list[str]) -> list[tuple[Path, Callable[[], Chunk]]]:
    """The config's validation, test and training files that exist, in that order, each with a call reading its
    first ``rows`` rows of ``columns`` (bad rows counted, not raised)."""
    found: list[tuple[Path, Callable[[], Chunk]]] = []
    for split in ("valid", "test", "train"):
        try:
            where = bundle.config.data.file(split)
        except ValueError:
            continue
        if where is not None and where[0].exists():
            path, options = where
            found.append((path, partial(_first_chunk, path, options.model_copy(update={"chunk_rows": rows}),
                                        columns)))
    return found


def _first_chunk(path: Path, options: Any, columns: list[str]) -> Chunk:
    from shoal.data.stream import chunks

    return next(chunks(path, options, columns, BadRowSink("count")))


def timing_rows(bundle: Bundle, folder: Path, rows: int,
                check: Callable[[pa.Table], Any] | None = None) -> tuple[pa.Table, str]:
    """Up to ``rows`` raw rows to time on, and where they came from: the run's held-out split or the config's
    validation, test and training files (rows the encoder refuses left out; a source whose rows ``check`` raises
    for, e.g. a raw graph that cannot take them, skipped), else synthetic rows."""
    from shoal.data.split import HeldOutSplit

    encoder = bundle.encoder
    columns = encoder.columns(with_label=False)

    def usable(chunk: Chunk) -> pa.Table | None:
        batch = encoder.encode(chunk, BadRowSink("count"), with_label=False)
        table = chunk.table.select(columns).filter(pa.array(np.isin(chunk.lines, batch.lines)))
        table = _as_requests(_media_as_bytes(table, encoder, data_folder(chunk.file)), encoder)
        if check is not None:
            check(table.slice(0, 1))  # raises ValueError for a table the graph cannot take
        return table if table.num_rows else None

    held = HeldOutSplit(folder.parent)
    sources: list[tuple[str, Any]] = []
    if held.exists():
        sources.append((str(held.path), lambda: next(held.chunks(rows))))
    sources += [(str(path), read) for path, read in _data_files(bundle, rows, columns)]
    for name, read in sources:
        try:
            table = usable(read())
            if table is not None:
                if check is not None:
                    check(table)
                return table.slice(0, rows), name
        except Exception as err:  # unreadable, or rows the graph cannot take: try the next source
            log.warning("could not time on rows of %s: %s", name, err)
    return synthetic_raw_rows(encoder, rows), "synthetic"


def _as_requests(table: pa.Table, encoder: Encoder) -> pa.Table:
    """``table`` with the numbers of a CSV file's columns (strings as read) as numbers, as a JSON request holds
    them: a column read only as a number becomes float64 (a string number takes the row feed's slower general
    path: timed so, a CSV-trained bundle's batch-1 latency read ~14x its served one); a column also read as ids
    becomes int64 when its values are whole numbers (a request's integers there take the one-row feed), else
    stays as read."""
    ids = {s.column for s in encoder.sparse_features} | {t.column for t in encoder.time_features}
    done: set[str] = set()
    for d in encoder.dense_features:
        column = table.column(d.column)
        if d.column in done or not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            continue
        done.add(d.column)
        values = d.read(table, Problems())  # the encoder's parse: NaN for missing (the rows are good ones)
        if d.column not in ids:
            typed = pa.array(values, pa.float64(), from_pandas=True)
        else:
            known = values[~np.isnan(values)]
            if not np.all((known == np.round(known)) & (np.abs(known) < 2**53)):
                continue
            typed = pa.array(np.nan_to_num(values).astype(np.int64), pa.int64(), mask=np.isnan(values))
        table = table.set_column(table.column_names.index(d.column), d.column, typed)
    return table


def _media_as_bytes(table: pa.Table, encoder: Encoder, base: Path) -> pa.Table:
    """``table`` with each media column's cells as the encoded files' bytes (the raw graph takes bytes or base64,
    never a path: a caller reads the file): paths read from ``base``, as the encoder reads them."""
    for m in encoder.media_features:
        column = table.column(m.column)
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            cells = [None if v is None else cell_bytes(v, base) for v in column.to_pylist()]
            table = table.set_column(table.column_names.index(m.column), m.column, pa.array(cells, pa.binary()))
    return table


def time_raw_graphs(models: Mapping[str, RawOnnxModel], rows: pa.Table, batches: Sequence[int] = FORM_BATCHES,
                    repeats: int = 15) -> dict[str, dict[int, float]]:
    """The median milliseconds of raw rows -> probabilities (:func:`raw_feed` + the session) of each model for each
    of ``batches`` rows (row dicts up to 32 rows, as a request arrives; a table above, as ``shoal predict`` reads).

    The models are timed call by call in turn, the order reversed every call, so a stretch of a busy machine
    slows them alike: timed one after the other, a shared machine's slow spell of a second or two decides."""
    out: dict[str, dict[int, float]] = {name: {} for name in models}
    for b in batches:
        batch = rows.take(np.arange(b) % rows.num_rows)
        feed_rows: pa.Table | list[dict[str, Any]] = batch.to_pylist() if b <= 32 else batch
        for model in models.values():
            model.predict_proba(feed_rows)  # warm-up: the session's first run allocates
        times: dict[str, list[float]] = {name: [] for name in models}
        order = list(models)
        for _ in range(repeats if b > 1 else 10 * repeats):
            for name in order:
                t0 = time.perf_counter()
                models[name].predict_proba(feed_rows)
                times[name].append(time.perf_counter() - t0)
            order.reverse()
        for name in models:
            out[name][b] = float(np.median(times[name]) * 1e3)
    return out


def choose_form(timings: Mapping[str, Mapping[int, float]]) -> str:
    """The form whose time, relative to the others', is lowest over the batch sizes (the geometric mean of its
    ratios to the first form, so batch 1 and batch 256 count alike); a tie keeps the first (``unrolled``)."""
    forms = list(timings)
    base = timings[forms[0]]

    def score(f: str) -> float:
        ratios = [timings[f][b] / max(base[b], 1e-9) for b in base]
        return float(np.exp(np.mean(np.log(ratios))))

    return min(forms, key=lambda f: (round(score(f), 3), forms.index(f)))


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
    lookups, flat_tables = flat_lookups(list(model.graph.node), list(model.graph.initializer))
    nodes = _needed([*pre.graph.node, *bridge, *lookups], [o.name for o in model.graph.output])
    used = {i for n in nodes for i in n.input} | {i for n in nodes for a in n.attribute if a.g for i in _free(a.g)}
    graph = helper.make_graph(nodes, "shoal_raw", list(pre.graph.input), list(model.graph.output),
                              initializer=[t for t in [*pre.graph.initializer, *model.graph.initializer,
                                                       *flat_tables] if t.name in used])
    domains = {o.domain for o in model.opset_import}
    merged = helper.make_model(graph, opset_imports=list(model.opset_import) + [
        o for o in pre.opset_import if o.domain not in domains], producer_name="shoal")
    merged.ir_version = model.ir_version
    logits = merged.graph.output[0].name
    multiclass = contract["classes"] is not None
    tags = contract.get("tags") if contract.get("task") == "multilabel" else None  # a sigmoid per tag
    tasks = contract.get("tasks") if contract.get("task") == "multitask" else None  # a sigmoid per binary task
    first = _first_output(contract)
    if tasks:
        binary = helper.make_tensor(f"{PREFIX}binary_tasks", T.BOOL, [len(tasks)],
                                    [t["kind"] == "binary" for t in tasks])
        merged.graph.initializer.append(binary)
        merged.graph.node.extend([
            helper.make_node("Sigmoid", [logits], [f"{PREFIX}task_sigmoid"], name=f"{PREFIX}task_sigmoid"),
            helper.make_node("Where", [binary.name, f"{PREFIX}task_sigmoid", logits], [first], name=first)])
    else:
        merged.graph.node.append(
            helper.make_node("Identity", [logits], [first], name=first) if first == "predictions"
            else helper.make_node("Softmax", [logits], [first], axis=1, name=first) if multiclass
            else helper.make_node("Sigmoid", [logits], [first], name=first))
    width = len(contract["classes"]) if multiclass else len(tags) if tags else len(tasks) if tasks else None
    merged.graph.output.insert(0, helper.make_tensor_value_info(first, T.FLOAT, ["N", width] if width else ["N"]))
    helper.set_model_props(merged, {METADATA_KEY: json.dumps(contract, default=str)})
    return merged


def _free(graph: Any) -> set[str]:
    """The names a subgraph (a Loop's body) reads from outside itself, nested subgraphs included."""
    inside = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {o for n in graph.node
                                                                                   for o in n.output}
    read = {i for n in graph.node for i in n.input} | {i for n in graph.node for a in n.attribute if a.g
                                                       for i in _free(a.g)}
    return read - inside


def _needed(nodes: Sequence[Any], outputs: Sequence[str]) -> list[Any]:
    """The nodes the outputs depend on, in their order: the preprocessing's test outputs (bucket ids, hashes) are
    dropped from the served graph, so no runtime spends a kernel on them."""
    wanted = set(outputs)
    kept = []
    for node in reversed(nodes):
        if wanted & set(node.output):
            kept.append(node)
            wanted |= set(node.input) | {i for a in node.attribute if a.g for i in _free(a.g)}
    return kept[::-1]


def _first_output(contract: dict[str, Any]) -> str:
    """The graph's first output: ``predictions`` (a regression label's values, a multitask label's answers) or
    ``probabilities``."""
    return "predictions" if contract.get("task") in ("regression", "multitask") else "probabilities"


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
        self._bound: dict[str, BoundRows] = {}

    def feed(self, rows: pa.Table | Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
        return raw_feed(rows, self.contract)

    def _run(self, output: str, rows: pa.Table | Sequence[Mapping[str, Any]]) -> np.ndarray:
        if len(rows) == 0:
            classes = self.contract.get("classes") or self.contract.get("tags") or self.contract.get("tasks")
            return np.zeros((0, len(classes)) if classes else (0,), np.float32)
        if len(rows) == 1 and not isinstance(rows, pa.Table):  # a request's row: through inputs bound once
            bound = self._bound.get(output)
            if bound is None:
                bound = self._bound[output] = BoundRows(self.session, self.contract, output)
            answer = bound.run(rows[0])
            if answer is not None:
                return answer
        return run_session(self.session, [output], self.feed(rows))[0]

    def predict_logits(self, rows: pa.Table | Sequence[Mapping[str, Any]]) -> np.ndarray:
        return self._run("logits", rows)

    def predict_proba(self, rows: pa.Table | Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Probabilities: (N,) for a binary label, (N, C) for a multiclass one; a regression label's predicted
        values (N,) (float32, from the graph)."""
        return self._run(_first_output(self.contract), rows)


# -- checking -----------------------------------------------------------------------------------------------------
def synthetic_raw_rows(encoder: Encoder, rows: int, seed: int = 0, max_bytes: int = DEFAULT_MAX_BYTES,
                       usual_sizes: Mapping[str, tuple[int, int]] | None = None) -> pa.Table:
    """Random raw rows for ``encoder``'s columns: float32-exact numbers with ~10% missing (and values around the
    bin edges), ids with unicode, spaces to trim, empty and missing cells, lists of 0..4 ids (a vocabulary
    feature's mostly its own ids, some with spaces around), texts (see
    :func:`~shoal.export.raw_text.synthetic_texts`), encoded images and sounds (every other image of its
    feature's ``usual_sizes`` entry, where it has one: :func:`~shoal.export.raw_media.synthetic_media`)."""
    rng = np.random.default_rng(seed)
    alphabet = list("abcxyz019 _-é中🙂")
    columns: dict[str, pa.Array] = {}

    def an_id(known: list[str]) -> str:  # a vocabulary's own ids most of the time, so its lookups are checked
        if known and rng.random() < 0.7:
            v = known[int(rng.integers(0, len(known)))]
            return v if rng.random() < 0.8 else f" {v} "
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
        known = [v for v in (s.vocab.values_ or []) if len(v.strip().encode("utf-8")) <= max_bytes] \
            if s.vocab is not None else []
        if s.column in columns:  # a number also read as an id: its numbers are its ids, half of them its vocabulary's
            numbers = [float(v) for v in known if _is_number(v)]
            if numbers:
                values = columns[s.column].to_numpy(zero_copy_only=False).copy()
                pick = (rng.random(rows) < 0.5) & ~np.isnan(values)
                values[pick] = np.array(numbers)[rng.integers(0, len(numbers), int(pick.sum()))]
                columns[s.column] = pa.array(values, pa.float64(), from_pandas=True)
            continue
        cells: list[str | None] = []

        for _ in range(rows):
            r = rng.random()
            if r < 0.05:
                cells.append(None)
            elif r < 0.08:
                cells.append("" if rng.random() < 0.5 else "  ")
            elif s.separator is not None:
                cells.append(s.separator.join(an_id(known) for _ in range(int(rng.integers(0, 5)))))
            else:
                cells.append(an_id(known))
        columns[s.column] = pa.array(cells, pa.string())
    for t in encoder.text_features:  # words, whitespace runs, multi-byte characters, texts past max_bytes
        columns[t.column] = pa.array(synthetic_texts(rng, rows, t.max_bytes), pa.string())
    for m in encoder.media_features:  # encoded files as bytes: PNG / JPEG of odd sizes and modes, WAV at odd rates
        columns[m.column] = pa.array(synthetic_media(rng, m, rows, (usual_sizes or {}).get(m.name)), pa.binary())
    for tc in encoder.time_features:  # ISO 8601 with and without zones, dates, epochs, the feature's format
        columns[tc.column] = pa.array(synthetic_times(rng, tc, rows), pa.string())
    return pa.table(columns)


def _is_number(text: str) -> bool:
    try:
        return np.isfinite(float(text))
    except ValueError:
        return False


def parity(bundle: Bundle, model: RawOnnxModel, table: pa.Table) -> float:
    """Max |p(raw graph) - p(encoder + torch)| over the rows of ``table`` (which must all be good rows); for a
    regression label, of the values in standard deviations of the training label."""
    batch = bundle.encoder.encode(Chunk(table, np.arange(1, table.num_rows + 1), "raw rows"), BadRowSink("error"),
                                  with_label=False)
    reference = bundle.predict_proba(batch)
    got = model.predict_proba(table).astype(np.float64)
    scale: float | np.ndarray = float(bundle.encoder.target_[1]) if bundle.encoder.target_ is not None else 1.0
    if bundle.encoder.multitask:  # a regression task's values in standard deviations of its training label
        scale = np.array([1.0 if t is None else t[1] for t in bundle.encoder.targets_])
    return float((np.abs(reference - got) / scale).max()) if len(reference) else 0.0
