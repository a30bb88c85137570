"""Every family builds on the meta device (a bundle's shape check, before its weights are read) without importing
``torch._dynamo``: some of torch's meta kernels import it, a cost of seconds at every server worker's start."""

from __future__ import annotations

import subprocess
import sys

import pytest

from shoal.models.registry import available

SEQUENCE_FAMILIES = {"bytecnn"}  # read byte sequences: the first feature is one


@pytest.mark.parametrize("name", [*available(), "mlp+media"])
def test_meta_build_does_not_import_dynamo(name: str) -> None:
    family, _, media = name.partition("+")
    sequences = [0] if family in SEQUENCE_FAMILIES else []
    inputs = ("[MediaInput('image', (3, 8, 8), (4, 6), blocks=1), MediaInput('audio', (1, 8, 10), (4, 5), blocks=1)]"
              if media else "[]")
    code = (
        "import sys, torch\n"
        "from shoal.artifacts.bundle import _MODEL_CONFIG\n"
        "from shoal.data.features.media import MediaInput\n"
        "from shoal.models.registry import build\n"
        f"config = _MODEL_CONFIG.validate_python({{'name': {family!r}}})\n"
        "with torch.device('meta'):\n"
        f"    model = build(config, 4 + (3 * 8 * 8 + 8 * 10 if {bool(media)} else 0), [300, 100, 50], 3, "
        f"{sequences!r}, media={inputs})\n"
        "assert next(model.parameters()).is_meta\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False", f"{name}: building on the meta device imported torch._dynamo"
