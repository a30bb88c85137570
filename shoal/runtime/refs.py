"""A served bundle's version: a hash of its content, so an unchanged bundle keeps its version across reloads and
retraining into the same folder changes it. (A reference is resolved to its bundle by
:func:`shoal.artifacts.refs.resolve`.)"""

from __future__ import annotations

import hashlib
from pathlib import Path

__all__ = ["content_version"]

_HASHED_FILES = ("bundle.json", "model.safetensors")


def content_version(folder: Path) -> str:
    """A hash of the bundle's config and weights: the served version's name."""
    digest = hashlib.sha256()
    for name in _HASHED_FILES:
        with (folder / name).open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:12]
