"""A whole distillation run: the teacher's outputs cached in the student's run folder, then the student trained.

:func:`distill` records the student run (kind ``distill``, the teacher as parent) before the teacher's pass, so
a failure is recorded; :func:`resume_distill` continues a killed run from its checkpoint with the cached outputs.
:func:`resume` continues a run of any kind (``shoal train --resume``, :func:`shoal.resume`): this package is the
lowest that knows both kinds of run that train, so training never imports distillation.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from shoal.artifacts.bundle import Bundle
from shoal.artifacts.registry import Registry, RunKind, RunRecord
from shoal.config import RunConfig, parse_config
from shoal.distill.augment import Augmentation
from shoal.distill.loss import DistillLoss
from shoal.distill.student import _same_teachers, student_config
from shoal.distill.teachers import TeacherOutputs, _as_teachers, teacher_outputs, with_transfer
from shoal.training.callbacks import Callbacks
from shoal.training.runs import fit_run, load, resume_training

__all__ = ["TEACHER_FILE", "distill", "resume", "resume_distill"]

TEACHER_FILE = "teacher-logits.npz"


# -- the whole run ----------------------------------------------------------------------------------------------
def distill(teacher: str | Sequence[str], student: str | Path | RunConfig | dict[str, Any],
            home: str | Path = "shoal-runs", *, temperature: float = 2.0, alpha: float = 0.5,
            transfer: Path | None = None, augment: int | Augmentation = 0, callbacks: Callbacks | None = None,
            outputs: TeacherOutputs | None = None, name: str | None = None,
            train: dict[str, Any] | None = None) -> RunRecord:
    """Train ``student`` on the soft targets of the ``teacher`` run; returns the student's finished record.

    ``teacher`` is a run id (or prefix, or ``latest``), or a list of them: an ensemble of runs trained on the same
    data, whose probabilities are averaged (:func:`ensemble_logits`); the student's config then derives from the
    first one's. The student run (kind ``distill``) records the (first) teacher as ``parent``, every teacher in
    ``summary["distill"]["teachers"]`` and the settings beside them. ``outputs`` reuses teacher outputs already
    computed for these teachers and data (``shoal compress`` scores the rows once for all its candidates; not with
    ``transfer`` or ``augment``); ``train`` overrides training settings of the student (e.g. ``{"epochs": 3}``).

    ``augment`` (K, or an :class:`Augmentation`) adds K new rows per training row, made from it (text: word
    masking and n-gram sampling; other columns: MUNGE; :mod:`shoal.distill.augment`) and seeded by the student's
    ``train.seed``, to the transfer rows: the teacher labels them and the student learns them from the soft term
    only. Held-out rows are never augmented. 0 (the default): off.
    """
    DistillLoss(TeacherOutputs(np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros(0, bool)),
                temperature, alpha)  # checks temperature and alpha before any work
    augmentation = augment if isinstance(augment, Augmentation) else Augmentation(copies=augment)
    registry = Registry(Path(home))
    refs = [teacher] if isinstance(teacher, str) else list(teacher)
    if not refs:
        raise ValueError("no teacher given; give a teacher run id, or several for an ensemble")
    t_records = [registry.get(ref) for ref in refs]
    ids = [r.run_id for r in t_records]
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        raise ValueError(f"teacher run {twice[0]} is given more than once ({refs}); name each teacher of an "
                         "ensemble once")
    bundles = [load(run_id, home) for run_id in ids]
    if bundles[0].task in ("multitask", "multilabel") and (transfer is not None or augmentation.copies):
        what = "several tasks" if bundles[0].task == "multitask" else "tags"
        raise ValueError(f"teacher run {ids[0]} predicts {what} (label.kind: {bundles[0].task}): distillation with "
                         "a transfer set or --augment does not support it yet (the transfer rows would need the "
                         "teacher's answers written as labels); distil on the training rows (leave out --transfer "
                         "and --augment)")
    _same_teachers([b.config for b in bundles], ids)
    teachers = _as_teachers(bundles)
    cfg = student_config(bundles[0].config, student, name)
    if train:
        doc = cfg.resolved()
        cfg = parse_config({**doc, "train": {**doc["train"], **train}}, source="student train settings")
    record = registry.create_run(cfg.name, cfg.resolved(), kind=RunKind.DISTILL, parent=ids[0])
    run_dir = record.artifact_dir
    with registry.recording(record.run_id):
        if transfer is not None or augmentation.copies:
            cfg, outputs = with_transfer(teachers, cfg, None if transfer is None else Path(transfer), run_dir,
                                         augmentation if augmentation.copies else None)
        elif outputs is None:
            outputs = teacher_outputs(teachers, cfg)
        cache = outputs.save(run_dir / TEACHER_FILE)
    prior = bundles[0].prior
    scale = float(prior["std"]) if isinstance(prior, dict) else None  # a regression teacher: values, not logits
    tasks = _task_settings(bundles[0], cfg)
    settings = {"teacher": ids[0], "teacher_model": bundles[0].config.model.name,  # the first teacher's
                "teacher_metrics": t_records[0].metrics,
                "teachers": ids, "teacher_models": [b.config.model.name for b in bundles],
                "ensemble": "mean of probabilities" if len(ids) > 1 else None,
                "temperature": temperature, "alpha": alpha, "scale": scale, "tasks": tasks,
                "teacher_rows": len(outputs), "teacher_outputs": str(cache),
                "transfer": None if transfer is None else str(transfer),
                "transfer_rows": int((~outputs.labelled).sum()),  # the transfer file's and the augmented rows
                "augment": ({**augmentation.settings(), "seed": cfg.train.seed,
                             # with a transfer file too: K per training row the teacher scored
                             "rows": (int((~outputs.labelled).sum()) if transfer is None
                                      else augmentation.copies * int(outputs.labelled.sum()))}
                            if augmentation.copies else None),
                "config": cfg.resolved()}  # what the trainer reads (with a transfer set: the joined file)
    record = registry.update(record.run_id, summary={"distill": settings})
    return fit_run(registry, record, cfg, callbacks, loss=DistillLoss(outputs, temperature, alpha, scale, tasks))


def _task_settings(bundle: Bundle, cfg: RunConfig) -> list[dict[str, Any]] | None:
    """A multitask teacher's tasks as the student's loss needs them: kind, weight (the student's config) and, for
    a regression task, its training label's standard deviation (the teacher's). A multilabel teacher's tags are
    binary tasks of weight 1 each (every row knows every tag)."""
    if bundle.task == "multilabel" and bundle.tags:
        return [{"name": t, "kind": "binary", "weight": 1.0, "scale": None} for t in bundle.tags]
    if bundle.task != "multitask" or cfg.label.tasks is None:
        return None
    return [{"name": t["name"], "kind": t["kind"], "weight": task.weight,
             "scale": float(t["train_label_std"]) if t["kind"] == "regression" else None}
            for t, task in zip(bundle.meta["tasks"], cfg.label.tasks, strict=True)]


def resume(ref: str, home: str | Path = "shoal-runs", callbacks: Callbacks | None = None) -> RunRecord:
    """Continue a killed or failed run (id, prefix or ``latest``) from its last checkpoint: a training run with the
    config it was started with, a distilled student also with its cached teacher outputs and its loss."""
    registry = Registry(Path(home))
    record = registry.get(ref)
    if record.kind == RunKind.COMPRESS:
        raise ValueError(f"run {record.run_id} is a compress search, which cannot be resumed; run it again: "
                         f"shoal compress {record.parent} --budget-ms ...")
    if record.kind == RunKind.AUTO:
        raise ValueError(f"run {record.run_id} is an auto search; continue it with: shoal auto --resume "
                         f"{record.run_id}")
    if record.kind == RunKind.DISTILL:
        return resume_distill(registry, record, callbacks)
    return resume_training(registry, record, callbacks)


def resume_distill(registry: Registry, record: RunRecord, callbacks: Callbacks | None = None) -> RunRecord:
    """Continue a killed distillation run from its checkpoint, with its cached teacher outputs."""
    settings = record.summary.get("distill")
    cache = record.artifact_dir / TEACHER_FILE
    if not settings or not cache.is_file():
        teachers = " ".join((settings or {}).get("teachers") or [str(record.parent)])
        raise ValueError(f"run {record.run_id} stopped before its teacher's outputs were saved; nothing to resume "
                         f"(distil again: shoal distill {teachers} --student ...)")
    record = registry.reopen(record.run_id)
    with registry.recording(record.run_id):
        cfg = parse_config(settings["config"], source=f"run {record.run_id}")
        loss = DistillLoss(TeacherOutputs.load(cache), settings["temperature"], settings["alpha"],
                           settings.get("scale"), settings.get("tasks"))
    return fit_run(registry, record, cfg, callbacks, resume=True, loss=loss)
