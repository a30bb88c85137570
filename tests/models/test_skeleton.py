"""Every family builds on the meta device (a bundle's shape check, before its weights are read) without importing
``torch._dynamo``: some of torch's meta kernels import it, a cost of seconds at every server worker's start."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from shoal.models.registry import available

SEQUENCE_FAMILIES = {"bytecnn"}  # read byte sequences: the first feature is one
NAMES = [*available(), "mlp+media"]

# One interpreter imports torch and shoal, then forks a child per family: each child starts from the state a fresh
# `python -c` has after these imports (nothing built yet), and builds only its own family, so a family that pulls in
# torch._dynamo is caught by its own test, never by a later one. (One interpreter per family paid the imports 7 times.)
IMPORTS = """\
import json, os, sys, traceback
import torch
from shoal.artifacts.bundle import _MODEL_CONFIG
from shoal.data.features.media import MediaInput
from shoal.models.registry import build
"""
FORK_EACH = """
results = {}
for name, code in json.loads(sys.argv[1]).items():
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: build one family, say whether torch._dynamo came with it
        os.close(read)
        try:
            exec(code, {"torch": torch, "_MODEL_CONFIG": _MODEL_CONFIG, "MediaInput": MediaInput, "build": build})
            answer = {"dynamo": "torch._dynamo" in sys.modules}
        except BaseException:
            answer = {"error": traceback.format_exc()}
        os.write(write, json.dumps(answer).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        said = pipe.read()
    _, status = os.waitpid(pid, 0)
    results[name] = json.loads(said) if said else {"error": f"the child died (wait status {status})"}
print(json.dumps(results))
"""


def _build_code(name: str) -> str:
    """Build family ``name`` (``mlp+media``: with an image and an audio input) on the meta device."""
    family, _, media = name.partition("+")
    sequences = [0] if family in SEQUENCE_FAMILIES else []
    inputs = ("[MediaInput('image', (3, 8, 8), (4, 6), blocks=1), MediaInput('audio', (1, 8, 10), (4, 5), blocks=1)]"
              if media else "[]")
    return (
        f"config = _MODEL_CONFIG.validate_python({{'name': {family!r}}})\n"
        "with torch.device('meta'):\n"
        f"    model = build(config, 4 + (3 * 8 * 8 + 8 * 10 if {bool(media)} else 0), [300, 100, 50], 3, "
        f"{sequences!r}, media={inputs})\n"
        "assert next(model.parameters()).is_meta\n"
    )


@pytest.fixture(scope="module")
def meta_builds() -> dict[str, dict[str, object]]:
    """Each family's answer: ``{"dynamo": bool}``, or ``{"error": traceback}`` when its build failed."""
    codes = {name: _build_code(name) for name in NAMES}
    out = subprocess.run([sys.executable, "-c", IMPORTS + FORK_EACH, json.dumps(codes)], capture_output=True,
                         text=True, timeout=240)
    assert out.returncode == 0, out.stderr
    results: dict[str, dict[str, object]] = json.loads(out.stdout.strip().splitlines()[-1])
    return results


@pytest.mark.parametrize("name", NAMES)
def test_meta_build_does_not_import_dynamo(name: str, meta_builds: dict[str, dict[str, object]]) -> None:
    result = meta_builds[name]
    assert "error" not in result, result["error"]
    assert result["dynamo"] is False, f"{name}: building on the meta device imported torch._dynamo"
