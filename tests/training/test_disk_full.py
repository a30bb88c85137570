"""A full disk names its cause (issue 23 item 5): "no space left on device DEVICE while writing PATH (N bytes free
there)" and the fix, the run is recorded as failed with that message, and no partial file is left to keep the disk
full. When the registry cannot be written either, the error says so, and the run resumes once there is room.

No disk is filled: the writes are monkeypatched to write half a file and raise ``OSError(ENOSPC)``, and SQLite is
made to answer its real "database or disk is full" with ``PRAGMA max_page_count``."""

from __future__ import annotations

import errno
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from shoal.artifacts import bundle as bundle_module
from shoal.artifacts import disk
from shoal.artifacts.disk import DiskFullError, write_atomically
from shoal.artifacts.registry import Registry, RegistryError
from shoal.artifacts.run import RunStatus, run_is_live
from shoal.config import RunConfig, parse_config
from shoal.data.synthetic import SynthSpec, generate
from shoal.training.checkpoints import CHECKPOINT_FILE, Checkpointer, Position
from shoal.training.runs import resume_training, train

FIX = "free some space there, or point SHOAL_HOME / --home at another disk"

REAL_SAVE = torch.save


def _full_disk_save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
    """torch.save that writes half a file, then finds the disk full."""
    Path(f).write_bytes(b"\0" * 4096)
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_while_checkpointing_names_device_and_file_and_leaves_no_tmp(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = nn.Linear(3, 1)
    opts: list[torch.optim.Optimizer | None] = [torch.optim.Adam(model.parameters()), None]
    saver = Checkpointer(tmp_path)
    saver.save(model, opts, Position(step=1))  # a good checkpoint first
    good = (tmp_path / "checkpoint.pt").read_bytes()
    monkeypatch.setattr(torch, "save", _full_disk_save)
    with pytest.raises(DiskFullError) as info:
        saver.save(model, opts, Position(step=2))
    assert str(info.value) == (f"no space left on device {info.value.mount} while writing {tmp_path / 'checkpoint.pt'}"
                               f" ({info.value.free:,} bytes free there); {FIX}")
    assert info.value.free == disk.free_bytes(tmp_path) and info.value.path == tmp_path / "checkpoint.pt"
    assert not (tmp_path / "checkpoint.tmp").exists()  # the partial file is gone
    assert (tmp_path / "checkpoint.pt").read_bytes() == good  # the last good checkpoint stays


def test_safetensors_and_torch_wrapped_errors_are_recognised(tmp_path: Path) -> None:
    from safetensors import SafetensorError

    def safetensors_full(tmp: Path) -> None:
        tmp.write_bytes(b"partial")
        raise SafetensorError("Error while serializing: IoError(Os { code: 28, kind: StorageFull, "
                              "message: \"No space left on device\" })")

    with pytest.raises(DiskFullError, match="while writing .*model.safetensors"):
        write_atomically(tmp_path / "model.safetensors", safetensors_full)
    assert list(tmp_path.iterdir()) == []

    def other_error(tmp: Path) -> None:
        tmp.write_bytes(b"partial")
        raise PermissionError(errno.EACCES, "Permission denied")

    with pytest.raises(PermissionError):  # not a full disk: the error as it was, still no partial file
        write_atomically(tmp_path / "bundle.json", other_error)
    assert list(tmp_path.iterdir()) == []


def _config(tmp_path: Path) -> RunConfig:
    """8 steps, a checkpoint every 2."""
    data = tmp_path / "clicks.parquet"
    generate(data, SynthSpec(rows=600, dense=2, sparse=4, seed=1))
    return parse_config({
        "name": "full-disk", "data": {"train": str(data), "valid_fraction": 0.2, "chunk_rows": 200},
        "label": {"column": "label"},
        "features": [{"name": "d0", "kind": "dense"}, {"name": "s0", "kind": "sparse", "buckets": 64}],
        "model": {"name": "logistic"},
        "train": {"epochs": 1, "batch_size": 64, "checkpoint_every": 2, "threads": 1, "pictures": False},
    }, source="test")


def _disk_fills_at_save(n: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """torch.save writes the first ``n - 1`` checkpoints, then finds the disk full (half a file written)."""
    saves = {"n": 0}

    def save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        saves["n"] += 1
        if saves["n"] >= n:
            _full_disk_save(obj, f)
        REAL_SAVE(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)


@contextmanager
def _registry_full(monkeypatch: pytest.MonkeyPatch, *, grows: bool = True) -> Iterator[None]:
    """SQLite's own "database or disk is full": for a write that grows the database by a page (``grows``: a
    connection may not), or for every ``UPDATE``."""
    real_connect = sqlite3.connect

    class Capped(sqlite3.Connection):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            pages = super().execute("PRAGMA page_count").fetchone()[0]
            super().execute(f"PRAGMA max_page_count = {pages}")

    class Full(sqlite3.Connection):
        def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
            if sql.lstrip().startswith("UPDATE"):
                raise sqlite3.OperationalError("database or disk is full")
            return super().execute(sql, *args)

    with monkeypatch.context() as m:
        m.setattr(sqlite3, "connect", lambda *a, **k: real_connect(*a, factory=Capped if grows else Full, **k))
        yield


def test_a_run_that_fills_the_disk_is_recorded_failed_and_resumes_once_there_is_room(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg, home = _config(tmp_path), tmp_path / "home"
    with monkeypatch.context() as m:
        _disk_fills_at_save(2, m)  # the checkpoint of step 2 is written, that of step 4 fills the disk
        with pytest.raises(DiskFullError) as info:
            train(cfg, home)
    (run,) = Registry(home).list()
    checkpoint = run.artifact_dir / CHECKPOINT_FILE
    assert str(info.value) == (f"no space left on device {info.value.mount} while writing {checkpoint} "
                               f"({info.value.free:,} bytes free there); {FIX}. Run {run.run_id} is recorded failed "
                               f"and keeps its last checkpoint: once there is room, resume it with "
                               f"`shoal train --resume {run.run_id}`")
    assert run.status == RunStatus.FAILED and run.summary["error"] == f"DiskFullError: {info.value}"
    assert not list(home.rglob("*.tmp"))
    assert run_is_live(run.artifact_dir) is False
    assert torch.load(checkpoint, weights_only=True)["position"]["step"] == 2  # the last good checkpoint

    loaded: list[int] = []  # the step each load resumes from

    def load(self: Checkpointer, *args: Any) -> Position:
        pos = real_load(self, *args)
        loaded.append(pos.step)
        return pos

    real_load = Checkpointer.load
    monkeypatch.setattr(Checkpointer, "load", load)
    resumed = resume_training(Registry(home), run)  # the room is back
    assert loaded == [2]  # from the last good checkpoint
    assert resumed.status == RunStatus.COMPLETED and resumed.summary["rows_trained"] == resumed.summary["train_rows"]
    assert (resumed.artifact_dir / "bundle" / "model.safetensors").is_file()


def test_when_the_registry_cannot_record_the_failure_the_error_says_so_and_the_run_resumes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg, home = _config(tmp_path), tmp_path / "home"
    Registry(home)
    with monkeypatch.context() as m:
        _disk_fills_at_save(2, m)
        with _registry_full(m, grows=False), pytest.raises(DiskFullError) as info:
            train(cfg, home)
    (run,) = Registry(home).list()
    message = str(info.value)
    assert message.startswith(f"no space left on device {info.value.mount} while writing "
                              f"{run.artifact_dir / CHECKPOINT_FILE} (")
    assert (f"The run registry {home / 'registry.db'} could not be written either (no space left on device "
            f"{info.value.mount}), so run {run.run_id} is not recorded failed; it reads `killed` and keeps its last "
            f"checkpoint: once there is room, resume it with `shoal train --resume {run.run_id}`") in message
    assert run.status == RunStatus.KILLED  # stored running, nobody holds it: killed, resumable
    assert not list(home.rglob("*.tmp"))
    assert resume_training(Registry(home), run).status == RunStatus.COMPLETED


def test_a_full_registry_is_a_disk_full_error_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    registry = Registry(tmp_path)
    run = registry.create_run("r", {})
    with _registry_full(monkeypatch), pytest.raises(DiskFullError) as info:
        registry.update(run.run_id, status="failed", summary={"error": "x" * 100_000})
    assert str(info.value) == (f"no space left on device {info.value.mount} while writing the run registry "
                               f"{tmp_path / 'registry.db'} ({info.value.free:,} bytes free there); {FIX}")
    assert isinstance(info.value.__cause__, sqlite3.OperationalError)
    assert run_is_live(run.artifact_dir) is False  # stopped, if unrecorded: it reads killed
    assert registry.get(run.run_id).status == RunStatus.KILLED


def test_sqlite_disk_io_error_is_a_full_disk_only_when_the_disk_is_full(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    registry = Registry(tmp_path)
    run = registry.create_run("r", {})
    real_connect = sqlite3.connect

    class Failing(sqlite3.Connection):
        def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
            if sql.startswith("UPDATE"):
                raise sqlite3.OperationalError("disk I/O error")
            return super().execute(sql, *args)

    monkeypatch.setattr(sqlite3, "connect", lambda *a, **k: real_connect(*a, factory=Failing, **k))
    with pytest.raises(RegistryError, match="disk I/O error"):  # room left: some other I/O fault, as it was
        registry.update(run.run_id, metrics={"auc": 0.5})
    monkeypatch.setattr(disk, "free_bytes", lambda path: 4096)
    with pytest.raises(DiskFullError, match=r"while writing the run registry .*registry\.db"):
        registry.update(run.run_id, metrics={"auc": 0.5})


def test_any_enospc_in_a_run_is_a_disk_full_error(tmp_path: Path) -> None:
    """A write outside write_atomically (a picture, the quarantine file) that fills the disk is named too."""
    registry = Registry(tmp_path)
    run = registry.create_run("r", {})
    png = run.artifact_dir / "curves.png"
    with pytest.raises(DiskFullError, match=f"^no space left on device /\\S* while writing {png} "), \
            registry.recording(run.run_id):
        raise OSError(errno.ENOSPC, "No space left on device", str(png))
    assert registry.get(run.run_id).summary["error"].startswith("DiskFullError: no space left on device")


def test_a_full_disk_while_saving_a_bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(tensors: Any, filename: str, *args: Any, **kwargs: Any) -> None:
        Path(filename).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(bundle_module, "save_file", full)
    with pytest.raises(DiskFullError, match="while writing .*model.safetensors"):
        bundle_module.save_bundle(tmp_path / "bundle", nn.Linear(2, 1), None, None, {})  # type: ignore[arg-type]
    assert list((tmp_path / "bundle").iterdir()) == []
