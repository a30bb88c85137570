"""Shared fixtures."""

from __future__ import annotations

import os
from pathlib import Path

# as the `shoal` command does (shoal/cli/main.py): spinning OpenMP threads crawl when cores are shared
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data sets beside the project (``../shared/data``); tests using it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data not found: real-data tests need the shared data sets beside the project")
    return SHARED_DATA
