"""Lab 4: sparse features and ranking.

Ids hashed into buckets, embedding bags, the DLRM dot interaction, normalized entropy and calibration by hand;
then shoal's DLRM, configured and trained through shoal's public API on a synthetic click log whose
Bayes-optimal metrics are known. Fill in every TODO, top to bottom, and run `shoal academy check 4` after each
one (`shoal academy hint 4` when stuck): the checks go in the same order as this file. README.md explains the ideas.
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
    # TODO: map the id to a row 0..buckets-1 that is the same in every process and on every machine (training
    #       and serving must agree): a fixed hash of the id's UTF-8 bytes, folded into the buckets.
    #       README: "The hashing trick".
    raise NotImplementedError("TODO: hash_bucket: a fixed hash of the id's bytes, modulo buckets")


def embedding_bag_mean(weight: Tensor, ids: Tensor, offsets: Tensor) -> Tensor:
    """The mean of the embedding rows of each bag, like nn.EmbeddingBag(mode="mean").

    weight: (V, D) table; ids: (N,) row indices of all bags, concatenated; offsets: (B,) where each bag
    starts in ids. Returns (B, D); an empty bag gives a row of zeros.
    """
    # TODO: bag b holds the ids from offsets[b] up to the next bag's offset (the last bag: to the end of ids).
    #       Its output row (D,) is the mean of its ids' rows of weight; an empty bag gives zeros. All bags
    #       together: (B, D). A loop over the bags is fine; a vectorised sum per bag is faster. The check runs
    #       without F.embedding_bag. README: "Embedding bags".
    raise NotImplementedError("TODO: embedding_bag_mean: the mean of weight[ids] within each bag")


def dot_interaction(vectors: Tensor) -> Tensor:
    """DLRM's feature interaction: the dot product of every pair of vectors (i < j).

    vectors: (B, F, D) -> (B, F * (F - 1) / 2), pairs in the order of torch.triu_indices(F, F, offset=1).
    """
    # TODO: the dot product of every pair of the F vectors of each row, i < j only (a vector with itself, and
    #       each pair twice, add nothing): (B, F, D) -> (B, F, F) of all dot products -> (B, F * (F - 1) / 2),
    #       the pairs in the order of torch.triu_indices(F, F, offset=1). README: "DLRM".
    raise NotImplementedError("TODO: dot_interaction: the dot products of every pair i < j of the F vectors")


# ---------------------------------------------------------------------------------------------- 2. metrics


def normalized_entropy(y: np.ndarray, p: np.ndarray, base_rate: float | None = None) -> float:
    """Log loss of p divided by the entropy of the base rate (default: mean(y)); 1 = no better than the rate."""
    # TODO: the mean log loss of the predictions p (kept away from 0 and 1, where the log is infinite), divided
    #       by the log loss of always predicting the base rate (mean(y) unless base_rate is given). y, p: (N,)
    #       -> a float; below 1 means better than the base rate. README: "Metrics for clicks".
    raise NotImplementedError("TODO: normalized_entropy: mean log loss / entropy of the base rate")


def calibration(y: np.ndarray, p: np.ndarray) -> float:
    """Predicted over observed click rate: 1 is calibrated, > 1 over-predicts."""
    # TODO: how many clicks the model predicts over how many there were. y (N,) 0/1, p (N,) probabilities
    #       -> a float. README: "Metrics for clicks".
    raise NotImplementedError("TODO: calibration: the clicks predicted over the clicks seen, a float near 1 for a "
                              "calibrated model (README: \"Metrics for clicks\")")


# ---------------------------------------------------------------------------------------------- 3. shoal's DLRM


def make_config(train_path: Path, dense: int = 4, sparse: int = 6) -> RunConfig:
    """A DLRM run on the click log at train_path: d0.. dense (log1p), s0.. sparse, the last one a "|" list."""
    # TODO: describe the run as a YAML file would (a dict) and let parse_config validate it. It needs: the log at
    #       train_path with a fifth of it held out for validation; the label column "label"; the dense features
    #       d0.. (their counts are heavy-tailed: log1p them); the sparse features s0.., each hashed into a few
    #       thousand buckets, the last a "|"-separated list (a bag); shoal's "dlrm" with an embedding size and
    #       its bottom and top MLPs; a few epochs, seed 0. The schema, field by field: configs/synthetic.yaml (a
    #       full example, for a bigger log) and docs/configs.md. README: "DLRM".
    raise NotImplementedError("TODO: make_config: a dlrm RunConfig from a dict, validated by parse_config")


def train_ranker(config: RunConfig, home: Path) -> Any:
    """Train the config with shoal's public API, the registry at `home`; return the run record."""
    # TODO: one call to shoal's public training API, with the registry at `home`.
    raise NotImplementedError("TODO: train_ranker: train the config with shoal's public training API, its "
                              "registry at home; return the run record (docs/quickstart.md, \"From Python\")")


def against_truth(metrics: dict[str, float], truth: SynthTruth) -> dict[str, float]:
    """Read a run's validation metrics against the Bayes-optimal ones of the generated log.

    Returns {"auc_gap": bayes AUC - valid AUC, "ne_gap": valid NE - bayes NE,
             "signal_captured": (valid AUC - 0.5) / (bayes AUC - 0.5)}.
    """
    # TODO: how far the run is from the best possible model (the gaps, both >= 0 for a real model), and which
    #       share of the AUC that the features hold above chance (0.5) it captured. README: "The Bayes ceiling".
    raise NotImplementedError("TODO: against_truth: the gaps to the Bayes-optimal AUC and NE")


# ---------------------------------------------------------------------------------------------- 4. the plot


def plot_auc_per_epoch(history: list[dict[str, float]], bayes_auc: float, path: Path) -> None:
    """Validation AUC per epoch (history: the run's summary["history"]) against the Bayes ceiling, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: F401

    # TODO: the validation AUC against the epoch (each entry of history has "epoch" and "auc"), and the Bayes
    #       ceiling as a horizontal line, with labelled axes; save it as a PNG at `path` and close it.
    raise NotImplementedError("TODO: plot the validation AUC per epoch and the Bayes ceiling, save to `path`")
