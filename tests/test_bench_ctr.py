"""The CTR benchmark (benchmarks/ctr.py) end to end on tiny generated data: every row has the right schema.

The peers (LightGBM, DeepCTR-Torch) are in the ``bench`` extra only; their rows are checked when they are
installed and skipped otherwise.
"""

from __future__ import annotations

import importlib.util
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks import common, ctr
from shoal.config import RunConfig

KEYS = {"bench", "dataset", "system", "metric", "value"}
REAL_METRICS = {"auc", "ne", "calibration", "infer_rows_per_s", "train_s"}


def _ids(rng: np.random.Generator, n: int, card: int) -> np.ndarray:
    return np.array([f"{v:08x}" for v in rng.integers(0, card, n) * 2654435761 % (1 << 32)])


def _fake_criteo(root: Path, rows: dict[str, int], seed: int = 0) -> None:
    """criteo_small-shaped TSVs: label, 13 counts, 26 hex ids, some cells empty; C1 carries signal."""
    rng = np.random.default_rng(seed)
    (root / "criteo_small").mkdir(parents=True)
    for split, n in rows.items():
        c1 = rng.integers(0, 8, n)
        label = (rng.random(n) < np.where(c1 < 3, 0.6, 0.1)).astype(int)
        cols = [label.astype(str)]
        for _ in range(13):
            v = rng.poisson(3.0, n).astype(str)
            cols.append(np.where(rng.random(n) < 0.1, "", v))
        cols.append(np.array([f"{v:08x}" for v in c1]))
        for k in range(25):
            cols.append(np.where(rng.random(n) < 0.05, "", _ids(rng, n, 5 + 7 * k)))
        text = "\n".join("\t".join(r) for r in zip(*cols, strict=True)) + "\n"
        (root / "criteo_small" / f"{split}.tsv").write_text(text, encoding="utf-8")


def _fake_adult(root: Path, n_train: int, n_test: int, seed: int = 1) -> None:
    """adult_census-shaped CSVs (", " separated, '?' missing, test labels with a trailing '.')."""
    rng = np.random.default_rng(seed)
    (root / "adult_census").mkdir(parents=True)
    cats = {"workclass": ["Private", "State-gov", "?"], "education": ["Bachelors", "HS-grad", "Masters"],
            "marital-status": ["Never-married", "Divorced"], "occupation": ["Sales", "Tech-support", "?"],
            "relationship": ["Husband", "Own-child"], "race": ["White", "Black"], "sex": ["Male", "Female"],
            "native-country": ["United-States", "Mexico", "?"]}
    for name, n, dot in (("adult.data", n_train, ""), ("adult.test", n_test, ".")):
        lines = []
        for _ in range(n):
            age = int(rng.integers(18, 80))
            rich = rng.random() < (0.6 if age > 45 else 0.1)
            c = {k: v[int(rng.integers(0, len(v)))] for k, v in cats.items()}
            lines.append(", ".join([
                str(age), c["workclass"], str(int(rng.integers(20_000, 400_000))), c["education"],
                str(int(rng.integers(1, 16))), c["marital-status"], c["occupation"], c["relationship"], c["race"],
                c["sex"], str(int(rng.integers(0, 2) * rng.integers(0, 9999))), "0", str(int(rng.integers(10, 60))),
                c["native-country"], (">50K" if rich else "<=50K") + dot]))
        (root / "adult_census" / name).write_text("\n".join(lines), encoding="utf-8")  # no final newline


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def test_common_helpers(tmp_path: Path) -> None:
    r = common.row("ctr", "criteo_small", "lightgbm", "auc", np.float32(0.75))
    assert r == {"bench": "ctr", "dataset": "criteo_small", "system": "lightgbm", "metric": "auc", "value": 0.75}
    assert type(r["value"]) is float
    with pytest.raises(ValueError, match="not finite"):
        common.row("ctr", "d", "s", "auc", math.nan)
    common.write_json([r], tmp_path / "out" / "rows.json")
    assert json.loads((tmp_path / "out" / "rows.json").read_text()) == [r]
    with common.timer() as t:
        sum(range(1000))
    assert t.seconds >= 0.0
    assert common.peak_rss_mib() > 1.0
    table = common.markdown_table([r, {**r, "metric": "ne", "value": 0.9}], ("dataset", "system"), "metric")
    assert table.splitlines()[0] == "| dataset | system | auc | ne |"
    assert table.splitlines()[2] == "| criteo_small | lightgbm | 0.7500 | 0.9000 |"


