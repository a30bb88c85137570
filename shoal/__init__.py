"""shoal: train, compress and serve deep-learning models on dense, sparse and text features.

The public API fits on one page::

    m = shoal.fit(df, label="clicked", train__epochs=3)  # a data frame in, a Model out (docs/python.md)
    m.predict_proba(new_rows); m.evaluate(labelled_rows); shoal.load_model(m.run_id)

    import shoal
    cfg = shoal.load_config("configs/criteo.yaml")
    run = shoal.train(cfg, home="shoal-runs")          # a RunRecord: run_id, metrics, summary
    bundle = shoal.load(run.run_id, home="shoal-runs")  # model + encoder + metadata
    shoal.evaluate_file(run.run_id, "test.tsv", home="shoal-runs")
    shoal.export_onnx(bundle, int8=True)                # ONNX (+ int8) in the bundle, parity-checked
    shoal.resume(killed_run_id, home="shoal-runs")      # a killed run, trained or distilled, from its checkpoint

    import shoal.distill, shoal.compress       # modules named like their commands
    student = shoal.distill.distill(run.run_id, "logistic", home="shoal-runs")   # soft targets
    best = shoal.compress.compress(run.run_id, budget_ms=0.2, home="shoal-runs")  # best within a p99 budget

Names are imported on first use, so ``import shoal`` (and ``shoal --help``) does not pay for torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "BadInputError": "shoal.data.readers",
    "Bundle": "shoal.artifacts.bundle",
    "ConfigError": "shoal.config",
    "RunConfig": "shoal.config",
    "evaluate_file": "shoal.training.runs",
    "fit": "shoal.api.model",
    "Model": "shoal.api.model",
    "load_model": "shoal.api.model",
    "export_onnx": "shoal.export.onnx",
    "load": "shoal.training.runs",
    "load_bundle": "shoal.artifacts.bundle",
    "load_config": "shoal.config",
    "ShoalError": "shoal.errors",
    "resume": "shoal.distill.run",
    "train": "shoal.training.runs",
}
__all__ = [
    "BadInputError",
    "Bundle",
    "ConfigError",
    "Model",
    "RunConfig",
    "ShoalError",
    "evaluate_file",
    "export_onnx",
    "fit",
    "load",
    "load_bundle",
    "load_config",
    "load_model",
    "resume",
    "train",
]

if TYPE_CHECKING:
    from shoal.api.model import Model, fit, load_model
    from shoal.artifacts.bundle import Bundle, load_bundle
    from shoal.config import ConfigError, RunConfig, load_config
    from shoal.data.readers import BadInputError
    from shoal.distill.run import resume
    from shoal.errors import ShoalError
    from shoal.export.onnx import export_onnx
    from shoal.training.runs import evaluate_file, load, train


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'shoal' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
