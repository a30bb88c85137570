"""Config overrides: ``shoal train CFG --set KEY=VALUE`` and ``shoal.train(..., overrides={...})``."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from shoal.artifacts.registry import Registry
from shoal.cli.main import app
from shoal.config import ConfigError, apply_overrides, load_config
from shoal.data.synthetic import SynthSpec, generate
from shoal.training import runs

BASE = {
    "name": "ctr",
    "data": {"train": "clicks.parquet", "valid_fraction": 0.2},
    "label": {"column": "label"},
    "features": [{"name": "d0", "kind": "dense"}, {"name": "s0", "kind": "sparse", "buckets": 64}],
    "model": {"name": "dlrm", "embedding_dim": 8},
    "train": {"epochs": 1, "batch_size": 256},
}


def _config(tmp_path: Path) -> Path:
    generate(tmp_path / "clicks.parquet", SynthSpec(rows=1500, dense=1, sparse=4, max_cardinality=50, seed=0))
    path = tmp_path / "ctr.yaml"
    path.write_text(yaml.safe_dump(BASE), encoding="utf-8")
    return path


def test_dotted_keys_set_typed_values() -> None:
    out = apply_overrides(BASE, ["train.epochs=3", "model.embedding_dim=32", "features.s0.buckets=4096",
                                 "features.0.transform=log1p", "train.lr=0.01", "model.name=mlp",
                                 "model.hidden=[64, 32]", "data.valid_fraction=0.1"])
    assert out["train"]["epochs"] == 3 and out["label"] == {"column": "label"}
    assert out["train"]["lr"] == 0.01 and out["model"]["hidden"] == [64, 32]
    assert out["features"][1]["buckets"] == 4096 and out["features"][0]["transform"] == "log1p"
    assert out["model"] == {"name": "mlp", "embedding_dim": 32, "hidden": [64, 32]}
    assert BASE["train"]["epochs"] == 1  # the input is not changed
    assert apply_overrides(BASE, {"train.epochs": 5})["train"]["epochs"] == 5  # Python: a mapping


def test_bad_overrides_name_the_key() -> None:
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        apply_overrides(BASE, ["train.epochs"])
    with pytest.raises(ConfigError, match="no item named 'city'.*names: d0, s0"):
        apply_overrides(BASE, ["features.city.buckets=8"])
    with pytest.raises(ConfigError, match="has 2 items, no item 5"):
        apply_overrides(BASE, ["features.5.buckets=8"])
    with pytest.raises(ConfigError, match="model.name is 'dlrm', not a mapping"):
        apply_overrides(BASE, ["model.name.x=1"])


def test_load_config_validates_the_result(tmp_path: Path) -> None:
    path = _config(tmp_path)
    assert load_config(path, ["train.epochs=4"]).train.epochs == 4
    with pytest.raises(ConfigError, match="train.epochs"):
        load_config(path, ["train.epochs=many"])  # typed: not a number
    with pytest.raises(ConfigError, match="train.epoch"):
        load_config(path, ["train.epoch=3"])  # unknown key (a typo)


def test_cli_set_is_recorded_in_the_run(tmp_path: Path) -> None:
    path = _config(tmp_path)
    home = tmp_path / "home"
    result = CliRunner().invoke(app, ["train", str(path), "--home", str(home), "--set", "train.epochs=2",
                                      "--set", "model.embedding_dim=4", "--set", "train.pictures=false"])
    assert result.exit_code == 0, result.output
    run = Registry(home).get("latest")
    assert run.config["train"]["epochs"] == 2 and run.config["model"]["embedding_dim"] == 4
    assert Path(run.config["data"]["train"]["path"] if isinstance(run.config["data"]["train"], dict)
                else run.config["data"]["train"]) == (tmp_path / "clicks.parquet").resolve()
    bad = CliRunner().invoke(app, ["train", str(path), "--home", str(home), "--set", "train.epochs=zero"])
    assert bad.exit_code != 0 and "train.epochs" in bad.output and "Traceback" not in bad.output


def test_python_overrides(tmp_path: Path) -> None:
    record = runs.train(_config(tmp_path), tmp_path / "home", overrides={"train.epochs": 2, "train.pictures": False})
    assert record.config["train"]["epochs"] == 2
    assert record.summary.get("epochs_run", 2) <= 2


def test_pictures_can_be_turned_off(tmp_path: Path) -> None:
    record = runs.train(_config(tmp_path), tmp_path / "home", overrides={"train.pictures": False})
    assert "learning_curve_png" not in record.summary and not list(record.artifact_dir.glob("*.png"))
