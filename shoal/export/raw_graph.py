"""The pieces every raw-input preprocessing graph is built from (:mod:`shoal.export.raw`, :mod:`.raw_text`).

:class:`GraphBuilder` collects nodes and constants, each named under :data:`PREFIX` so they never clash with the
traced model's names; :func:`mix64` is SplitMix64's finalizer in uint64 ops (the last step of every id hash in
:mod:`shoal.data.hashing` and :mod:`shoal.data.text`); :func:`pool` turns a flat id list + per-row counts into the
padded ``ids_k`` / ``weights_k`` form of :mod:`shoal.runtime.feed`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["OPSET", "PREFIX", "GraphBuilder", "mix64", "pool"]

OPSET = 18
PREFIX = "raw/"  # every value the preprocessing adds is named under it, clear of the traced model's names

M1 = 0xBF58476D1CE4E5B9
M2 = 0x94D049BB133111EB


class GraphBuilder:
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

    # small conveniences for the int64 index arithmetic every graph does
    def i64(self, value: Any) -> str:
        return self.const(value, np.int64)

    def unsqueeze(self, x: str, axis: int) -> str:
        return self.op("Unsqueeze", [x, self.i64([axis])])

    def slice(self, x: str, start: int, end: int, axis: int) -> str:
        """``x[start:end]`` along ``axis`` (negative ``end`` counts from the end; an empty result is fine)."""
        return self.op("Slice", [x, self.i64([start]), self.i64([end]), self.i64([axis])])

    def dim(self, x: str, axis: int) -> str:
        """``x.shape[axis]`` as an int64 scalar."""
        return self.op("Gather", [self.op("Shape", [x]), self.i64(axis)])


def mix64(g: GraphBuilder, h: str) -> str:
    """SplitMix64's finalizer of a uint64 tensor, as :func:`shoal.data.hashing.mix64` (wrapping arithmetic)."""
    u64 = np.uint64
    for shift, mult in ((30, M1), (27, M2), (31, None)):
        h = g.op("BitwiseXor", [h, g.op("BitShift", [h, g.const(shift, u64)], direction="RIGHT")])
        if mult is not None:
            h = g.op("Mul", [h, g.const(mult, u64)])
    return h


def pool(g: GraphBuilder, flat: str, counts: str, k: int) -> tuple[str, str]:
    """A list input's flat ids (M,) + per-row counts (N,) -> padded ids (N, W) and mean weights (N, W), as
    :func:`shoal.runtime.feed.padded_feed` builds them: a row without ids holds the one id 0 (weight 1)."""
    from onnx import TensorProto as T

    one = g.i64([1])
    counts_at_least_1 = g.op("Max", [counts, g.i64(1)])
    width = g.op("ReduceMax", [counts_at_least_1], keepdims=1)  # (1,)
    col = g.op("Unsqueeze", [g.op("Range", [g.i64(0), g.op("Squeeze", [width]), g.i64(1)]), g.i64([0])])  # (1, W)
    starts = g.op("Unsqueeze", [g.op("CumSum", [counts, g.i64(0)], exclusive=1), one])  # (N, 1)
    real = g.op("Less", [col, g.op("Unsqueeze", [counts, one])])  # (N, W): a listed id
    index = g.op("Where", [real, g.op("Add", [g.op("Add", [starts, col]), g.i64(1)]),
                           g.i64(0)])  # into [0, *flat]: 0 picks the reserved id
    padded_from = g.op("Concat", [g.i64([0]), flat], axis=0)
    ids = g.op("Gather", [padded_from, index], out=f"{PREFIX}out/ids_{k}", axis=0)
    share = g.op("Div", [g.const(1.0, np.float32), g.op("Cast", [counts_at_least_1], to=T.FLOAT)])  # float32 1/len
    pooled = g.op("Less", [col, g.op("Unsqueeze", [counts_at_least_1, one])])
    weights = g.op("Where", [pooled, g.op("Unsqueeze", [share, one]), g.const(0.0, np.float32)],
                   out=f"{PREFIX}out/weights_{k}")
    return ids, weights
