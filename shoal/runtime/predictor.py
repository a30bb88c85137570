"""Predictors: the one call serving needs from a model, ``predict_proba(batch)``, behind a small protocol.

Every backend answers the same question the same way: encoded rows in (a :class:`~shoal.data.batch.Batch`),
probabilities out, shape (B,) for a binary label, (B, C) for a multiclass one (see
:meth:`~shoal.artifacts.bundle.Bundle.predict_proba`). :func:`select_predictor` is the only place that picks a
backend, so the server, ``shoal predict`` and the benchmarks always run the same one for the same bundle.

``auto`` with an ONNX export beside the bundle measures both backends at the batch sizes the caller names and
answers each batch with the faster one for its size (:class:`RoutedPredictor`, :mod:`shoal.runtime.choice`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from shoal.artifacts.bundle import Bundle
from shoal.data.batch import Batch
from shoal.runtime.choice import BackendChoice, ChoiceCache, choice_key, measure, timing_rows
from shoal.runtime.onnx import failed_parity
from shoal.runtime.refs import content_version

log = logging.getLogger(__name__)

__all__ = ["BACKENDS", "OnnxRuntimePredictor", "Predictor", "RoutedPredictor", "TorchPredictor", "select_predictor"]

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


class RoutedPredictor:
    """``auto``'s answer: each batch goes to the backend ``choice`` names for its size.

    ``backends`` maps each backend name of ``choice.routes`` to its predictor; the outputs are exactly that
    predictor's. ``backend`` is the one-line summary (``auto: onnxruntime for 1-22 rows, torch for 23+ rows``)."""

    def __init__(self, backends: Mapping[str, Predictor], choice: BackendChoice) -> None:
        missing = sorted({r.backend for r in choice.routes} - set(backends))
        if missing:
            raise ValueError(f"the backend choice routes batches to {', '.join(missing)}, but only "
                             f"{', '.join(sorted(backends))} were given")
        self.backends = dict(backends)
        self.choice = choice
        self.backend = choice.describe()
        # (min_rows, predictor) from the largest threshold down: the first one a batch reaches answers it
        self._routes = [(r.min_rows, self.backends[r.backend]) for r in reversed(choice.routes)]

    def predictor_for(self, rows: int) -> Predictor:
        """The predictor that answers a batch of ``rows`` rows."""
        for min_rows, predictor in self._routes:
            if rows >= min_rows:
                return predictor
        return self._routes[-1][1]

    def predict_proba(self, batch: Batch) -> np.ndarray:
        return self.predictor_for(len(batch)).predict_proba(batch)


def select_predictor(bundle: Bundle, folder: Path, backend: str = "auto", *, batch_sizes: Sequence[int] = (1, 256),
                     version: str | None = None) -> Predictor:
    """The predictor for the bundle loaded from ``folder``; the only place that chooses.

    ``auto``: where the bundle was exported (``shoal export RUN --onnx``; the export checked parity with PyTorch),
    PyTorch and ONNX Runtime (fp32) are timed on the bundle's rows at ``batch_sizes`` (the sizes the caller will
    send: 1 and the server's largest batch, or ``shoal predict``'s chunk) and each batch goes to the faster one
    for its size (:class:`RoutedPredictor`); the decision is cached beside the export, keyed by the bundle
    ``version`` (hashed from ``folder`` when not given), the export, the machine and the thread counts. Without
    an export: PyTorch. ``onnx``, ``onnx-int8``, ``onnx-fp16`` ask for an export variant and fail when it was not
    written; ``torch`` always runs the PyTorch network.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    exported = (folder / "onnx" / "export.json").is_file()
    failed = failed_parity(folder / "onnx") if exported else None
    if backend != "torch" and backend != "auto" and failed is not None:
        raise ValueError(f"--backend {backend}: {failed}; re-export (shoal export RUN --onnx) or use --backend torch")
    if failed is not None and backend == "auto":
        log.warning("%s: answering with PyTorch", failed)
    if backend == "torch" or (backend == "auto" and (not exported or failed is not None)):
        return TorchPredictor(bundle)
    if backend == "auto":
        return _measured(bundle, folder, batch_sizes, version)
    variant = {"onnx": "fp32"}.get(backend, backend.removeprefix("onnx-"))
    return OnnxRuntimePredictor(folder, variant)


def _measured(bundle: Bundle, folder: Path, batch_sizes: Sequence[int], version: str | None) -> RoutedPredictor:
    """``auto`` with an export: the cached decision for this bundle, export, machine and threads, or a new one."""
    import torch

    if not batch_sizes or min(batch_sizes) < 1:
        raise ValueError(f"batch_sizes must be one or more sizes of at least 1 row, not {list(batch_sizes)!r}")
    onnx = OnnxRuntimePredictor(folder, "fp32")
    candidates: dict[str, Predictor] = {"torch": TorchPredictor(bundle), onnx.backend: onnx}
    export_dir = folder / "onnx"
    key = choice_key(version or content_version(folder), export_dir, batch_sizes, torch.get_num_threads(),
                        onnx.onnx.threads or 1)
    cache = ChoiceCache(export_dir)
    decision = cache.load(key)
    if decision is None:
        rows, source = timing_rows(bundle, folder, onnx.onnx.layout, max(key["sizes"]))
        decision = dataclasses.replace(measure(candidates, rows, key["sizes"], rows_source=source), key=key)
        cache.store(decision)
    return RoutedPredictor({r.backend: candidates[r.backend] for r in decision.routes}, decision)
