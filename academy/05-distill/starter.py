"""Lab 5: distillation and fast inference.

Soft targets with a temperature and the distillation loss by hand; then, through shoal's public API, a DLRM
teacher on a synthetic click log, a small student distilled from it and the same student trained alone; a p99
latency measured by hand; the student exported to ONNX; the most accurate way of serving within a latency
budget. Fill in every TODO, top to bottom, and run `shoal academy check 5` after each one: the checks go in the
same order as this file. README.md explains the ideas.
"""

from __future__ import annotations

import time  # noqa: F401  (time.perf_counter: a clock for short intervals)
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np  # noqa: F401
import torch  # noqa: F401
import torch.nn.functional as F  # noqa: F401
from torch import Tensor

import shoal  # noqa: F401  (shoal.train)
from shoal import metrics  # noqa: F401  (metrics.auc)
from shoal.config import RunConfig, parse_config
from shoal.data.batch import Batch
from shoal.distill import distill, student_config  # noqa: F401
from shoal.export.onnx import ExportReport, export_onnx  # noqa: F401

STUDENT: dict[str, Any] = {"name": "logistic"}  # one weight per hashed id and per dense value: ~20x smaller

# ---------------------------------------------------------------------------------------------- 1. the loss


def soft_targets(logits: Tensor, temperature: float) -> Tensor:
    """Probabilities softened by a temperature T: sigmoid(z / T) for (B,) logits, softmax(z / T) for (B, C).

    T = 1 is the ordinary sigmoid / softmax; a higher T flattens the distribution, so the small probabilities
    that the teacher gives to the wrong answers (its "dark knowledge") become large enough to learn from.
    """
    # TODO: soften the logits by the temperature, then turn them into probabilities: one per row for (B,) logits
    #       (a binary output), a distribution over the C classes of each row for (B, C). Same shape out.
    #       README: "Temperature".
    raise NotImplementedError("TODO: soft_targets: sigmoid(logits / T) for (B,) logits, softmax(logits / T) for (B, C)")


def distillation_loss(student_logits: Tensor, labels: Tensor, teacher_logits: Tensor, temperature: float,
                      alpha: float) -> Tensor:
    """``alpha * CE(labels, student) + (1 - alpha) * T^2 * KL(teacher_T || student_T)``, the mean over rows.

    Logits are (B,) for a binary label (labels 0/1) or (B, C) for C classes (labels: class indices). The KL of
    two Bernoullis is a two-class softmax's. T^2 keeps the soft term's gradients at the hard term's scale.
    """
    # TODO: the formula above, by hand (the check runs without shoal.distill and F.kl_div). In: student and teacher
    #       logits of the same shape, (B,) or (B, C); labels (B,). Out: a 0-d tensor that autograd can follow back
    #       to student_logits. Work in log-probabilities (no log(0)). `shoal academy hint 5` helps step by step.
    raise NotImplementedError("TODO: distillation_loss: alpha * CE(labels, student) + (1 - alpha) * T^2 * KL")


# ---------------------------------------------------------------------------------------------- 2. teacher, students


def teacher_config(train_path: Path) -> RunConfig:
    """The teacher: a wide DLRM on the click log (d0..d3 dense counts, s0..s5 ids, s5 a "|" list)."""
    features: list[dict[str, Any]] = [{"name": f"d{k}", "kind": "dense", "transform": "log1p"} for k in range(4)]
    features += [{"name": f"s{j}", "kind": "sparse", "buckets": 2000} for j in range(5)]
    features.append({"name": "s5", "kind": "sparse", "buckets": 2000, "separator": "|"})
    return parse_config({
        "name": "lab5-teacher",
        "data": {"train": str(train_path), "valid_fraction": 0.2},
        "label": {"column": "label"},
        "features": features,
        "model": {"name": "dlrm", "embedding_dim": 16, "bottom_mlp": [64, 16], "top_mlp": [256, 128, 64]},
        "train": {"epochs": 3, "batch_size": 256, "lr": 1e-3, "embedding_lr": 0.05, "seed": 0},
    })


def train_teacher(config: RunConfig, home: Path) -> Any:
    """Train the teacher with shoal's public API, the registry at ``home``; return the run record."""
    raise NotImplementedError("TODO: train_teacher: train the config unchanged with shoal's public training "
                              "API, its registry at home, and return the run record")


def distill_student(teacher_run_id: str, home: Path, temperature: float = 2.0, alpha: float = 0.5,
                    augment: int = 4) -> Any:
    """Distil STUDENT from the teacher run with shoal.distill.distill; return the student's run record.

    ``augment``: new rows per training row that the teacher labels and the student learns from (the transfer set).
    """
    # TODO: a run of kind "distill" whose parent is the teacher, that keeps clearly more of the teacher's gain than
    #       the student alone (the check wants +10 % of it): read shoal.distill.distill's docstring for its options
    raise NotImplementedError("TODO: distill_student: shoal.distill.distill the STUDENT from the teacher run")


