"""What every check raises and the small assertions checks share: a hint for the learner when one fails."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

__all__ = ["CheckFailed", "CheckSkipped", "assert_png", "expect_floats", "expect_tensor", "read_text"]


class CheckFailed(Exception):
    """Raised by a check: the message is the hint shown to the learner."""


class CheckSkipped(Exception):
    """Raised by an optional check whose inputs are absent (e.g. ../shared/data); it counts as not failing."""


def read_text(path: Path) -> str:
    return path.read_text(encoding="utf-8") if path.is_file() else ""


def expect_tensor(value: Any, what: str, shape: tuple[int, ...]) -> Any:
    """``value`` if it is a tensor of ``shape``; otherwise a :class:`CheckFailed` saying what came back instead."""
    import torch

    if not isinstance(value, torch.Tensor):
        raise CheckFailed(f"{what} should be a torch.Tensor, got {type(value).__name__}")
    if tuple(value.shape) != shape:
        raise CheckFailed(f"{what} should have shape {shape}, got {tuple(value.shape)}")
    return value


def expect_floats(values: Any, what: str, n: int | None = None) -> list[float]:
    """``values`` (a list of numbers or 0-d tensors, ``n`` of them when given) as finite floats, or a hint."""
    if not isinstance(values, list | tuple) or not values or (n is not None and len(values) != n):
        got = f"a {type(values).__name__} of length {len(values)}" if isinstance(values, list | tuple) else \
            f"a {type(values).__name__}"
        raise CheckFailed(f"{what} should be a list of {n or 'the'} values, one per epoch; got {got}")
    out = [float(v) for v in values]
    if not all(math.isfinite(v) for v in out):
        raise CheckFailed(f"{what} contains nan or inf ({out[:4]}...): is the learning rate too high?")
    return out


def assert_png(path: Path, what: str) -> str:
    """Fail with a hint unless ``path`` is a real PNG image; returns a note for the check's result."""
    if not path.is_file():
        raise CheckFailed(f"{what} was not written to {path}: save the figure with fig.savefig(path)")
    data = path.read_bytes()
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise CheckFailed(f"{path} is not a PNG file: save it with fig.savefig(path) and a .png name")
    if len(data) < 2_000:
        raise CheckFailed(f"{path} is only {len(data)} bytes: is the figure empty? plot something before saving")
    return f"wrote {path}"
