"""Small data and numerics shared by the distillation tests (tests/distill/)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from shoal.config import parse_config


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def clicks(path: Path, rows: int = 3000, seed: int = 0) -> Path:
    """A click log whose label depends on two dense values and one id (a logistic truth)."""
    rng = np.random.default_rng(seed)
    x0, x1, c = rng.normal(size=rows), rng.normal(size=rows), rng.integers(0, 20, rows)
    effect = np.linspace(-1.5, 1.5, 20)[c]
    y = rng.random(rows) < sigmoid(1.5 * x0 - x1 + effect - 0.5)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["x0", "x1", "c", "y"])
        for i in range(rows):
            w.writerow([f"{x0[i]:.4f}", f"{x1[i]:.4f}", f"id{c[i]}", int(y[i])])
    return path


def click_config(data: Path, model: dict[str, Any], epochs: int = 3) -> Any:
    return parse_config({
        "name": "clicks", "data": {"train": str(data), "valid_fraction": 0.2},
        "label": {"column": "y"},
        "features": [{"name": "x0", "kind": "dense"}, {"name": "x1", "kind": "dense"},
                     {"name": "c", "kind": "sparse", "buckets": 100}],
        "model": model,
        "train": {"epochs": epochs, "batch_size": 64, "lr": 0.01, "embedding_lr": 0.1, "seed": 3,
                  "early_stopping_patience": 5, "pictures": False},  # no test here looks at them
    })
