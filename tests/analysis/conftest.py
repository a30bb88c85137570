"""A tiny trained run shared by the analysis tests: a click that follows ``x``, a ``noise`` column, a shop id and a
short note, neither of which the label depends on."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import shoal
from shoal.config import parse_config

WORDS = ["red", "blue", "green", "cheap", "fast"]


def frame(n: int, seed: int) -> pd.DataFrame:
    """click = [x + noise' > 0]: ``x`` carries the signal; ``noise``, ``shop`` and ``note`` carry none."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    return pd.DataFrame({
        "x": x,
        "noise": rng.normal(size=n),
        "shop": [f"s{v}" for v in rng.integers(0, 8, n)],
        "note": [" ".join(rng.choice(WORDS, rng.integers(1, 4))) for _ in range(n)],
        "click": (x + 0.3 * rng.normal(size=n) > 0).astype(int),
    })


@dataclass(frozen=True)
class Trained:
    root: Path
    home: Path
    train: Path  # the training file
    run_id: str
    run_dir: Path


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    root = tmp_path_factory.mktemp("analysis")
    train = root / "train.csv"
    frame(1500, 0).to_csv(train, index=False)
    cfg = {"name": "tiny", "data": {"train": str(train), "valid_fraction": 0.3},
           "label": {"column": "click"},
           "features": [{"name": "x", "kind": "dense"}, {"name": "noise", "kind": "dense"},
                        {"name": "shop", "kind": "sparse", "buckets": 32},
                        {"name": "note", "kind": "text", "buckets": 64}],
           "model": {"name": "mlp", "embedding_dim": 4, "hidden": [16]},
           "train": {"epochs": 3, "batch_size": 64, "lr": 0.01, "seed": 0, "pictures": False}}
    run = shoal.train(parse_config(cfg), home=root / "home")
    return Trained(root, root / "home", train, run.run_id, run.artifact_dir)
