"""The ``shoal`` command line (typer + rich): builds :data:`app` and registers every command group on it.

Each group is a module beside this one; what they share (console, ``--home``, error mapping, progress, run
printing) is in :mod:`shoal.cli.common`. Library code logs; only the command line prints.

    main ── train    (train, eval, runs, show)      distill  (distill, compress)
         ├─ data     (synth, inspect)               export   (export, bench)
         ├─ analysis (explain, drift)
         ├─ demo     (demo)                         serve    (serve, predict)
         └─ academy  (academy list/start/check/progress)
"""

from __future__ import annotations

import os

# OpenMP threads that spin while waiting make torch much slower as soon as another process shares the cores;
# waiting passively costs little when the machine is idle. Set before torch is loaded; an explicit
# OMP_WAIT_POLICY in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import logging  # noqa: E402
import sys  # noqa: E402
from typing import Annotated  # noqa: E402

import typer  # noqa: E402

from shoal.cli import academy, analysis, auto, data, demo, distill, export, models, plan, serve, train, ui  # noqa: E402
from shoal.cli.common import console, err_console, mark_command_start  # noqa: E402

__all__ = ["app", "console", "err_console", "main"]

app = typer.Typer(help="shoal: train, compress and serve models on dense, sparse and text features.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)


@app.callback()
def _options(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log details.")] = False) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


# The order of `shoal --help`.
for group in (train, models, data, analysis, auto, demo, academy, serve, ui, export, distill, plan):
    group.register(app)


def main() -> None:  # pragma: no cover - console script entry (tests/test_cli_exit.py runs it in a process)
    """The `shoal` command: marks the process's start (a time budget counts from it), runs the command, then ends
    the process without tearing down its 3,000-odd modules (torch, its compiler's sympy, pandas: 1.1 s after a
    `shoal auto`, past its budget): other threads joined, exit handlers run (logging, temporary folders), output
    flushed, then ``os._exit`` with the command's exit code."""
    mark_command_start()
    try:
        app()
        code: object = 0
    except SystemExit as done:
        code = done.code
    _exit(code)


def _exit(code: object) -> None:  # pragma: no cover - ends the process
    import atexit
    import contextlib
    import threading

    for thread in threading.enumerate():  # what the interpreter's shutdown waits for
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join()
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:  # sys.exit("message"): printed, status 1, as Python does
        print(code, file=sys.stderr)
        status = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing more to say
            stream.flush()
    os._exit(status)


if __name__ == "__main__":  # pragma: no cover
    main()
