"""The pieces every raw-input preprocessing graph is built from (:mod:`shoal.export.raw`, :mod:`.raw_text`).

:class:`GraphBuilder` collects nodes and constants, each named under :data:`PREFIX` so they never clash with the
traced model's names; :func:`mix64` is SplitMix64's finalizer in uint64 ops (the last step of every id hash in
:mod:`shoal.data.hashing` and :mod:`shoal.data.text`); :func:`bag` turns a flat id list + per-row counts into the
flat ``ids_k`` / ``weights_k`` / ``rows_k`` form of :mod:`shoal.runtime.feed` (:func:`bag_weights` gives a text
bag its weights); :func:`flat_lookups` rewrites the traced model's lookups in one-column tables.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np

__all__ = ["OPSET", "PREFIX", "GraphBuilder", "bag", "bag_weights", "flat_lookups", "mix64", "per_object",
           "signed_log1p"]

T_ = TypeVar("T_")

OPSET = 18
PREFIX = "raw/"  # every value the preprocessing adds is named under it, clear of the traced model's names

M1 = 0xBF58476D1CE4E5B9
M2 = 0x94D049BB133111EB
LOG1P_EXACT = 2.0 ** -29  # from here up, 1 + |v| of a float32 v is exact in float64


def per_object(cache: dict[int, tuple[Any, Any]], obj: Any, make: Callable[[Any], T_], size: int = 64) -> T_:
    """``make(obj)``, worked out once per object (a contract or one of its entries, which a call of the feed does
    not change): ``cache`` keeps the object beside the value, so its id is not reused while cached; at ``size``
    objects it starts again."""
    hit = cache.get(id(obj))
    if hit is not None and hit[0] is obj:
        return hit[1]
    value = make(obj)
    if len(cache) >= size:
        cache.clear()
    cache[id(obj)] = (obj, value)
    return value


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

    def branch(self, build: Callable[[], str], dtype: int) -> Any:
        """The nodes ``build`` adds, as a subgraph (an ``If`` branch) whose one output is what ``build`` returns, of
        ONNX type ``dtype``; its constants stay in the outer graph, which a branch reads as it reads any outer
        value."""
        from onnx import helper

        saved, self.nodes = self.nodes, []
        try:
            out = build()
        finally:
            nodes, self.nodes = self.nodes, saved
        return helper.make_graph(nodes, self.name("branch"), [], [helper.make_tensor_value_info(out, dtype, None)])

    # small conveniences for the int64 index arithmetic every graph does
    def i64(self, value: Any) -> str:
        return self.const(value, np.int64)

    def unsqueeze(self, x: str, axis: int) -> str:
        return self.op("Unsqueeze", [x, self.i64([axis])])

    def slice(self, x: str, start: int, end: int, axis: int) -> str:
        """``x[start:end]`` along ``axis`` (negative ``end`` counts from the end; an empty result is fine)."""
        return self.op("Slice", [x, self.i64([start]), self.i64([end]), self.i64([axis])])

    def take(self, data: str, index: str, hint: str | None = None, out: str | None = None) -> str:
        """``data[index]`` for 1-D ``data`` and ``index``: ``GatherElements``, which ONNX Runtime runs ~10x faster
        than ``Gather`` (that copies one scalar at a time: ~0.6 ms for 77,000 indices on one thread)."""
        return self.op("GatherElements", [data, index], hint or "take", out, axis=0)

    def dim(self, x: str, axis: int) -> str:
        """``x.shape[axis]`` as an int64 scalar."""
        return self.op("Gather", [self.op("Shape", [x]), self.i64(axis)])


def signed_log1p(g: GraphBuilder, v: str, of_float32: bool = False) -> str:
    """``sign(v) * log1p(|v|)`` of float64 ``v``, as the encoder's numpy: ONNX has no Log1p, so log1p is
    ``log(u) * a / (u - 1)`` with ``u = 1 + a`` (exact to a few ulps; ``a`` itself where ``u == 1``).

    ``of_float32``: ``v`` holds float32 values (the dense inputs), whose answer is cast to float32: ``1 + |v|`` is
    then exact in float64 for ``|v| >= 2^-29``, so ``log(u)`` is log1p to the last bit with three nodes fewer;
    below, ``log1p(|v|)`` rounds to ``|v|`` itself in float32."""
    a = g.op("Abs", [v])
    u = g.op("Add", [a, g.const(1.0, np.float64)])
    if of_float32:
        log1p = g.op("Where", [g.op("Less", [a, g.const(LOG1P_EXACT, np.float64)]), a, g.op("Log", [u])])
    else:
        e = g.op("Sub", [u, g.const(1.0, np.float64)])
        log1p = g.op("Where", [g.op("Equal", [e, g.const(0.0, np.float64)]), a,
                               g.op("Div", [g.op("Mul", [g.op("Log", [u]), a]), e])])
    return g.op("Mul", [g.op("Sign", [v]), log1p], "log1p")


def mix64(g: GraphBuilder, h: str) -> str:
    """SplitMix64's finalizer of a uint64 tensor, as :func:`shoal.data.hashing.mix64` (wrapping arithmetic)."""
    u64 = np.uint64
    for shift, mult in ((30, M1), (27, M2), (31, None)):
        h = g.op("BitwiseXor", [h, g.op("BitShift", [h, g.const(shift, u64)], direction="RIGHT")])
        if mult is not None:
            h = g.op("Mul", [h, g.const(mult, u64)])
    return h


