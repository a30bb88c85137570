"""The ready configs train as they are on the real data sets (skipped when ../shared/data is absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

from shoal.config import load_config
from shoal.training.loop import Trainer

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.data
@pytest.mark.parametrize(("name", "min_test_auc", "max_test_ne"), [("criteo.yaml", 0.69, 0.95),
                                                                   ("adult.yaml", 0.92, 0.52),
                                                                   ("sst2.yaml", 0.90, 0.62)])
def test_ready_config_trains(name: str, min_test_auc: float, max_test_ne: float, shared_data: Path,
                             tmp_path: Path) -> None:
    cfg = load_config(CONFIGS / name)
    # as they are, but for the PNGs (3 figures, ~1 s of matplotlib, and no assertion reads them; AG News below draws)
    cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"pictures": False})})
    result = Trainer(cfg, tmp_path / "run").fit()
    m = result.metrics
    assert m["test_auc"] >= min_test_auc, m
    assert m["test_ne"] <= max_test_ne, m
    assert result.summary["quarantined_rows"] == 0
    if name == "sst2.yaml":  # fastText on the same split: 81.2% (unigrams) / 83.5% (bigrams)
        assert m["test_accuracy"] >= 0.82, m


@pytest.mark.data
def test_agnews_config_trains(shared_data: Path, tmp_path: Path) -> None:
    """AG News, 10k training rows -> canonical test set (fastText here: 86.0% unigrams, 85.3% bigrams)."""
    cfg = load_config(CONFIGS / "agnews.yaml")
    result = Trainer(cfg, tmp_path / "run").fit()
    m = result.metrics
    assert m["test_rows"] == 7600 and result.summary["quarantined_rows"] == 0
    assert m["test_accuracy"] >= 0.86 and m["test_macro_f1"] >= 0.86, m
    assert (tmp_path / "run" / "confusion-test.png").is_file()
