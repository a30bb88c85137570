"""Loading a tampered bundle (issue 23): every kind of damage is one BundleError naming the file and what is
wrong, found before the damaged file is read (a model.safetensors symlinked to /dev/zero fails at once, it used
to hang); the server answers 400 on reload and keeps serving; `shoal serve` prints one line and exits 2."""

from __future__ import annotations

import json
import os
import shutil
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from shoal.artifacts import bundle as bundle_module
from shoal.artifacts.bundle import BundleError, load_bundle
from shoal.cli import main as cli
from shoal.config import parse_config
from shoal.data.synthetic import SynthSpec, generate
from shoal.errors import ShoalError
from shoal.serving.app import ServeSettings, create_app
from shoal.training.loop import Trainer

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

TOKEN = "bundle-check-token"


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("bundle-checks")
    data = folder / "clicks.parquet"
    generate(data, SynthSpec(rows=600, dense=2, sparse=4, seed=2))
    cfg = parse_config({
        "name": "checks", "data": {"train": str(data), "valid_fraction": 0.2, "chunk_rows": 300},
        "label": {"column": "label"},
        "features": [{"name": "d0", "kind": "dense"}, {"name": "s0", "kind": "sparse", "buckets": 64}],
        "model": {"name": "logistic"},
        "train": {"epochs": 1, "batch_size": 64, "threads": 1, "pictures": False},  # no PNGs: none is read
    }, source="test")
    return Trainer(cfg, folder / "run").fit().bundle


def _edit_json(change: Callable[[dict[str, Any]], Any]) -> Callable[[Path], None]:
    def tamper(folder: Path) -> None:
        doc = json.loads((folder / "bundle.json").read_text())
        doc = change(doc) or doc
        (folder / "bundle.json").write_text(json.dumps(doc))

    return tamper


def _truncate(name: str, keep: float) -> Callable[[Path], None]:
    def tamper(folder: Path) -> None:
        data = (folder / name).read_bytes()
        (folder / name).write_bytes(data[:int(len(data) * keep)])

    return tamper


def _symlink_out(folder: Path) -> None:
    outside = folder.parent / "elsewhere.safetensors"
    shutil.copy(folder / "model.safetensors", outside)  # a perfectly good file, but not the bundle's own
    (folder / "model.safetensors").unlink()
    (folder / "model.safetensors").symlink_to(outside)


def _symlink_dev_zero(folder: Path) -> None:
    (folder / "model.safetensors").unlink()
    (folder / "model.safetensors").symlink_to("/dev/zero")


def _fifo(folder: Path) -> None:
    (folder / "model.safetensors").unlink()
    os.mkfifo(folder / "model.safetensors")


def _weights_a_folder(folder: Path) -> None:
    (folder / "model.safetensors").unlink()
    (folder / "model.safetensors").mkdir()


def _nested_json(folder: Path) -> None:
    (folder / "bundle.json").write_text("[" * 100_000 + "]" * 100_000)  # json.loads: a RecursionError


def _set_inputs(doc: dict[str, Any]) -> None:
    doc["inputs"]["buckets"] = "abc"


def _set_dense_dim(doc: dict[str, Any]) -> None:
    doc["inputs"]["dense_dim"] = 7  # another model's shape: the weights no longer fit


def _drop_encoder(doc: dict[str, Any]) -> None:
    del doc["encoder"]


# (tamper, the file named, words of the reason)
CASES: dict[str, tuple[Callable[[Path], None], str, str]] = {
    "truncated json": (_truncate("bundle.json", 0.5), "bundle.json", "not valid JSON"),
    "json list": (_edit_json(lambda d: [1, 2]), "bundle.json", "a JSON list, not an object"),
    "wrong format": (_edit_json(lambda d: {**d, "format": "pickle"}), "bundle.json", "format 'pickle'"),
    "model not an object": (_edit_json(lambda d: {**d, "model": 5}), "bundle.json", "'model' is wrong"),
    "buckets a string": (_edit_json(_set_inputs), "bundle.json", "'inputs' is wrong"),
    "no encoder": (_edit_json(_drop_encoder), "bundle.json", "'encoder' is wrong: missing key 'encoder'"),
    "weights of another shape": (_edit_json(_set_dense_dim), "model.safetensors", "does not hold the weights"),
    "missing weights": (lambda f: (f / "model.safetensors").unlink(), "model.safetensors", "missing"),
    "truncated weights": (_truncate("model.safetensors", 0.8), "model.safetensors", "truncated"),
    "weights not safetensors": (lambda f: (f / "model.safetensors").write_bytes(b"\x80\x04pickle"),
                                "model.safetensors", "not a safetensors file"),
    "symlink outside": (_symlink_out, "model.safetensors", "outside the bundle folder"),
    "symlink to /dev/zero": (_symlink_dev_zero, "model.safetensors", "a symlink to /dev/zero, outside"),
    "named pipe": (_fifo, "model.safetensors", "a named pipe; a bundle holds regular files only"),
    "weights a folder": (_weights_a_folder, "model.safetensors", "a folder, not a file"),
    "json nested too deeply": (_nested_json, "bundle.json", "not valid JSON (nested too deeply)"),
}


