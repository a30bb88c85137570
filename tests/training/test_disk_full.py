"""A full disk names its cause (issue 23): "no space left on device DEVICE while writing PATH", the run is
recorded as failed with that message, and no partial file is left to keep the disk full."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from shoal.artifacts import bundle as bundle_module
from shoal.artifacts.bundle import DiskFullError, write_atomically
from shoal.artifacts.registry import Registry
from shoal.artifacts.run import RunStatus
from shoal.config import parse_config
from shoal.data.synthetic import SynthSpec, generate
from shoal.training.checkpoints import Checkpointer, Position
from shoal.training.runs import train

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
    with pytest.raises(DiskFullError, match=r"^no space left on device /\S* while writing "
                                            + str(tmp_path / "checkpoint.pt")):
        saver.save(model, opts, Position(step=2))
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


def test_a_run_that_fills_the_disk_is_recorded_failed_with_the_clear_message(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "clicks.parquet"
    generate(data, SynthSpec(rows=600, dense=2, sparse=4, seed=1))
    cfg = parse_config({
        "name": "full-disk", "data": {"train": str(data), "valid_fraction": 0.2, "chunk_rows": 200},
        "label": {"column": "label"},
        "features": [{"name": "d0", "kind": "dense"}, {"name": "s0", "kind": "sparse", "buckets": 64}],
        "model": {"name": "logistic"},
        "train": {"epochs": 1, "batch_size": 64, "checkpoint_every": 2, "threads": 1},
    }, source="test")
    monkeypatch.setattr(torch, "save", _full_disk_save)
    with pytest.raises(DiskFullError):
        train(cfg, tmp_path / "home")
    (run,) = Registry(tmp_path / "home").list()
    assert run.status == RunStatus.FAILED
    assert run.summary["error"].startswith("DiskFullError: no space left on device /")
    assert "checkpoint.pt" in run.summary["error"]
    assert not list((tmp_path / "home").rglob("*.tmp"))


def test_a_full_disk_while_saving_a_bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(tensors: Any, filename: str, *args: Any, **kwargs: Any) -> None:
        Path(filename).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(bundle_module, "save_file", full)
    with pytest.raises(DiskFullError, match="while writing .*model.safetensors"):
        bundle_module.save_bundle(tmp_path / "bundle", nn.Linear(2, 1), None, None, {})  # type: ignore[arg-type]
    assert list((tmp_path / "bundle").iterdir()) == []
