"""Serving: the HTTP app (``shoal serve``) and batch scoring of files (``shoal predict``).

Names are imported on first use, so ``shoal --help`` does not pay for FastAPI or torch::

    from shoal.serving import ServeSettings, create_app
    app = create_app("latest", ServeSettings(max_batch_rows=128), home=Path("shoal-runs"))
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "MicroBatcher": "shoal.serving.batcher",
    "Predictor": "shoal.runtime.predictor",
    "ServeSettings": "shoal.serving.settings",
    "ServedModel": "shoal.serving.model",
    "TorchPredictor": "shoal.runtime.predictor",
    "create_app": "shoal.serving.app",
    "load_served": "shoal.serving.model",
    "predict_file": "shoal.serving.offline",
    "select_predictor": "shoal.runtime.predictor",
}
__all__ = [
    "MicroBatcher",
    "Predictor",
    "ServeSettings",
    "ServedModel",
    "TorchPredictor",
    "create_app",
    "load_served",
    "predict_file",
    "select_predictor",
]

if TYPE_CHECKING:
    from shoal.runtime.predictor import Predictor, TorchPredictor, select_predictor
    from shoal.serving.app import create_app
    from shoal.serving.batcher import MicroBatcher
    from shoal.serving.model import ServedModel, load_served
    from shoal.serving.offline import predict_file
    from shoal.serving.settings import ServeSettings


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'shoal.serving' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
