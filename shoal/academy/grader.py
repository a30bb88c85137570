"""The Academy: hands-on deep-learning labs, graded by the platform itself.

Each lab is a folder under ``academy/`` in the source checkout (``01-basics``, ``02-cnn``, ``06-rl``, ...):

    README.md     the lesson: concepts, what to implement, how to get it checked
    starter.py    the code to complete: the same public functions as the solution, with TODOs
    solution.py   the reference solution
    check.py      the grader: ``CHECKS``, a list of :class:`Check`, and ``REQUIRES``, the packages it needs

``shoal academy start N`` copies ``starter.py`` into a workspace as ``lab.py`` (the learner's file, never
overwritten); ``shoal academy check N`` imports that file and runs each check against it, with a time limit
per check, two torch threads and fixed seeds; every graded attempt is stored in the registry's SQLite file
(table ``academy_progress``).  A check passes by returning (optionally a short note such as
``"accuracy 0.972"``) and fails by raising :class:`CheckFailed` (or ``AssertionError``) with a hint.
"""

from __future__ import annotations

import importlib.util
import math
import random
import re
import shutil
import signal
import sqlite3
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any, Literal

from shoal.artifacts.registry import Registry
from shoal.errors import ShoalError

__all__ = [
    "ACADEMY_DIR",
    "LAB_FILE",
    "AcademyError",
    "Check",
    "CheckFailed",
    "CheckResult",
    "CheckSkipped",
    "Lab",
    "LabContext",
    "ProgressRow",
    "assert_png",
    "check",
    "expect_floats",
    "expect_tensor",
    "get_lab",
    "list_labs",
    "progress",
    "record_progress",
    "start",
    "synthetic_log",
]

ACADEMY_DIR = Path(__file__).resolve().parents[2] / "academy"
LAB_FILE = "lab.py"  # the learner's copy of starter.py in their workspace
DEFAULT_WORKSPACE = Path("shoal-academy")
THREADS = 2  # every lab is graded on two torch threads, as on the 2-core machines it is designed for
SHARED_DATA = ACADEMY_DIR.parent.parent / "shared" / "data"  # optional real data beside the checkout

_PROGRESS_TABLE = """
CREATE TABLE IF NOT EXISTS academy_progress (
    lab           INTEGER NOT NULL,
    path          TEXT NOT NULL,
    passed        INTEGER NOT NULL,
    checks_passed INTEGER NOT NULL,
    checks_total  INTEGER NOT NULL,
    at            REAL NOT NULL
)
"""


class AcademyError(ShoalError):
    """A user error: unknown lab, missing workspace, missing dependency. The message says how to fix it."""


class CheckFailed(Exception):
    """Raised by a check: the message is the hint shown to the learner."""


class CheckSkipped(Exception):
    """Raised by an optional check whose inputs are absent (e.g. ../shared/data); it counts as not failing."""


class _CheckTimeout(BaseException):
    """Raised inside a check that ran past its time limit (a BaseException, so ``except Exception`` misses it)."""


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
    """

    name: str
    fn: Callable[[LabContext], str | None]
    time_limit_s: float = 30.0
    needs: tuple[str, ...] = ()


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


@dataclass(frozen=True)
class ProgressRow:
    """One graded attempt (or, with ``checks_total == 0``, the start of a lab)."""

    lab: int
    path: str
    passed: bool
    checks_passed: int
    checks_total: int
    at: float


# ---------------------------------------------------------------------------------------------- the labs


def list_labs(root: Path | None = None) -> list[Lab]:
    """The labs under ``root`` (default: ``academy/`` beside the ``shoal`` package), by number."""
    root = ACADEMY_DIR if root is None else root
    if not root.is_dir():
        raise AcademyError(
            f"the Academy's labs were not found at {root}: they ship with the source checkout, not the wheel; "
            "clone the shoal repository and install it with `pip install -e '.[academy]'`"
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
            load = CheckResult(f"import {file.name}", "fail", _explain(err, file), time.perf_counter() - started)
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
    _seed_everything(0)
    started = time.perf_counter()
    try:
        with _time_limit(c.time_limit_s):
            note = c.fn(ctx)
        seconds = time.perf_counter() - started
        if seconds > c.time_limit_s:
            raise _CheckTimeout()
        return CheckResult(c.name, "pass", note or "", seconds)
    except CheckSkipped as err:
        return CheckResult(c.name, "skip", str(err), time.perf_counter() - started)
    except _CheckTimeout:
        seconds = time.perf_counter() - started
        return CheckResult(c.name, "fail", f"took {seconds:.0f} s, over the {c.time_limit_s:.0f} s limit: "
                           "train for fewer epochs, use a smaller model, or batch your work", seconds)
    except (Exception, SystemExit) as err:  # SystemExit: a sys.exit() in the learner's code ends the check, not us
        return CheckResult(c.name, "fail", _explain(err, file), time.perf_counter() - started)


def _explain(err: BaseException, file: Path) -> str:
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
def _time_limit(seconds: float) -> Iterator[None]:
    """Interrupt the block after ``seconds`` (SIGALRM: main thread on Unix; elsewhere the time is checked after)."""
    if not hasattr(signal, "SIGALRM") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_alarm(signum: int, frame: FrameType | None) -> None:
        raise _CheckTimeout()

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


def _seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


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


# ---------------------------------------------------------------------------------------------- progress


@contextmanager
def _progress_db(home: Path) -> Iterator[sqlite3.Connection]:
    registry = Registry(home)  # creates the home and the database when new
    conn = sqlite3.connect(registry.db_path, timeout=30.0)
    with closing(conn), conn:
        conn.execute(_PROGRESS_TABLE)
        yield conn


def record_progress(home: Path, number: int, path: Path, results: list[CheckResult]) -> ProgressRow:
    """Store one graded attempt (an empty ``results`` records that the lab was started)."""
    passed = sum(r.passed for r in results)
    row = ProgressRow(number, str(path.resolve()), bool(results) and passed == len(results), passed, len(results),
                      time.time())
    with _progress_db(home) as conn:
        conn.execute("INSERT INTO academy_progress VALUES (?, ?, ?, ?, ?, ?)",
                     (row.lab, row.path, int(row.passed), row.checks_passed, row.checks_total, row.at))
    return row


def progress(home: Path) -> list[ProgressRow]:
    """Every start and graded attempt stored under ``home``, oldest first."""
    with _progress_db(home) as conn:
        rows = conn.execute("SELECT lab, path, passed, checks_passed, checks_total, at FROM academy_progress "
                            "ORDER BY at, rowid").fetchall()
    return [ProgressRow(lab, path, bool(passed), cp, ct, at) for lab, path, passed, cp, ct, at in rows]
