"""Small helpers shared by the benchmarks: JSON rows, a timer, peak RSS and a markdown table."""

from __future__ import annotations

import json
import math
import resource
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, SupportsFloat

from shoal.runtime.http_load import free_port, server_process  # noqa: F401 - the benchmarks import them from here

__all__ = ["Timer", "free_port", "markdown_table", "peak_rss_mib", "row", "server_process", "timer", "write_json"]


def row(bench: str, dataset: str, system: str, metric: str, value: SupportsFloat) -> dict[str, Any]:
    """One result: ``{"bench", "dataset", "system", "metric", "value"}`` with a finite float value."""
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{bench}/{dataset}/{system}/{metric}: value {value!r} is not finite")
    return {"bench": bench, "dataset": dataset, "system": system, "metric": metric, "value": v}


def write_json(rows: Sequence[dict[str, Any]], path: str | Path) -> None:
    """Write the rows as one JSON array (parent folders are created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(list(rows), indent=1) + "\n", encoding="utf-8")


class Timer:
    """Elapsed wall-clock seconds of a ``with timer() as t:`` block, in ``t.seconds``; ``t.started``: its
    ``time.perf_counter()`` at the start."""

    seconds: float = 0.0
    started: float = 0.0


@contextmanager
def timer() -> Iterator[Timer]:
    t = Timer()
    t.started = time.perf_counter()
    try:
        yield t
    finally:
        t.seconds = time.perf_counter() - t.started


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB (``ru_maxrss`` is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if not math.isfinite(v):
            return "-"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        if abs(v) >= 100:
            return f"{v:.1f}"
        return f"{v:.4f}"
    return "-" if v is None else str(v)


def markdown_table(rows: Sequence[dict[str, Any]], index: Sequence[str], columns: str, values: str = "value",
                   column_order: Sequence[str] | None = None) -> str:
    """Pivot ``rows`` into a markdown table: one line per distinct ``index`` tuple, one column per ``columns``.

    Missing cells are shown as ``-``; line order is the order of first appearance.
    """
    cols = list(column_order) if column_order is not None else list(dict.fromkeys(r[columns] for r in rows))
    cells: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in rows:
        cells.setdefault(tuple(r[k] for k in index), {})[r[columns]] = r[values]
    lines = ["| " + " | ".join([*index, *cols]) + " |",
             "|" + "|".join(["---"] * len(index) + ["---:"] * len(cols)) + "|"]
    for key, got in cells.items():
        lines.append("| " + " | ".join([*(str(k) for k in key), *(_fmt(got.get(c)) for c in cols)]) + " |")
    return "\n".join(lines)
