"""The learner's record: every start, graded attempt and hint shown, in the SQLite file of a registry.

The registry is the learner's, not the current folder's (:func:`academy_home`): ``--home``, else ``$SHOAL_HOME``,
else ``shoal/academy`` in the user's data folder, so ``shoal academy progress`` gives the same answer from any
folder.  Reading never creates a registry: a home without one has no progress yet.

    academy_progress(lab, path, passed, checks_passed, checks_total, at, first_failed)   one row per start/attempt
    academy_hints(lab, name, level, at)                                                  one row per hint revealed
"""

from __future__ import annotations

import sqlite3
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shoal.artifacts.registry import DB_FILENAME, HOME_ENV_VAR, Registry

__all__ = ["HintRow", "ProgressRow", "academy_home", "hints_used", "progress", "record_hint", "record_progress",
           "user_data_dir"]

_PROGRESS_TABLE = """
CREATE TABLE IF NOT EXISTS academy_progress (
    lab           INTEGER NOT NULL,
    path          TEXT NOT NULL,
    passed        INTEGER NOT NULL,
    checks_passed INTEGER NOT NULL,
    checks_total  INTEGER NOT NULL,
    at            REAL NOT NULL,
    first_failed  TEXT NOT NULL DEFAULT ''
)
"""
_HINTS_TABLE = """
CREATE TABLE IF NOT EXISTS academy_hints (
    lab   INTEGER NOT NULL,
    name  TEXT NOT NULL,
    level INTEGER NOT NULL,
    at    REAL NOT NULL
)
"""


@dataclass(frozen=True)
class ProgressRow:
    """One graded attempt (or, with ``checks_total == 0``, the start of a lab); ``first_failed`` names the first
    check that failed (empty when none did), the one ``shoal academy hint`` helps with."""

    lab: int
    path: str
    passed: bool
    checks_passed: int
    checks_total: int
    at: float
    first_failed: str = ""


@dataclass(frozen=True)
class HintRow:
    """One hint revealed: the ``level``-th hint (1 = the first) of lab ``lab``'s check ``name``."""

    lab: int
    name: str
    level: int
    at: float


def user_data_dir(environ: Mapping[str, str], platform: str = sys.platform) -> Path:
    """The user's data folder: ``$XDG_DATA_HOME`` or ``~/.local/share`` (Linux), ``~/Library/Application Support``
    (macOS), ``%LOCALAPPDATA%`` (Windows)."""
    if platform.startswith("win"):
        return Path(environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    if platform == "darwin":
        return Path.home() / "Library" / "Application Support"
    return Path(environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")


def academy_home(home: Path | None, environ: Mapping[str, str]) -> Path:
    """Where the learner's progress lives: ``home`` (``--home``), else ``$SHOAL_HOME``, else the user's data folder's
    ``shoal/academy``; never the current folder, so the record follows the learner."""
    if home is not None and str(home):
        return Path(home).expanduser()
    if environ.get(HOME_ENV_VAR):
        return Path(environ[HOME_ENV_VAR]).expanduser()
    return user_data_dir(environ) / "shoal" / "academy"


@contextmanager
def _writer(home: Path) -> Iterator[sqlite3.Connection]:
    registry = Registry(home)  # creates the home and its database when new: only when there is something to store
    conn = sqlite3.connect(registry.db_path, timeout=30.0)
    with closing(conn), conn:
        conn.execute(_PROGRESS_TABLE)
        conn.execute(_HINTS_TABLE)
        columns = {row[1] for row in conn.execute("PRAGMA table_info(academy_progress)")}
        if "first_failed" not in columns:  # a registry written before hints existed
            conn.execute("ALTER TABLE academy_progress ADD COLUMN first_failed TEXT NOT NULL DEFAULT ''")
        yield conn


def _read(home: Path, sql: str) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` from ``home``'s registry, read-only; none when there is no registry or no such table yet."""
    db = Path(home) / DB_FILENAME
    if not db.is_file():
        return []
    conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=30.0)
    with closing(conn):
        try:
            return conn.execute(sql).fetchall()
        except sqlite3.OperationalError as err:
            if "no such table" in str(err) or "no such column" in str(err):
                return []
            raise


def record_progress(home: Path, number: int, path: Path, results: Sequence[Any]) -> ProgressRow:
    """Store one graded attempt (``results``: the :class:`~shoal.academy.grader.CheckResult` list; empty records
    that the lab was started)."""
    passed = sum(r.passed for r in results)
    first_failed = next((r.name for r in results if not r.passed), "")
    row = ProgressRow(number, str(path.resolve()), bool(results) and passed == len(results), passed, len(results),
                      time.time(), first_failed)
    with _writer(home) as conn:
        conn.execute("INSERT INTO academy_progress (lab, path, passed, checks_passed, checks_total, at, first_failed) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?)", (row.lab, row.path, int(row.passed), row.checks_passed,
                                                      row.checks_total, row.at, row.first_failed))
    return row


def progress(home: Path) -> list[ProgressRow]:
    """Every start and graded attempt stored under ``home``, oldest first (none, and nothing created, without a
    registry there)."""
    rows = _read(home, "SELECT lab, path, passed, checks_passed, checks_total, at, first_failed "
                       "FROM academy_progress ORDER BY at, rowid")
    if not rows:  # a registry from before first_failed existed
        rows = [(*r, "") for r in _read(home, "SELECT lab, path, passed, checks_passed, checks_total, at "
                                              "FROM academy_progress ORDER BY at, rowid")]
    return [ProgressRow(lab, path, bool(passed), cp, ct, at, ff) for lab, path, passed, cp, ct, at, ff in rows]


def record_hint(home: Path, number: int, name: str, level: int) -> HintRow:
    """Store that hint ``level`` of lab ``number``'s check ``name`` was revealed."""
    row = HintRow(number, name, level, time.time())
    with _writer(home) as conn:
        conn.execute("INSERT INTO academy_hints VALUES (?, ?, ?, ?)", (row.lab, row.name, row.level, row.at))
    return row


def hints_used(home: Path) -> list[HintRow]:
    """Every hint revealed under ``home``, oldest first."""
    rows = _read(home, "SELECT lab, name, level, at FROM academy_hints ORDER BY at, rowid")
    return [HintRow(lab, name, level, at) for lab, name, level, at in rows]
