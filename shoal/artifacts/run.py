"""A run as the registry records it: its kind, its status, its summary and the record read back.

Kinds and statuses are :class:`~enum.StrEnum`: stored and serialized as their plain string values, so the
database, JSON files and older registries read the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, TypedDict

__all__ = ["RunKind", "RunRecord", "RunStatus", "RunSummary"]


class RunKind(StrEnum):
    """What made a run: training from a config, distillation from a teacher, a compress search, or a `shoal auto`
    search (whose trials are training runs with the auto run as parent)."""

    TRAIN = "train"
    DISTILL = "distill"
    COMPRESS = "compress"
    AUTO = "auto"


class RunStatus(StrEnum):
    """Where a run stands; stored as its string value, so the database and JSON read the same as plain strings."""

    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    KILLED = "killed"


class RunSummary(TypedDict, total=False):
    """What a run records beside its metrics: the trainer's counts and timings, where its bundle is, how it
    ended, and the settings of a distillation or compress run. Keys a run did not write are absent."""

    train_rows: int  # usable training rows (held-out validation rows excluded)
    valid_rows: int
    test_rows: int
    quarantined_rows: int
    quarantined_by_reason: dict[str, int]
    quarantine_file: str | None
    valid_quarantined_rows: int
    test_quarantined_rows: int
    text_truncated_rows: int
    train_positives: int  # binary label
    train_base_rate: float
    classes: list[str]  # multiclass label
    train_class_counts: list[int]
    train_class_prior: list[float]
    valid_confusion: list[list[int]]  # rows: true class, columns: predicted
    test_confusion: list[list[int]]
    valid_confusion_png: str
    test_confusion_png: str
    valid_curves_png: str  # binary label: ROC, precision-recall and calibration curves
    test_curves_png: str
    learning_curve_png: str  # training and validation loss, validation AUC/accuracy by step
    steps: int
    rows_trained: int
    epochs_run: int
    stopped_early: bool
    train_seconds: float
    train_rows_per_s: float
    history: list[dict[str, Any]]  # one entry per validation
    world_size: int  # distributed training
    rank_batch_size: int
    steps_per_epoch: int
    input_shards: str
    bundle: str  # the bundle folder
    lineage: dict[str, Any]  # {"data": {split: {path, bytes, modified, sha256}}}
    error: str  # a failed run: "TypeName: message"
    traceback: str
    distill: dict[str, Any]  # a distilled student: its teachers and settings
    compress: dict[str, Any]  # a compress run: every candidate measured, and the one chosen
    chosen_config: dict[str, Any]


@dataclass(frozen=True)
class RunRecord:
    """A snapshot of one run's row in the registry (plus its artifact directory)."""

    run_id: str
    name: str
    kind: RunKind
    status: RunStatus
    config: dict[str, Any]
    metrics: dict[str, Any]
    summary: RunSummary
    parent: str | None
    created_at: float
    updated_at: float
    finished_at: float | None
    artifact_dir: Path

    @property
    def finished(self) -> bool:
        """Whether the run has been marked finished."""
        return self.finished_at is not None
