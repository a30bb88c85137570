"""shoal.jit: loops compiled by numba on first use, and the numpy fallback where numba does not import."""

from __future__ import annotations

import sys
import warnings
from typing import Any

import numpy as np
import pytest

from shoal import jit

SOURCE = '''
def _twice(x):
    return x * 2

def _double_all(x):
    out = x.copy()
    for i in range(x.shape[0]):
        out[i] = _twice(x[i])
    return out
'''


def _module() -> dict[str, Any]:
    """A module namespace made by exec: its functions have no source file, so numba cannot cache them on disk
    and lazy_njit compiles them without its cache (the read-only-install path)."""
    namespace: dict[str, Any] = {"__name__": "jit_test_module"}
    exec(SOURCE, namespace)  # noqa: S102 - a fixed string
    return namespace


def test_compiles_once_with_its_helpers_even_without_a_disk_cache() -> None:
    namespace = _module()
    plain = namespace["_twice"]
    get = jit.lazy_njit(namespace, "_double_all", helpers=("_twice",))
    compiled = get()
    assert compiled is not None and compiled is get()  # set up once
    np.testing.assert_array_equal(compiled(np.arange(3)), [0, 2, 4])
    assert namespace["_twice"] is not plain  # the helper was compiled in place, for the loop to call


def test_a_numba_that_does_not_import_gives_none_and_one_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "numba", None)  # "import numba" now raises ImportError
    get = jit.lazy_njit(_module(), "_double_all")
    with pytest.warns(RuntimeWarning, match="numba did not import"):
        assert get() is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # decided once: a second warning would fail here
        assert get() is None
