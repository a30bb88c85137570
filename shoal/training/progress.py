"""Training progress drawn with rich: a bar with rows/s and the running loss, and one line per validation.

The :class:`~shoal.training.callbacks.Callbacks` that ``shoal train``, ``shoal distill`` and rank 0 of a
distributed run (``python -m shoal.distributed --progress``) hand to the trainer::

    scan 80,000 rows ━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━ 100%
    train            ━━━━━━━━━━━━━━━━━━━━╸━━━━━━━━━━━━━━━━━━━━  52%  41,210 rows/s  loss 0.4417  0:00:02 0:00:02
      epoch 1 step 140: valid auc 0.7412  ne 0.8911  logloss 0.4420  calibration 0.9874

    with progress_bar(console) as bar:
        trainer = Trainer(cfg, run_dir, RichCallbacks(bar))
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from shoal.training.callbacks import Callbacks

__all__ = ["RichCallbacks", "progress_bar"]

# the validation line, in order
SHOWN_METRICS = ("auc", "accuracy", "macro_f1", "ne", "logloss", "calibration", "rmse", "r2", "nmse")


def progress_bar(console: Console | None = None) -> Progress:
    """The bar :class:`RichCallbacks` draws on: description, bar, percent, rows/s, loss, elapsed and remaining."""
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
        TextColumn("{task.fields[rate]}"), TextColumn("{task.fields[loss]}"),
        TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False,
    )


class RichCallbacks(Callbacks):
    """A progress bar with rows/s and the running loss; one line per validation."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task: Any = None
        self.scan: TaskID | None = None

    def on_scan(self, rows: int) -> None:
        if self.scan is None:
            self.scan = self.progress.add_task("scan", total=None, rate="", loss="")  # reading: no rate or loss yet
        self.progress.update(self.scan, completed=rows, description=f"scan {rows:,} rows")

    def on_start(self, rows_per_epoch: int, epochs: int, resumed_rows: int) -> None:
        if self.scan is not None:
            self.progress.update(self.scan, total=1, completed=1)
        self.task = self.progress.add_task("train", total=rows_per_epoch * epochs, completed=resumed_rows,
                                           rate="", loss="")

    def on_step(self, rows: int, loss: float, rows_per_s: float) -> None:
        self.progress.update(self.task, completed=rows, loss=f"loss {loss:.4f}", rate=f"{rows_per_s:,.0f} rows/s")

    def on_end(self, stopped_early: bool) -> None:
        done = next(t.completed for t in self.progress.tasks if t.id == self.task)
        self.progress.update(self.task, total=done, description="train (stopped early)" if stopped_early else "train")

    def on_eval(self, epoch: int, step: int, metrics: dict[str, float]) -> None:
        shown = [(k, metrics[k]) for k in SHOWN_METRICS if k in metrics and not (k == "accuracy" and "auc" in metrics)]
        text = "  ".join(f"{k} {v:.4f}" for k, v in shown)
        self.progress.console.print(f"  epoch {epoch} step {step}: valid {text}")
