"""The Academy: hands-on deep-learning labs, graded by the platform itself.

Each lab is a folder under ``academy/`` in the source checkout (``01-basics``, ``02-cnn``, ``06-rl``, ...), installed
with the package under ``<prefix>/share/shoal/academy/`` (pyproject's data-files):

    README.md     the lesson: concepts, what to implement, how to get it checked
    starter.py    the code to complete: the same public functions as the solution, with TODOs
    solution.py   the reference solution
    check.py      the grader: ``CHECKS``, a list of :class:`Check`, and ``REQUIRES``, the packages it needs

``shoal academy start N`` copies ``starter.py`` into a workspace as ``lab.py`` (the learner's file, never
overwritten); ``shoal academy check N`` imports that file and runs each check against it, with a time limit
per check, two torch threads and fixed seeds; every graded attempt and every hint shown is stored in the
registry's SQLite file of the learner's home (:func:`academy_home`; tables ``academy_progress`` and
``academy_hints``).  A check passes by returning (optionally a short note such as ``"accuracy 0.972"``) and fails
by raising :class:`CheckFailed` (or ``AssertionError``) with a hint.  A check of a function written "by hand" runs
it :func:`without` the reference implementations it replaces, and a learner's ``fit`` runs
:func:`given_rows_only` (the whole data set's loaders and files out of reach); a plot is graded on the figure saved
(:func:`saved_figures`, :func:`expect_figure`), not on the file's existence.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import sys
import sysconfig
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

from shoal.academy.checks import CheckFailed, CheckSkipped, assert_png, expect_floats, expect_tensor, read_text
from shoal.academy.figures import expect_figure, plotted_lines, saved_figures
from shoal.academy.guard import given_rows_only, sklearn_data_set, without
from shoal.academy.progress import (
    HintRow,
    ProgressRow,
    academy_home,
    hints_used,
    progress,
    record_hint,
    record_progress,
)
from shoal.academy.running import CheckTimeout, explain, seed_everything, time_limit
from shoal.errors import ShoalError

__all__ = [
    "ACADEMY_DIR",
    "HintRow",
    "LAB_FILE",
    "AcademyError",
    "Check",
    "CheckFailed",
    "CheckResult",
    "CheckSkipped",
    "Lab",
    "LabContext",
    "ProgressRow",
    "academy_home",
    "assert_png",
    "check",
    "checks_of",
    "expect_figure",
    "expect_floats",
    "expect_tensor",
    "get_lab",
    "given_rows_only",
    "hints_used",
    "list_labs",
    "next_hint",
    "plotted_lines",
    "progress",
    "record_hint",
    "record_progress",
    "saved_figures",
    "sklearn_data_set",
    "start",
    "synthetic_log",
    "without",
]



def _find_labs() -> Path:
    """``academy/`` beside the package in a source checkout, else where pip put the data-files of an install."""
    beside = Path(__file__).resolve().parents[2] / "academy"
    if beside.is_dir():
        return beside
    for scheme in (sysconfig.get_default_scheme(), f"{os.name}_user"):
        try:
            installed = Path(sysconfig.get_path("data", scheme)) / "share" / "shoal" / "academy"
        except KeyError:  # a scheme this platform does not have
            continue
        if installed.is_dir():
            return installed
    return beside


ACADEMY_DIR = _find_labs()
LAB_FILE = "lab.py"  # the learner's copy of starter.py in their workspace
DEFAULT_WORKSPACE = Path("shoal-academy")
THREADS = 2  # every lab is graded on two torch threads, as on the 2-core machines it is designed for
SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"  # optional real data beside the checkout

class AcademyError(ShoalError):
    """A user error: unknown lab, missing workspace, missing dependency. The message says how to fix it."""


@dataclass
class LabContext:
    """What a check receives: the learner's module, a folder for its plots, and state shared between checks."""

    lab: ModuleType
    workdir: Path
    data_dir: Path = SHARED_DATA
    state: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Check:
    """One graded step: ``fn(ctx)`` returns an optional note on success or raises :class:`CheckFailed`.

    ``needs`` names earlier checks that must pass first (e.g. plotting the loss curve needs training).
    ``hints`` are revealed one at a time by ``shoal academy hint N``: the idea first, the line last.
    """

    name: str
    fn: Callable[[LabContext], str | None]
    time_limit_s: float = 30.0
    needs: tuple[str, ...] = ()
    hints: tuple[str, ...] = ()


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check: ``message`` is a note when it passed, the hint when it failed."""

    name: str
    status: Literal["pass", "fail", "skip"]
    message: str
    seconds: float

    @property
    def passed(self) -> bool:
        """Passed or skipped (an optional check without its data does not hold a lab back)."""
        return self.status != "fail"


@dataclass(frozen=True)
class Lab:
    """A lab folder under ``academy/``."""

    number: int
    slug: str
    title: str
    path: Path

    @property
    def readme(self) -> Path:
        return self.path / "README.md"

    @property
    def starter(self) -> Path:
        return self.path / "starter.py"

    @property
    def solution(self) -> Path:
        return self.path / "solution.py"

    def default_workspace(self) -> Path:
        return DEFAULT_WORKSPACE / self.slug


# ---------------------------------------------------------------------------------------------- the labs


def list_labs(root: Path | None = None) -> list[Lab]:
    """The labs under ``root`` (default: ``academy/`` beside the ``shoal`` package), by number."""
    root = ACADEMY_DIR if root is None else root
    if not root.is_dir():
        raise AcademyError(
            f"the Academy's labs were not found at {root}: reinstall shoal (`pip install 'shoal[academy]'` puts "
            "them under <prefix>/share/shoal/academy) or install it from a checkout: `pip install -e '.[academy]'`"
        )
    labs = []
    for folder in sorted(root.iterdir()):
        match = re.fullmatch(r"(\d\d)-[a-z0-9-]+", folder.name)
        if match is None or not (folder / "check.py").is_file():
            continue
        heading = next((line for line in read_text(folder / "README.md").splitlines() if line.startswith("# ")), "")
        title = heading[2:].split(":", 1)[-1].strip() or folder.name
        labs.append(Lab(number=int(match.group(1)), slug=folder.name, title=title, path=folder))
    return labs


def get_lab(number: int, root: Path | None = None) -> Lab:
    """The lab with this number, or an :class:`AcademyError` naming the labs there are."""
    labs = list_labs(root)
    for lab in labs:
        if lab.number == number:
            return lab
    available = ", ".join(str(lab.number) for lab in labs) or "none"
    raise AcademyError(f"there is no lab {number}; available labs: {available} (see `shoal academy list`)")


def start(number: int, directory: Path | None = None) -> Path:
    """Copy lab ``number``'s starter (as ``lab.py``) and README into a workspace; return the workspace.

    An existing ``lab.py`` is the learner's work and is never overwritten.
    """
    lab = get_lab(number)
    workspace = lab.default_workspace() if directory is None else directory
    workspace.mkdir(parents=True, exist_ok=True)
    target = workspace / LAB_FILE
    if not target.exists():
        shutil.copyfile(lab.starter, target)
    shutil.copyfile(lab.readme, workspace / "README.md")
    return workspace


def lab_file(number: int, path: Path | None = None) -> Path:
    """The learner's file for lab ``number``: ``path`` itself, ``path/lab.py``, or the default workspace's."""
    lab = get_lab(number)
    path = lab.default_workspace() if path is None else path
    file = path / LAB_FILE if path.is_dir() or path.suffix != ".py" else path
    if not file.is_file():
        raise AcademyError(f"no lab file at {file}: run `shoal academy start {number} --dir {file.parent}` first")
    return file


def checks_of(number: int) -> list[Check]:
    """Lab ``number``'s checks, in the order they run (its ``check.py`` is imported, nothing is graded)."""
    lab = get_lab(number)
    name = f"shoal_academy_check_{number:02d}"
    try:
        return list(_load(lab.path / "check.py", name).CHECKS)
    finally:
        sys.modules.pop(name, None)


