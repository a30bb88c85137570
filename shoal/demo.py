"""The config the demo trains on the synthetic click log (``configs/synthetic.yaml`` is the same in YAML)."""

from __future__ import annotations

from pathlib import Path

from shoal.config import RunConfig, parse_config

__all__ = ["synthetic_config"]


def synthetic_config(train: Path, dense: int = 13, sparse: int = 26, buckets: int = 100_000) -> RunConfig:
    """DLRM on a log written by ``shoal synth``: counts get log1p, the last sparse column is a "|" list."""
    features: list[dict[str, object]] = [{"name": f"d{i}", "kind": "dense", "transform": "log1p"}
                                         for i in range(dense)]
    for i in range(sparse):
        f: dict[str, object] = {"name": f"s{i}", "kind": "sparse", "buckets": buckets}
        if i == sparse - 1:
            f["separator"] = "|"
        features.append(f)
    return parse_config({
        "name": "synthetic-dlrm",
        "data": {"train": str(train), "valid_fraction": 0.1, "chunk_rows": 65536},
        "label": {"column": "label"},
        "features": features,
        "model": {"name": "dlrm", "embedding_dim": 16, "bottom_mlp": [64, 32], "top_mlp": [128, 64]},
        "train": {"epochs": 2, "batch_size": 512, "lr": 0.001, "embedding_lr": 0.05, "seed": 0,
                  "checkpoint_every": 200, "early_stopping_patience": 1},
    }, source="synthetic_config")
