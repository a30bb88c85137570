"""The trainer end to end: learning, early stopping, checkpoints, and SIGKILL -> resume equivalence."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from shoal.artifacts.registry import Registry
from shoal.config import load_config
from shoal.data.synthetic import SynthSpec, generate
from shoal.training.loop import Trainer, TrainResult

RESUME_TOLERANCE = 1e-6  # resumed vs uninterrupted metrics (same seed, same thread count): equal in practice


@pytest.fixture(scope="module")
def clicks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("synth") / "clicks.parquet"
    generate(path, SynthSpec(rows=30_000, dense=4, sparse=5, base_rate=0.1, max_cardinality=2_000, seed=1))
    return path


def _config(tmp_path: Path, data: Path, **train: object) -> Path:
    doc = {
        "name": "unit",
        "data": {"train": str(data), "valid_fraction": 0.2, "chunk_rows": 4096},
        "label": {"column": "label"},
        "features": [{"name": f"d{i}", "kind": "dense", "transform": "log1p"} for i in range(4)]
        + [{"name": f"s{i}", "kind": "sparse", "buckets": 4096} for i in range(4)]
        + [{"name": "s4", "kind": "sparse", "buckets": 4096, "separator": "|"}],
        "model": {"name": "dlrm", "embedding_dim": 8, "bottom_mlp": [16], "top_mlp": [32]},
        "train": {"epochs": 2, "batch_size": 256, "seed": 7, "checkpoint_every": 10, "threads": 1, **train},
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, clicks: Path) -> tuple[TrainResult, Path]:
    """The default run (in memory), trained once for the tests that read it, and its run folder. No PNGs (~1 s of
    matplotlib): no test here reads them."""
    folder = tmp_path_factory.mktemp("trained")
    result = Trainer(load_config(_config(folder, clicks, pictures=False)), folder / "run").fit()
    return result, folder / "run"


def test_dlrm_learns_the_planted_signal(trained: tuple[TrainResult, Path]) -> None:
    result, run_dir = trained
    m = result.metrics
    assert m["valid_auc"] > 0.65, m  # the base-rate predictor has 0.5
    assert m["valid_ne"] < 0.98, m
    assert 0.7 < m["valid_calibration"] < 1.4, m
    s = result.summary
    assert s["train_rows"] + s["valid_rows"] == 30_000  # every row is accounted for
    assert abs(s["valid_rows"] / 30_000 - 0.2) < 0.02
    assert s["epochs_run"] == 2 and len(s["history"]) == 2
    seconds = [h["seconds"] for h in s["history"]]  # the loop's time at each validation
    assert 0 < seconds[0] < seconds[1] <= s["train_seconds"]
    assert (result.bundle / "model.safetensors").is_file()
    assert (run_dir / "checkpoint.pt").is_file()


def test_early_stopping_stops_when_validation_stops_improving(tmp_path: Path, clicks: Path) -> None:
    # a huge learning rate overfits quickly: validation log loss gets worse, patience 1 stops the run
    cfg = load_config(_config(tmp_path, clicks, epochs=6, early_stopping_patience=1, lr=0.05, embedding_lr=1.0,
                              pictures=False))
    result = Trainer(cfg, tmp_path / "run").fit()
    s = result.summary
    losses = [h["logloss"] for h in s["history"]]
    assert s["stopped_early"] and s["epochs_run"] < 6
    assert losses[-1] >= min(losses)  # stopped after an epoch that did not improve
    assert result.metrics["valid_logloss"] == pytest.approx(min(losses), abs=1e-9)  # best weights kept


def test_rows_cached_in_memory_train_exactly_like_rows_streamed_from_disk(tmp_path: Path, clicks: Path,
                                                                         trained: tuple[TrainResult, Path]) -> None:
    cached = trained[0]
    streamed = Trainer(load_config(_config(tmp_path, clicks, cache_mb=0, pictures=False)), tmp_path / "b").fit()
    # the same training; validation rows are scored in other batch sizes (held in memory per training chunk, or
    # re-read from the split file), which moves the last digits of a float sum
    assert cached.metrics == pytest.approx(streamed.metrics, rel=1e-9)
    assert [h["logloss"] for h in cached.summary["history"]] == pytest.approx(
        [h["logloss"] for h in streamed.summary["history"]], rel=1e-9)


def _shoal(*args: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "shoal.cli", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path: Path, clicks: Path) -> None:
    cfg_path = _config(tmp_path, clicks, epochs=2, checkpoint_every=5, pictures=False)  # metrics compared, not PNGs
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    # 1. the reference: uninterrupted; it trains (threads: 1, so on a core of its own) beside steps 2 and 3 and is
    # read at the end
    ref_home = tmp_path / "ref"
    ref_proc = _shoal("train", str(cfg_path), "--home", str(ref_home), env=env)
    try:
        # 2. the same run, killed with SIGKILL once a few checkpoints are on disk
        home = tmp_path / "killed"
        proc = _shoal("train", str(cfg_path), "--home", str(home), env=env)
        deadline = time.time() + 240
        checkpoint = None
        while time.time() < deadline and proc.poll() is None:
            runs = Registry(home).list() if (home / "registry.db").exists() else []
            if runs and (runs[0].artifact_dir / "checkpoint.pt").exists():
                checkpoint = runs[0].artifact_dir / "checkpoint.pt"
                time.sleep(0.5)  # let it train past the checkpoint, so the resumed run must replay steps
                break
            time.sleep(0.05)
        assert checkpoint is not None and proc.poll() is None, "the run finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        killed = Registry(home).get("latest")
        # a SIGKILL leaves no chance to record anything; the registry reads the run as killed (nobody holds its lock)
        assert killed.status == "killed" and not killed.metrics
        # 3. resume it
        proc = _shoal("train", "--resume", killed.run_id, "--home", str(home), env=env)
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out.decode()
        resumed = Registry(home).get(killed.run_id)
        assert resumed.status == "completed"
        out, _ = ref_proc.communicate(timeout=300)
        assert ref_proc.returncode == 0, out.decode()
        reference = Registry(ref_home).get("latest")
    finally:
        if ref_proc.poll() is None:  # a failure above: stop the reference too
            ref_proc.kill()
            ref_proc.communicate()
    for key, value in reference.metrics.items():
        assert resumed.metrics[key] == pytest.approx(value, abs=RESUME_TOLERANCE), key
    assert resumed.summary["steps"] == reference.summary["steps"]
    assert resumed.summary["rows_trained"] == reference.summary["rows_trained"]


def test_checkpoint_holds_no_code(tmp_path: Path, clicks: Path) -> None:
    """Checkpoints load with torch.load(weights_only=True): tensors and plain data only."""
    import torch

    cfg = load_config(_config(tmp_path, clicks, epochs=1, pictures=False))
    Trainer(cfg, tmp_path / "run").fit()
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert set(state) == {"model", "optimizers", "position", "history"}
    assert state["position"]["step"] % 10 == 0 and state["position"]["step"] > 0  # checkpoint_every: 10
    json.dumps(state["position"])  # plain data


def test_valid_split_is_stable_across_chunk_sizes(tmp_path: Path, clicks: Path) -> None:
    from shoal.data.stream import valid_mask

    lines = np.arange(1, 30_001)
    whole = valid_mask(lines, 0.2, seed=7)
    parts = np.concatenate([valid_mask(lines[i:i + 999], 0.2, seed=7) for i in range(0, 30_000, 999)])
    assert np.array_equal(whole, parts)
    assert not np.array_equal(whole, valid_mask(lines, 0.2, seed=8))


@pytest.mark.slow
def test_two_trainings_at_once_share_one_registry(tmp_path: Path, clicks: Path) -> None:
    """Two `shoal train` processes writing to the same home: both runs complete, the database stays intact."""
    import sqlite3

    cfg_path = _config(tmp_path, clicks, epochs=1, checkpoint_every=5, pictures=False)  # the registry is the point
    home = tmp_path / "shared-home"
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    procs = [_shoal("train", str(cfg_path), "--home", str(home), env=env) for _ in range(2)]
    for p in procs:
        out, _ = p.communicate(timeout=300)
        assert p.returncode == 0, out.decode()
    runs = Registry(home).list()
    assert len(runs) == 2 and {r.status for r in runs} == {"completed"}
    assert runs[0].run_id != runs[1].run_id
    assert runs[0].metrics["valid_auc"] == pytest.approx(runs[1].metrics["valid_auc"], abs=1e-9)  # same seed
    with sqlite3.connect(home / "registry.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
