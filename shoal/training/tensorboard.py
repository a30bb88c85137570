"""TensorBoard event files for a run (``train.tensorboard``, ``shoal train --tensorboard``).

Written by :class:`TensorBoardCallbacks` through ``torch.utils.tensorboard.SummaryWriter`` (the optional
``tensorboard`` package: ``pip install 'shoal[tensorboard]'``)::

    train/loss            the smoothed training loss, every ``every`` steps
    train/rows_per_s      training speed
    train/lr/dense        Adam's learning rate (dense parameters)
    train/lr/embeddings   row-wise Adagrad's learning rate (embedding rows), when the model has tables
    valid/<metric>        every validation metric (auc, ne, logloss, accuracy, macro_f1, rmse, r2, ...)
    final/<metric>        the run's final metrics (of the kept weights), also as text and as hparams

The x-axis is the training step. Only the main process of a distributed run writes (the Trainer hands the
others no callbacks).
"""

from __future__ import annotations

import importlib.util
import math
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from shoal.config import TrainConfig
from shoal.training.callbacks import Callbacks

__all__ = ["LOG_EVERY", "Tee", "TensorBoardCallbacks", "log_dir", "require_tensorboard"]

LOG_EVERY = 10  # steps between two points of the training curves
FOLDER = "tensorboard"  # inside the run folder, when train.tensorboard is true
INSTALL_HINT = "pip install tensorboard (or pip install 'shoal[tensorboard]')"


def require_tensorboard() -> None:
    """Raise a :class:`ValueError` saying how to install ``tensorboard`` when it cannot be imported."""
    if importlib.util.find_spec("tensorboard") is None:
        raise ValueError(f"train.tensorboard (--tensorboard) needs the tensorboard package, which is not "
                         f"installed: {INSTALL_HINT}")


def log_dir(setting: bool | Path, run_dir: Path) -> Path | None:
    """Where a run writes its event files: ``run_dir/tensorboard`` for ``true``, ``DIR/<run folder name>`` for a
    folder (one sub-folder per run, so ``tensorboard --logdir DIR`` lists them side by side), None for ``false``."""
    if setting is False:
        return None
    if setting is True:
        return run_dir / FOLDER
    return Path(setting) / run_dir.name


class Tee(Callbacks):
    """Hands every hook to each of ``callbacks`` in turn."""

    def __init__(self, *callbacks: Callbacks) -> None:
        self.callbacks = callbacks

    def on_scan(self, rows: int) -> None:
        for c in self.callbacks:
            c.on_scan(rows)

    def on_start(self, rows_per_epoch: int, epochs: int, resumed_rows: int) -> None:
        for c in self.callbacks:
            c.on_start(rows_per_epoch, epochs, resumed_rows)

    def on_step(self, rows: int, loss: float, rows_per_s: float) -> None:
        for c in self.callbacks:
            c.on_step(rows, loss, rows_per_s)

    def on_eval(self, epoch: int, step: int, metrics: dict[str, float]) -> None:
        for c in self.callbacks:
            c.on_eval(epoch, step, metrics)

    def on_end(self, stopped_early: bool) -> None:
        for c in self.callbacks:
            c.on_end(stopped_early)

    def stop_requested(self) -> str | None:
        return next((why for c in self.callbacks if (why := c.stop_requested())), None)

    def on_final(self, metrics: dict[str, Any]) -> None:
        for c in self.callbacks:
            c.on_final(metrics)


class TensorBoardCallbacks(Callbacks):
    """Writes a run's curves to TensorBoard event files in ``folder``.

    ``optimizers``: the run's (dense Adam, embedding Adagrad or None), whose learning rates are logged.
    ``first_step``: the step training starts from (a resumed run's checkpoint step), so a resumed run's points
    continue its curves. ``hparams``: the run's settings, shown beside its final metrics in the HParams tab.
    """

    def __init__(self, folder: Path, optimizers: Sequence[torch.optim.Optimizer | None] = (), first_step: int = 0,
                 every: int = LOG_EVERY, hparams: Mapping[str, Any] | None = None) -> None:
        require_tensorboard()
        from torch.utils.tensorboard import SummaryWriter

        self.folder = Path(folder)
        self.writer = SummaryWriter(log_dir=str(self.folder), purge_step=first_step or None)
        weakref.finalize(self, self.writer.close)  # a run that fails still leaves what it wrote
        self.optimizers = list(optimizers)
        self.step = first_step
        self.every = every
        self.hparams = dict(hparams or {})

    def on_step(self, rows: int, loss: float, rows_per_s: float) -> None:
        self.step += 1
        if self.step % self.every:
            return
        self.writer.add_scalar("train/loss", loss, self.step)
        self.writer.add_scalar("train/rows_per_s", rows_per_s, self.step)
        for name, opt in zip(("dense", "embeddings"), self.optimizers, strict=False):
            if opt is not None:
                self.writer.add_scalar(f"train/lr/{name}", float(opt.param_groups[0]["lr"]), self.step)

    def on_eval(self, epoch: int, step: int, metrics: dict[str, float]) -> None:
        self.step = step
        for key, value in _numbers(metrics).items():
            if key not in ("epoch", "step", "seconds"):  # seconds: TensorBoard's wall time says it
                self.writer.add_scalar(f"valid/{key}", value, step)
        self.writer.flush()

    def on_end(self, stopped_early: bool) -> None:
        self.writer.flush()

    def on_final(self, metrics: dict[str, Any]) -> None:
        numbers = _numbers(metrics)
        rows = "\n".join(f"| {k} | {v:.6g} |" for k, v in numbers.items())
        self.writer.add_text("final_metrics", f"| metric | value |\n|---|---|\n{rows}", self.step)
        if numbers:
            # also writes the final/ scalars; run_name ".": into this run's folder, not a new timestamped one
            self.writer.add_hparams(self.hparams, {f"final/{k}": v for k, v in numbers.items()}, run_name=".",
                                    global_step=self.step)
        self.writer.close()


def run_hparams(train: TrainConfig, model: Mapping[str, Any]) -> dict[str, Any]:
    """The settings shown in the HParams tab: the model's and training's scalar values."""
    out: dict[str, Any] = {}
    for prefix, values in (("model", model), ("train", train.model_dump(mode="json"))):
        for key, value in values.items():
            if isinstance(value, bool | int | float | str):
                out[f"{prefix}.{key}"] = value
    return out


def _numbers(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The finite numeric values of ``metrics`` (lists, confusion matrices and NaNs left out)."""
    return {k: float(v) for k, v in metrics.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)}
