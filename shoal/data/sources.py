"""Which files a source names: a file, a folder (Spark/Hive parts), a glob, or a list of those read in order.

A config's ``data.train`` is one Path whatever the user wrote (see :mod:`shoal.config`): a list arrives as its
entries joined by newlines, so every reader keeps taking one Path. This module turns such a Path back into its
entries and files::

    data.train: [logs/2026-11, extra/*.csv.gz]        ->  Path("/cfg/logs/2026-11\\n/cfg/extra/*.csv.gz")
    source_parts(...)  ->  [(/cfg/logs/2026-11, /cfg/logs/2026-11/date=2026-11-30/part-0.parquet), ...,
                            (/cfg/extra/*.csv.gz, /cfg/extra/a.csv.gz), ...]

Each file keeps the entry it came from: ``key=value`` folder names between a folder entry and the file are that
file's hive partition values (:func:`partition_values`).
"""

from __future__ import annotations

from pathlib import Path

from shoal.errors import ShoalError

__all__ = ["BadInputError", "is_list", "is_multi", "partition_values", "source_entries", "source_files",
           "source_parts"]

_GLOB = set("*?[")


class BadInputError(ShoalError, ValueError):
    """A file or a row that cannot be used. The message names the file, line, column and value."""


def source_entries(path: Path) -> list[Path]:
    """The entries of a source: ``[path]``, or the paths of a list source in their order."""
    return [Path(p) for p in str(path).split("\n")]


def is_list(path: Path) -> bool:
    """Whether ``path`` is a list source (several entries)."""
    return "\n" in str(path)


def is_multi(path: Path) -> bool:
    """Whether ``path`` names several files: a list, a folder, or a glob pattern."""
    return is_list(path) or Path(path).is_dir() or bool(_GLOB & set(str(path)))


def _entry_files(entry: Path) -> list[Path]:
    if entry.is_dir():
        return [f for f in sorted(entry.rglob("*")) if f.is_file()
                and not any(part.startswith((".", "_")) for part in f.relative_to(entry).parts)]
    if _GLOB & set(str(entry)):
        anchor = Path(entry.anchor) if entry.is_absolute() else Path(".")
        pattern = str(entry.relative_to(anchor)) if entry.is_absolute() else str(entry)
        return sorted(f for f in anchor.glob(pattern) if f.is_file())
    return [entry]


def source_parts(path: Path) -> list[tuple[Path, Path]]:
    """(entry, file) for every data file of a source, in a stable order: a file itself; a folder's files
    (recursively, hidden files and ``_SUCCESS``-style markers skipped); a glob's matches; a list's entries in
    turn. Raises :class:`BadInputError` when a folder or glob holds no data file."""
    entries = source_entries(Path(path))
    out: list[tuple[Path, Path]] = []
    for k, entry in enumerate(entries):
        found = _entry_files(entry)
        if not found:
            where = f"folder {entry}" if entry.is_dir() else f"pattern {entry}"
            which = f" (entry {k + 1} of {len(entries)} of the list)" if len(entries) > 1 else ""
            raise BadInputError(f"{where}{which}: no data files found")
        out += [(entry, f) for f in found]
    return out


def source_files(path: Path) -> list[Path]:
    """The data files of a source, in order (see :func:`source_parts`)."""
    return [f for _, f in source_parts(path)]


def partition_values(root: Path, file: Path) -> dict[str, str]:
    """Hive-style ``key=value`` folder names between a folder entry ``root`` and one of its files."""
    if not root.is_dir():
        return {}
    out = {}
    for part in file.relative_to(root).parts[:-1]:
        key, eq, value = part.partition("=")
        if eq and key:
            out[key] = value
    return out