def train_student_alone(teacher: RunConfig, home: Path) -> Any:
    """The same STUDENT, data, split and training settings as the distilled one, trained on the labels alone."""
    # TODO: the baseline distillation must beat: the teacher's config (data, split, features, training settings)
    #       with STUDENT as its model, trained on the labels only with shoal's public training API, its registry
    #       at `home`; return the run record. student_config (imported above) builds such a config: read its
    #       docstring.
    raise NotImplementedError("TODO: train_student_alone: the teacher's run with STUDENT as the model, trained on "
                              "the labels alone; return the run record")


def gain_kept(auc: float, teacher_auc: float) -> float:
    """The share of the teacher's AUC gain over random (0.5) that a model keeps: 1.0 = all of it."""
    raise NotImplementedError("TODO: gain_kept: the share of the teacher's AUC above chance (0.5) that auc "
                              "reaches, a float: 1.0 when it equals the teacher's, 0.0 at chance")


# ---------------------------------------------------------------------------------------------- 3. latency


def p99_latency_ms(predict: Callable[[Batch], Any], rows: Batch, warmup: int = 20, calls: int = 500) -> float:
    """The 99th percentile, in milliseconds, of the wall-clock time of ``predict`` on one row at a time.

    ``warmup`` untimed calls first (caches, lazy initialisation), then ``calls`` timed calls cycling through
    the rows, each timed on its own (a p99 needs the distribution, not the total).
    """
    # TODO: a serving request is one row: prepare single-row batches before any timing (slicing is not the
    #       model's cost), run `warmup` untimed calls, then time `calls` calls one by one with a monotonic clock
    #       (time.perf_counter). Return the time that 99 % of the calls beat, as a float in milliseconds.
    #       README: "p50, p99" (why a percentile, not the mean). The check runs without shoal.runtime.latency.
    raise NotImplementedError("TODO: p99_latency_ms: warm up, time one-row calls one by one, take the 99th percentile")


# ---------------------------------------------------------------------------------------------- 4. ONNX, the budget


def export_student(bundle_dir: Path) -> ExportReport:
    """Export a bundle to ONNX, fp32 and dynamic int8, with shoal's parity check (files in bundle_dir/onnx)."""
    # TODO: the bundle folder as ONNX files, full precision (fp32) and 8-bit weights (int8), each checked against
    #       PyTorch on real rows by shoal's exporter (shoal.export.onnx; docs/export.md); return its report, which
    #       says where the files are (report.dir), how they compare (report.parity) and their sizes.
    raise NotImplementedError("TODO: export_student: the bundle as fp32 and int8 ONNX files, with shoal's parity "
                              "report")


@dataclass(frozen=True)
class Candidate:
    """One model served one way: its quality (AUC on held-out rows) and its p99 latency at batch 1."""

    name: str
    auc: float
    p99_ms: float


def measure(name: str, predict: Callable[[Batch], Any], rows: Batch) -> Candidate:
    """A candidate's AUC on ``rows`` (``predict`` gives click probabilities) and its p99 latency by hand."""
    # TODO: the AUC of predict's probabilities on all the rows at once (shoal.metrics has it), and the p99 of
    #       predict with your p99_latency_ms; return them as a Candidate.
    raise NotImplementedError("TODO: measure: the AUC of predict(rows) and p99_latency_ms(predict, rows)")


def pick_within_budget(candidates: Sequence[Candidate], budget_ms: float) -> tuple[Candidate | None, Candidate]:
    """(the most accurate candidate whose p99 <= budget_ms, or None when none is; the fastest candidate).

    Ties in AUC go to the faster candidate; the fastest is the nearest to the budget when nothing meets it.
    """
    # TODO: raise ValueError on an empty list; keep the candidates with p99_ms <= budget_ms; the best of them is the
    #       one with the highest auc (on a tie, the lowest p99_ms), None when none is within; the fastest is the one
    #       with the lowest p99_ms over all candidates. Do not sort the list in place.
    raise NotImplementedError("TODO: pick_within_budget: the most accurate candidate within budget, and the fastest")


# ---------------------------------------------------------------------------------------------- 5. the plot


def plot_quality_vs_latency(candidates: Sequence[Candidate], budget_ms: float, chosen: Candidate | None,
                            path: Path) -> None:
    """AUC against p99 latency (log scale) for each candidate, the budget as a vertical line, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: F401

    # TODO: one point per candidate, AUC against p99 latency and named; the chosen one marked; the budget as a
    #       vertical line; a log scale for the latency (it spans 10x); labelled axes (with units). Save the PNG at
    #       `path` and close the figure. The grader reads the figure.
    raise NotImplementedError("TODO: plot AUC against p99 latency, the budget as a vertical line, save to `path`")
