"""Lab 4's grader: `shoal academy check 4` runs these checks, in order, against your lab.py."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import shoal.models.dlrm
from shoal import metrics
from shoal.academy.figures import has_line, plotted_lines
from shoal.academy.grader import (
    Check,
    CheckFailed,
    LabContext,
    expect_figure,
    expect_tensor,
    saved_figures,
    synthetic_log,
    without,
)
from shoal.config import RunConfig
from shoal.data.synthetic import SynthSpec, load_truth

REQUIRES = ("sklearn", "matplotlib", "pyarrow")
AUC_TARGET = 0.68  # the reference gets ~0.72 on this log; the Bayes-optimal AUC is ~0.76
SPEC = SynthSpec(rows=30_000, dense=4, sparse=6, base_rate=0.2, max_cardinality=1000, seed=0)
# what the functions by hand may not call: the library versions they re-derive
LIBRARY_BAG = {"F.embedding_bag": [(F, "embedding_bag"), (torch, "embedding_bag")],
               "nn.EmbeddingBag": [(nn, "EmbeddingBag")]}
LIBRARY_DOT = {"shoal's DotInteraction": [(shoal.models.dlrm, "DotInteraction")]}
LIBRARY_METRICS = {f"shoal.metrics.{name}": [(metrics, name)]
                   for name in ("normalized_entropy", "calibration", "log_loss", "entropy")}


def check_hash(ctx: LabContext) -> str:
    ids = [f"s0_{i * 2654435761 % (1 << 24):06x}" for i in range(6400)]
    got = [ctx.lab.hash_bucket(v, 64) for v in ids]
    if not all(isinstance(b, int | np.integer) for b in got):
        raise CheckFailed(f"hash_bucket should return an int, got {type(got[0]).__name__}")
    if not all(0 <= b < 64 for b in got):
        raise CheckFailed(f"hash_bucket(value, 64) returned {min(got)}..{max(got)}: take the hash modulo buckets")
    if [ctx.lab.hash_bucket(v, 64) for v in ids[:50]] != got[:50]:
        raise CheckFailed("hash_bucket gave two different buckets for the same id: it must be deterministic")
    if got[:200] == [hash(v) % 64 for v in ids[:200]]:
        raise CheckFailed("hash_bucket uses Python's hash(), which is salted per process (PYTHONHASHSEED): a "
                          "model saved today would look its ids up in the wrong rows tomorrow; use zlib.crc32 "
                          "or hashlib on value.encode()")
    counts = np.bincount(np.asarray(got), minlength=64)
    if counts.max() > 3 * counts.mean() or (counts == 0).any():
        raise CheckFailed(f"hash_bucket spreads ids unevenly (bucket sizes {counts.min()}..{counts.max()} for a mean "
                          f"of {counts.mean():.0f}): hash the whole string, e.g. zlib.crc32(value.encode())")
    return f"deterministic, 6,400 ids over 64 buckets: {counts.min()}..{counts.max()} per bucket"


def check_embedding_bag(ctx: LabContext) -> str:
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(20, 5, generator=g, requires_grad=True)
    ids = torch.tensor([3, 7, 7, 1, 19, 0, 4, 4, 4])
    offsets = torch.tensor([0, 3, 3, 5])  # bags [3 7 7] [] [1 19] [0 4 4 4]: the second one is empty
    bag = nn.EmbeddingBag(20, 5, mode="mean")
    with torch.no_grad():
        bag.weight.copy_(weight)
    expected = bag(ids, offsets)
    with without(ctx.lab, LIBRARY_BAG, "gather the rows with weight[ids], then sum and count them per bag"):
        out = ctx.lab.embedding_bag_mean(weight, ids, offsets)
    got = expect_tensor(out, "embedding_bag_mean(weight, ids, offsets) for 4 bags of 5-dim rows", (4, 5))
    if not torch.isfinite(got).all():
        raise CheckFailed("embedding_bag_mean returned nan or inf: an empty bag has 0 ids, so clamp the count to >= 1 "
                          "before dividing (its mean is a row of zeros)")
    if not torch.allclose(got, expected, atol=1e-5):
        if torch.allclose(got[[0, 2, 3]], expected[[0, 2, 3]] * torch.tensor([[3.0], [2.0], [4.0]]), atol=1e-4):
            raise CheckFailed("your bags hold the sums of their rows: divide by the number of ids in each bag")
        raise CheckFailed(f"embedding_bag_mean differs from nn.EmbeddingBag(mode='mean'): row 0 is {got[0].tolist()}, "
                          f"expected {expected[0].tolist()}; bag b is ids[offsets[b]:offsets[b + 1]] (the last bag "
                          "runs to the end of ids)")
    got.sum().backward()
    if weight.grad is None:
        raise CheckFailed("no gradient reached the embedding table: index weight with the ids (weight[ids]), "
                          "do not build new tensors from .tolist() or .item()")
    expected.sum().backward()
    if not torch.allclose(weight.grad, bag.weight.grad, atol=1e-5):
        raise CheckFailed("the gradient on the table differs from nn.EmbeddingBag's: each id's row gets 1 / (its bag's "
                          "size)")
    return "values and gradients match nn.EmbeddingBag(mode='mean'), empty bag included"


def check_interaction(ctx: LabContext) -> str:
    g = torch.Generator().manual_seed(1)
    vectors = torch.randn(3, 4, 6, generator=g)
    with without(ctx.lab, LIBRARY_DOT, "every pair's dot product from the (B, F, D) vectors, by hand"):
        out = ctx.lab.dot_interaction(vectors)
    got = expect_tensor(out, "dot_interaction(vectors) for vectors of shape (3, 4, 6)", (3, 6))
    i, j = torch.triu_indices(4, 4, offset=1)
    expected = (vectors[:, i] * vectors[:, j]).sum(-1)
    if not torch.allclose(got, expected, atol=1e-5):
        if torch.allclose(got.sort(dim=1).values, expected.sort(dim=1).values, atol=1e-5):
            raise CheckFailed("the right dot products in the wrong order: list pairs (i, j), i < j, row by row, "
                              "as torch.triu_indices(F, F, offset=1) does")
        raise CheckFailed(f"dot_interaction gave {got[0, :3].tolist()}..., expected {expected[0, :3].tolist()}...: "
                          "the (i, j) entry is the dot product of vectors[:, i] and vectors[:, j]")
    return "(3, 4, 6) -> (3, 6): every pair i < j"


def _fixed_arrays() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(4)
    p = rng.uniform(0.02, 0.6, size=500)
    y = (rng.random(500) < p * 0.8).astype(np.float64)  # a model that over-predicts by 25 %
    return y, p


def check_metrics(ctx: LabContext) -> str:
    expected_ne = {b: metrics.normalized_entropy(*_fixed_arrays(), base_rate=b) for b in (None, 0.25)}
    expected_cal = metrics.calibration(*_fixed_arrays())
    expected_sure = metrics.normalized_entropy(*_sure_arrays())
    with without(ctx.lab, LIBRARY_METRICS, "compute the log loss and the base rate's entropy with numpy"):
        return _check_metrics(ctx, expected_ne, expected_cal, expected_sure)


def _sure_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The fixed labels with predictions that are right and certain, exactly 0 or 1 (two of them 0.5)."""
    y, _ = _fixed_arrays()
    sure = np.where(y == 1, 1.0, 0.0)
    sure[:2] = 0.5
    return y, sure


