"""Every example in the docs runs: shell blocks through the CLI, Python blocks with exec, YAML through the loader."""

from __future__ import annotations

import re
import shlex
import tempfile
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from shoal.cli import main as cli
from shoal.config import parse_config

DOCS = Path(__file__).resolve().parents[1] / "docs"


def blocks(path: Path, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", path.read_text(encoding="utf-8"), flags=re.S)


@pytest.mark.slow
def test_quickstart_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SHOAL_HOME", raising=False)
    monkeypatch.setattr(cli.console, "_width", 200)
    (tmp_path / "configs").mkdir()
    runner = CliRunner()
    doc = DOCS / "quickstart.md"
    commands = [line for block in blocks(doc, "bash") for line in block.splitlines() if line.strip()]
    assert len(commands) >= 5
    for command in commands:
        args = shlex.split(command)
        assert args[0] == "shoal", command
        result = runner.invoke(cli.app, args[1:])
        assert result.exit_code == 0, f"{command}\n{result.output}"
    for code in blocks(doc, "python"):
        exec(compile(code, str(doc), "exec"), {})  # noqa: S102 - our own docs


def test_config_reference_example_is_valid() -> None:
    (example,) = [b for b in blocks(DOCS / "configs.md", "yaml") if "features:" in b]
    cfg = parse_config(yaml.safe_load(example), source="docs/configs.md")
    assert cfg.model.name == "dlrm" and cfg.data.on_bad_rows == "quarantine"
    assert cfg.sparse[-1].separator == "|"


def test_config_reference_lists_every_field() -> None:
    """The tables in configs.md name every key the config classes accept."""
    from shoal.config import (
        DataConfig,
        DenseFeature,
        FeatureConfig,
        FileSpec,
        LabelConfig,
        SparseFeature,
        TextFeature,
        TimeFeature,
        TrainConfig,
    )

    text = (DOCS / "configs.md").read_text(encoding="utf-8")
    for model in (DataConfig, FileSpec, LabelConfig, FeatureConfig, DenseFeature, SparseFeature, TextFeature,
                  TimeFeature, TrainConfig):
        for name in model.model_fields:
            assert f"| `{name}` |" in text, f"docs/configs.md does not document {model.__name__}.{name}"


def test_text_guide_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the example's mkdtemp folder: pytest's, cleaned
    doc = DOCS / "text.md"
    for example in blocks(doc, "yaml"):
        assert yaml.safe_load(example)  # valid YAML (the config pieces are checked by the ready-config tests)
    (code,) = blocks(doc, "python")
    exec(compile(code, str(doc), "exec"), {})  # noqa: S102 - our own docs


def test_python_guide_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the example's mkdtemp folder: pytest's, cleaned
    doc = DOCS / "python.md"
    (code,) = blocks(doc, "python")
    exec(compile(code, str(doc), "exec"), {})  # noqa: S102 - our own docs
