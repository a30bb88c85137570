"""``shoal gc``: free the disk that finished runs no longer need, by rules, showing what it frees first.

A finished run keeps its bundle (what is served, exported, distilled from), its pictures and its split file; its
checkpoint and best-weights file only served to resume it, and are often the bulk of its folder. A failed or killed
run's files only serve to resume it. The rules:

- the ``keep_last`` most recent runs are left whole (a run just finished may still be looked at);
- a run that is a registered model version is never touched (:mod:`shoal.artifacts.models`);
- a run being trained (``running``) is never touched;
- a completed run loses ``checkpoint.pt``, ``checkpoint.tmp`` and ``best.safetensors``;
- with ``failed=True``, a failed (or killed) run loses every file in its folder (its registry row stays, so
  ``shoal runs`` still lists it, and it can no longer be resumed).

:func:`plan_gc` only looks; :func:`apply_gc` deletes what a plan lists.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from shoal.artifacts.models import ModelRegistry
from shoal.artifacts.registry import Registry
from shoal.artifacts.run import RunStatus

__all__ = ["GcItem", "GcPlan", "RESUME_FILES", "apply_gc", "plan_gc"]

RESUME_FILES = ("checkpoint.pt", "checkpoint.tmp", "best.safetensors")


@dataclass(frozen=True)
class GcItem:
    run_id: str
    status: str
    paths: tuple[Path, ...]
    bytes: int
    why: str


@dataclass
class GcPlan:
    items: list[GcItem] = field(default_factory=list)
    kept: dict[str, str] = field(default_factory=dict)  # run id -> why it is kept whole

    @property
    def bytes(self) -> int:
        return sum(i.bytes for i in self.items)


def _size(path: Path) -> int:
    if path.is_symlink() or path.is_file():
        return path.lstat().st_size
    total = 0
    for root, _, files in os.walk(path):
        total += sum((Path(root) / f).lstat().st_size for f in files)
    return total


def plan_gc(home: str | os.PathLike[str], keep_last: int = 5, failed: bool = False) -> GcPlan:
    """What :func:`apply_gc` would delete in the registry at ``home``, and which runs it keeps whole and why."""
    if keep_last < 0:
        raise ValueError(f"keep_last must be >= 0, not {keep_last}")
    runs = Registry(home).list(limit=1_000_000)  # newest first
    versions = {v.run_id: v.ref for v in ModelRegistry(home).versions()}
    plan = GcPlan()
    for k, record in enumerate(runs):
        folder = record.artifact_dir
        if k < keep_last:
            plan.kept[record.run_id] = f"one of the {keep_last} most recent runs"
        elif record.run_id in versions:
            plan.kept[record.run_id] = f"registered as {versions[record.run_id]}"
        elif record.status == RunStatus.RUNNING:
            plan.kept[record.run_id] = "running"
        elif record.status == RunStatus.COMPLETED:
            paths = tuple(p for p in (folder / name for name in RESUME_FILES) if p.exists() or p.is_symlink())
            if paths:
                plan.items.append(GcItem(record.run_id, record.status, paths, sum(_size(p) for p in paths),
                                         "finished: the checkpoint and best weights only served to resume it"))
        elif failed and folder.is_dir():
            paths = tuple(sorted(folder.iterdir()))
            if paths:
                plan.items.append(GcItem(record.run_id, record.status, paths, sum(_size(p) for p in paths),
                                         f"{record.status}: its files only served to resume it"))
    return plan


def apply_gc(plan: GcPlan) -> int:
    """Delete what ``plan`` lists; returns the bytes freed."""
    freed = 0
    for item in plan.items:
        for path in item.paths:
            size = _size(path)
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
            freed += size
    return freed