def _check_metrics(ctx: LabContext, expected_ne: dict[float | None, float], expected_cal: float,
                   expected_sure: float) -> str:
    y, p = _fixed_arrays()
    for base_rate in (None, 0.25):
        expected = expected_ne[base_rate]
        got = float(ctx.lab.normalized_entropy(y, p, base_rate) if base_rate else ctx.lab.normalized_entropy(y, p))
        if not math.isclose(got, expected, rel_tol=1e-5):
            raise CheckFailed(f"normalized_entropy = {got:.5f}, expected {expected:.5f} (base_rate={base_rate}): the "
                              "mean log loss -mean(y ln p + (1 - y) ln(1 - p)) divided by the entropy of the base rate "
                              "-(q ln q + (1 - q) ln(1 - q)), q = mean(y) unless base_rate is given")
    constant = np.full_like(p, y.mean())
    if not math.isclose(float(ctx.lab.normalized_entropy(y, constant)), 1.0, rel_tol=1e-5):
        raise CheckFailed("predicting the base rate everywhere should give NE = 1 exactly")
    got_sure = float(ctx.lab.normalized_entropy(*_sure_arrays()))  # a model can output exactly 0 and 1
    if not math.isclose(got_sure, expected_sure, rel_tol=1e-3, abs_tol=1e-6):
        raise CheckFailed(f"normalized_entropy = {got_sure} when some predictions are exactly 0 or 1 (expected "
                          f"{expected_sure:.4f}): 0 * log(0) is nan; keep p away from 0 and 1 first, e.g. "
                          "np.clip(p, 1e-7, 1 - 1e-7)")
    expected = expected_cal
    got = float(ctx.lab.calibration(y, p))
    if not math.isclose(got, expected, rel_tol=1e-6):
        if math.isclose(got, 1 / expected, rel_tol=1e-6):
            raise CheckFailed("calibration is upside down: predicted over observed, mean(p) / mean(y)")
        raise CheckFailed(f"calibration = {got:.4f}, expected {expected:.4f}: mean(p) / mean(y)")
    return f"NE {expected_ne[None]:.4f} and calibration {expected:.3f} match shoal.metrics"


