"""Predictors: the one call serving needs from a model, ``predict_proba(batch)``, behind a small protocol.

Every backend answers the same question the same way: encoded rows in (a :class:`~shoal.data.batch.Batch`),
probabilities out, shape (B,) for a binary label, (B, C) for a multiclass one (see
:meth:`shoal.bundle.Bundle.predict_proba`). :func:`select_predictor` is the only place that picks a backend, so
the server, ``shoal predict`` and the benchmarks always run the same one for the same bundle.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from shoal.bundle import Bundle
from shoal.data.batch import Batch

__all__ = ["Predictor", "TorchPredictor", "select_predictor"]


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


def select_predictor(bundle: Bundle, folder: Path) -> Predictor:
    """The predictor for the bundle loaded from ``folder``.

    ONNX Runtime is to be used where the bundle was exported (``shoal export``); until that backend is plugged in
    here, every bundle runs on PyTorch. Keep this the only place that chooses.
    """
    del folder  # the ONNX backend will look for the exported graph in the bundle folder
    return TorchPredictor(bundle)
