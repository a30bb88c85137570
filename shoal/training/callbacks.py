"""Hooks through which training reports progress (:mod:`shoal.training.progress` draws a bar with them).

Kept free of heavy imports so ``shoal --help`` starts without loading torch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Callbacks"]


class Callbacks:
    """Hooks for progress display; the defaults do nothing."""

    def on_scan(self, rows: int) -> None:
        """The first pass (encoder fit, bad rows, validation split) has read ``rows`` rows so far."""

    def on_start(self, rows_per_epoch: int, epochs: int, resumed_rows: int) -> None: ...

    def on_step(self, rows: int, loss: float, rows_per_s: float) -> None: ...

    def on_eval(self, epoch: int, step: int, metrics: dict[str, float]) -> None: ...

    def on_end(self, stopped_early: bool) -> None: ...

    def stop_requested(self) -> str | None:
        """Asked after every step: a reason to end training now as early stopping does (the best weights so far
        become the bundle), or None to go on. Single-process runs only: a distributed job does not ask."""
        return None

    def on_final(self, metrics: dict[str, Any]) -> None:
        """The run's final metrics (``valid_*`` and ``test_*``, of the weights kept), once the last one is known."""