def _log(ctx: LabContext) -> Path:
    return synthetic_log(ctx, SPEC)


def check_config(ctx: LabContext) -> str:
    path = _log(ctx)
    cfg = ctx.lab.make_config(path)
    if not isinstance(cfg, RunConfig):
        raise CheckFailed(f"make_config should return a RunConfig (from shoal.config.parse_config), got "
                          f"{type(cfg).__name__}")
    if cfg.model.name != "dlrm":
        raise CheckFailed(f"the model is {cfg.model.name!r}: this lab trains shoal's DLRM, model: {{name: dlrm, ...}}")
    if Path(cfg.data.train).resolve() != path.resolve():
        raise CheckFailed(f"data.train is {cfg.data.train}, not the log the grader generated ({path}): use train_path")
    if cfg.label.column != "label":
        raise CheckFailed(f"the label column is {cfg.label.column!r}; the click log's is 'label'")
    if not cfg.sparse or not cfg.dense:
        raise CheckFailed("use both kinds of features: the dense counts d0.. and the sparse ids s0..")
    lists = [f for f in cfg.sparse if f.source == f"s{SPEC.sparse - 1}"]
    if lists and lists[0].separator != "|":
        raise CheckFailed(f"s{SPEC.sparse - 1} holds several ids per cell joined by '|': give it separator: '|'")
    if cfg.train.epochs > 6:
        raise CheckFailed(f"{cfg.train.epochs} epochs is more than this log needs: 1 to 3 reach the target")
    ctx.state["config"] = cfg
    return f"DLRM on {len(cfg.dense)} dense and {len(cfg.sparse)} sparse features, {cfg.train.epochs} epochs"


def check_train(ctx: LabContext) -> str:
    home = ctx.workdir / "shoal-runs"
    run = ctx.lab.train_ranker(ctx.state["config"], home)
    m = getattr(run, "metrics", None)
    if not isinstance(m, dict) or "valid_auc" not in m:
        raise CheckFailed("train_ranker should return what shoal.train returns (a RunRecord with .metrics)")
    auc, ne = float(m["valid_auc"]), float(m["valid_ne"])
    truth = load_truth(_log(ctx))
    ctx.state.update(run=run, truth=truth)
    if not auc >= AUC_TARGET:
        raise CheckFailed(f"validation AUC {auc:.3f} < {AUC_TARGET} (Bayes-optimal: {truth.bayes_auc:.3f}): train "
                          "for another epoch, or check the features: log1p on the counts, the '|' list")
    if not ne < 1:
        raise CheckFailed(f"validation NE {ne:.3f} >= 1: the model predicts worse than the base rate; lower the "
                          "learning rates")
    return f"AUC {auc:.3f} >= {AUC_TARGET}, NE {ne:.3f} < 1 (Bayes: AUC {truth.bayes_auc:.3f}, NE {truth.bayes_ne:.3f})"


def check_truth(ctx: LabContext) -> str:
    m, truth = ctx.state["run"].metrics, ctx.state["truth"]
    out = ctx.lab.against_truth(m, truth)
    if not isinstance(out, dict):
        raise CheckFailed(f"against_truth should return a dict, got {type(out).__name__}")
    expected = {"auc_gap": truth.bayes_auc - m["valid_auc"], "ne_gap": m["valid_ne"] - truth.bayes_ne,
                "signal_captured": (m["valid_auc"] - 0.5) / (truth.bayes_auc - 0.5)}
    for key, value in expected.items():
        if key not in out:
            raise CheckFailed(f"against_truth lacks the key {key!r} (wants {', '.join(expected)})")
        if not math.isclose(float(out[key]), value, rel_tol=1e-6, abs_tol=1e-9):
            raise CheckFailed(f"{key} = {float(out[key]):.4f}, expected {value:.4f}: gaps are measured so that a "
                              "positive number is how far the model is from the ceiling; signal_captured is "
                              "(auc - 0.5) / (bayes_auc - 0.5)")
    return f"{expected['signal_captured']:.0%} of the learnable AUC above 0.5; NE {expected['ne_gap']:.3f} above Bayes"


def check_plot(ctx: LabContext) -> str:
    path = ctx.workdir / "auc_per_epoch.png"
    path.unlink(missing_ok=True)
    run = ctx.state["run"]
    history, bayes = run.summary["history"], ctx.state["truth"].bayes_auc
    with saved_figures() as saved:
        ctx.lab.plot_auc_per_epoch([dict(h) for h in history], bayes, path)
    fig = expect_figure(saved, path, "the AUC per epoch plot")
    if not has_line(fig, [h["auc"] for h in history]):
        raise CheckFailed(f"the plot does not show the validation AUC of the {len(history)} epochs: one line of "
                          "h['auc'] for h in history, against h['epoch']")
    if not any(np.allclose(y, bayes) and y.size >= 2 for _, y, _ in plotted_lines(fig)):
        raise CheckFailed(f"draw the Bayes-optimal AUC ({bayes:.3f}) as a horizontal line (ax.axhline): the ceiling "
                          "that no model of this data can pass")
    return f"{len(history)} epochs against the Bayes ceiling, axes labelled, in {path.name}"


