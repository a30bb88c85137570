"""Named models: versions of runs, and aliases that move between versions.

A run is one training; a *model* is what a team ships. ``ctr-feed`` v1, v2, ... each point at a run with a
bundle, and aliases (``production``, ``staging``, any name) point at one version and move atomically (one
SQLite transaction), so ``shoal serve ctr-feed@production`` and ``shoal.load_model("ctr-feed@production")`` follow
what the team chose, not whichever run was trained last::

    models = ModelRegistry(home)
    v = models.register("ctr-feed", run_id, alias="staging")   # -> ModelVersion(name, version=1, run_id, ...)
    models.set_alias("ctr-feed", "production", v.version)       # returns the version it pointed at before
    models.resolve("ctr-feed@production").run_id                  # also "ctr-feed@v1", "ctr-feed" (the newest)

The tables live in the run registry's SQLite file (``registry.db``); reading never creates them.
"""

from __future__ import annotations

import os
import re
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from shoal.artifacts.registry import DB_FILENAME, Registry, RegistryError
from shoal.artifacts.run import RunStatus

__all__ = ["ModelNotFoundError", "ModelRegistry", "ModelVersion", "is_model_ref", "split_ref"]

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,99}$")  # a letter first: never a run id (digits) or a path
_RESERVED = {"latest"}
_TABLES = (
    """CREATE TABLE IF NOT EXISTS model_versions (
        name TEXT NOT NULL, version INTEGER NOT NULL, run_id TEXT NOT NULL, created_at REAL NOT NULL,
        note TEXT NOT NULL DEFAULT '', PRIMARY KEY (name, version))""",
    """CREATE TABLE IF NOT EXISTS model_aliases (
        name TEXT NOT NULL, alias TEXT NOT NULL, version INTEGER NOT NULL, updated_at REAL NOT NULL,
        PRIMARY KEY (name, alias))""",
)


