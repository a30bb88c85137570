"""Compiled loops with numba, set up lazily: the import and the compilation happen at the first use.

A module writes its loop as plain Python over numpy arrays and asks for it compiled::

    _kernel = lazy_njit(globals(), "_loop", helpers=("_mix64",))
    ...
    compiled = _kernel()          # None where numba is missing or fails to import: use the numpy code
    compiled(data, ...)

``helpers`` are module-level functions the loop calls: they are compiled first (inlined) and put back under
their names, so that the loop's compilation finds them. Each compiled function is cached on disk (``cache=True``,
beside the module, or numba's user cache folder where that one is read-only), so a later process loads it in a
fraction of a second; where no cache folder is writable it is compiled in every process instead. Setting up
holds a lock: serving threads may ask at the same time.
"""

from __future__ import annotations

import importlib.util
import threading
import warnings
from collections.abc import Callable
from typing import Any

__all__ = ["AVAILABLE", "lazy_njit"]

AVAILABLE = importlib.util.find_spec("numba") is not None
_lock = threading.Lock()


def lazy_njit(namespace: dict[str, Any], name: str, helpers: tuple[str, ...] = ()) -> Callable[[], Any]:
    """A function returning ``namespace[name]`` compiled by numba (set up once), or None without numba."""
    state: dict[str, Any] = {}

    def get() -> Any:
        with _lock:
            if "compiled" not in state:
                state["compiled"] = _compile(namespace, name, helpers)
        return state["compiled"]

    return get


def _compile(namespace: dict[str, Any], name: str, helpers: tuple[str, ...]) -> Any:
    if not AVAILABLE:
        return None
    try:
        import numba
    except Exception as err:  # e.g. a numba built for another numpy: not worth a crash
        warnings.warn(f"numba did not import ({err}); {namespace.get('__name__')} uses its slower numpy code",
                      RuntimeWarning, stacklevel=4)
        return None

    def jit(fn: Any, **options: Any) -> Any:
        try:
            return numba.njit(cache=True, **options)(fn)
        except RuntimeError:  # "cannot cache function ...: no locator available" (a read-only install)
            return numba.njit(**options)(fn)

    for helper in helpers:
        namespace[helper] = jit(namespace[helper], inline="always")
    return jit(namespace[name])
