"""TensorBoard event files: a tiny run's training loss and validation metrics at their steps; the CLI switches."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from shoal.artifacts.registry import Registry
from shoal.config import load_config
from shoal.data.synthetic import SynthSpec, generate
from shoal.training.loop import Trainer
from shoal.training.tensorboard import LOG_EVERY, require_tensorboard

needs_tensorboard = pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None,
                                       reason="the tensorboard package is not installed (pip install tensorboard)")


@pytest.fixture(scope="module")
def clicks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("synth") / "clicks.parquet"
    generate(path, SynthSpec(rows=2_000, dense=2, sparse=4, base_rate=0.2, max_cardinality=200, seed=3))
    return path


def _config(tmp_path: Path, data: Path, **train: object) -> Path:
    doc = {
        "name": "tb",
        "data": {"train": str(data), "valid_fraction": 0.2},
        "label": {"column": "label"},
        "features": [{"name": "d0", "kind": "dense"}, {"name": "d1", "kind": "dense"},
                     {"name": "s0", "kind": "sparse", "buckets": 256},
                     {"name": "s1", "kind": "sparse", "buckets": 256}],
        "model": {"name": "dlrm", "embedding_dim": 4, "bottom_mlp": [8], "top_mlp": [8]},
        "train": {"epochs": 2, "batch_size": 64, "seed": 1, "threads": 1, "pictures": False, **train},
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def _scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar tag written under ``folder``: its (step, value) points."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


@needs_tensorboard
def test_a_run_writes_its_loss_and_validation_metrics(tmp_path: Path, clicks: Path) -> None:
    cfg = load_config(_config(tmp_path, clicks, tensorboard=True, lr=0.002))
    result = Trainer(cfg, tmp_path / "run").fit()
    s = _scalars(tmp_path / "run" / "tensorboard")
    steps = result.summary["steps"]
    assert [step for step, _ in s["train/loss"]] == list(range(LOG_EVERY, steps + 1, LOG_EVERY))
    assert all(0 < loss < 2 for _, loss in s["train/loss"])
    assert s["train/lr/dense"][0][1] == pytest.approx(0.002) and "train/lr/embeddings" in s
    assert all(rate > 0 for _, rate in s["train/rows_per_s"])
    history = result.summary["history"]
    for metric in ("auc", "ne", "logloss"):  # every validation at its step, with its value
        assert s[f"valid/{metric}"] == [(h["step"], pytest.approx(h[metric], rel=1e-6)) for h in history]
    assert s["final/valid_auc"][0][1] == pytest.approx(result.metrics["valid_auc"], rel=1e-6)
    assert "valid/seconds" not in s  # a time, not a metric


@needs_tensorboard
def test_a_folder_setting_writes_one_sub_folder_per_run(tmp_path: Path, clicks: Path) -> None:
    cfg = load_config(_config(tmp_path, clicks, tensorboard=str(tmp_path / "tb"), epochs=1, eval_every=10))
    Trainer(cfg, tmp_path / "run-1").fit()
    s = _scalars(tmp_path / "tb" / "run-1")
    assert [step for step, _ in s["valid/auc"]][:2] == [10, 20]
    assert not (tmp_path / "run-1" / "tensorboard").exists()


def test_off_by_default_and_a_clear_error_without_the_package(tmp_path: Path, clicks: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_config(_config(tmp_path, clicks)).train.tensorboard is False
    find_spec = importlib.util.find_spec

    def missing(name: str, *args: Any) -> Any:
        return None if name == "tensorboard" else find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", missing)
    with pytest.raises(ValueError, match=r"needs the tensorboard package, which is not installed: "
                                         r"pip install tensorboard \(or pip install 'shoal\[tensorboard\]'\)"):
        require_tensorboard()
    cfg = load_config(_config(tmp_path, clicks, tensorboard=True))
    with pytest.raises(ValueError, match="pip install tensorboard"):
        Trainer(cfg, tmp_path / "run")


@needs_tensorboard
@pytest.mark.parametrize("switch", [["--tensorboard"], ["--set", "train.tensorboard=true"]])
def test_cli_switches(tmp_path: Path, clicks: Path, switch: list[str]) -> None:
    from shoal.cli.main import app

    home = tmp_path / "home"
    out = CliRunner().invoke(app, ["train", str(_config(tmp_path, clicks, epochs=1)), "--home", str(home), *switch])
    assert out.exit_code == 0, out.output
    run = Registry(home).get("latest")
    assert run.config["train"]["tensorboard"] is True  # recorded in the resolved config
    assert "valid/auc" in _scalars(run.artifact_dir / "tensorboard")


@needs_tensorboard
def test_cli_tensorboard_dir(tmp_path: Path, clicks: Path) -> None:
    from shoal.cli.main import app

    home = tmp_path / "home"
    out = CliRunner().invoke(app, ["train", str(_config(tmp_path, clicks, epochs=1)), "--home", str(home),
                                   "--tensorboard-dir", str(tmp_path / "tb")])
    assert out.exit_code == 0, out.output
    run = Registry(home).get("latest")
    assert "train/loss" in _scalars(tmp_path / "tb" / run.run_id)


@needs_tensorboard
def test_two_processes_write_one_event_log_from_rank_0(tmp_path: Path, clicks: Path) -> None:
    """``--nproc 2``: rank 0 alone writes the scalars (the global steps), in the registry's run folder."""
    from shoal.distributed.launch import launch

    cfg = _config(tmp_path, clicks, tensorboard=True, batch_size=128)
    doc = yaml.safe_load(cfg.read_text())
    doc["data"]["chunk_rows"] = 400  # chunks for both ranks
    cfg.write_text(yaml.safe_dump(doc))
    run_id = launch(cfg, tmp_path / "home", nproc=2, device="cpu")
    assert run_id is not None
    run = Registry(tmp_path / "home").get(run_id)
    logs = sorted((run.artifact_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert logs and len({p.name.split(".")[4] for p in logs}) == 1, logs  # written by one process (its pid), rank 0
    s = _scalars(run.artifact_dir / "tensorboard")
    history = run.summary["history"]
    assert s["valid/auc"] == [(h["step"], pytest.approx(h["auc"], rel=1e-6)) for h in history]
    assert s["train/loss"] and s["final/valid_auc"][0][1] == pytest.approx(run.metrics["valid_auc"], rel=1e-6)
