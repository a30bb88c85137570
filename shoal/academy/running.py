"""Running one check of a lab: its time limit, fixed seeds, and the one-line hint an exception becomes."""

from __future__ import annotations

import random
import signal
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from shoal.academy.checks import CheckFailed

__all__ = ["CheckTimeout", "explain", "seed_everything", "time_limit"]


class CheckTimeout(BaseException):
    """Raised inside a check that ran past its time limit (a BaseException, so ``except Exception`` misses it)."""


def explain(err: BaseException, file: Path) -> str:
    """A one-line hint for an exception: the check's own words, or what went wrong where in the learner's file."""
    text = " ".join(_describe(err, file).split())  # one line, whatever the exception's message looked like
    return text if len(text) <= 500 else text[:497] + "..."


def _describe(err: BaseException, file: Path) -> str:
    if isinstance(err, CheckFailed):
        return str(err)
    frames = [f for f in traceback.extract_tb(err.__traceback__) if Path(f.filename).resolve() == file.resolve()]
    where = f" ({file.name} line {frames[-1].lineno}, in {frames[-1].name})" if frames else ""
    if isinstance(err, SyntaxError):
        return f"{file.name} line {err.lineno}: syntax error: {err.msg}"
    if isinstance(err, NotImplementedError):  # the starter's TODOs
        return f"{err}{where}" if str(err).startswith("TODO") else f"not implemented yet{where}: {err}"
    if isinstance(err, AssertionError):
        return f"{err}{where}" if str(err) else f"an assertion failed{where}"
    return f"{type(err).__name__}{where}: {err}"


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Interrupt the block after ``seconds`` (SIGALRM: main thread on Unix; elsewhere the time is checked after)."""
    if not hasattr(signal, "SIGALRM") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_alarm(signum: int, frame: FrameType | None) -> None:
        raise CheckTimeout()

    previous = signal.signal(signal.SIGALRM, on_alarm)
    outer_delay, outer_interval = signal.setitimer(signal.ITIMER_REAL, seconds)
    started = time.monotonic()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer_delay > 0:  # someone else's alarm (e.g. a test timeout) was pending: put it back
            remaining = max(outer_delay - (time.monotonic() - started), 1e-3)
            signal.setitimer(signal.ITIMER_REAL, remaining, outer_interval)


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
