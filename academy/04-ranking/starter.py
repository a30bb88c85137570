"""Lab 4: sparse features and ranking.

Ids hashed into buckets, embedding bags, the DLRM dot interaction, normalized entropy and calibration by hand;
then shoal's DLRM, configured and trained through shoal's public API on a synthetic click log whose
Bayes-optimal metrics are known. Fill in every TODO, top to bottom, and run `shoal academy check 4` after each
one: the checks go in the same order as this file. README.md explains the ideas.
"""

from __future__ import annotations

import math  # noqa: F401  (math.log for the entropy)
import zlib  # noqa: F401  (zlib.crc32: a hash that is the same in every process)
from pathlib import Path
from typing import Any

import numpy as np
import torch  # noqa: F401
from torch import Tensor

import shoal  # noqa: F401  (shoal.train)
from shoal.config import RunConfig, parse_config  # noqa: F401
from shoal.data.synthetic import SynthTruth

# ---------------------------------------------------------------------------------------------- 1. ids -> rows


def hash_bucket(value: str, buckets: int) -> int:
    """The bucket (0 <= b < buckets) of an id string: the same in every process, spread evenly.

    Python's built-in hash() of a str is salted per process (PYTHONHASHSEED): do not use it here.
    """
    # TODO: hash value.encode("utf-8") with a fixed hash (zlib.crc32 is one), then take it modulo buckets
    raise NotImplementedError("TODO: hash_bucket: a fixed hash of the id's bytes, modulo buckets")


def embedding_bag_mean(weight: Tensor, ids: Tensor, offsets: Tensor) -> Tensor:
    """The mean of the embedding rows of each bag, like nn.EmbeddingBag(mode="mean").

    weight: (V, D) table; ids: (N,) row indices of all bags, concatenated; offsets: (B,) where each bag
    starts in ids. Returns (B, D); an empty bag gives a row of zeros.
    """
    # TODO: bag b is ids[offsets[b]:offsets[b + 1]] (the last bag runs to len(ids)). A loop over the bags is
    #       fine; faster: lengths = torch.diff(offsets, append=...), bag = torch.repeat_interleave(...), then
    #       index_add the rows weight[ids] into a (B, D) zero tensor and divide by lengths.clamp_min(1).
    raise NotImplementedError("TODO: embedding_bag_mean: the mean of weight[ids] within each bag")


def dot_interaction(vectors: Tensor) -> Tensor:
    """DLRM's feature interaction: the dot product of every pair of vectors (i < j).

    vectors: (B, F, D) -> (B, F * (F - 1) / 2), pairs in the order of torch.triu_indices(F, F, offset=1).
    """
    # TODO: gram = vectors @ vectors.transpose(1, 2) is (B, F, F); keep the entries above the diagonal
    raise NotImplementedError("TODO: dot_interaction: the dot products of every pair i < j of the F vectors")


# ---------------------------------------------------------------------------------------------- 2. metrics


def normalized_entropy(y: np.ndarray, p: np.ndarray, base_rate: float | None = None) -> float:
    """Log loss of p divided by the entropy of the base rate (default: mean(y)); 1 = no better than the rate."""
    # TODO: clip p to [1e-7, 1 - 1e-7]; log loss = -mean(y ln p + (1 - y) ln(1 - p));
    #       q = mean(y) unless base_rate is given; entropy = -(q ln q + (1 - q) ln(1 - q)); return a float
    raise NotImplementedError("TODO: normalized_entropy: mean log loss / entropy of the base rate")


def calibration(y: np.ndarray, p: np.ndarray) -> float:
    """Predicted over observed click rate, mean(p) / mean(y): 1 is calibrated, > 1 over-predicts."""
    raise NotImplementedError("TODO: calibration: mean(p) / mean(y)")


# ---------------------------------------------------------------------------------------------- 3. shoal's DLRM


def make_config(train_path: Path, dense: int = 4, sparse: int = 6) -> RunConfig:
    """A DLRM run on the click log at train_path: d0.. dense (log1p), s0.. sparse, the last one a "|" list."""
    # TODO: build the config as a dict, as a YAML file would hold it, and validate it with parse_config:
    #   {"name": ..., "data": {"train": str(train_path), "valid_fraction": 0.2}, "label": {"column": "label"},
    #    "features": [{"name": "d0", "kind": "dense", "transform": "log1p"}, ...,
    #                 {"name": "s0", "kind": "sparse", "buckets": 2000}, ..., the last with "separator": "|"],
    #    "model": {"name": "dlrm", "embedding_dim": ..., "bottom_mlp": [...], "top_mlp": [...]},
    #    "train": {"epochs": ..., "batch_size": ..., "seed": 0}}
    #   configs/synthetic.yaml is a full example (for a bigger log).
    raise NotImplementedError("TODO: make_config: a dlrm RunConfig from a dict, validated by parse_config")


def train_ranker(config: RunConfig, home: Path) -> Any:
    """Train the config with shoal's public API, the registry at `home`; return the run record."""
    raise NotImplementedError("TODO: train_ranker: train the config with shoal.train(config, home=home)")


def against_truth(metrics: dict[str, float], truth: SynthTruth) -> dict[str, float]:
    """Read a run's validation metrics against the Bayes-optimal ones of the generated log.

    Returns {"auc_gap": bayes AUC - valid AUC, "ne_gap": valid NE - bayes NE,
             "signal_captured": (valid AUC - 0.5) / (bayes AUC - 0.5)}.
    """
    # TODO: metrics["valid_auc"], metrics["valid_ne"], truth.bayes_auc, truth.bayes_ne
    raise NotImplementedError("TODO: against_truth: the gaps to the Bayes-optimal AUC and NE")


# ---------------------------------------------------------------------------------------------- 4. the plot


def plot_auc_per_epoch(history: list[dict[str, float]], bayes_auc: float, path: Path) -> None:
    """Validation AUC per epoch (history: the run's summary["history"]) against the Bayes ceiling, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: F401

    # TODO: each entry of history has "epoch" and "auc"; plot them, draw ax.axhline(bayes_auc) for the ceiling,
    #       label the axes, fig.savefig(path), plt.close(fig)
    raise NotImplementedError("TODO: plot the validation AUC per epoch and the Bayes ceiling, save to `path`")
