"""Embedded run registry: one SQLite file plus a directory of artifacts per run.

Layout under the registry *home* (default ``./shoal-runs``)::

    registry.db            SQLite database (WAL mode)
    runs/<run_id>/         artifacts written by the run (checkpoints, reports, ...)

Concurrency model: every operation opens its own connection and closes it afterwards, and every
write is one short ``BEGIN IMMEDIATE`` transaction (read-modify-write included), so several
processes and threads may share one home; SQLite serialises writers and ``busy_timeout`` (30 s)
makes a writer wait for the lock rather than fail.  Connections use ``synchronous=NORMAL``, the
usual WAL setting: commits survive a crash of any process; an OS crash or power loss may undo the
last few commits but cannot corrupt the database.  Nothing is read from the environment at import
time; use :func:`resolve_home` to pick the home explicitly.

A run's status is written here only: :meth:`Registry.create_run` starts it ``running``, :meth:`Registry.reopen`
sets a resumed run ``running`` again, :meth:`Registry.recording` marks it ``failed`` (with the error and its
traceback) or ``killed`` (Ctrl-C) when its body raises, and :meth:`Registry.complete` stores its results::

    record = registry.create_run(cfg.name, cfg.resolved(), kind=RunKind.TRAIN)
    with registry.recording(record.run_id):
        result = trainer.fit()
    registry.complete(record.run_id, result.metrics, result.summary)

A run is ``running`` in one process at a time: the process that makes it ``running`` (``create_run``, ``reopen``,
``update(status="running")``) holds its lock (:func:`~shoal.artifacts.run.hold_run`, a ``flock`` on
``runs/<run_id>/run.lock``) until it records another status or dies; another process that tries gets
:class:`RunBusyError` before anything is written. A run stored ``running`` whose lock nobody holds (its process
was SIGKILLed or ran out of memory) reads back as ``killed`` from :meth:`Registry.get` and :meth:`Registry.list`.
That is computed on read, not written back: reads stay reads (no write lock, nothing created, a read-only registry
reads the same), and a write-back could race a resume that has just taken the lock. The row keeps ``running``
until a resume or the end of a run writes its status. A run without a lock file (made by an older shoal) reads as
stored.

A full disk is :class:`~shoal.artifacts.disk.DiskFullError` here too: SQLite's "database or disk is full" (or its
"disk I/O error" on a disk with no room left) names the database, the bytes free and the fix. ``recording`` turns any
ENOSPC of a run into that error with the command that resumes the run; when the registry cannot record the failure
either, the error says so and the run reads ``killed``, its last checkpoint kept.
"""

from __future__ import annotations

import builtins
import errno
import json
import logging
import os
import secrets
import sqlite3
import time
import traceback
from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

from shoal.artifacts.disk import DiskFullError, disk_full, no_space_left
from shoal.artifacts.run import (
    RunBusyError,
    RunKind,
    RunRecord,
    RunStatus,
    RunSummary,
    hold_run,
    release_run,
    run_is_live,
)
from shoal.errors import ShoalError

__all__ = [
    "DEFAULT_HOME",
    "HOME_ENV_VAR",
    "SCHEMA_VERSION",
    "STATUSES",
    "AmbiguousRunError",
    "Registry",
    "RegistryError",
    "RunBusyError",
    "RunNotFoundError",
    "RunKind",
    "RunRecord",
    "RunStatus",
    "RunSummary",
    "resolve_home",
]

logger = logging.getLogger(__name__)

HOME_ENV_VAR = "SHOAL_HOME"
DEFAULT_HOME = Path("shoal-runs")
DB_FILENAME = "registry.db"
RUNS_DIRNAME = "runs"
SCHEMA_VERSION = 1


STATUSES: tuple[str, ...] = tuple(s.value for s in RunStatus)
TRACEBACK_FRAMES = 20  # a failed run keeps the innermost frames of its traceback in its summary
BUSY_TIMEOUT_S = 30.0
_ID_ATTEMPTS = 5
_HINT = "run `shoal runs` to list runs"

