"""Fixtures of the planner's tests: configs that need no data file, a quick calibration profile."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from shoal.config import RunConfig, parse_config


def run_config(model: dict[str, Any], sparse: int = 3, buckets: int = 1000, batch: int = 256,
               dense: int = 2, **train: Any) -> RunConfig:
    """A config over a file that does not exist (the planner then reads no data)."""
    features: list[dict[str, Any]] = [{"name": f"d{i}", "kind": "dense"} for i in range(dense)]
    features += [{"name": f"s{i}", "kind": "sparse", "buckets": buckets} for i in range(sparse)]
    return parse_config({"name": "t", "data": {"train": "/nonexistent/train.parquet"}, "label": {"column": "y"},
                         "features": features, "model": model, "train": {"batch_size": batch, **train}})


@pytest.fixture(scope="session")
def profile_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry home holding a quick calibration profile (no 2-process measurements: a few seconds)."""
    from shoal.plan.calibrate import calibrate

    home = tmp_path_factory.mktemp("plan-home")
    here = os.getcwd()
    os.chdir(home.parent)
    try:  # a relative home, as the default ./shoal-runs is (its probe run's data path was once doubled)
        calibrate(Path(home.name), quick=True, processes=False)
    finally:
        os.chdir(here)
    return home