def next_hint(home: Path, number: int, check_name: str | None = None) -> tuple[Check, int, list[str]]:
    """Reveal the next hint for a check of lab ``number``: (the check, the level now shown, the hints up to it).

    The check is ``check_name`` (its name, or a word of it), else the first that failed in the learner's latest
    graded attempt, else the lab's first check.  Each call reveals one more hint, up to the last, and records it.
    """
    checks = checks_of(number)
    if check_name:
        chosen = [c for c in checks if c.name == check_name] or \
            [c for c in checks if check_name.lower() in c.name.lower()]
        if not chosen:
            names = "; ".join(repr(c.name) for c in checks)
            raise AcademyError(f"lab {number} has no check {check_name!r}; its checks: {names}")
    else:
        attempts = [r for r in progress(home) if r.lab == number and r.checks_total]
        failed = attempts[-1].first_failed if attempts else ""
        chosen = [c for c in checks if c.name == failed] or [c for c in checks if c.hints] or checks
    target = chosen[0]
    if not target.hints:
        return target, 0, []
    shown = max((h.level for h in hints_used(home) if h.lab == number and h.name == target.name), default=0)
    level = min(shown + 1, len(target.hints))
    if level > shown:
        record_hint(home, number, target.name, level)
    return target, level, list(target.hints[:level])


