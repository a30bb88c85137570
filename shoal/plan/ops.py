"""The ops one training step dispatches: forward, loss, backward and both optimizers' steps.

Each op costs a fixed time that its FLOPs and bytes do not show: on a CPU, PyTorch's dispatcher, autograd's
bookkeeping, the optimizer's Python loop over its parameters and, with several threads, waking the pool; on a
GPU, a kernel launch. So a step's fixed cost grows with the number of ops, not only with the number of layers:
Adam runs about ten ops per parameter tensor, a dot interaction gathers its upper triangle and scatters its
gradient back, every embedding feature adds its table offset. The planner multiplies the count by the per-op
cost that ``shoal plan --calibrate`` measures (:func:`shoal.plan.calibrate.calibrate`).

The count comes from a :class:`~torch.utils._python_dispatch.TorchDispatchMode` over one step of the model built
with a few rows per table on a few made-up rows: the number of ops depends on the model's structure, not on the
batch or the tables' sizes. It counts ``aten`` ops as the dispatcher sees them (views included, each is a call);
the compiled fused embedding step counts as the few ops around it, as it costs one call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from shoal.config import TrainConfig

__all__ = ["count_ops", "training_step", "step_ops"]


class _OpCounter(TorchDispatchMode):
    """Counts the ``aten`` ops dispatched while it is active (profiler markers and other namespaces aside)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        if func.namespace == "aten":
            self.ops += 1
        return func(*args, **(kwargs or {}))


def count_ops(fn: Callable[[], object], warmup: int = 1) -> int:
    """The ``aten`` ops one call of ``fn`` dispatches, after ``warmup`` calls (an optimizer's first step also
    creates its state)."""
    for _ in range(warmup):
        fn()
    with _OpCounter() as counter:
        fn()
    return counter.ops


def training_step(model: nn.Module, inputs: tuple[Any, ...], train: TrainConfig, fused: bool,
                  loss: Callable[[torch.Tensor], torch.Tensor] | None = None) -> Callable[[], None]:
    """One step as :class:`~shoal.training.loop.Trainer` takes it: zero the gradients, forward, ``loss`` (default:
    binary cross-entropy against zeros, the same few ops as the real losses), backward, Adam and row-wise Adagrad
    (``fused``: inside the backward, as one CPU process trains)."""
    from shoal.training.strategy import build_optimizers

    opts = build_optimizers(model, train, fuse_sparse_step=fused)
    model.train()

    def bce(out: torch.Tensor) -> torch.Tensor:
        return nn.functional.binary_cross_entropy_with_logits(out, torch.zeros_like(out))

    def step() -> None:
        for o in opts:
            if o is not None:
                o.zero_grad(set_to_none=True)
        out = model(*inputs)
        (loss or bce)(out).backward()
        for o in opts:
            if o is not None:
                o.step()
    return step


def step_ops(model: nn.Module, inputs: tuple[Any, ...], train: TrainConfig, fused: bool) -> int:
    """The ops of one training step of ``model`` on ``inputs`` (see the module docstring)."""
    return count_ops(training_step(model, inputs, train, fused))
