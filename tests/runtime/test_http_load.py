"""The HTTP load tool's request bodies and its server start-up errors."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from shoal.runtime.http_load import json_rows, server_process


def test_json_rows_as_a_request_holds_them() -> None:
    rows = [{"x": float("nan"), "img": b"\x89PNG", "review": None, "shop": None, "n": 3}]
    assert json_rows(rows, texts=["review"]) == [{"x": None, "img": "iVBORw==", "review": "", "shop": None, "n": 3}]


def test_a_server_that_dies_at_start_says_how_with_its_log(tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    cmd = [sys.executable, "-c", "import sys; print('AttributeError: no attribute c12'); sys.exit(3)"]
    with (pytest.raises(RuntimeError, match=r"exited with code 3 before it was ready[\s\S]*no attribute c12"),
          server_process(cmd, log, ready=lambda: False, timeout_s=30)):
        pass
