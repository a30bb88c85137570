"""Predictors: the one call serving needs from a model, ``predict_proba(batch)``, behind a small protocol.

Every backend answers the same question the same way: encoded rows in (a :class:`~shoal.data.batch.Batch`),
probabilities out, shape (B,) for a binary label, (B, C) for a multiclass one (see
:meth:`~shoal.artifacts.bundle.Bundle.predict_proba`). :func:`select_predictor` is the only place that picks a
backend, so the server, ``shoal predict`` and the benchmarks always run the same one for the same bundle.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from shoal.artifacts.bundle import Bundle
from shoal.data.batch import Batch

__all__ = ["BACKENDS", "OnnxRuntimePredictor", "Predictor", "TorchPredictor", "select_predictor"]

BACKENDS = ("auto", "torch", "onnx", "onnx-int8", "onnx-fp16")


class Predictor(Protocol):
    """Encoded rows -> probabilities. Called from one thread at a time."""

    backend: str  # "torch", "onnxruntime", ...

    def predict_proba(self, batch: Batch) -> np.ndarray:
        """(B,) positive-class probabilities for a binary label, (B, C) class probabilities otherwise."""
        ...


class TorchPredictor:
    """The bundle's PyTorch network, in eval mode, without autograd."""

    backend = "torch"

    def __init__(self, bundle: Bundle) -> None:
        self.bundle = bundle

    def predict_proba(self, batch: Batch) -> np.ndarray:
        return self.bundle.predict_proba(batch)


class OnnxRuntimePredictor:
    """The bundle's ONNX export (``shoal export``), run by ONNX Runtime; the bundle's encoder stays in Python."""

    def __init__(self, folder: Path, variant: str) -> None:
        from shoal.runtime.onnx import OnnxPredictor

        self.onnx = OnnxPredictor(folder, variant=variant)
        self.backend = "onnxruntime" if variant == "fp32" else f"onnxruntime-{variant}"

    def predict_proba(self, batch: Batch) -> np.ndarray:
        return np.asarray(self.onnx.predict_proba(batch))


def select_predictor(bundle: Bundle, folder: Path, backend: str = "auto") -> Predictor:
    """The predictor for the bundle loaded from ``folder``; the only place that chooses.

    ``auto``: ONNX Runtime (fp32) where the bundle was exported (``shoal export RUN --onnx``; the export checked
    parity with PyTorch), else PyTorch. ``onnx``, ``onnx-int8``, ``onnx-fp16`` ask for an export variant and fail
    when it was not written; ``torch`` always runs the PyTorch network.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    exported = (folder / "onnx" / "export.json").is_file()
    if backend == "torch" or (backend == "auto" and not exported):
        return TorchPredictor(bundle)
    variant = {"auto": "fp32", "onnx": "fp32"}.get(backend, backend.removeprefix("onnx-"))
    return OnnxRuntimePredictor(folder, variant)
