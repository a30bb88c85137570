"""Rewrites of an exported ONNX graph: fp16 embedding tables, dynamic int8, and the Loop check."""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["count_loops", "embeddings_to_fp16", "quantize_int8"]


def count_loops(path: Path) -> int:
    """Loop and Scan nodes in an ONNX file (the slow form of an embedding bag); 0 for shoal's exports."""
    import onnx

    return sum(n.op_type in ("Loop", "Scan") for n in onnx.load(str(path), load_external_data=False).graph.node)


def _embedding_tables(model: Any) -> set[str]:
    """Names of the float initializers that Gather nodes read rows from: the embedding tables."""
    from onnx import TensorProto

    floats = {t.name for t in model.graph.initializer if t.data_type == TensorProto.FLOAT and len(t.dims) == 2}
    return {n.input[0] for n in model.graph.node if n.op_type == "Gather" and n.input[0] in floats}


def embeddings_to_fp16(src: Path, dst: Path) -> None:
    """Store the embedding tables as float16 (half the bytes): Gather reads fp16 rows, a Cast makes them fp32."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(src))
    tables = _embedding_tables(model)
    for i, t in enumerate(model.graph.initializer):
        if t.name in tables:
            half = numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float16), t.name)
            model.graph.initializer[i].CopyFrom(half)
    nodes = []
    for n in model.graph.node:
        nodes.append(n)
        if n.op_type == "Gather" and n.input[0] in tables:
            out = n.output[0]
            n.output[0] = f"{out}_fp16"
            nodes.append(helper.make_node("Cast", [n.output[0]], [out], to=TensorProto.FLOAT, name=f"{n.name}_cast"))
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))


def _gemm_to_matmul(model: Any) -> Any:
    """Gemm(x, W, b) with a constant W -> MatMul + Add, the form ONNX Runtime's dynamic int8 quantizes."""
    from onnx import helper, numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    nodes = []
    for n in model.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        if (n.op_type != "Gemm" or n.input[1] not in inits or attrs.get("transA", 0)
                or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0):
            nodes.append(n)
            continue
        w = numpy_helper.to_array(inits[n.input[1]])
        if attrs.get("transB", 0):
            w = w.T
        name = f"{n.input[1]}_kn"
        model.graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(w), name))
        if len(n.input) > 2 and n.input[2]:
            mm = f"{n.output[0]}_matmul"
            nodes.append(helper.make_node("MatMul", [n.input[0], name], [mm], name=f"{n.name}_matmul"))
            nodes.append(helper.make_node("Add", [mm, n.input[2]], [n.output[0]], name=f"{n.name}_add"))
        else:
            nodes.append(helper.make_node("MatMul", [n.input[0], name], [n.output[0]], name=f"{n.name}_matmul"))
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    used = {i for n in model.graph.node for i in n.input}
    keep = [t for t in model.graph.initializer if t.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
    return model


def quantize_int8(src: Path, dst: Path, embeddings: bool = True) -> None:
    """Dynamic int8 (ONNX Runtime): weights of MatMul (and the embedding tables when ``embeddings``) stored as
    int8 with one scale per tensor; activations quantized on the fly, per batch."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = _gemm_to_matmul(onnx.load(str(src)))
    inits = {t.name for t in model.graph.initializer}
    tables = _embedding_tables(model) if embeddings else set()
    # only products with a constant weight, and the tables: activation x activation products (DLRM's dot
    # interactions) stay fp32, their inputs are not known before the batch and their error would compound
    nodes = [n.name for n in model.graph.node
             if (n.op_type == "MatMul" and n.input[1] in inits) or (n.op_type == "Gather" and n.input[0] in tables)]
    with tempfile.TemporaryDirectory(prefix="shoal-int8-") as tmp:
        staged = Path(tmp) / "fp32.onnx"
        onnx.save(model, str(staged))
        with _quiet_root("Please consider to run pre-processing"):
            quantize_dynamic(staged, dst, op_types_to_quantize=["MatMul", "Gather"], nodes_to_quantize=nodes,
                             weight_type=QuantType.QInt8)


@contextlib.contextmanager
def _quiet_root(prefix: str) -> Iterator[None]:
    """Drop the root logger's records starting with ``prefix`` (ONNX Runtime's quantizer logs advice there)."""

    def keep(record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(prefix)

    root = logging.getLogger()
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)
