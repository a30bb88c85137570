"""Learning-rate schedules (train.lr_schedule): their curves, the config's checks, the steps they span, TensorBoard's
lr, and a killed scheduled run that resumes to the uninterrupted run's weights."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from shoal.config import ConfigError, RunConfig, load_config
from shoal.data.synthetic import SynthSpec, generate
from shoal.training.callbacks import Callbacks
from shoal.training.loop import Trainer
from shoal.training.optimizers import cosine_factor, lr_schedule, onecycle_factor
from shoal.training.strategy import SingleProcess, steps_per_epoch


@pytest.fixture(scope="module")
def clicks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("synth") / "clicks.parquet"
    generate(path, SynthSpec(rows=1_500, dense=2, sparse=4, base_rate=0.2, max_cardinality=100, seed=5))
    return path


def _doc(data: Path, **train: Any) -> dict[str, Any]:
    return {
        "name": "sched",
        "data": {"train": str(data), "valid_fraction": 0.2, "chunk_rows": 500},
        "label": {"column": "label"},
        "features": [{"name": "d0", "kind": "dense"}, {"name": "d1", "kind": "dense"},
                     {"name": "s0", "kind": "sparse", "buckets": 128},
                     {"name": "s1", "kind": "sparse", "buckets": 128}],
        "model": {"name": "mlp", "embedding_dim": 4, "hidden": [8]},
        "train": {"epochs": 2, "batch_size": 64, "seed": 3, "threads": 1, "pictures": False, **train},
    }


def _config(tmp_path: Path, data: Path, **train: Any) -> RunConfig:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(_doc(data, **train)), encoding="utf-8")
    return load_config(path)


# -- the curves --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("total", "warmup"), [(100, 0.3), (37, 0.25), (10, 0.05), (7, 0.5), (50, 0.0)])
def test_onecycle_is_torch_onecycle_lr(total: int, warmup: float) -> None:
    """Parity with torch.optim.lr_scheduler.OneCycleLR's learning rates (its momentum cycling is not used)."""
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(2))], lr=0.003)
    ref = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.003, total_steps=total, pct_start=warmup,
                                              cycle_momentum=False)
    for step in range(total):
        assert 0.003 * onecycle_factor(step, total, warmup) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12)
        opt.step()
        if step < total - 1:  # OneCycleLR refuses a step past its total
            ref.step()
    assert onecycle_factor(total + 5, total, warmup) == onecycle_factor(total - 1, total, warmup)  # held, no error


def test_cosine_warms_up_linearly_then_decays_to_zero() -> None:
    total, warmup = 200, 0.1  # 20 steps up
    f = [cosine_factor(s, total, warmup) for s in range(total)]
    rises = [b - a for a, b in zip(f[:20], f[1:21], strict=True)]
    assert rises == pytest.approx([1 / 21] * 20)  # a line from 1/21 to 1 at step 20
    assert f[20] == 1.0 and max(f) == 1.0
    assert all(b < a for a, b in zip(f[20:], f[21:], strict=False))  # then down, every step
    assert f[110] == pytest.approx(0.5)  # half-way through the decay
    assert f[-1] < 1e-3 and cosine_factor(total + 3, total, warmup) == 0.0


def test_lr_schedule_drives_the_optimizer() -> None:
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(2))], lr=0.01)
    assert lr_schedule(opt, "constant", 10, 0.0) is None
    schedule = lr_schedule(opt, "cosine", 10, 0.2)
    assert schedule is not None
    seen = []
    for _ in range(10):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        schedule.step()
    assert seen == pytest.approx([0.01 * cosine_factor(s, 10, 0.2) for s in range(10)])
    with pytest.raises(ValueError, match="lr_schedule must be one of constant, cosine, onecycle, not 'step'"):
        lr_schedule(opt, "step", 10, 0.0)


# -- the config --------------------------------------------------------------------------------------------------
def test_config_defaults_and_warmup_per_schedule(tmp_path: Path) -> None:
    data = tmp_path / "x.csv"
    assert (_config(tmp_path, data).train.lr_schedule, _config(tmp_path, data).train.warmup) == ("constant", 0.0)
    assert _config(tmp_path, data, lr_schedule="onecycle").train.warmup == 0.3  # OneCycleLR's pct_start
    assert _config(tmp_path, data, lr_schedule="cosine").train.warmup == 0.05
    assert _config(tmp_path, data, lr_schedule="cosine", warmup=0.2).train.warmup == 0.2


