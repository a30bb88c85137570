"""Checks of hand-written code: run the learner's function with the library functions it replaces made unavailable.

A "by hand" exercise (a convolution, a loss, a gradient) is passed by calling the library's version unless the
check takes that version away.  :func:`without` replaces each named function, for the duration of a ``with``
block, by one that raises :class:`~shoal.academy.grader.CheckFailed` with a kind hint:

    with without(ctx.lab, {"F.conv2d": [(F, "conv2d"), (torch, "conv2d")]}, "write the sliding window yourself"):
        got = ctx.lab.conv2d(x, w, b)      # F.conv2d(...) inside -> "this check runs without F.conv2d: ..."

It patches the attribute where the library defines it *and* any name in the learner's module bound to the same
object (``from torch.nn.functional import conv2d``), and puts everything back afterwards.  Compute the expected
values before the block: the grader's own calls are refused inside it too.

A check that grades on held-out rows hands the learner's ``fit`` the training rows only; :func:`given_rows_only`
takes away, while ``fit`` runs, the loaders of the whole data set and the files they read, so that the held-out
rows cannot be trained on.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from shoal.academy.checks import CheckFailed

__all__ = ["given_rows_only", "sklearn_data_set", "unreadable", "without"]

Place = tuple[Any, str]  # (module or class, attribute name)
REFUSED = "this check runs without {label}: {hint}"
HELD_OUT_ROWS = "this check trains on the rows it gives you: fit {did}, which holds the held-out rows too; {hint}"


def _refusal(label: str, hint: str, message: str) -> Callable[..., Any]:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise CheckFailed(message.format(label=label, hint=hint))

    refuse.__name__ = f"refused_{label.replace('.', '_')}"
    return refuse


@contextmanager
def without(lab: ModuleType | None, blocked: Mapping[str, Sequence[Place]], hint: str,
            message: str = REFUSED) -> Iterator[None]:
    """Make every ``(owner, attribute)`` of ``blocked`` (label -> places) raise a hint while the block runs.

    The hint is ``message`` with ``{label}`` and ``{hint}`` filled in: "this check runs without F.conv2d: ...".
    """
    saved: list[tuple[Any, str, Any]] = []
    replacement: dict[int, Callable[..., Any]] = {}
    originals: list[Any] = []  # keeps the originals alive, so that their ids stay theirs
    try:
        for label, places in blocked.items():
            refuse = _refusal(label, hint, message)
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


class _OpenAudit:
    """Python's "open" audit event is raised by every way of opening a file (``open``, ``pathlib``, ``gzip``,
    numpy, ``os.open``) before the file is opened, and an audit hook that raises stops it.  A hook stays for the
    life of the process, so one is installed, on first use, and refuses only while an :func:`unreadable` block
    runs."""

    def __init__(self) -> None:
        self.refused: list[tuple[list[Path], str]] = []  # (folders, hint) of each block now running
        self.installed = False

    def __call__(self, event: str, args: tuple[Any, ...]) -> None:
        if event != "open" or not self.refused or not isinstance(args[0], str | bytes | os.PathLike):
            return
        path = Path(os.fsdecode(args[0])).resolve()
        for roots, message in self.refused:
            if any(path.is_relative_to(root) for root in roots):
                raise CheckFailed(message.format(path=path.name))


_OPEN_AUDIT = _OpenAudit()


@contextmanager
def unreadable(folders: Sequence[Path], message: str) -> Iterator[None]:
    """Refuse to open any file under ``folders`` while the block runs; ``message`` (with ``{path}``, the file's
    name) is the hint.  Every other file opens as usual."""
    if not _OPEN_AUDIT.installed:
        sys.addaudithook(_OPEN_AUDIT)
        _OPEN_AUDIT.installed = True
    entry = ([folder.resolve() for folder in folders], message)
    _OPEN_AUDIT.refused.append(entry)
    try:
        yield
    finally:
        _OPEN_AUDIT.refused.remove(entry)


def sklearn_data_set(loader: str) -> tuple[dict[str, list[Place]], list[Path]]:
    """What reloads one of scikit-learn's bundled data sets: its ``loader`` (e.g. ``"load_digits"``), where it is
    defined and where it is exported, and the folder of the bundled files; for :func:`given_rows_only`."""
    import sklearn.datasets
    import sklearn.datasets._base

    places: list[Place] = [(sklearn.datasets, loader), (sklearn.datasets._base, loader)]
    return {loader: places}, [Path(sklearn.datasets.__file__).parent / "data"]


@contextmanager
def given_rows_only(lab: ModuleType, loaders: Mapping[str, Sequence[Place]], folders: Sequence[Path],
                    hint: str) -> Iterator[None]:
    """While the learner's ``fit`` runs: the data set's ``loaders`` (label -> places, as for :func:`without`) and
    the files under ``folders`` are unavailable, with the hint "this check trains on the rows it gives you: ..."."""
    with without(lab, loaders, hint, HELD_OUT_ROWS.format(did="called {label}", hint="{hint}")), \
            unreadable(folders, HELD_OUT_ROWS.format(did="read {path}", hint=hint)):
        yield
