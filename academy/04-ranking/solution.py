"""Lab 4, reference solution: sparse features and ranking.

Hashing ids into buckets, embedding bags, the DLRM dot interaction, normalized entropy and calibration by
hand, then shoal's DLRM configured and trained through shoal's public API on a synthetic click log whose
Bayes-optimal metrics are known. The reference reaches a validation AUC of ~0.72 (Bayes: ~0.76).
"""

from __future__ import annotations

import math
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

import shoal
from shoal.config import RunConfig, parse_config
from shoal.data.synthetic import SynthTruth

# ---------------------------------------------------------------------------------------------- 1. ids -> rows


def hash_bucket(value: str, buckets: int) -> int:
    """The bucket (0 <= b < buckets) of an id string: the same in every process, spread evenly.

    Python's built-in hash() of a str is salted per process (PYTHONHASHSEED), so a model trained in one
    process would look its ids up in the wrong rows in the next: use a fixed hash such as CRC-32.
    """
    return zlib.crc32(value.encode("utf-8")) % buckets


def embedding_bag_mean(weight: Tensor, ids: Tensor, offsets: Tensor) -> Tensor:
    """The mean of the embedding rows of each bag, like nn.EmbeddingBag(mode="mean").

    weight: (V, D) table; ids: (N,) row indices of all bags, concatenated; offsets: (B,) where each bag
    starts in ids. Returns (B, D); an empty bag gives a row of zeros.
    """
    n_bags = offsets.shape[0]
    lengths = torch.diff(offsets, append=torch.tensor([ids.shape[0]], dtype=offsets.dtype))  # (B,)
    bag = torch.repeat_interleave(torch.arange(n_bags), lengths)  # (N,): the bag of each id
    sums = torch.zeros(n_bags, weight.shape[1], dtype=weight.dtype).index_add(0, bag, weight[ids])  # (B, D)
    return sums / lengths.clamp_min(1).unsqueeze(1).to(weight.dtype)  # empty bags: 0 / 1 = 0


def dot_interaction(vectors: Tensor) -> Tensor:
    """DLRM's feature interaction: the dot product of every pair of vectors (i < j).

    vectors: (B, F, D) -> (B, F * (F - 1) / 2), pairs in the order of torch.triu_indices(F, F, offset=1).
    """
    f = vectors.shape[1]
    gram = vectors @ vectors.transpose(1, 2)  # (B, F, F): every dot product at once
    i, j = torch.triu_indices(f, f, offset=1)
    return gram[:, i, j]


# ---------------------------------------------------------------------------------------------- 2. metrics


def normalized_entropy(y: np.ndarray, p: np.ndarray, base_rate: float | None = None) -> float:
    """Log loss of p divided by the entropy of the base rate (default: mean(y)); 1 = no better than the rate."""
    y = np.asarray(y, dtype=np.float64)
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-7, 1 - 1e-7)  # log(0) would be -inf
    q = float(y.mean()) if base_rate is None else base_rate
    log_loss = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    entropy = -(q * math.log(q) + (1 - q) * math.log(1 - q))
    return float(log_loss / entropy)


def calibration(y: np.ndarray, p: np.ndarray) -> float:
    """Predicted over observed click rate, mean(p) / mean(y): 1 is calibrated, > 1 over-predicts."""
    return float(np.mean(p) / np.mean(y))


# ---------------------------------------------------------------------------------------------- 3. shoal's DLRM


def make_config(train_path: Path, dense: int = 4, sparse: int = 6) -> RunConfig:
    """A DLRM run on the click log at train_path: d0.. dense (log1p), s0.. sparse, the last one a "|" list."""
    features: list[dict[str, Any]] = [{"name": f"d{k}", "kind": "dense", "transform": "log1p"} for k in range(dense)]
    for j in range(sparse):
        feature: dict[str, Any] = {"name": f"s{j}", "kind": "sparse", "buckets": 2000}
        if j == sparse - 1:
            feature["separator"] = "|"  # the last column holds several ids per cell
        features.append(feature)
    return parse_config({
        "name": "lab4-dlrm",
        "data": {"train": str(train_path), "valid_fraction": 0.2},
        "label": {"column": "label"},
        "features": features,
        "model": {"name": "dlrm", "embedding_dim": 8, "bottom_mlp": [16, 8], "top_mlp": [32, 16]},
        "train": {"epochs": 2, "batch_size": 256, "lr": 1e-3, "embedding_lr": 0.05, "seed": 0,
                  "early_stopping_patience": 2},
    })


def train_ranker(config: RunConfig, home: Path) -> Any:
    """Train the config with shoal's public API, the registry at `home`; return the run record."""
    return shoal.train(config, home=home)


def against_truth(metrics: dict[str, float], truth: SynthTruth) -> dict[str, float]:
    """Read a run's validation metrics against the Bayes-optimal ones of the generated log."""
    auc, ne = metrics["valid_auc"], metrics["valid_ne"]
    return {
        "auc_gap": truth.bayes_auc - auc,
        "ne_gap": ne - truth.bayes_ne,
        "signal_captured": (auc - 0.5) / (truth.bayes_auc - 0.5),
    }


# ---------------------------------------------------------------------------------------------- 4. the plot


def plot_auc_per_epoch(history: list[dict[str, float]], bayes_auc: float, path: Path) -> None:
    """Validation AUC per epoch (history: the run's summary["history"]) against the Bayes ceiling, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(epochs, [h["auc"] for h in history], marker="o", label="DLRM, validation")
    ax.axhline(bayes_auc, color="k", linestyle="--", label=f"Bayes-optimal ({bayes_auc:.3f})")
    ax.axhline(0.5, color="gray", linestyle=":", label="random (0.5)")
    ax.set(xlabel="epoch", ylabel="AUC", title="Lab 4: AUC per epoch")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