CONFIG = "shoal's DLRM: make_config"
TRAIN = f"train with shoal.train: valid AUC >= {AUC_TARGET}, NE < 1"

CHECKS = [
    Check("hashing ids into buckets", check_hash, time_limit_s=10, hints=(
        "The bucket must be the same in every process and every machine, and spread ids evenly: a fixed hash of "
        "the id's bytes, modulo the number of buckets. Python's hash() of a str changes from one process to the next.",
        "zlib.crc32(value.encode('utf-8')) % buckets")),
    Check("embedding bag (mean) matches nn.EmbeddingBag", check_embedding_bag, time_limit_s=10, hints=(
        "Bag b holds ids[offsets[b]:offsets[b + 1]] (the last bag runs to the end); its vector is the mean of "
        "those rows of weight, and an empty bag is a row of zeros.",
        "rows = weight[ids]; bag = the bag number of each id (torch.repeat_interleave(torch.arange(B), sizes)); "
        "sums = torch.zeros(B, D).index_add(0, bag, rows)",
        "return sums / sizes.clamp(min=1).unsqueeze(1).to(sums.dtype), with sizes = the difference of offsets "
        "and len(ids)")),
    Check("DLRM dot interaction", check_interaction, time_limit_s=10, hints=(
        "Each row has F vectors; the interaction is the dot product of every pair (i, j) with i < j, listed row "
        "by row: F * (F - 1) / 2 numbers.",
        "i, j = torch.triu_indices(F, F, offset=1); return (vectors[:, i] * vectors[:, j]).sum(-1)")),
    Check("metrics by hand: NE and calibration match shoal.metrics", check_metrics, time_limit_s=10, hints=(
        "NE is the model's mean log loss divided by the log loss of always predicting the base rate; below 1 the "
        "model beats the base rate. Calibration is the clicks predicted over the clicks seen.",
        "p = np.clip(p, 1e-7, 1 - 1e-7); loss = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)); q = base_rate "
        "or y.mean(); return loss / -(q * np.log(q) + (1 - q) * np.log(1 - q))",
        "calibration: return float(np.mean(p) / np.mean(y))")),
    Check(CONFIG, check_config, time_limit_s=30, hints=(
        "A RunConfig is what a YAML file holds, as a dict: name, data, label, features, model, train. "
        "configs/synthetic.yaml is a complete one; parse_config(the_dict) validates it and names any wrong field.",
        '{"data": {"train": str(train_path), "valid_fraction": 0.2}, "label": {"column": "label"}, "features": '
        '[{"name": "d0", "kind": "dense", "transform": "log1p"}, ..., {"name": "s0", "kind": "sparse", "buckets": '
        '2000}, ..., the last sparse one with "separator": "|"]}',
        '"model": {"name": "dlrm", "embedding_dim": 8, "bottom_mlp": [16, 8], "top_mlp": [32, 16]}, "train": '
        '{"epochs": ..., "batch_size": ..., "seed": 0}',
    )),
    Check(TRAIN, check_train, time_limit_s=150, needs=(CONFIG,), hints=(
        "train_ranker is one call to shoal's public API with the registry at home; the work is in the config: "
        "log1p on the counts, the '|' list, enough buckets, 1 to 3 epochs.",
        "return shoal.train(config, home=home)")),
    Check("against the Bayes-optimal ceiling", check_truth, time_limit_s=10, needs=(TRAIN,), hints=(
        "The generated log knows the best possible AUC and NE (truth.bayes_auc, truth.bayes_ne): measure how far "
        "the run is from them, each gap positive for a real model.",
        "{'auc_gap': truth.bayes_auc - auc, 'ne_gap': ne - truth.bayes_ne, 'signal_captured': (auc - 0.5) / "
        "(truth.bayes_auc - 0.5)} with auc, ne = metrics['valid_auc'], metrics['valid_ne']")),
    Check("plot: auc_per_epoch.png", check_plot, time_limit_s=30, needs=(TRAIN,), hints=(
        "One line of the validation AUC per epoch, and the Bayes-optimal AUC as a horizontal line: the ceiling "
        "no model of this data can pass. Label both axes.",
        "ax.plot([h['epoch'] for h in history], [h['auc'] for h in history], marker='o'); ax.axhline(bayes_auc, "
        "linestyle='--'); ax.set_xlabel('epoch'); ax.set_ylabel('validation AUC'); fig.savefig(path)")),
]