_SCHEMA_VERSION_TABLE = "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"
_SCHEMA_V1 = (
    """
    CREATE TABLE IF NOT EXISTS runs (
        run_id      TEXT PRIMARY KEY,
        name        TEXT NOT NULL,
        kind        TEXT NOT NULL,
        status      TEXT NOT NULL,
        config      TEXT NOT NULL,
        metrics     TEXT NOT NULL,
        summary     TEXT NOT NULL,
        parent      TEXT,
        created_at  REAL NOT NULL,
        updated_at  REAL NOT NULL,
        finished_at REAL
    )
    """,
    "CREATE INDEX IF NOT EXISTS runs_created ON runs (created_at DESC, run_id DESC)",
)

_COLUMNS = "run_id, name, kind, status, config, metrics, summary, parent, created_at, updated_at, finished_at"


class RegistryError(ShoalError):
    """Base class for run-registry errors."""


class RunNotFoundError(RegistryError, KeyError):
    """No run matches the given reference.

    Also a :class:`KeyError` so that mapping-style callers can catch it; ``str()`` returns the plain
    message (``KeyError`` would otherwise wrap it in quotes).
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class AmbiguousRunError(RegistryError):
    """A run-id prefix matches more than one run."""


def resolve_home(explicit: str | os.PathLike[str] | None, environ: Mapping[str, str]) -> Path:
    """Choose the registry home: ``explicit`` > ``environ["SHOAL_HOME"]`` > ``./shoal-runs``.

    Empty strings count as "not given".  ``~`` is expanded; the path is not made absolute, so a
    relative home stays relative to the caller's working directory.
    """
    if explicit is not None and os.fspath(explicit) != "":
        return Path(explicit).expanduser()
    from_env = environ.get(HOME_ENV_VAR, "")
    if from_env:
        return Path(from_env).expanduser()
    return DEFAULT_HOME


def _json_default(obj: Any) -> Any:
    """``json.dumps`` fallback: numpy scalars/0-d arrays via ``.item()``, paths as strings."""
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    item = getattr(obj, "item", None)
    if callable(item) and getattr(obj, "shape", None) in ((), None):
        return item()
    tolist = getattr(obj, "tolist", None)
    if callable(tolist):
        return tolist()
    raise TypeError(f"value of type {type(obj).__name__} is not JSON-serializable: {obj!r:.80}")


def _dumps(field: str, value: Mapping[str, Any]) -> str:
    """Serialise a JSON column deterministically (sorted keys).

    NaN/inf are kept as the non-standard ``NaN``/``Infinity`` tokens that :func:`json.loads` reads
    back, since metrics such as AUC are legitimately ``nan`` on one-class data.
    """
    if not isinstance(value, Mapping):
        raise TypeError(f"{field} must be a dict, got {type(value).__name__}")
    try:
        return json.dumps(dict(value), sort_keys=True, default=_json_default)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{field} cannot be stored as JSON: {exc}") from exc


def _check_status(status: str) -> RunStatus:
    if status not in STATUSES:
        raise ValueError(f"invalid run status {status!r}; allowed: {', '.join(STATUSES)}")
    return RunStatus(status)


def _check_kind(kind: str) -> RunKind:
    if not kind:
        raise ValueError("run kind must be a non-empty string")
    if kind not in set(RunKind):
        raise ValueError(f"invalid run kind {kind!r}; allowed: {', '.join(RunKind)}")
    return RunKind(kind)


def _is_busy(exc: BaseException | None) -> bool:
    """Whether ``exc`` is SQLite's SQLITE_BUSY / SQLITE_LOCKED (including extended codes)."""
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    message = str(exc)
    return "locked" in message or "busy" in message


def _full(exc: sqlite3.DatabaseError, db_path: Path) -> bool:
    """Whether SQLite failed for want of room: SQLITE_FULL, or SQLITE_IOERR (its "disk I/O error", which is what
    some writes on a full disk report) with the disk all but full."""
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    if primary == sqlite3.SQLITE_FULL or "database or disk is full" in str(exc):
        return True
    return (primary == sqlite3.SQLITE_IOERR or "disk I/O error" in str(exc)) and disk_full(exc, db_path)


