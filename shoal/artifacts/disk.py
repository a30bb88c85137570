"""Writing on a disk that may fill up: atomic writes, and the one error a full disk (or quota) raises.

Every file a run keeps (checkpoint, best weights, bundle) is written by :func:`write_atomically`: a temporary
file, then a rename, so a kill never leaves half a file. When the disk fills up meanwhile, the partial temporary
file is removed (it would keep the disk full) and :class:`DiskFullError` names the device, the file, the bytes
still free there and the fix::

    no space left on device /data while writing /data/shoal-runs/runs/20261205-120304-a1b2c3/checkpoint.pt
    (0 bytes free there); free some space there, or point SHOAL_HOME / --home at another disk

The registry raises the same error when SQLite cannot write (:func:`disk_full` recognises SQLite's "database or
disk is full", and its "disk I/O error" when the disk has no room left).
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from shoal.errors import ShoalError

__all__ = ["NEARLY_FULL_BYTES", "DiskFullError", "disk_full", "free_bytes", "no_space_left", "write_atomically"]

# A write that failed with less than this left on its file system failed for want of room, whatever the error
# says (torch and SQLite report some full-disk writes as a generic I/O error).
NEARLY_FULL_BYTES = 1 << 20
_FULL_TEXTS = ("No space left on device", "StorageFull", "Disk quota exceeded", "database or disk is full")


class DiskFullError(ShoalError, OSError):
    """No space left on the device (or the disk quota exceeded) while writing :attr:`path`; the partial file was
    removed. :attr:`mount` is the file system's mount point, :attr:`free` the bytes still free on it."""

    path: Path | None = None
    mount: Path | None = None
    free: int | None = None


def free_bytes(path: Path) -> int | None:
    """Bytes free to this user on the file system that holds ``path`` (or its nearest existing folder); None when
    it cannot be read."""
    where = Path(path)
    while not where.exists() and where != where.parent:
        where = where.parent
    try:
        return shutil.disk_usage(where).free
    except OSError:
        return None


def _mount(path: Path) -> Path:
    mount = Path(path).resolve().parent
    while not os.path.ismount(mount) and mount != mount.parent:
        mount = mount.parent
    return mount


def no_space_left(path: Path, err: BaseException | None = None, what: str = "") -> DiskFullError:
    """The clear error for a full disk (or quota) while writing ``path`` (``what``: words before the path, e.g.
    ``"the run registry "``): names the device, the file, the bytes free there and the fix."""
    quota = _errno_in_chain(err) == errno.EDQUOT
    mount, free = _mount(path), free_bytes(path)
    left = f"{free:,} bytes free there" if free is not None else "free space unknown"
    full = DiskFullError(f"{'disk quota exceeded on' if quota else 'no space left on device'} {mount} while writing "
                         f"{what}{path} ({left}); free some space there, or point SHOAL_HOME / --home at another "
                         "disk")
    full.path, full.mount, full.free = Path(path), mount, free
    return full


def _errno_in_chain(err: BaseException | None) -> int | None:
    """ENOSPC or EDQUOT when one of them is anywhere in the chain of ``err`` (as an errno, or only as text: torch
    and safetensors wrap it in their own errors); else None."""
    seen = err
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return seen.errno
        if "Disk quota exceeded" in str(seen):
            return errno.EDQUOT
        if any(text in str(seen) for text in _FULL_TEXTS):
            return errno.ENOSPC
        seen = seen.__cause__ or seen.__context__
    return None


def disk_full(err: BaseException, path: Path) -> bool:
    """Whether a failed write of ``path`` ran out of room: ENOSPC/EDQUOT (or SQLite's "database or disk is full")
    anywhere in the chain of ``err``, or an I/O error (``OSError``, ``RuntimeError``: torch, SQLite's "disk I/O
    error") with under :data:`NEARLY_FULL_BYTES` left where ``path`` was being written."""
    if _errno_in_chain(err) is not None:
        return True
    if isinstance(err, OSError) and err.errno not in (None, errno.EIO):
        return False  # no permission, no such folder, ...: not for want of room
    if not isinstance(err, OSError | RuntimeError) and "disk I/O error" not in str(err):
        return False
    free = free_bytes(path)
    return free is not None and free < NEARLY_FULL_BYTES


def write_atomically(path: Path, write: Callable[[Path], object], tmp: Path | None = None) -> Path:
    """``write(tmp)`` then rename ``tmp`` to ``path``: a kill never leaves half a file. On any error the partial
    ``tmp`` is removed; a full disk raises :class:`DiskFullError` naming the device, ``path`` and the bytes free."""
    tmp = tmp if tmp is not None else path.with_name(path.name + ".tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException as err:
        # judged before the partial file goes (its room counts), reported after (the bytes free once it is gone)
        full = isinstance(err, Exception) and not isinstance(err, DiskFullError) and disk_full(err, tmp)
        tmp.unlink(missing_ok=True)
        if full:
            raise no_space_left(path, err) from err
        raise
    return path
