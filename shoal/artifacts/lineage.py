"""Where a run's rows came from: each data file's path, size, modification time and content hash.

Recorded in the run summary (``lineage``) when training starts, so a model card can say exactly which bytes a model
learned from, and a rerun can check the file did not change. Files above :data:`HASH_LIMIT_BYTES` are not hashed
(that would cost seconds per GB at every run); their size and modification time still are.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any

from shoal.data.readers import is_multi, source_files

__all__ = ["HASH_LIMIT_BYTES", "file_lineage"]

HASH_LIMIT_BYTES = 1 << 30


def file_lineage(path: str | os.PathLike[str]) -> dict[str, Any]:
    """``{"path", "bytes", "modified", "sha256"}`` of a file (``sha256`` None above :data:`HASH_LIMIT_BYTES`); for a
    folder or glob ``{"path", "bytes", "files", "sha256"}`` over its data files."""
    p = Path(path).resolve() if not is_multi(Path(path)) else Path(path)
    out: dict[str, Any] = {"path": str(p)}
    if is_multi(p):  # a folder or glob: its data files, and one digest over their names and contents
        files = source_files(p)
        total = sum(f.stat().st_size for f in files)
        out.update(bytes=total, files=len(files), sha256=None)
        if total <= HASH_LIMIT_BYTES:
            digest = hashlib.sha256()
            for f in files:
                digest.update(str(f).encode() + b"\0")
                _update(digest, f)
            out["sha256"] = digest.hexdigest()
        return out
    stat = p.stat()
    out.update(bytes=stat.st_size, modified=time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(stat.st_mtime)))
    if stat.st_size > HASH_LIMIT_BYTES:
        out["sha256"] = None
        return out
    digest = hashlib.sha256()
    _update(digest, p)
    out["sha256"] = digest.hexdigest()
    return out


def _update(digest: Any, path: Path) -> None:
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
