"""What the export tests share: a bundle of random weights over any features, its encoder fitted on synthetic raw
rows (``random_bundle``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from shoal.artifacts.bundle import Bundle, load_bundle, save_bundle
from shoal.config import parse_config
from shoal.data.encoder import Encoder
from shoal.data.readers import BadRowSink, Chunk
from shoal.export.raw import synthetic_raw_rows
from shoal.models import build

RandomBundle = Callable[..., tuple[Path, Bundle]]


def _random_bundle(tmp: Path, features: list[dict[str, Any]], model: dict[str, Any], *, fit_rows: int = 300,
                   seed: int = 0, std: float = 0.5, classes: list[str] | None = None) -> tuple[Path, Bundle]:
    """``tmp/bundle``: a ``model`` over ``features`` with random weights (embedding tables drawn with ``std``, so
    they matter) and an encoder fitted on ``fit_rows`` synthetic raw rows of ``seed``; binary label, or
    multiclass over ``classes``."""
    label: dict[str, Any] = {"column": "y"} if classes is None else {"column": "y", "kind": "multiclass",
                                                                        "classes": classes}
    cfg = parse_config({"data": {"train": "unused.csv"}, "label": label, "features": features, "model": model})
    encoder = Encoder(cfg.features, cfg.label)
    encoder.fit([Chunk(synthetic_raw_rows(encoder, fit_rows, seed=seed), np.arange(1, fit_rows + 1), "fit")],
                BadRowSink("error"))
    torch.manual_seed(0)
    net = build(cfg.model, encoder.dense_dim, encoder.buckets, encoder.outputs, encoder.sequence_slots)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith("bag.weight"):
                torch.nn.init.normal_(p, std=std)
    meta: dict[str, Any] = {"train_base_rate": 0.3}
    if classes:
        meta |= {"classes": classes, "train_class_prior": [1 / len(classes)] * len(classes)}
    save_bundle(tmp / "bundle", net, encoder, cfg, meta)
    return tmp / "bundle", load_bundle(tmp / "bundle")


@pytest.fixture(scope="session")
def random_bundle() -> RandomBundle:
    return _random_bundle