def _without_pictures(shoal_config: Callable[..., RunConfig]) -> Callable[..., RunConfig]:
    """``shoal_config`` with ``train.pictures`` off: the end-of-run PNGs (matplotlib, ~1 s a fit) are no part of a
    benchmark row, and took most of this test's 8 fits."""
    def config(*args: Any, **kwargs: Any) -> RunConfig:
        cfg = shoal_config(*args, **kwargs)
        return cfg.model_copy(update={"train": cfg.train.model_copy(update={"pictures": False})})

    return config


def test_benchmark_rows_schema(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    _fake_criteo(data, {"train": 600, "dev": 200, "test": 200})
    _fake_adult(data, 900, 300)
    out = tmp_path / "rows.json"
    small = {ds: {s: {**t, "batch_size": 64} for s, t in v.items()} for ds, v in ctr.SHOAL_TRAIN.items()}
    monkeypatch.setattr(ctr, "SHOAL_TRAIN", small)
    monkeypatch.setattr(ctr, "QUICK_EPOCHS", 1)
    monkeypatch.setattr(ctr, "SYNTH_BATCH", 256)
    monkeypatch.setattr(ctr, "SYNTH_REPEATS_QUICK", 2)  # exercise keeping the faster of two runs
    monkeypatch.setattr(ctr, "shoal_config", _without_pictures(ctr.shoal_config))
    assert ctr.main(["--json", str(out), "--quick", "--data-dir", str(data), "--synthetic-rows", "1500",
                     "--synthetic-buckets", "1000"]) == 0
    rows = json.loads(out.read_text())
    printed = capsys.readouterr().out
    assert "| dataset | system | auc | ne | calibration | train_rows_per_s | infer_rows_per_s | train_s |" in printed
    assert "criteo_small auc: shoal-" in printed and "adult_census ne: shoal-" in printed
    if _installed("deepctr_torch"):
        assert "synthetic train_rows_per_s: shoal-dlrm / deepfm" in printed

    for r in rows:
        assert set(r) == KEYS
        assert r["bench"] == "ctr"
        assert r["dataset"] in ctr.DATASETS
        assert r["system"] in ctr.SYSTEMS
        assert r["metric"] in ctr.METRICS
        assert isinstance(r["value"], float) and math.isfinite(r["value"])
    keys = [(r["dataset"], r["system"], r["metric"]) for r in rows]
    assert len(keys) == len(set(keys)), "a (dataset, system, metric) appears twice"

    got: dict[tuple[str, str], set[str]] = {}
    for d, s, m in keys:
        got.setdefault((d, s), set()).add(m)
    peers = {"lightgbm": _installed("lightgbm"), "deepfm": _installed("deepctr_torch"), "sklearn-logistic": True}
    expected = {(d, s) for d in ("criteo_small", "adult_census") for s in ctr.SYSTEMS if peers.get(s, True)}
    expected |= {("synthetic", "shoal-dlrm")} | ({("synthetic", "deepfm")} if peers["deepfm"] else set())
    assert set(got) == expected
    for (d, _), metrics in got.items():
        assert metrics == (REAL_METRICS if d != "synthetic" else set(ctr.METRICS))
    values = {k: r["value"] for k, r in zip(keys, rows, strict=True)}
    for (d, s, m), v in values.items():
        if m == "auc":
            assert 0.0 <= v <= 1.0, (d, s, v)
        elif m != "calibration":
            assert v > 0.0, (d, s, m, v)
