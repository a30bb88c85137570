"""Checkpoints and best weights: what lets a killed run resume where it stood, and keeps the weights to ship.

A checkpoint (``checkpoint.pt``, written atomically) holds the model, both optimizers, the learning-rate
schedule's state when the run has one, and the :class:`Position`; it loads with ``torch.load(weights_only=True)``
(tensors and plain data, no code)::

    {"model": state_dict, "optimizers": [dense, sparse or None], "position": {epoch, chunk, batch, step, ...},
     "history": [[(metric, value), ...] per validation], "schedule": LambdaLR state (scheduled runs only),
     ...extras (e.g. the distributed world size)}

The best weights so far (lowest validation log loss) wait in memory when small and are written to
``best.safetensors`` with the next checkpoint, so a checkpoint never refers to best weights not on disk.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.optim.lr_scheduler import LRScheduler

from shoal.artifacts.disk import write_atomically

__all__ = ["BEST_FILE", "CHECKPOINT_FILE", "CheckpointExtras", "Checkpointer", "Optimizers", "Position"]

CHECKPOINT_FILE = "checkpoint.pt"
BEST_FILE = "best.safetensors"
BEST_IN_MEMORY_BYTES = 512 << 20  # best weights up to this size wait in memory for the next checkpoint
EPOCH_CHECKPOINT_SECONDS = 30.0  # an epoch end is checkpointed when the last checkpoint is older than this

Optimizers = list[torch.optim.Optimizer | None]  # [dense (Adam), sparse (row-wise Adagrad) or None]


@dataclass
class Position:
    """Where training stands; saved in every checkpoint."""

    epoch: int = 0
    chunk: int = 0
    batch: int = 0  # next batch to train within the chunk
    step: int = 0
    rows: int = 0
    best_loss: float = float("inf")
    bad_evals: int = 0
    stopped_early: bool = False
    history: list[dict[str, float]] = field(default_factory=list)
    train_seconds: float = 0.0

    def advance(self, chunk: int, batch: int, rows: int) -> None:
        """A step on mini-batch ``batch`` of chunk ``chunk`` trained ``rows`` rows."""
        self.step += 1
        self.rows += rows
        self.chunk, self.batch = chunk, batch + 1

    def next_epoch(self) -> None:
        self.epoch, self.chunk, self.batch = self.epoch + 1, 0, 0

    def summary(self) -> dict[str, Any]:
        """The run summary's account of the training."""
        return {
            "steps": self.step, "rows_trained": self.rows, "epochs_run": self.epoch,
            "stopped_early": self.stopped_early, "train_seconds": round(self.train_seconds, 3),
            "train_rows_per_s": round(self.rows / max(self.train_seconds, 1e-9), 1),
            "history": self.history,
        }


class CheckpointExtras(Protocol):
    """More state in every checkpoint (the distributed strategy's world size and TorchRec optimizers)."""

    def checkpoint_state(self) -> dict[str, Any]: ...

    def restore_checkpoint_state(self, state: dict[str, Any]) -> None: ...