def bag(g: GraphBuilder, flat: str, counts: str, k: int) -> dict[str, str]:
    """A list input's flat ids (M,) + per-row counts (N,) -> the flat form of :mod:`shoal.runtime.feed`:
    ``raw/out/ids_k``, ``weights_k`` (1/len) and ``rows_k`` (M',), where a row without ids holds the one id 0, as the
    encoder's reserved id (M' = M + the rows without ids). Nothing is padded::

        flat [7, 3, 9]  counts [2, 0, 1]  ->  ids [7, 3, 0, 9]  weights [.5, .5, 1, 1]  rows [0, 0, 1, 2]
    """
    listed = g.op("Greater", [counts, g.i64(0)])  # (N,)
    counts_at_least_1 = g.op("Max", [counts, g.i64(1)])
    starts = g.op("CumSum", [counts_at_least_1, g.i64(0)], exclusive=1)  # (N,) each row's first slot
    rows = _rows_of_slots(g, counts_at_least_1, starts, k)  # (M',)
    # slot j of row r holds flat[j - (empty rows before r)], read from [0, *flat] (at + 1); an empty row: index 0
    shift = g.op("Sub", [g.op("CumSum", [counts, g.i64(0)], exclusive=1), g.op("Sub", [starts, g.i64(1)])])  # (N,)
    slot = g.op("Range", [g.i64(0), g.dim(rows, 0), g.i64(1)])  # (M',)
    index = g.op("Where", [g.take(listed, rows), g.op("Add", [slot, g.take(shift, rows)]), g.i64(0)])
    ids = g.take(g.op("Concat", [g.i64([0]), flat], axis=0), index, out=f"{PREFIX}out/ids_{k}")
    return {f"ids_{k}": ids, f"weights_{k}": bag_weights(g, counts_at_least_1, rows, k), f"rows_{k}": rows}


def _rows_of_slots(g: GraphBuilder, counts: str, starts: str, k: int) -> str:
    """``raw/out/rows_k``: the row of each slot (M,) of a bag whose rows hold ``counts`` (N,) ids, each at least 1,
    starting at ``starts`` (N,): a 1 at each row's first slot, summed (``repeat_interleave`` in ONNX ops)."""
    from onnx import TensorProto as T
    from onnx import helper

    total = g.op("ReduceSum", [counts, g.i64([0])], keepdims=1)  # (1,) M
    zeros = g.op("ConstantOfShape", [total], value=helper.make_tensor("zero", T.INT64, [1], [0]))  # (M,)
    firsts = g.op("ScatterElements", [zeros, starts, g.op("Expand", [g.i64(1), g.op("Shape", [counts])])], axis=0)
    return g.op("Sub", [g.op("CumSum", [firsts, g.i64(0)]), g.i64(1)], out=f"{PREFIX}out/rows_{k}")


def bag_weights(g: GraphBuilder, counts: str, rows: str, k: int) -> str:
    """``raw/out/weights_k``: float32 1/len of each id's row (``rows`` (M,), any order), as
    :class:`~shoal.models.embeddings.SparseArch` computes it (``1.0 / lengths.float()``); ``counts`` (N,) at least
    1."""
    from onnx import TensorProto as T

    share = g.op("Div", [g.const(1.0, np.float32), g.op("Cast", [counts], to=T.FLOAT)])  # (N,)
    return g.take(share, rows, out=f"{PREFIX}out/weights_{k}")


def flat_lookups(nodes: Sequence[Any], initializers: Sequence[Any]) -> tuple[list[Any], list[Any]]:
    """``nodes`` with each ``Gather`` (axis 0) of rows of a one-column constant table (V, 1) (a linear model's
    weights per id) as a ``GatherElements`` over the table flattened (V,), and the constants to add (the flat
    tables and the shapes): ONNX Runtime's ``Gather`` copies row by row (4 bytes each here), ``GatherElements``
    runs one loop, ~3x faster::

        Gather(W (V, 1), ids (N, F))  ->  Reshape(GatherElements(W' (V,), Reshape(ids, [-1])), [N, F, 1])
    """
    from onnx import helper, numpy_helper

    columns = {t.name: t for t in initializers if len(t.dims) == 2 and t.dims[1] == 1}
    out: list[Any] = []
    tables: dict[str, Any] = {}  # a table's name -> its flat copy
    shapes = [numpy_helper.from_array(np.array(v, np.int64), f"{PREFIX}lookup/{k}") for k, v in (("all", [-1]),
                                                                                                  ("column", [1]))]
    for node in nodes:
        axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
        if node.op_type != "Gather" or axis != 0 or node.input[0] not in columns:
            out.append(node)
            continue
        table, index, name = node.input[0], node.input[1], f"{PREFIX}lookup/{len(out)}"
        if table not in tables:
            tables[table] = numpy_helper.from_array(numpy_helper.to_array(columns[table]).reshape(-1),
                                                    f"{PREFIX}lookup/table/{table}")
        out += [helper.make_node("Reshape", [index, shapes[0].name], [f"{name}/ids"], name=f"{name}/ids"),
                helper.make_node("GatherElements", [tables[table].name, f"{name}/ids"], [f"{name}/rows"],
                                 name=f"{name}/rows", axis=0),
                helper.make_node("Shape", [index], [f"{name}/shape"], name=f"{name}/shape"),
                helper.make_node("Concat", [f"{name}/shape", shapes[1].name], [f"{name}/shape1"],
                                 name=f"{name}/shape1", axis=0),
                helper.make_node("Reshape", [f"{name}/rows", f"{name}/shape1"], list(node.output), name=node.name)]
    return out, [*tables.values(), *shapes] if tables else []
