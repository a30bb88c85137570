"""The raw export runs outside Python: Node.js + onnxruntime-node (npm) scores raw rows read from a file with
docs/examples/raw_predict.cjs and gets Python's probabilities.

onnxruntime-node is installed once into a cache folder outside the repository (``$XDG_CACHE_HOME/shoal`` or
``~/.cache/shoal``) and reused; the test skips, saying why, when node or npm is missing or the install fails
(offline). The package's install script only downloads optional GPU binaries, so it is skipped (--ignore-scripts):
the CPU runtime ships in the npm package itself.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from shoal.artifacts.bundle import Bundle
from shoal.export.raw import RawOnnxModel, export_raw_onnx, parity, synthetic_raw_rows

PROGRAM = Path(__file__).resolve().parents[2] / "docs" / "examples" / "raw_predict.cjs"
NPM_PACKAGE = "onnxruntime-node@1"
INSTALL_SECONDS = 120


def _node_modules() -> Path:
    """A node_modules folder holding onnxruntime-node (installed on first use), or pytest.skip with the reason."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip(f"Node.js and npm are needed for this test (node: {node}, npm: {npm})")
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "shoal" / "onnxruntime-node"
    modules = cache / "node_modules"
    if (modules / "onnxruntime-node" / "package.json").is_file():
        return modules
    cache.mkdir(parents=True, exist_ok=True)
    command = [npm, "install", "--prefix", str(cache), "--no-audit", "--no-fund", "--loglevel=error",
               "--ignore-scripts", NPM_PACKAGE]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=INSTALL_SECONDS, check=False)
    except subprocess.TimeoutExpired:
        pytest.skip(f"npm install {NPM_PACKAGE} took over {INSTALL_SECONDS} s (offline?); run it by hand: "
                    f"{' '.join(command)}")
    if done.returncode != 0 or not (modules / "onnxruntime-node").is_dir():
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        pytest.skip(f"npm install {NPM_PACKAGE} failed (offline?): {' | '.join(tail)}")
    return modules


def _bundle(random_bundle: Any, tmp: Path) -> tuple[Path, Bundle]:
    """A bag over a text's n-grams, an id, a list of ids and a binned number: every kind of raw input."""
    features = [{"name": "review", "kind": "text", "buckets": 3000, "max_bytes": 40, "ngram_min": 2, "ngram_max": 3},
                {"name": "user", "kind": "sparse", "buckets": 100},
                {"name": "tags", "kind": "sparse", "buckets": 20, "separator": "|"},
                {"name": "price", "kind": "dense", "transform": "log1p", "bins": 4}]
    return random_bundle(tmp, features, {"name": "bag", "embedding_dim": 4}, seed=1)


def _json_rows(table: pa.Table) -> list[dict[str, Any]]:
    """The rows as JSON can hold them: NaN as null. Ids avoid the few characters JavaScript's trim() and Python's
    str.strip() disagree on (U+001C..U+001F, U+0085, U+FEFF): none are in synthetic_raw_rows' alphabet."""
    rows = table.to_pylist()
    for r in rows:
        for k, v in r.items():
            if isinstance(v, float) and np.isnan(v):
                r[k] = None
    return rows


def test_node_scores_raw_rows_like_python(tmp_path: Path, random_bundle: Any) -> None:
    modules = _node_modules()
    folder, bundle = _bundle(random_bundle, tmp_path)
    report = export_raw_onnx(folder, parity_rows=64)
    table = synthetic_raw_rows(bundle.encoder, 60, seed=2)
    rows = _json_rows(table) + [{"review": "", "user": " ü-42 ", "tags": "a| b ||c", "price": 0},
                                {"review": None, "user": None, "tags": None, "price": None},
                                {"review": "中文 🙂 " * 20, "user": "x", "tags": "", "price": 1e6}]
    rows_file = tmp_path / "rows.json"
    rows_file.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    env = {**os.environ, "NODE_PATH": str(modules)}
    done = subprocess.run(["node", str(PROGRAM), str(report.path), str(report.contract_path), str(rows_file)],
                          capture_output=True, text=True, timeout=60, env=env, check=False)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    from_node = np.asarray(answer["probabilities"], np.float64)
    assert answer["dims"] == [len(rows)]
    from_python = RawOnnxModel(report.path).predict_proba(rows).astype(np.float64)
    np.testing.assert_allclose(from_node, from_python, rtol=0, atol=1e-6)
    assert parity(bundle, RawOnnxModel(report.path), pa.Table.from_pylist(rows)) <= 1e-5  # and the Python encoder
