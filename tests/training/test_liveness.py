"""A live run is locked: a second resume is refused naming the process; a SIGKILLed run reads `killed`, and resumes.

Issue 23 item 7: a second `shoal train --resume` of a live run used to train beside it (and die on
``checkpoint.tmp``), and a SIGKILLed run stayed `running` forever.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from shoal.artifacts.registry import Registry
from shoal.artifacts.run import LOCK_FILE, OWNER_FILE, RunBusyError, hold_run, release_run, run_is_live
from shoal.cli import main as cli
from shoal.cli.main import app
from shoal.data.synthetic import SynthSpec, generate
from shoal.training.checkpoints import CHECKPOINT_FILE, Checkpointer

runner = CliRunner()


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tables as on a wide terminal, so assertions see whole cells."""
    monkeypatch.setattr(cli.console, "_width", 200)


def _config(tmp_path: Path) -> Path:
    """A small run of short epochs: caught alive (and held there, see below), quick to finish once resumed."""
    data = tmp_path / "clicks.parquet"
    generate(data, SynthSpec(rows=3_000, dense=2, sparse=4, base_rate=0.2, max_cardinality=200, seed=3))
    doc = {
        "name": "live",
        "data": {"train": str(data), "valid_fraction": 0.2, "chunk_rows": 1024},
        "label": {"column": "label"},
        "features": [{"name": f"d{i}", "kind": "dense"} for i in range(2)]
        + [{"name": f"s{i}", "kind": "sparse", "buckets": 256} for i in range(3)],
        "model": {"name": "dlrm", "embedding_dim": 4, "bottom_mlp": [8], "top_mlp": [8]},
        "train": {"epochs": EPOCHS, "batch_size": 64, "seed": 1, "checkpoint_every": 20, "threads": 1,
                  "early_stopping_patience": EPOCHS, "pictures": False},
    }
    path = tmp_path / "live.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


EPOCHS = 8  # the first checkpoint (step 20) comes in epoch 1 of 8 (~300 steps); the live run is then stopped


def test_live_run_refuses_a_second_resume_then_reads_killed_and_resumes(tmp_path: Path) -> None:
    home = tmp_path / "home"
    proc = subprocess.Popen([sys.executable, "-m", "shoal.cli", "train", str(_config(tmp_path)), "--home", str(home)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        checkpoint = None
        while time.monotonic() < deadline and proc.poll() is None:  # training, with a checkpoint on disk
            found = list(home.glob(f"runs/*/{CHECKPOINT_FILE}"))
            if found:
                checkpoint = found[0]
                # SIGSTOP: the process lives on and holds its lock, but cannot finish during the checks below, on
                # however loaded a machine (it took 40 epochs of margin before); SIGKILL ends it all the same
                os.kill(proc.pid, signal.SIGSTOP)
                break
            time.sleep(0.05)
        assert checkpoint is not None and proc.poll() is None, "the run finished before it could be caught"
        run_dir = checkpoint.parent
        before = Registry(home).get(run_dir.name)
        assert before.status == "running" and run_is_live(run_dir) is True

        # 1. a second process resuming it is refused before it touches anything, naming the live process
        result = runner.invoke(app, ["train", "--resume", before.run_id, "--home", str(home)])
        assert result.exit_code == 2, result.output
        message = " ".join(result.output.split())
        assert f"run {before.run_id} is being trained by PID {proc.pid} on host" in message, message
        assert "wait for it, or stop it first" in message
        assert Registry(home).get(before.run_id).updated_at == before.updated_at  # nothing written
        assert proc.poll() is None  # the live run goes on
        with pytest.raises(RunBusyError, match=f"PID {proc.pid}"):
            Registry(home).reopen(before.run_id)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before the test killed it"

    # 2. killed without a word: it reads `killed` (the row still says running; nothing was written back)
    assert Registry(home).get(before.run_id).status == "killed"
    assert [r.run_id for r in Registry(home).list(status="killed")] == [before.run_id]
    assert Registry(home).list(status="running") == []
    out = runner.invoke(app, ["runs", "--home", str(home)])
    assert out.exit_code == 0, out.output
    (row,) = [line for line in out.output.splitlines() if before.run_id in line]
    assert "killed" in row and "running" not in row

    # 3. resuming works as before, and starts by removing what the killed process left half written
    (run_dir / "checkpoint.tmp").write_bytes(b"half a checkpoint")
    resumed = runner.invoke(app, ["train", "--resume", before.run_id, "--home", str(home)])
    assert resumed.exit_code == 0, resumed.output
    record = Registry(home).get(before.run_id)
    assert record.status == "completed" and record.summary["epochs_run"] == EPOCHS
    assert not (run_dir / "checkpoint.tmp").exists()
    assert run_is_live(run_dir) is False  # finished: the lock is let go


def test_lock_is_reentrant_in_its_process_and_released_by_a_final_status(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "home")
    record = registry.create_run("r", {})
    assert (record.artifact_dir / LOCK_FILE).is_file() and (record.artifact_dir / OWNER_FILE).is_file()
    assert run_is_live(record.artifact_dir) is True
    assert registry.reopen(record.run_id).status == "running"  # this process holds it already
    registry.update(record.run_id, status="failed", finished=True)
    assert run_is_live(record.artifact_dir) is False
    assert registry.get(record.run_id).status == "failed"
    assert registry.reopen(record.run_id).status == "running" and run_is_live(record.artifact_dir) is True
    release_run(record.artifact_dir)  # as if its process had died
    assert registry.get(record.run_id).status == "killed"
    assert hold_run(record.artifact_dir, record.run_id) is True
    registry.complete(record.run_id, {}, {})
    assert run_is_live(record.artifact_dir) is False


def test_a_run_without_a_lock_file_reads_as_stored(tmp_path: Path) -> None:
    """Runs of an older shoal have no lock file: nobody can tell, so they read as the registry says."""
    registry = Registry(tmp_path / "home")
    record = registry.create_run("old", {})
    release_run(record.artifact_dir)
    (record.artifact_dir / LOCK_FILE).unlink()
    assert run_is_live(record.artifact_dir) is None
    assert registry.get(record.run_id).status == "running"


def test_a_resume_discards_half_written_files(tmp_path: Path) -> None:
    (tmp_path / "checkpoint.tmp").write_bytes(b"half")
    (tmp_path / "best.safetensors.tmp").write_bytes(b"half")
    (tmp_path / CHECKPOINT_FILE).write_bytes(b"whole")
    Checkpointer(tmp_path).discard_partial()
    assert sorted(p.name for p in tmp_path.iterdir()) == [CHECKPOINT_FILE]
