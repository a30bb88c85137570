"""Run references, resolved in one place: a run id, a unique prefix of one, ``latest``, or a bundle folder.

Every command and function that takes a RUN argument and needs its bundle (``shoal eval``, ``export``,
``bench``, ``serve``, ``predict``, :func:`shoal.load`) calls :func:`resolve`::

    "20240501-101500-a1b2c3", "20240501-10", "latest"  --registry--> runs/<run_id>/bundle  (+ its RunRecord)
    "ctr-feed@production", "ctr-feed@v3", "ctr-feed"    --models---> the run of that model version
    "path/to/bundle"  (holds bundle.json)               ----------->  path/to/bundle

Run ids, prefixes and ``latest`` are looked up by :meth:`~shoal.artifacts.registry.Registry.get`. Free of
torch, so ``shoal serve --workers N`` checks a reference in the parent process without loading the model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from shoal.artifacts.models import ModelNotFoundError, ModelRegistry, is_model_ref
from shoal.artifacts.registry import DB_FILENAME, RUNS_DIRNAME, Registry, RunRecord

__all__ = ["BUNDLE_FILE", "Resolved", "model_run", "resolve"]

BUNDLE_FILE = "bundle.json"  # what makes a folder a bundle folder


@dataclass(frozen=True)
class Resolved:
    """Where a reference points: the bundle folder, and the run it belongs to when there is one."""

    folder: Path  # holds bundle.json
    run_id: str | None  # the run, when the bundle lives in a registry's run folder
    record: RunRecord | None  # the registry's record, when the reference named a run (not a folder)


def resolve(ref: str | os.PathLike[str], home: str | os.PathLike[str]) -> Resolved:
    """The bundle of a run id (or unique prefix, or ``latest``) in the registry at ``home``, or of a bundle folder.

    Raises:
        FileNotFoundError: ``ref`` is a path but not a bundle folder; ``home`` holds no registry; or the run has
            no bundle yet (it was killed or failed before its end: the message says how to resume it).
        RunNotFoundError, AmbiguousRunError: no run, or several, match ``ref`` (the message lists recent runs).
    """
    path, home = Path(ref), Path(home)
    if (path / BUNDLE_FILE).is_file():
        in_run = path.name == "bundle" and path.parent.parent.name == RUNS_DIRNAME
        return Resolved(path, path.parent.name if in_run else None, None)
    if path.exists() or len(path.parts) > 1:
        raise FileNotFoundError(f"{ref}: not a shoal bundle folder (no {BUNDLE_FILE}); "
                                "pass a run id or a bundle folder")
    if not (home / DB_FILENAME).is_file():
        raise FileNotFoundError(f"{str(ref)!r} is not a bundle folder, and {home} holds no registry to look it up "
                                "in; pass a bundle folder, or the registry with --home")
    record = Registry(home).get(model_run(str(ref), home))
    folder = record.artifact_dir / "bundle"
    if not (folder / BUNDLE_FILE).is_file():
        raise FileNotFoundError(f"run {record.run_id} has no bundle (status {record.status}); "
                                f"finish it with `shoal train --resume {record.run_id}`")
    return Resolved(folder, record.run_id, record)


def model_run(ref: str, home: str | os.PathLike[str]) -> str:
    """The run id a model reference names (``name@alias``, ``name@v3``, ``name``), else ``ref`` unchanged (a run
    id, prefix or ``latest``). A plain name that is no model is left to the run lookup; ``name@...`` must be one."""
    if not is_model_ref(ref):
        return ref
    try:
        return ModelRegistry(home).resolve(ref).run_id
    except ModelNotFoundError:
        if "@" in ref:
            raise
        return ref