def _as_disk_full(err: BaseException, run_dir: Path) -> DiskFullError | None:
    """``err`` as a :class:`DiskFullError` when a full disk caused it (an ENOSPC/EDQUOT ``OSError`` from any
    write of the run: a picture, the quarantine file), naming the file it names, else the run folder."""
    if isinstance(err, DiskFullError):
        return err
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return no_space_left(Path(err.filename) if err.filename else run_dir, err)
    return None


def _stopped_like(full: DiskFullError, message: str) -> DiskFullError:
    """A :class:`DiskFullError` with ``message`` and the path, mount and free bytes of ``full``."""
    stopped = DiskFullError(message)
    stopped.path, stopped.mount, stopped.free = full.path, full.mount, full.free
    return stopped


def _new_run_id(now: float) -> str:
    """``YYYYMMDD-HHMMSS-xxxxxx``: UTC timestamp (sortable) plus 24 random bits (unique)."""
    return f"{time.strftime('%Y%m%d-%H%M%S', time.gmtime(now))}-{secrets.token_hex(3)}"


class Registry:
    """The run registry stored under ``home``.

    Instances hold no open connection, so they are cheap, picklable and safe to share between
    threads; separate processes may each construct their own on the same ``home``.
    """

    def __init__(self, home: str | os.PathLike[str]) -> None:
        """Create ``home``, the database and its schema if missing; switch the database to WAL.

        Raises:
            RegistryError: the database was written by a newer schema version, or is not a
                registry database.
        """
        self.home = Path(home)
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / RUNS_DIRNAME).mkdir(exist_ok=True)
        self.db_path = self.home / DB_FILENAME
        self._wal = False
        self._wal = self._enable_wal()
        with self._transaction() as conn:
            conn.execute(_SCHEMA_VERSION_TABLE)
            version = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0]
            if version is not None and version > SCHEMA_VERSION:
                raise RegistryError(
                    f"registry {self.db_path} has schema version {version}, but this version of shoal "
                    f"only understands up to {SCHEMA_VERSION}; upgrade shoal or use another SHOAL_HOME"
                )
            for statement in _SCHEMA_V1:
                conn.execute(statement)
            if version is None:
                conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))

    def _enable_wal(self) -> bool:
        """Switch the database to WAL journaling (persistent, so usually a no-op); True on success.

        Changing the journal mode can fail with "database is locked" *without* SQLite's busy
        handler being consulted, e.g. while another process is initialising the same fresh file,
        so this retries with backoff for up to ``BUSY_TIMEOUT_S``.
        """
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        delay = 0.005
        while True:
            try:
                with self._connect() as conn:
                    mode = str(conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]).lower()
                break
            except RegistryError as exc:
                if not _is_busy(exc.__cause__) or time.monotonic() + delay > deadline:
                    raise
                logger.debug("registry %s busy while enabling WAL; retrying in %.3fs", self.db_path, delay)
                time.sleep(delay)
                delay = min(delay * 2, 0.25)
        if mode != "wal":
            logger.warning(
                "registry %s: could not enable WAL (journal_mode=%s); writers will block readers",
                self.db_path,
                mode,
            )
        return mode == "wal"

    def __repr__(self) -> str:
        return f"Registry({str(self.home)!r})"

    # ------------------------------------------------------------------ connections

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A fresh autocommit connection, closed on exit."""
        try:
            conn = sqlite3.connect(self.db_path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        except sqlite3.Error as exc:
            raise RegistryError(f"cannot open run registry {self.db_path}: {exc}") from exc
        with closing(conn):
            try:
                conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
                if self._wal:
                    # With WAL, NORMAL fsyncs at checkpoints instead of every commit: a process crash
                    # never loses a commit, a power loss may drop the last few, neither corrupts.
                    # (Without WAL, NORMAL could corrupt on power loss, so the default FULL stays.)
                    conn.execute("PRAGMA synchronous = NORMAL")
                yield conn
            except sqlite3.DatabaseError as exc:
                if isinstance(exc, sqlite3.IntegrityError):
                    raise
                if _full(exc, self.db_path):  # "database or disk is full", or an I/O error on a full disk
                    raise no_space_left(self.db_path, exc, what="the run registry ") from exc
                raise RegistryError(f"run registry {self.db_path}: {exc}") from exc

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` write transaction on a fresh connection: commit or roll back."""
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    # ------------------------------------------------------------------ helpers

    def _artifact_dir(self, run_id: str) -> Path:
        return self.home / RUNS_DIRNAME / run_id

    def _record(self, row: tuple[Any, ...]) -> RunRecord:
        run_id = row[0]
        status = RunStatus(row[3])
        if status == RunStatus.RUNNING and run_is_live(self._artifact_dir(run_id)) is False:
            status = RunStatus.KILLED  # its process died without a word (SIGKILL, out of memory)
        return RunRecord(
            run_id=run_id,
            name=row[1],
            kind=RunKind(row[2]),
            status=status,
            config=json.loads(row[4]),
            metrics=json.loads(row[5]),
            summary=json.loads(row[6]),
            parent=row[7],
            created_at=row[8],
            updated_at=row[9],
            finished_at=row[10],
            artifact_dir=self._artifact_dir(run_id),
        )

    def _recent_ids(self, conn: sqlite3.Connection, n: int = 5) -> builtins.list[str]:
        rows = conn.execute(
            "SELECT run_id FROM runs ORDER BY created_at DESC, run_id DESC LIMIT ?", (n,)
        ).fetchall()
        return [r[0] for r in rows]

    def _not_found(self, conn: sqlite3.Connection, ref: str) -> RunNotFoundError:
        recent = self._recent_ids(conn)
        if not recent:
            return RunNotFoundError(f"no run matches {ref!r}: the registry at {self.home} has no runs yet")
        return RunNotFoundError(
            f"no run matches {ref!r} in {self.home}; most recent: {', '.join(recent)} ({_HINT})"
        )

    # ------------------------------------------------------------------ public API

    def create_run(
        self,
        name: str,
        config: Mapping[str, Any],
        kind: RunKind | str = RunKind.TRAIN,
        parent: str | None = None,
    ) -> RunRecord:
        """Register a new run with status ``"running"`` and create its artifact directory.

        ``parent`` (e.g. the teacher of a distilled student) is stored as given, not validated, so
        that runs may reference runs in another registry.
        """
        if not name:
            raise ValueError("run name must be a non-empty string")
        kind = _check_kind(kind)
        config_json = _dumps("config", config)
        for _ in range(_ID_ATTEMPTS):
            now = time.time()
            run_id = _new_run_id(now)
            try:
                with self._transaction() as conn:
                    conn.execute(
                        f"INSERT INTO runs ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (run_id, name, kind.value, RunStatus.RUNNING.value, config_json, "{}", "{}", parent, now,
                         now, None),
                    )
                    # Inside the transaction: if the directory cannot be made, the row is rolled back.
                    self._artifact_dir(run_id).mkdir(parents=True, exist_ok=True)
            except sqlite3.IntegrityError:
                logger.debug("run id %s already taken; drawing another", run_id)
                continue
            hold_run(self._artifact_dir(run_id), run_id)  # a new folder: nobody else holds it
            logger.info("created run %s (%s, kind=%s)", run_id, name, kind)
            return self.get(run_id)
        raise RegistryError(f"could not allocate a unique run id after {_ID_ATTEMPTS} attempts")

    def update(
        self,
        run_id: str,
        *,
        status: RunStatus | str | None = None,
        metrics: Mapping[str, Any] | None = None,
        summary: Mapping[str, Any] | None = None,
        finished: bool = False,
    ) -> RunRecord:
        """Update a run (exact id) in one transaction and return the new record.

        ``metrics`` and ``summary`` are merged key-by-key into the stored dicts (new values win);
        ``finished=True`` stamps ``finished_at`` with the current time. Status ``running`` takes the run's lock
        for this process first; any other status lets go of it once written.

        Raises:
            ValueError: ``status`` is not one of :data:`STATUSES`.
            RunNotFoundError: no run has this exact id.
            RunBusyError: ``status`` is ``running`` and another live process runs the run (nothing written).
        """
        if status is not None:
            status = _check_status(status)
        metrics_patch = _dumps("metrics", metrics) if metrics is not None else None
        summary_patch = _dumps("summary", summary) if summary is not None else None
        if status == RunStatus.RUNNING:
            hold_run(self._artifact_dir(run_id), run_id)
        try:
            self._write(run_id, status, metrics_patch, summary_patch, finished)
        except RunNotFoundError:
            release_run(self._artifact_dir(run_id))
            raise
        except (RegistryError, DiskFullError):
            if status is not None and status != RunStatus.RUNNING:
                # the run has stopped, recorded or not: let go, so that it reads `killed` and can be resumed
                release_run(self._artifact_dir(run_id))
            raise
        if status is not None and status != RunStatus.RUNNING:
            release_run(self._artifact_dir(run_id))
        return self.get(run_id)

    def _write(self, run_id: str, status: RunStatus | None, metrics_patch: str | None, summary_patch: str | None,
               finished: bool) -> None:
        """The transaction of :meth:`update`."""
        with self._transaction() as conn:
            row = conn.execute(
                "SELECT status, metrics, summary, finished_at FROM runs WHERE run_id = ?", (run_id,)
            ).fetchone()
            if row is None:
                raise self._not_found(conn, run_id)
            old_status, old_metrics, old_summary, finished_at = row
            new_metrics = json.loads(old_metrics)
            if metrics_patch is not None:
                new_metrics.update(json.loads(metrics_patch))
            new_summary = json.loads(old_summary)
            if summary_patch is not None:
                new_summary.update(json.loads(summary_patch))
            now = time.time()
            conn.execute(
                "UPDATE runs SET status = ?, metrics = ?, summary = ?, updated_at = ?, finished_at = ? "
                "WHERE run_id = ?",
                (
                    status.value if status is not None else old_status,
                    json.dumps(new_metrics, sort_keys=True),
                    json.dumps(new_summary, sort_keys=True),
                    now,
                    now if finished else finished_at,
                    run_id,
                ),
            )

    def get(self, ref: str) -> RunRecord:
        """Look a run up by exact id, unique id prefix, or ``"latest"`` (most recently created).

        Raises:
            RunNotFoundError: nothing matches (the message lists recent run ids).
            AmbiguousRunError: the prefix matches several runs (the message lists them).
        """
        ref = ref.strip()
        with self._connect() as conn:
            if ref == "latest":
                row = conn.execute(
                    f"SELECT {_COLUMNS} FROM runs ORDER BY created_at DESC, run_id DESC LIMIT 1"
                ).fetchone()
                if row is None:
                    raise self._not_found(conn, ref)
                return self._record(row)
            if not ref:
                raise self._not_found(conn, ref)
            row = conn.execute(f"SELECT {_COLUMNS} FROM runs WHERE run_id = ?", (ref,)).fetchone()
            if row is not None:
                return self._record(row)
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM runs WHERE substr(run_id, 1, ?) = ? "
                "ORDER BY created_at DESC, run_id DESC LIMIT 11",
                (len(ref), ref),
            ).fetchall()
            if len(rows) == 1:
                return self._record(rows[0])
            if not rows:
                raise self._not_found(conn, ref)
            shown = ", ".join(r[0] for r in rows[:10])
            more = " (and more)" if len(rows) > 10 else ""
            raise AmbiguousRunError(
                f"run prefix {ref!r} is ambiguous; it matches {shown}{more}. Use a longer prefix."
            )

    def list(self, limit: int = 50, status: RunStatus | str | None = None) -> builtins.list[RunRecord]:
        """Up to ``limit`` runs, newest first, optionally only those with the given status (as read: a ``running``
        run whose process died counts as ``killed``)."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be a positive integer, got {limit!r}")
        order = "ORDER BY created_at DESC, run_id DESC"
        if status is None:
            with self._connect() as conn:
                rows = conn.execute(f"SELECT {_COLUMNS} FROM runs {order} LIMIT ?", (limit,)).fetchall()
            return [self._record(r) for r in rows]
        wanted = _check_status(status)
        stored = (wanted, RunStatus.RUNNING) if wanted in (RunStatus.RUNNING, RunStatus.KILLED) else (wanted,)
        found: builtins.list[RunRecord] = []
        with self._connect() as conn:
            cursor = conn.execute(
                f"SELECT {_COLUMNS} FROM runs WHERE status IN ({', '.join('?' * len(stored))}) {order}",
                tuple(s.value for s in stored),
            )
            for row in cursor:
                record = self._record(row)
                if record.status == wanted:
                    found.append(record)
                    if len(found) == limit:
                        break
        return found

    # ------------------------------------------------------------------ a run's status

    def reopen(self, ref: str) -> RunRecord:
        """Mark a killed or failed run (id, prefix or ``latest``) ``running`` again, to resume it.

        Raises:
            ValueError: the run already completed.
        """
        record = self.get(ref)
        if record.status == RunStatus.COMPLETED:
            raise ValueError(f"run {record.run_id} already completed; nothing to resume (start a new run instead)")
        return self.update(record.run_id, status=RunStatus.RUNNING)

    def fail(self, run_id: str, err: BaseException) -> RunRecord:
        """Record how a run ended early: ``killed`` on Ctrl-C, else ``failed`` with the error and its traceback."""
        if isinstance(err, KeyboardInterrupt):
            return self.update(run_id, status=RunStatus.KILLED, finished=True)
        return self.update(run_id, status=RunStatus.FAILED, finished=True,
                           summary={"error": f"{type(err).__name__}: {err}",
                                    "traceback": "".join(traceback.format_exception(err, limit=TRACEBACK_FRAMES))})

    @contextmanager
    def recording(self, run_id: str) -> Iterator[None]:
        """Run the body of a run; when it raises, record the run as failed or killed (:meth:`fail`) and re-raise.

        A full disk (a :class:`DiskFullError`, or any ENOSPC/EDQUOT ``OSError``) is re-raised as a
        :class:`DiskFullError` that also says how to resume the run; when the registry cannot record the failure
        either (the same full disk), the error says so: the run then reads ``killed`` and keeps its last checkpoint.
        """
        try:
            yield
        except BaseException as err:
            full = _as_disk_full(err, self._artifact_dir(run_id))
            if full is None:
                self.fail(run_id, err)
                raise
            resume = f"shoal {'auto' if self._kind(run_id) == RunKind.AUTO else 'train'} --resume {run_id}"
            stopped = DiskFullError(f"{full}. Run {run_id} is recorded failed and keeps its last checkpoint: once "
                                    f"there is room, resume it with `{resume}`")
            try:
                self.fail(run_id, stopped)
            except DiskFullError as unrecorded:
                raise _stopped_like(full, f"{full}. The run registry {self.db_path} could not be written either (no "
                                          f"space left on device {unrecorded.mount}), so run {run_id} is not recorded "
                                          "failed; it reads `killed` and keeps its last checkpoint: once there is "
                                          f"room, resume it with `{resume}`") from err
            raise _stopped_like(full, str(stopped)) from err

    def _kind(self, run_id: str) -> RunKind | None:
        try:
            with self._connect() as conn:
                row = conn.execute("SELECT kind FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        except RegistryError:
            return None
        return None if row is None else RunKind(row[0])

    def complete(self, run_id: str, metrics: Mapping[str, Any], summary: Mapping[str, Any]) -> RunRecord:
        """Record a run's results and mark it ``completed``."""
        return self.update(run_id, status=RunStatus.COMPLETED, finished=True, metrics=metrics, summary=summary)
