"""What every command group shares: the consoles, the ``--home`` option, the one mapping from user errors to an
exit code, the training progress bar, and how a run is printed.

Library code logs and raises; the command line prints, with rich, from here::

    with user_errors():                      # ShoalError, FileNotFoundError, ValueError -> "error: ..." + exit 2
        record = train_with_progress(lambda cb: runs.train(config, home_dir(home), cb))
        print_run(record)                    # run id, status, teacher, metrics table, confusion matrices
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table

from shoal.artifacts.registry import RunKind, RunRecord, resolve_home
from shoal.errors import ShoalError
from shoal.training.callbacks import Callbacks
from shoal.training.progress import RichCallbacks, progress_bar

__all__ = [
    "USER_ERRORS",
    "HomeOption",
    "command_started",
    "confusion_table",
    "console",
    "err_console",
    "home_dir",
    "metrics_table",
    "print_run",
    "process_age",
    "split_metrics",
    "train_with_progress",
    "training_progress",
    "user_errors",
]

console = Console()
err_console = Console(stderr=True)

HomeOption = Annotated[
    Path | None, typer.Option("--home", help="Registry folder (default: $SHOAL_HOME or ./shoal-runs).")
]

_started: float | None = None  # the process's start, time.monotonic(), when it runs as the `shoal` command


def process_age() -> float:
    """Seconds since this process started (Linux: ``/proc``; 0.0 where it cannot be read)."""
    try:
        with open("/proc/self/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22, starttime, after the command's name
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return max(0.0, uptime - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError, AttributeError):
        return 0.0


def mark_command_start() -> None:
    """Note that this process is the `shoal` command (its console entry calls this): :func:`command_started` is
    then the process's start, so a time budget counts the interpreter's start and the imports (1-2 s)."""
    global _started
    _started = time.monotonic() - process_age()


def command_started() -> float:
    """The ``time.monotonic()`` a command's time budget counts from: the process's start when this process is the
    `shoal` command, else now (a command called in-process: a test, a notebook)."""
    return time.monotonic() if _started is None else _started


# What a user can fix from the message: a bad config, file, run reference or option value. Anything else is a bug
# and keeps its traceback.
USER_ERRORS = (ShoalError, FileNotFoundError, ValueError)


@contextmanager
def user_errors() -> Iterator[None]:
    """Print expected errors (bad config, bad data, unknown run) as one clear message and exit with the error's
    code: 2, or :attr:`ShoalError.exit_code` (1 for a distributed run whose rank failed)."""
    try:
        yield
    except USER_ERRORS as err:
        err_console.print(f"[bold red]error:[/] {escape(str(err))}", markup=True, highlight=False, soft_wrap=True)
        raise typer.Exit(err.exit_code if isinstance(err, ShoalError) else 2) from None


def home_dir(home: Path | None) -> Path:
    """The registry folder: ``--home``, else ``$SHOAL_HOME``, else ``./shoal-runs``."""
    return resolve_home(home, os.environ)


def training_progress() -> Progress:
    """The training progress bar (rows/s, loss, time left), drawn on :data:`console`."""
    return progress_bar(console)


def train_with_progress(fn: Callable[[Callbacks], RunRecord]) -> RunRecord:
    """Run ``fn`` (a training or distillation) with a progress bar; returns its record."""
    with training_progress() as progress:
        return fn(RichCallbacks(progress))


def metrics_table(title: str, columns: Mapping[str, Mapping[str, Any]]) -> Table:
    """One row per metric, one column per split (or model): floats at 4 digits."""
    table = Table(title=title)
    table.add_column("metric")
    for name in columns:
        table.add_column(name, justify="right")
    keys: list[str] = []
    for col in columns.values():
        keys += [k for k in col if k not in keys]
    for k in keys:
        cells = []
        for col in columns.values():
            v = col.get(k)
            cells.append("" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v))
        table.add_row(k, *cells)
    return table


def split_metrics(metrics: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``{"valid_auc": x, "test_auc": y}`` -> ``{"valid": {"auc": x}, "test": {"auc": y}}``."""
    out: dict[str, dict[str, Any]] = {}
    for key, value in metrics.items():
        split, _, name = key.partition("_")
        out.setdefault(split, {})[name] = value
    return out


def confusion_table(title: str, classes: list[str], cm: list[list[int]]) -> Table:
    """A confusion matrix (rows: true class, columns: predicted), the diagonal in bold, with each class's recall."""
    table = Table(title=f"{title} (rows: true class, columns: predicted)")
    table.add_column("true \\ predicted")
    for c in classes:
        table.add_column(c, justify="right")
    table.add_column("recall", justify="right")
    for c, row in zip(classes, cm, strict=True):
        i = classes.index(c)
        table.add_row(c, *(f"[bold]{v}[/]" if j == i else str(v) for j, v in enumerate(row)),
                      f"{row[i] / max(sum(row), 1):.3f}")
    return table


def print_run(record: RunRecord) -> None:
    """A run as ``shoal train``, ``distill`` and ``show`` print it: id, status, teachers, metrics, confusion."""
    console.print(f"run [bold]{record.run_id}[/] ({record.name}, {record.status}) -> {record.artifact_dir}")
    s = record.summary
    teachers = (s.get("distill") or {}).get("teachers") or []
    if len(teachers) > 1:
        console.print(f"teachers (an ensemble, the mean of their probabilities): {' '.join(teachers)}")
    elif record.parent:
        console.print(f"{'teacher' if record.kind in (RunKind.DISTILL, RunKind.COMPRESS) else 'parent'}: "
                      f"{record.parent}")
    if record.metrics:
        console.print(metrics_table("metrics", split_metrics(record.metrics)))
    for split, cm, png in (("valid", s.get("valid_confusion"), s.get("valid_confusion_png")),
                           ("test", s.get("test_confusion"), s.get("test_confusion_png"))):
        if cm is not None:
            console.print(confusion_table(f"{split} confusion matrix", s.get("classes", []), cm))
            if png:  # none when the run draws no pictures (train.pictures: false, e.g. a search's trials)
                console.print(f"saved {png}")
    pictures = [s[k] for k in ("learning_curve_png", "valid_curves_png", "test_curves_png", "valid_regression_png",
                               "test_regression_png") if s.get(k)]
    if pictures:
        console.print("pictures: " + "  ".join(str(p) for p in pictures), highlight=False)
    if s.get("quarantined_rows"):
        console.print(f"[yellow]{s['quarantined_rows']} bad rows quarantined[/] -> {s.get('quarantine_file')}"
                      f" {s.get('quarantined_by_reason')}")


RegisterOption = Annotated[str | None, typer.Option(
    "--register", help="Register the chosen run as the next version of this named model.")]
AliasOption = Annotated[str | None, typer.Option("--alias", help="With --register: point this alias at it too.")]


def register_choice(home: Path, name: str | None, alias: str | None, run_id: str, note: str) -> None:
    """``--register NAME [--alias A]`` of ``compress`` and ``auto``: the chosen run as a model version."""
    if name is None:
        if alias is not None:
            raise ValueError("--alias needs --register NAME")
        return
    from shoal.artifacts.models import ModelRegistry

    v = ModelRegistry(home).register(name, run_id, alias=alias, note=note)
    console.print(f"registered run {run_id} as [bold]{v.ref}[/]" + (f"; {name}@{alias} -> v{v.version}" if alias
                                                                     else ""))