def _tampered(good: Path, tmp_path: Path, name: str) -> tuple[Path, str, str]:
    tamper, file, words = CASES[name]
    folder = shutil.copytree(good, tmp_path / name.replace(" ", "-").replace("/", "") / "bundle")
    tamper(folder)
    return folder, file, words


@pytest.mark.parametrize("name", list(CASES))
def test_a_tampered_bundle_is_one_error_naming_file_and_fault(good: Path, tmp_path: Path, name: str) -> None:
    folder, file, words = _tampered(good, tmp_path, name)
    start = time.perf_counter()
    with pytest.raises(BundleError) as info:
        load_bundle(folder)
    assert time.perf_counter() - start < 5  # fails fast: never reads a device or waits on a pipe
    message = str(info.value)
    assert str(folder / file) in message and words in message, message
    assert isinstance(info.value, ShoalError) and isinstance(info.value, ValueError)
    assert "\n" not in message


def test_an_oversized_json_is_refused_before_it_is_read(good: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    folder = shutil.copytree(good, tmp_path / "bundle")
    monkeypatch.setattr(bundle_module, "MAX_JSON_BYTES", 1000)
    with pytest.raises(BundleError, match=r"bundle.json: [\d,]+ bytes, over the limit of 1,000 bytes"):
        load_bundle(folder)


def test_reload_answers_400_for_every_tampered_bundle_and_keeps_serving(good: Path, tmp_path: Path) -> None:
    app = create_app(good, ServeSettings(admin_token=TOKEN))
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with TestClient(app, raise_server_exceptions=False) as c:
        version = c.get("/model").json()["version"]
        for name in CASES:
            folder, file, words = _tampered(good, tmp_path, name)
            r = c.post("/admin/reload", headers=auth, json={"ref": str(folder)})
            assert r.status_code == 400, (name, r.text)
            assert f"still serving version {version}" in r.json()["detail"] and words in r.json()["detail"]
        assert c.get("/model").json()["version"] == version


@pytest.mark.parametrize("name", ["truncated json", "buckets a string", "symlink to /dev/zero", "truncated weights"])
def test_shoal_serve_on_a_broken_bundle_prints_one_line_and_exits_2(good: Path, tmp_path: Path, name: str) -> None:
    folder, file, words = _tampered(good, tmp_path, name)
    result = CliRunner().invoke(cli.app, ["serve", str(folder), "--port", "0"])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and words in result.output
    assert result.output.strip().startswith("error:") and len(result.output.strip().splitlines()) == 1


def test_huge_tables_in_bundle_json_are_refused_before_any_memory_is_taken(good: Path, tmp_path: Path) -> None:
    """A bundle.json edited to ask for 300M embedding rows is refused from the weights' header, at once."""
    import resource

    folder = tmp_path / "bundle"
    shutil.copytree(good, folder)
    doc = json.loads((folder / "bundle.json").read_text())
    doc["inputs"]["buckets"] = [300_000_000]
    (folder / "bundle.json").write_text(json.dumps(doc))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    with pytest.raises(BundleError, match="does not hold the weights of the model in bundle.json .tensor"):
        load_bundle(folder)
    assert time.perf_counter() - started < 1.0
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KiB: not the table's 1.2 GB


def test_a_bundle_of_an_older_encoder_format_says_why_not_damaged(good: Path, tmp_path: Path) -> None:
    """Encoder format 1 hashed ids with FNV-1a: such a bundle is refused for that reason, with the fix."""
    folder = shutil.copytree(good, tmp_path / "bundle")
    _edit_json(lambda doc: doc["encoder"].update(format_version=1))(folder)
    with pytest.raises(BundleError, match=r"format_version 1 is not supported .*FNV-1a.*re-train") as err:
        load_bundle(folder)
    assert "damaged" not in str(err.value) and str(folder / "bundle.json") in str(err.value)
