"""Where a served bundle comes from: a run id (or a prefix of one, or ``latest``) in a registry, or a bundle folder;
and its version, a hash of its content. Free of torch, so ``shoal serve --workers N`` checks the reference in the
parent process without loading the model there."""

from __future__ import annotations

import hashlib
from pathlib import Path

from shoal.artifacts.registry import Registry

__all__ = ["bundle_folder", "content_version"]

_HASHED_FILES = ("bundle.json", "model.safetensors")


def bundle_folder(ref: str | Path, home: Path) -> tuple[Path, str | None]:
    """The bundle folder of a run id (or prefix, or ``latest``) or of a folder path; and the run id, if any."""
    path = Path(ref)
    if (path / "bundle.json").is_file():
        run = path.parent.name if path.name == "bundle" and path.parent.parent.name == "runs" else None
        return path, run
    if path.exists() or len(path.parts) > 1:
        raise FileNotFoundError(f"{ref}: not a shoal bundle folder (no bundle.json); pass a run id or a bundle folder")
    if not (home / "registry.db").is_file():
        raise FileNotFoundError(f"{ref!r} is not a bundle folder, and {home} holds no registry to look it up in; "
                                f"pass a bundle folder, or the registry with --home")
    record = Registry(home).get(str(ref))
    folder = record.artifact_dir / "bundle"
    if not (folder / "bundle.json").is_file():
        raise FileNotFoundError(
            f"run {record.run_id} has no bundle (status {record.status}); "
            f"finish it with `shoal train --resume {record.run_id}`"
        )
    return folder, record.run_id


def content_version(folder: Path) -> str:
    """A hash of the bundle's config and weights: the served version's name."""
    digest = hashlib.sha256()
    for name in _HASHED_FILES:
        with (folder / name).open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:12]
