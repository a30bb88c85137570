"""An exported model served by ONNX Runtime: :class:`OnnxPredictor` and the session options it runs with.

The export folder (``bundle/onnx``, written by :func:`shoal.export.onnx.export_onnx`) holds one ``.onnx`` file
per variant and ``export.json``, whose ``format`` and ``version`` this module checks and whose ``layout`` says
how to feed the graph (:mod:`shoal.runtime.feed`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from shoal.artifacts.bundle import answers, task_of
from shoal.data.batch import Batch
from shoal.runtime.feed import InputLayout, padded_feed

__all__ = ["EXPORT_FORMAT", "EXPORT_VERSION", "FILES", "OnnxPredictor", "failed_parity", "run_session",
           "session_options"]

EXPORT_FORMAT = "shoal-onnx"
EXPORT_VERSION = 1
FILES = {"fp32": "model.onnx", "int8": "model.int8.onnx", "fp16": "model.fp16.onnx"}


def session_options(threads: int | None = None) -> Any:
    """ONNX Runtime options for a small CPU box: ``threads`` intra-op threads (default 1), one inter-op
    thread, sequential execution, all graph optimizations, and no busy-waiting between ops (spinning threads
    slow every other process on shared cores, as OpenMP's do; the command line sets OMP_WAIT_POLICY for the
    same reason).

    One thread is the default because these graphs are many small ops, where a second thread costs more in
    hand-offs than it saves (docs/export.md has the figures). Give ``threads=2`` for wide convolutions (bytecnn
    on long texts)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads or 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.log_severity_level = 3
    return so


def run_session(session: Any, outputs: list[str], feed: dict[str, np.ndarray]) -> list[np.ndarray]:
    """``session.run(outputs, feed)`` without the Python wrapper's input check: it compares every input name
    with a list of the fed names (quadratic: ~30 us of a raw graph's 66 inputs, as long as the rest of a batch-1
    call), and the C++ call below makes the same check, naming a missing input. The wrapper where the binding
    differs."""
    inner = getattr(session, "_sess", None)
    if inner is None or not hasattr(inner, "run"):
        return list(session.run(outputs, feed))
    return list(inner.run(outputs, feed, None))


def failed_parity(export_dir: Path) -> str | None:
    """Why the fp32 export in ``export_dir`` must not answer (its parity check with PyTorch failed: the files are
    kept to inspect, ``export.json`` says by how much), or None."""
    try:
        doc = json.loads((export_dir / "export.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # no export, or one the predictor itself refuses with its own message
    check = (doc.get("parity") or {}).get("fp32") or {}
    if check.get("ok", True):
        return None
    return (f"{export_dir / FILES['fp32']} failed its parity check with PyTorch (max logit difference "
            f"{check.get('max_abs_logit_diff', float('nan')):.3g}); it is kept to inspect, not served")


@dataclass
class OnnxPredictor:
    """An exported model served by ONNX Runtime, with :class:`~shoal.artifacts.bundle.Bundle`'s prediction methods.

    ``path`` is the export folder (``bundle/onnx``), a bundle folder holding one, or a ``.onnx`` file beside
    its ``export.json``. ``variant`` picks ``fp32``, ``int8`` or ``fp16``::

        p = OnnxPredictor("runs/.../bundle/onnx", variant="int8")
        p.predict_logits(batch)   # (B,) or (B, C) float32
        p.predict_proba(batch)    # (B,) sigmoid for binary, (B, C) softmax for multiclass (float64)
    """

    path: str | Path
    variant: str = "fp32"
    threads: int | None = None
    layout: InputLayout = field(init=False)
    meta: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        import onnxruntime as ort

        path = Path(self.path)
        if (path / "onnx" / "export.json").is_file():
            path = path / "onnx"
        if path.suffix == ".onnx":
            folder, file = path.parent, path
        else:
            folder = path
            if self.variant not in FILES:
                raise ValueError(f"variant must be one of {', '.join(FILES)}, not {self.variant!r}")
            file = folder / FILES[self.variant]
        doc_path = folder / "export.json"
        if not doc_path.is_file():
            raise FileNotFoundError(f"{folder}: no export.json; export the bundle first: shoal export RUN --onnx")
        if not file.is_file():
            flag = {"int8": " --int8", "fp16": " --fp16-embeddings"}.get(self.variant, "")
            raise FileNotFoundError(f"{file} does not exist; write it with: shoal export RUN --onnx{flag}")
        self.meta = json.loads(doc_path.read_text(encoding="utf-8"))
        if self.meta.get("format") != EXPORT_FORMAT or self.meta.get("version") != EXPORT_VERSION:
            raise ValueError(f"{doc_path}: not a shoal ONNX export of version {EXPORT_VERSION}; re-export it")
        self.layout = InputLayout.from_dict(self.meta["layout"])
        self.session = ort.InferenceSession(str(file), session_options(self.threads),
                                            providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]  # inputs the graph kept

    @property
    def classes(self) -> list[str] | None:
        classes = self.meta.get("classes")
        return list(classes) if classes else None

    def feed(self, batch: Batch) -> dict[str, np.ndarray]:
        """The session's inputs for ``batch`` (the padded form of :func:`shoal.padded.padded_feed`)."""
        full = padded_feed(batch, self.layout)
        return {name: full[name] for name in self.input_names}

    def predict_logits(self, batch: Batch, batch_size: int = 8192) -> np.ndarray:
        if 0 < len(batch) <= batch_size:  # one call (serving): no chunk list, no concatenation
            return self.session.run(None, self.feed(batch))[0]
        out = []
        for start in range(0, len(batch), batch_size):
            part = batch.slice(start, start + batch_size) if len(batch) > batch_size else batch
            out.append(self.session.run(None, self.feed(part))[0])
        if not out:
            return np.zeros((0,) if self.meta.get("outputs", 1) == 1 else (0, self.meta["outputs"]), np.float32)
        return np.concatenate(out)

    def predict_proba(self, batch: Batch) -> np.ndarray:
        """Probabilities: shape (B,) for a binary label (of the positive class), (B, C) for a multiclass one,
        (B, T) sigmoids for a multilabel one; for a regression label, the predicted values (B,); for a multitask
        one (B, T), per task the probability or the value."""
        kinds = [t["kind"] for t in self.meta["tasks"]] if self.task == "multitask" else None
        return answers(self.predict_logits(batch), self.task, kinds)

    @property
    def task(self) -> str:
        """``binary``, ``multiclass``, ``regression`` or ``multilabel``, as the export says."""
        return task_of(self.meta)

