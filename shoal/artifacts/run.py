"""A run as the registry records it: its kind, its status, its summary and the record read back; and the lock
that says a live process is running it.

Kinds and statuses are :class:`~enum.StrEnum`: stored and serialized as their plain string values, so the
database, JSON files and older registries read the same.

The run lock: a process that runs a run holds an exclusive ``fcntl.flock`` on ``run.lock`` in the run folder
(:func:`hold_run`, taken by the registry when the run becomes ``running`` in this process), and writes who it is
to ``run.owner.json`` beside it (pid, host, start time) for the error a second process gets. The kernel drops the
lock when the process dies, however it dies (SIGKILL, OOM), so a crash never leaves a stale lock;
:func:`run_is_live` asks the kernel with a non-blocking shared lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, TypedDict

from shoal.errors import ShoalError

__all__ = ["LOCK_FILE", "OWNER_FILE", "RunBusyError", "RunKind", "RunRecord", "RunStatus", "RunSummary",
           "hold_run", "release_run", "run_is_live"]

log = logging.getLogger(__name__)


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
    valid_regression_png: str  # regression label: predicted against actual values, residuals
    test_regression_png: str
    train_label_mean: float  # regression label: its training mean and standard deviation
    train_label_std: float
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


# -- the run lock ----------------------------------------------------------------------------------------------

LOCK_FILE = "run.lock"
OWNER_FILE = "run.owner.json"
LOCK_WAIT_S = 1.0  # how long to retry a held lock: a reader's probe, or a process killed a moment ago

_held: dict[Path, int] = {}  # run folder -> the descriptor holding its lock, in this process
_held_guard = threading.Lock()


class RunBusyError(ShoalError):
    """Another live process runs this run (it holds the run's lock)."""


def _forget_after_fork() -> None:
    """A forked child does not run its parent's runs: drop (close) the inherited descriptors, which leaves the
    parent's locks held by the parent alone."""
    global _held_guard
    _held_guard = threading.Lock()  # a thread of the parent may have held it at the fork
    for fd in _held.values():
        with contextlib.suppress(OSError):
            os.close(fd)
    _held.clear()


os.register_at_fork(after_in_child=_forget_after_fork)


def _owner(run_dir: Path) -> str:
    """``PID 1234 on host X (started 12:03:04)`` from the owner file, or ``another process``."""
    try:
        doc = json.loads((run_dir / OWNER_FILE).read_text(encoding="utf-8"))
        started = float(doc["started"])
        fmt = "%H:%M:%S" if time.strftime("%Y%m%d") == time.strftime("%Y%m%d", time.localtime(started)) \
            else "%Y-%m-%d %H:%M:%S"
        return f"PID {int(doc['pid'])} on host {doc['host']} (started {time.strftime(fmt, time.localtime(started))})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


def hold_run(run_dir: Path, run_id: str) -> bool:
    """Take the lock of the run in ``run_dir`` for this process (until :func:`release_run` or its end).

    Returns False when it cannot be taken here (no run folder, or a file system without ``flock``): the run goes
    on unlocked. Holding it already is fine (the same process marks its run ``running`` again).

    Raises:
        RunBusyError: another live process holds it (the message names its PID, host and start time).
    """
    key = Path(run_dir).resolve()
    with _held_guard:
        if key in _held:
            return True
        try:
            fd = os.open(key / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            log.debug("run %s: no lock (%s)", run_id, err)
            return False
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise RunBusyError(f"run {run_id} is being trained by {_owner(key)}; wait for it, or stop it "
                                       f"first") from None
                time.sleep(0.02)
            except OSError as err:  # ENOLCK, EOPNOTSUPP: a file system without locks
                os.close(fd)
                log.warning("run %s: cannot lock %s (%s); a second process could resume it", run_id,
                            key / LOCK_FILE, err)
                return False
        _held[key] = fd
    owner = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(), "run_id": run_id}
    tmp = key / f"{OWNER_FILE}.{os.getpid()}.tmp"
    try:
        tmp.write_text(json.dumps(owner), encoding="utf-8")
        os.replace(tmp, key / OWNER_FILE)
    except OSError as err:  # only the message of a refused second process needs it
        tmp.unlink(missing_ok=True)
        log.debug("run %s: cannot write %s (%s)", run_id, OWNER_FILE, err)
    return True


def release_run(run_dir: Path) -> None:
    """Let go of the lock of the run in ``run_dir`` if this process holds it (the run stopped running)."""
    with _held_guard:
        fd = _held.pop(Path(run_dir).resolve(), None)
    if fd is not None:
        os.close(fd)  # closing releases the lock; no LOCK_UN, which would also release a forked child's copy


def run_is_live(run_dir: Path) -> bool | None:
    """Whether a live process holds the lock of the run in ``run_dir``: True, False, or None when the run has no
    lock file (a run of an older shoal, or one whose folder is gone) and nobody can tell. Reads only: creates
    nothing and writes nothing."""
    key = Path(run_dir).resolve()
    if key in _held:
        return True
    try:
        fd = os.open(key / LOCK_FILE, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return None
    finally:
        os.close(fd)  # also drops the probe's shared lock at once
    return False