# ---------------------------------------------------------------------------------------------- grading


def check(
    number: int,
    path: Path | None = None,
    *,
    solution: bool = False,
    out_dir: Path | None = None,
    on_check: Callable[[Check], None] | None = None,
) -> list[CheckResult]:
    """Run lab ``number``'s checks against the learner's file (or, with ``solution=True``, the reference).

    ``path`` is the workspace folder or the ``.py`` file itself (default: the workspace ``start`` makes).
    Plots go to ``out_dir`` (default: the folder of the file checked; for the solution, ``path`` if given,
    else ``shoal-academy/solutions/NN-name``).  ``on_check`` is called as each check begins (the CLI shows it).
    """
    lab = get_lab(number)
    file = lab.solution if solution else lab_file(number, path)
    if out_dir is None and solution:  # never into the learner's workspace: their plots stay theirs
        out_dir = path if path is not None and path.suffix != ".py" else DEFAULT_WORKSPACE / "solutions" / lab.slug
    out_dir = file.parent if out_dir is None else out_dir
    grader = _load(lab.path / "check.py", f"shoal_academy_check_{number:02d}")
    missing = [name for name in getattr(grader, "REQUIRES", ()) if importlib.util.find_spec(name) is None]
    if missing:
        raise AcademyError(f"lab {number} needs {', '.join(missing)}: install with `pip install 'shoal[academy]'` "
                           f"(or `pip install {' '.join(missing)}`)")
    checks: list[Check] = list(grader.CHECKS)
    out_dir.mkdir(parents=True, exist_ok=True)

    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    module_name = f"shoal_academy_lab_{number:02d}"
    try:
        started = time.perf_counter()
        try:
            module = _load(file, module_name)
        except BaseException as err:  # a learner's file that does not import: say where and why
            if isinstance(err, KeyboardInterrupt | SystemExit):
                raise
            load = CheckResult(f"import {file.name}", "fail", explain(err, file), time.perf_counter() - started)
            return [load] + [CheckResult(c.name, "fail", f"not run: {file.name} does not import", 0.0) for c in checks]
        ctx = LabContext(lab=module, workdir=out_dir)
        results: list[CheckResult] = []
        for c in checks:
            if on_check is not None:
                on_check(c)
            results.append(_run_one(c, ctx, file, {r.name: r for r in results}))
        return results
    finally:
        sys.modules.pop(module_name, None)
        sys.modules.pop(f"shoal_academy_check_{number:02d}", None)
        torch.set_num_threads(threads)


def _run_one(c: Check, ctx: LabContext, file: Path, done: dict[str, CheckResult]) -> CheckResult:
    blocked = [name for name in c.needs if name in done and done[name].status != "pass"]
    if blocked:
        return CheckResult(c.name, "fail", f"not run: needs {', '.join(repr(b) for b in blocked)} to pass first", 0.0)
    seed_everything(0)
    started = time.perf_counter()
    try:
        with time_limit(c.time_limit_s):
            note = c.fn(ctx)
        seconds = time.perf_counter() - started
        if seconds > c.time_limit_s:
            raise CheckTimeout()
        return CheckResult(c.name, "pass", note or "", seconds)
    except CheckSkipped as err:
        return CheckResult(c.name, "skip", str(err), time.perf_counter() - started)
    except CheckTimeout:
        seconds = time.perf_counter() - started
        return CheckResult(c.name, "fail", f"took {seconds:.0f} s, over the {c.time_limit_s:.0f} s limit: "
                           "train for fewer epochs, use a smaller model, or batch your work", seconds)
    except (Exception, SystemExit) as err:  # SystemExit: a sys.exit() in the learner's code ends the check, not us
        return CheckResult(c.name, "fail", explain(err, file), time.perf_counter() - started)


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise AcademyError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look the module up here
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def synthetic_log(ctx: LabContext, spec: Any, name: str = "click_log.parquet") -> Path:
    """A click log of ``spec`` (a :class:`~shoal.data.synthetic.SynthSpec`) in the lab's work folder: the one an
    earlier check run wrote, unless it is missing or was written from another spec."""
    from dataclasses import asdict

    from shoal.data.synthetic import generate, load_truth

    path = ctx.workdir / name
    try:
        same = path.is_file() and load_truth(path).spec == asdict(spec)
    except (OSError, ValueError):
        same = False
    if not same:
        generate(path, spec)
    return path
