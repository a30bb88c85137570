"""Checks of hand-written code: run the learner's function with the library functions it replaces made unavailable.

A "by hand" exercise (a convolution, a loss, a gradient) is passed by calling the library's version unless the
check takes that version away.  :func:`without` replaces each named function, for the duration of a ``with``
block, by one that raises :class:`~shoal.academy.grader.CheckFailed` with a kind hint:

    with without(ctx.lab, {"F.conv2d": [(F, "conv2d"), (torch, "conv2d")]}, "write the sliding window yourself"):
        got = ctx.lab.conv2d(x, w, b)      # F.conv2d(...) inside -> "this check runs without F.conv2d: ..."

It patches the attribute where the library defines it *and* any name in the learner's module bound to the same
object (``from torch.nn.functional import conv2d``), and puts everything back afterwards.  Compute the expected
values before the block: the grader's own calls are refused inside it too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import ModuleType
from typing import Any

from shoal.academy.checks import CheckFailed

__all__ = ["without"]

Place = tuple[Any, str]  # (module or class, attribute name)


def _refusal(label: str, hint: str) -> Callable[..., Any]:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise CheckFailed(f"this check runs without {label}: {hint}")

    refuse.__name__ = f"refused_{label.replace('.', '_')}"
    return refuse


@contextmanager
def without(lab: ModuleType | None, blocked: Mapping[str, Sequence[Place]], hint: str) -> Iterator[None]:
    """Make every ``(owner, attribute)`` of ``blocked`` (label -> places) raise a hint while the block runs."""
    saved: list[tuple[Any, str, Any]] = []
    replacement: dict[int, Callable[..., Any]] = {}
    originals: list[Any] = []  # keeps the originals alive, so that their ids stay theirs
    try:
        for label, places in blocked.items():
            refuse = _refusal(label, hint)
            for owner, attr in places:
                if attr not in vars(owner) and not hasattr(owner, attr):
                    continue  # e.g. a function this torch version does not have
                original = getattr(owner, attr)
                saved.append((owner, attr, vars(owner).get(attr, original)))
                setattr(owner, attr, refuse)
                replacement[id(original)] = refuse
                originals.append(original)
        if lab is not None:  # the learner's own names for them: `from torch.nn.functional import conv2d`
            for name, value in list(vars(lab).items()):
                if id(value) in replacement and not isinstance(value, ModuleType):
                    saved.append((lab, name, value))
                    setattr(lab, name, replacement[id(value)])
        yield
    finally:
        for owner, attr, original in reversed(saved):
            setattr(owner, attr, original)