class ModelNotFoundError(RegistryError, KeyError):
    """No such model, version or alias; the message says what there is."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: int
    run_id: str
    created_at: float
    note: str = ""
    aliases: tuple[str, ...] = ()

    @property
    def ref(self) -> str:
        return f"{self.name}@v{self.version}"


def split_ref(ref: str) -> tuple[str, str | None]:
    """``"name@alias"`` -> (name, alias); ``"name"`` -> (name, None)."""
    name, at, selector = ref.strip().partition("@")
    return name, (selector if at else None)


def is_model_ref(ref: str) -> bool:
    """Whether ``ref`` reads as a model reference (``name``, ``name@alias``, ``name@v3``) rather than a run id,
    ``latest`` or a path."""
    name, selector = split_ref(str(ref))
    return bool(_NAME.match(name)) and name not in _RESERVED and "/" not in str(ref) and selector != ""


def _check_name(what: str, value: str) -> str:
    if not _NAME.match(value) or value in _RESERVED:
        raise ValueError(f"{what} {value!r} is not allowed: a letter, then letters, digits, '_', '.' or '-' "
                         f"(at most 100), and not {', '.join(sorted(_RESERVED))}")
    return value


def _version_of(selector: str) -> int | None:
    """``v3`` or ``3`` -> 3; an alias -> None."""
    m = re.fullmatch(r"[vV]?(\d+)", selector)
    return int(m.group(1)) if m else None


class ModelRegistry:
    """Model versions and aliases in the registry at ``home``."""

    def __init__(self, home: str | os.PathLike[str]) -> None:
        self.home = Path(home)
        self._registry: Registry | None = None
        self._tables = False

    def _runs(self) -> Registry:
        if self._registry is None:  # opening a registry checks its schema (a write): once per instance
            self._registry = Registry(self.home)
        return self._registry

    def _has_tables(self) -> bool:
        if self._tables:
            return True
        if not (self.home / DB_FILENAME).is_file():
            return False
        with self._runs()._connect() as conn:
            row = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'model_versions'")
            self._tables = row.fetchone() is not None
        return self._tables

    # ------------------------------------------------------------------ writes

    def register(self, name: str, run_ref: str, alias: str | None = None, note: str = "") -> ModelVersion:
        """Add run ``run_ref`` (id, prefix or ``latest``; it must be completed, with a bundle) as the next version
        of model ``name``; with ``alias``, point it there too. Registering the same run again is allowed (a new
        version)."""
        _check_name("model name", name)
        if alias is not None:
            _check_name("alias", alias)
        runs = self._runs()
        record = runs.get(run_ref)
        if record.status != RunStatus.COMPLETED or not (record.artifact_dir / "bundle" / "bundle.json").is_file():
            raise ValueError(f"run {record.run_id} is {record.status} without a bundle; only a completed run with a "
                             "bundle can be a model version")
        now = time.time()
        with runs._transaction() as conn:
            for statement in _TABLES:
                conn.execute(statement)
            (last,) = conn.execute("SELECT COALESCE(MAX(version), 0) FROM model_versions WHERE name = ?",
                                   (name,)).fetchone()
            version = int(last) + 1
            conn.execute("INSERT INTO model_versions (name, version, run_id, created_at, note) VALUES (?, ?, ?, ?, ?)",
                         (name, version, record.run_id, now, note))
            if alias is not None:
                conn.execute("INSERT OR REPLACE INTO model_aliases (name, alias, version, updated_at) "
                             "VALUES (?, ?, ?, ?)", (name, alias, version, now))
        return ModelVersion(name, version, record.run_id, now, note, (alias,) if alias else ())

    def set_alias(self, name: str, alias: str, version: int) -> int | None:
        """Point ``name@alias`` at ``version`` (atomically); returns the version it pointed at before, if any."""
        _check_name("alias", alias)
        if _version_of(alias) is not None:
            raise ValueError(f"alias {alias!r} reads as a version number; pick a name such as 'production'")
        with self._runs()._transaction() as conn:
            for statement in _TABLES:
                conn.execute(statement)
            if conn.execute("SELECT 1 FROM model_versions WHERE name = ? AND version = ?",
                            (name, version)).fetchone() is None:
                raise ModelNotFoundError(self._missing(conn, name, f"v{version}"))
            before = conn.execute("SELECT version FROM model_aliases WHERE name = ? AND alias = ?",
                                  (name, alias)).fetchone()
            conn.execute("INSERT OR REPLACE INTO model_aliases (name, alias, version, updated_at) VALUES (?, ?, ?, ?)",
                         (name, alias, version, time.time()))
        return int(before[0]) if before else None

    def delete_alias(self, name: str, alias: str) -> None:
        with self._runs()._transaction() as conn:
            for statement in _TABLES:
                conn.execute(statement)
            if conn.execute("DELETE FROM model_aliases WHERE name = ? AND alias = ?", (name, alias)).rowcount == 0:
                raise ModelNotFoundError(self._missing(conn, name, alias))

    # ------------------------------------------------------------------ reads

    def resolve(self, ref: str) -> ModelVersion:
        """The version ``ref`` names: ``name@alias``, ``name@v3`` (or ``name@3``), or ``name`` (its newest)."""
        name, selector = split_ref(ref)
        if not self._has_tables():
            raise ModelNotFoundError(f"no model {name!r}: no model is registered in {self.home} "
                                     "(register a run with `shoal register RUN NAME`)")
        with self._runs()._connect() as conn:
            version = _version_of(selector) if selector is not None else None
            if selector is None:
                row = conn.execute("SELECT MAX(version) FROM model_versions WHERE name = ?", (name,)).fetchone()
                version = row[0]
            elif version is None:
                row = conn.execute("SELECT version FROM model_aliases WHERE name = ? AND alias = ?",
                                   (name, selector)).fetchone()
                version = row[0] if row else None
            found = None if version is None else self._version(conn, name, int(version))
            if found is None:
                raise ModelNotFoundError(self._missing(conn, name, selector))
            return found

    def versions(self, name: str | None = None) -> list[ModelVersion]:
        """Every version (of ``name``, or of every model), newest model versions last within a name."""
        if not self._has_tables():
            return []
        with self._runs()._connect() as conn:
            rows = conn.execute("SELECT name, version FROM model_versions" + (" WHERE name = ?" if name else "")
                                + " ORDER BY name, version", (name,) if name else ()).fetchall()
            return [v for n, ver in rows if (v := self._version(conn, n, ver)) is not None]

    def _version(self, conn: sqlite3.Connection, name: str, version: int) -> ModelVersion | None:
        row = conn.execute("SELECT run_id, created_at, note FROM model_versions WHERE name = ? AND version = ?",
                           (name, version)).fetchone()
        if row is None:
            return None
        aliases = tuple(a for (a,) in conn.execute(
            "SELECT alias FROM model_aliases WHERE name = ? AND version = ? ORDER BY alias", (name, version)))
        return ModelVersion(name, version, row[0], row[1], row[2], aliases)

    def _missing(self, conn: sqlite3.Connection, name: str, selector: str | None) -> str:
        versions = [v for (v,) in conn.execute("SELECT version FROM model_versions WHERE name = ? ORDER BY version",
                                               (name,))]
        if not versions:
            names = [n for (n,) in conn.execute("SELECT DISTINCT name FROM model_versions ORDER BY name LIMIT 20")]
            return f"no model {name!r}" + (f"; models: {', '.join(names)}" if names else "; no model is registered")
        aliases = [f"{a}->v{v}" for a, v in conn.execute(
            "SELECT alias, version FROM model_aliases WHERE name = ? ORDER BY alias", (name,))]
        return (f"model {name!r} has no {selector!r}: versions v1..v{versions[-1]}"
                + (f", aliases {', '.join(aliases)}" if aliases else ", no aliases"))
