"""The Bundle: the unit that is saved, evaluated, exported and served.

A bundle folder holds ``model.safetensors`` (the weights) and ``bundle.json`` (the fitted encoder, the model
config, the resolved run config and the metrics). Loading a bundle never unpickles and never executes code
from the files: the model class is looked up by name in shoal's own registry.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import TypeAdapter
from safetensors.torch import load_file, save_file
from torch import nn

from shoal.config import ModelConfig, RunConfig
from shoal.data.batch import Batch
from shoal.data.encoder import Encoder
from shoal.metrics import probabilities
from shoal.models import build

__all__ = ["Bundle", "load_bundle", "save_bundle"]

BUNDLE_FORMAT = "shoal-bundle"
BUNDLE_VERSION = 1
_MODEL_CONFIG: TypeAdapter[Any] = TypeAdapter(ModelConfig)


@dataclass
class Bundle:
    """A trained model with its encoder and metadata."""

    model: nn.Module
    encoder: Encoder
    config: RunConfig
    meta: dict[str, Any] = field(default_factory=dict)

    @torch.no_grad()
    def predict_logits(self, batch: Batch, batch_size: int = 8192) -> np.ndarray:
        if any(m.training for m in self.model.modules()):  # eval() walks and sets every module: only when needed
            self.model.eval()
        out = []
        for start in range(0, len(batch), batch_size):
            part = batch.slice(start, start + batch_size) if len(batch) > batch_size else batch
            out.append(self.model(*part.inputs()).float().numpy())
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def predict_proba(self, batch: Batch) -> np.ndarray:
        """Probabilities: shape (B,) for a binary label (of the positive class), (B, C) for a multiclass one."""
        return probabilities(self.predict_logits(batch))

    @property
    def classes(self) -> list[str] | None:
        """Class names in output order for a multiclass label; None for a binary one."""
        classes = self.meta.get("classes")
        return list(classes) if classes else None

    @property
    def base_rate(self) -> float:
        """The training base rate of a binary label (NE is relative to it)."""
        return float(self.meta["train_base_rate"])

    @property
    def prior(self) -> float | list[float]:
        """What NE is relative to: the training base rate (binary) or class frequencies (multiclass)."""
        if self.classes:
            return [float(q) for q in self.meta["train_class_prior"]]
        return self.base_rate


def save_bundle(path: Path, model: nn.Module, encoder: Encoder, config: RunConfig, meta: dict[str, Any]) -> Path:
    """Write a bundle folder; returns its path."""
    path.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(path / "model.safetensors"))
    doc = {
        "format": BUNDLE_FORMAT,
        "version": BUNDLE_VERSION,
        "model": config.model.model_dump(mode="json"),
        "inputs": {"dense_dim": encoder.dense_dim, "buckets": encoder.buckets, "outputs": encoder.outputs,
                   "sequences": encoder.sequence_slots},
        "encoder": encoder.to_dict(),
        "config": config.resolved(),
        "meta": meta,
    }
    tmp = path / "bundle.json.tmp"
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=True), encoding="utf-8")
    tmp.replace(path / "bundle.json")
    return path


def load_bundle(path: Path) -> Bundle:
    """Read a bundle folder (weights via safetensors, everything else JSON)."""
    path = Path(path)
    doc_path = path / "bundle.json"
    if not doc_path.is_file():
        raise FileNotFoundError(f"{path}: not a shoal bundle (no bundle.json); pass a run id or a bundle folder")
    doc = json.loads(doc_path.read_text(encoding="utf-8"))
    if doc.get("format") != BUNDLE_FORMAT or doc.get("version") != BUNDLE_VERSION:
        raise ValueError(
            f"{doc_path}: format {doc.get('format')!r} version {doc.get('version')!r} is not supported "
            f"(expected {BUNDLE_FORMAT!r} version {BUNDLE_VERSION}); re-export it with this shoal"
        )
    model_cfg = _MODEL_CONFIG.validate_python(doc["model"])
    inputs = doc["inputs"]
    model = build(model_cfg, inputs["dense_dim"], list(inputs["buckets"]), int(inputs.get("outputs", 1)),
                  list(inputs.get("sequences", [])))
    state = load_file(str(path / "model.safetensors"))
    model.load_state_dict(state, strict=True)
    model.eval()
    return Bundle(model=model, encoder=Encoder.from_dict(doc["encoder"]),
                  config=RunConfig.model_validate(doc["config"]), meta=doc.get("meta", {}))