class Checkpointer:
    """Saves and loads the checkpoint and the best weights of the run in ``run_dir``.

    ``writes``: whether this process writes files (a distributed run's rank 0 only; every rank still joins the
    collectives that gather sharded weights). ``every_epoch``: checkpoint every epoch end, not only when the last
    checkpoint is older than :data:`EPOCH_CHECKPOINT_SECONDS` (the same decision on every rank).
    ``copy_best``: a process that does not write keeps a copy of the best weights in memory (TorchRec's final
    evaluation needs every rank's shards).
    """

    def __init__(self, run_dir: Path, *, writes: bool = True, every_epoch: bool = False, copy_best: bool = False,
                 extras: CheckpointExtras | None = None) -> None:
        self.path = Path(run_dir) / CHECKPOINT_FILE
        self.best_path = Path(run_dir) / BEST_FILE
        self.writes = writes
        self.every_epoch = every_epoch
        self.copy_best = copy_best
        self.extras = extras
        self._best: dict[str, torch.Tensor] | None = None  # best weights not yet written (see keep_best)
        self._last = time.perf_counter()  # when the last checkpoint was written

    # -- checkpoints -----------------------------------------------------------------------------------------
    def save(self, model: nn.Module, opts: Optimizers, pos: Position, schedule: LRScheduler | None = None) -> None:
        """Write model, optimizers, the learning-rate ``schedule`` (if any) and position atomically: a kill never
        leaves half a checkpoint."""
        model_state = model.state_dict()  # with TorchRec, a gather that every rank joins
        extra = self.extras.checkpoint_state() if self.extras is not None else {}
        if not self.writes:
            return
        self._flush_best()
        self._last = time.perf_counter()
        state = {
            "model": model_state,
            "optimizers": [None if o is None else o.state_dict() for o in opts],
            "position": {k: v for k, v in asdict(pos).items() if k != "history"},
            "history": [list(h.items()) for h in pos.history],
            **extra,
        }
        if schedule is not None:  # a constant learning rate's checkpoint stays as it was
            state["schedule"] = schedule.state_dict()
        # a full disk: DiskFullError naming the device and the file, and no checkpoint.tmp left to keep it full
        write_atomically(self.path, lambda tmp: torch.save(state, tmp), tmp=self.path.with_suffix(".tmp"))

    def load(self, model: nn.Module, opts: Optimizers, schedule: LRScheduler | None = None) -> Position:
        """Restore model, optimizers and the learning-rate ``schedule`` from the checkpoint; returns its position.
        A checkpoint and a run that disagree on having a schedule raise a :class:`ValueError`."""
        state = torch.load(self.path, weights_only=True)  # tensors and plain data only, no code
        if (schedule is None) != ("schedule" not in state):
            raise ValueError(f"{self.path} was written {'with' if schedule is None else 'without'} a learning-rate "
                             f"schedule, and this run has {'none' if schedule is None else 'one'}: resume with the "
                             "train.lr_schedule the run started with, or start a new run")
        model.load_state_dict(state["model"])
        for o, s in zip(opts, state["optimizers"], strict=True):
            if o is not None and s is not None:
                o.load_state_dict(s)
        if schedule is not None:
            schedule.load_state_dict(state["schedule"])
        if self.extras is not None:
            self.extras.restore_checkpoint_state(state)
        pos = Position(**state["position"])
        pos.history = [dict(h) for h in state["history"]]
        return pos

    def discard_partial(self) -> None:
        """Remove what a killed process left half written (``checkpoint.tmp``, ``best.safetensors.tmp``) before a
        resume writes its own; the last whole checkpoint stays."""
        if self.writes:
            for tmp in (self.path.with_suffix(".tmp"), self.best_path.with_name(self.best_path.name + ".tmp")):
                tmp.unlink(missing_ok=True)

    def epoch_end_due(self) -> bool:
        """Whether to checkpoint at this epoch end: short epochs are cheaper to redo than to save."""
        return self.every_epoch or time.perf_counter() - self._last >= EPOCH_CHECKPOINT_SECONDS

    # -- best weights ----------------------------------------------------------------------------------------
    def keep_best(self, model: nn.Module) -> None:
        """Remember the current weights as the best so far: in memory when small (written to ``best.safetensors``
        with the next checkpoint), else straight to disk."""
        state = model.state_dict()  # with TorchRec, a gather that every rank joins
        if not self.writes:
            self._best = {k: v.detach().clone() for k, v in state.items()} if self.copy_best else None
            return
        best = {k: v.detach().clone().contiguous() for k, v in state.items()}
        if sum(v.nbytes for v in best.values()) <= BEST_IN_MEMORY_BYTES:
            self._best = best
        else:
            self._best = None
            write_atomically(self.best_path, lambda tmp: save_file(best, str(tmp)))

    def restore_best(self, model: nn.Module) -> None:
        """Load the best weights into ``model`` (left as they are when no validation kept any)."""
        if self._best is not None:
            model.load_state_dict(self._best)
        elif self.best_path.exists():
            model.load_state_dict(load_file(str(self.best_path)))

    def _flush_best(self) -> None:
        if self._best is not None:
            best = self._best
            write_atomically(self.best_path, lambda tmp: save_file(best, str(tmp)))