@pytest.mark.parametrize(("train", "message"), [
    ({"lr_schedule": "linear"}, "train.lr_schedule: Input should be 'constant', 'cosine' or 'onecycle' (got 'linear')"),
    ({"lr_schedule": "cosine", "warmup": 0.6}, "train.warmup: Input should be less than or equal to 0.5 (got 0.6)"),
    ({"lr_schedule": "onecycle", "warmup": -0.1},
     "train.warmup: Input should be greater than or equal to 0 (got -0.1)"),
    ({"warmup": 0.1}, "train: Value error, warmup 0.1 needs a schedule: set lr_schedule to cosine or onecycle, or "
                      "leave warmup out (a constant learning rate has no warm-up)"),
])
def test_config_refuses_bad_schedules(tmp_path: Path, train: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        _config(tmp_path, tmp_path / "x.csv", **train)
    assert "run.yaml: invalid config (1 problem)" in str(err.value) and message in str(err.value)


# -- the steps a schedule spans ------------------------------------------------------------------------------------
@pytest.mark.parametrize("cache_mb", [256, 0])
def test_steps_per_epoch_counts_the_loop_steps(tmp_path: Path, clicks: Path, cache_mb: int) -> None:
    cfg = _config(tmp_path, clicks, cache_mb=cache_mb)
    (tmp_path / "run").mkdir()
    data = SingleProcess().prepare(cfg, tmp_path / "run", Callbacks())
    taken = sum(1 for _ in data.minibatches(0, 0, 0))
    chunks = len(data.chunk_spans)  # 3 chunks of 500 lines, each ending in a partial batch
    if cache_mb:
        assert steps_per_epoch(data) == taken  # cached chunks: exact
    else:
        assert taken <= steps_per_epoch(data) < taken + chunks  # streamed: the most the chunks can take


# -- the trainer -----------------------------------------------------------------------------------------------------
class _Crash(Callbacks):
    """Kills the run (an exception out of fit) after ``after`` steps: what a SIGKILL leaves, minus the process."""

    def __init__(self, after: int) -> None:
        self.after, self.steps = after, 0

    def on_step(self, rows: int, loss: float, rows_per_s: float) -> None:
        self.steps += 1
        if self.steps == self.after:
            raise KeyboardInterrupt


def _last_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    """The model of the run's last checkpoint: with checkpoint_every dividing the steps, the final weights (the
    bundle's are the best ones, which may come from before the kill)."""
    model: dict[str, torch.Tensor] = torch.load(run_dir / "checkpoint.pt", weights_only=True)["model"]
    return model


def test_killed_scheduled_run_resumes_to_the_same_weights(tmp_path: Path, clicks: Path) -> None:
    cfg = _config(tmp_path, clicks, lr_schedule="onecycle", lr=0.01, checkpoint_every=7)
    reference = Trainer(cfg, tmp_path / "ref").fit()
    total = reference.summary["steps"]
    assert total == 2 * 3 * 7  # 2 epochs of 3 chunks, each ~400 training rows: 7 batches of 64

    with pytest.raises(KeyboardInterrupt):  # killed at step 31 of 42: the checkpoint of step 28 is on disk
        Trainer(cfg, tmp_path / "killed", callbacks=_Crash(after=31)).fit()
    state = torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=True)
    assert state["position"]["step"] == 28 and state["schedule"]["last_epoch"] == 28
    assert state["optimizers"][0]["param_groups"][0]["lr"] == pytest.approx(0.01 * onecycle_factor(28, total, 0.3))

    resumed = Trainer(cfg, tmp_path / "killed").fit(resume=True)
    assert resumed.summary["steps"] == total
    want, got = _last_weights(tmp_path / "ref"), _last_weights(tmp_path / "killed")
    assert torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=True)["position"]["step"] == total
    assert set(got) == set(want)
    for name, tensor in want.items():
        assert torch.equal(got[name], tensor), name
    assert resumed.metrics == reference.metrics


def test_resume_refuses_a_schedule_the_checkpoint_was_not_written_with(tmp_path: Path, clicks: Path) -> None:
    with pytest.raises(KeyboardInterrupt):
        Trainer(_config(tmp_path, clicks, checkpoint_every=5), tmp_path / "run", callbacks=_Crash(after=6)).fit()
    assert "schedule" not in torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)  # constant: as before
    scheduled = _config(tmp_path, clicks, checkpoint_every=5, lr_schedule="cosine")
    with pytest.raises(ValueError, match=r"checkpoint\.pt was written without a learning-rate schedule, and this run "
                                         r"has one: resume with the train\.lr_schedule the run started with"):
        Trainer(scheduled, tmp_path / "run").fit(resume=True)


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None, reason="the tensorboard package is not installed")
def test_tensorboard_logs_the_scheduled_lr(tmp_path: Path, clicks: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = _config(tmp_path, clicks, lr_schedule="cosine", warmup=0.2, lr=0.01, tensorboard=True)
    total = Trainer(cfg, tmp_path / "run").fit().summary["steps"]
    acc = EventAccumulator(str(tmp_path / "run" / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    points = [(e.step, e.value) for e in acc.Scalars("train/lr/dense")]
    assert len(points) == total // 10
    for step, value in points:  # step s (from 1) trained with the factor of step s - 1 (from 0)
        assert value == pytest.approx(0.01 * cosine_factor(step - 1, total, 0.2), rel=1e-6)
    assert not math.isclose(points[0][1], points[-1][1])
