"""``shoal academy ...``: the command line over :mod:`shoal.academy.grader` (list, start, check, hint, progress)."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.markdown import Markdown
from rich.markup import escape
from rich.table import Table

from shoal.academy.grader import (
    LAB_FILE,
    ProgressRow,
    academy_home,
    check,
    get_lab,
    hints_used,
    lab_file,
    list_labs,
    next_hint,
    progress,
    read_text,
    record_progress,
    start,
)
from shoal.cli.common import console, user_errors

__all__ = ["academy_app", "register"]


def _status(rows: list[ProgressRow]) -> str:
    """A lab's standing from its rows: passed, its best attempt, started, or not started."""
    if any(r.passed for r in rows):
        return "[green]passed ✓[/]"
    attempts = [r for r in rows if r.checks_total]
    if attempts:
        best = max(attempts, key=lambda r: r.checks_passed)
        return f"[yellow]{best.checks_passed}/{best.checks_total} checks[/]"
    return "started" if rows else "[dim]not started[/]"


# ---------------------------------------------------------------------------------------------- the command

academy_app = typer.Typer(help="The Academy: hands-on deep-learning labs, graded by shoal itself.",
                          no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add the ``academy`` command group to the ``shoal`` command line."""
    app.add_typer(academy_app, name="academy")


HomeOption = Annotated[
    Path | None, typer.Option("--home", help="Where your progress is kept (default: $SHOAL_HOME, else shoal/academy "
                                             "in your data folder, e.g. ~/.local/share/shoal/academy).")
]


def home_dir(home: Path | None) -> Path:
    """The learner's home: ``--home``, else ``$SHOAL_HOME``, else the user's data folder (never ./shoal-runs)."""
    return academy_home(home, os.environ)


DirOption = Annotated[
    Path | None, typer.Option("--dir", help="Your workspace for this lab (default: ./shoal-academy/NN-name).")
]
NumberArg = Annotated[int, typer.Argument(help="The lab's number (see `shoal academy list`).")]


@academy_app.command("list")
def list_command(home: HomeOption = None) -> None:
    """The labs, with your progress."""
    with user_errors():
        rows = progress(home_dir(home))
        hints = hints_used(home_dir(home))
        table = Table(title="shoal academy")
        for col in ("lab", "title", "status", "hints", "workspace"):
            table.add_column(col)
        for lab in list_labs():
            mine = [r for r in rows if r.lab == lab.number]
            used = sum(h.lab == lab.number for h in hints)
            table.add_row(str(lab.number), lab.title, _status(mine), str(used) if used else "",
                          mine[-1].path if mine else "")
        console.print(table)
        console.print("start a lab with: shoal academy start N")


@academy_app.command("start")
def start_command(number: NumberArg, directory: DirOption = None, home: HomeOption = None) -> None:
    """Copy lab N's starter into a workspace (as lab.py) and print what to do."""
    with user_errors():
        lab = get_lab(number)
        kept = (lab.default_workspace() if directory is None else directory) / LAB_FILE
        existed = kept.exists()
        workspace = start(number, directory)
        record_progress(home_dir(home), number, workspace, [])
        console.rule(f"Lab {lab.number}: {lab.title}")
        section = re.search(r"^## What you implement\n(.*?)(?=^## |\Z)", read_text(lab.readme), flags=re.S | re.M)
        if section:
            console.print(Markdown(section.group(1).strip()))
        note = " (kept: it already existed)" if existed else ""
        console.print(f"\nyour code: {workspace / LAB_FILE}{note}\nthe lesson: {workspace / 'README.md'}\n"
                      f"fill in the TODOs, then run: shoal academy check {number} --dir {workspace}", highlight=False)


@academy_app.command("check")
def check_command(
    number: NumberArg,
    directory: DirOption = None,
    solution: Annotated[bool, typer.Option("--solution", help="Check the reference solution instead.")] = False,
    home: HomeOption = None,
) -> None:
    """Grade your lab N: each check passes or fails with a hint. Exit code 0 when all pass."""
    with user_errors():
        lab = get_lab(number)
        file = lab.solution if solution else lab_file(number, directory)
        with console.status(f"lab {number}: loading {file}") as status:
            results = check(number, directory, solution=solution,
                            on_check=lambda c: status.update(f"lab {number}: {c.name} (limit {c.time_limit_s:.0f} s)"))
        table = Table(title=f"Lab {number}: {lab.title} — {file}")
        for col, justify in (("", "center"), ("check", "left"), ("s", "right"), ("result", "left")):
            table.add_column(col, justify=justify)  # type: ignore[arg-type]
        marks = {"pass": "[green]✓[/]", "fail": "[red]✗[/]", "skip": "[dim]–[/]"}
        for r in results:
            # messages quote code ("bias[o]", "x[idx]"): escaped, or rich reads the brackets as markup and drops them
            table.add_row(marks[r.status], escape(r.name), f"{r.seconds:.1f}", escape(r.message))
        console.print(table)
        if not solution:
            record_progress(home_dir(home), number, file.parent, results)
        passed = sum(r.passed for r in results)
        if passed == len(results):
            console.print(f"[bold green]lab {number} passed: {passed}/{len(results)} checks ✓[/]")
            return
        console.print(f"[bold red]{passed}/{len(results)} checks passed[/]: fix the first ✗, then run the check again "
                      f"(stuck? `shoal academy hint {number}` reveals help, one step at a time)")
    raise typer.Exit(1)


@academy_app.command("hint")
def hint_command(
    number: NumberArg,
    name: Annotated[str | None, typer.Argument(help="The check (its name or a word of it); default: the first "
                                                    "that failed in your latest `check`.")] = None,
    home: HomeOption = None,
) -> None:
    """Reveal the next hint for lab N's check: the idea first, more detail each time. Hints used are recorded."""
    with user_errors():
        c, level, hints = next_hint(home_dir(home), number, name)
        console.rule(f"Lab {number}: {escape(c.name)}")
        if not hints:
            console.print("this check has no hints: its failure message in `shoal academy check` is the hint",
                          highlight=False)
            return
        for k, text in enumerate(hints, start=1):
            console.print(f"[bold]hint {k}/{len(c.hints)}[/] {escape(text)}", highlight=False)
        more = "run it again for the next one" if level < len(c.hints) else "that is all the help there is"
        console.print(f"[dim]{more}[/]")


@academy_app.command("progress")
def progress_command(home: HomeOption = None) -> None:
    """Every start and graded attempt, from the registry."""
    with user_errors():
        h = home_dir(home)
        rows = progress(h)
        hints = hints_used(h)
        table = Table(title=f"academy progress in {h}")
        for col in ("when", "lab", "checks", "result", "workspace"):
            table.add_column(col)
        for r in rows:
            result = "started" if not r.checks_total else "[green]passed ✓[/]" if r.passed else "[red]not yet[/]"
            checks = f"{r.checks_passed}/{r.checks_total}" if r.checks_total else ""
            table.add_row(time.strftime("%Y-%m-%d %H:%M", time.localtime(r.at)), str(r.lab), checks, result, r.path)
        console.print(table)
        labs = {lab.number for lab in list_labs()}
        done = sorted({r.lab for r in rows if r.passed} & labs)
        console.print(f"{len(done)} of {len(labs)} labs passed" + (f": {', '.join(map(str, done))}" if done else "")
                      + (f"; {len(hints)} hints used" if hints else ""))
        if not rows:
            console.print(f"nothing recorded in {h} yet: start a lab with `shoal academy start 1` (or pass the --home "
                          "you used)", highlight=False)
