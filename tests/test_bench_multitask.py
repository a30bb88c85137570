"""The multi-task benchmark (benchmarks/multitask.py) end to end on a tiny two-task log: every system's rows."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from benchmarks import multitask
from shoal.config import parse_config

KEYS = {"bench", "dataset", "system", "metric", "value"}
TINY = {"train": {"epochs": 1, "batch_size": 256}}


def test_every_system_has_the_same_model_and_budget(tmp_path: Path) -> None:
    splits = multitask.Splits(tmp_path / "train.parquet", tmp_path / "valid.parquet", tmp_path / "test.parquet")
    cfgs = {s: parse_config(multitask.config(splits, s)) for s in multitask.SYSTEMS[:-1]}
    assert cfgs["single-click"].label.column == "click" and cfgs["single-conversion"].label.column == "conversion"
    assert cfgs["mmoe"].label.kind == "multitask" and cfgs["mmoe"].label.columns == list(multitask.TASKS)
    assert cfgs["mmoe"].label.task_heads.kind == "mmoe" and cfgs["shared_bottom"].label.task_heads.kind == (
        "shared_bottom")
    for cfg in cfgs.values():
        assert cfg.model == cfgs["single-click"].model and cfg.train == cfgs["single-click"].train
        assert cfg.features == cfgs["single-click"].features
        assert (cfg.data.train, cfg.data.valid, cfg.data.test) == (splits.train, splits.valid, splits.test)
    assert cfgs["mmoe"].train.epochs == 2 and cfgs["mmoe"].model.name == "dlrm"  # the demo's settings


def test_rows_of_every_system_on_a_tiny_log(tmp_path: Path) -> None:
    rows = multitask.run(3000, tmp_path, overrides=TINY, buckets=256)
    assert all(set(r) == KEYS and r["bench"] == "multitask" and r["dataset"] == "synth_tasks" for r in rows)
    assert all(isinstance(r["value"], float) and math.isfinite(r["value"]) for r in rows)
    got: dict[str, dict[str, float]] = {}
    for r in rows:
        assert r["metric"] not in got.setdefault(r["system"], {}), r
        got[r["system"]][r["metric"]] = r["value"]
    assert set(got) == set(multitask.SYSTEMS)
    per_task = {f"{t}_{m}" for t in multitask.TASKS for m in ("auc", "ne")}
    valid = {f"valid_{t}_auc" for t in multitask.TASKS}
    assert set(got["single-click"]) == {"click_auc", "click_ne", "valid_click_auc", "train_s"}
    assert set(got["single-conversion"]) == {"conversion_auc", "conversion_ne", "valid_conversion_auc", "train_s"}
    for system in ("shared_bottom", "mmoe"):
        assert set(got[system]) >= per_task | valid | {"train_s", "conversion_auc_gain_vs_single"}
        assert got[system]["conversion_auc_gain_vs_single"] == pytest.approx(
            got[system]["conversion_auc"] - got["single-conversion"]["conversion_auc"])
    assert set(got["bayes"]) == per_task
    assert got["bayes"]["conversion_auc"] > 0.8 and got["bayes"]["click_auc"] > 0.7  # the planted ceilings
    for system, metrics in got.items():
        for metric, value in metrics.items():
            if metric.endswith("_auc"):
                assert 0.0 <= value <= 1.0, (system, metric, value)
            elif metric.endswith("_ne") or metric == "train_s":
                assert value > 0.0, (system, metric, value)
    assert set().union(*map(set, got.values())) <= set(multitask.METRICS)


def test_main_writes_the_rows_and_prints_the_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[int] = []

    def fake_run(rows: int, root: Path, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        seen.append(rows)
        return [multitask.row("multitask", "synth_tasks", "mmoe", "conversion_auc", 0.7),
                multitask.row("multitask", "synth_tasks", "bayes", "conversion_auc", 0.9)]

    monkeypatch.setattr(multitask, "run", fake_run)
    out = tmp_path / "rows.json"
    assert multitask.main(["--json", str(out), "--quick"]) == 0
    assert multitask.main(["--json", str(out), "--rows", "1234"]) == 0
    assert seen == [multitask.QUICK_ROWS, 1234]
    assert [r["system"] for r in json.loads(out.read_text())] == ["mmoe", "bayes"]
    printed = capsys.readouterr().out
    assert "| dataset | system | conversion_auc |" in printed and "| synth_tasks | mmoe | 0.7000 |" in printed
