"""A regression model's output in the label's units.

The network learns the target standardised by the training rows' mean ``mu`` and standard deviation ``sigma``
(unit-scale outputs suit the same initialisation and learning rates as logits); this wrapper turns its output
back, so every consumer of the model — evaluation, serving, ONNX export, a student learning from it — sees
values in the label's own units::

    y_hat = mu + sigma * f(x)        f: the registered model, trained on (y - mu) / sigma

``mu`` and ``sigma`` are buffers: saved with the weights, exported as two constants.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["TargetScale"]


class TargetScale(nn.Module):
    """``body``'s (B,) output times ``std`` plus ``mean``."""

    def __init__(self, body: nn.Module, mean: float, std: float) -> None:
        super().__init__()
        if not std > 0:
            raise ValueError(f"std must be > 0, not {std!r}")
        self.body = body
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.register_buffer("std", torch.tensor(float(std)))

    def forward(self, *inputs: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
        return self.body(*inputs) * self.std + self.mean  # (B,)
