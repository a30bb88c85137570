"""The picture of ``shoal explain``: permutation importances as horizontal bars with their spread (matplotlib,
headless, as :mod:`shoal.plots`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

__all__ = ["importance_png"]

MAX_BARS = 40  # a chart of more features is unreadable: the rest are left out of the picture (not the table)


class Bar(Protocol):
    """What a bar needs: a name, the mean drop and its spread (an :class:`~shoal.analysis.explain.Importance`)."""

    @property
    def feature(self) -> str: ...

    @property
    def drop(self) -> float: ...

    @property
    def std(self) -> float: ...


def importance_png(bars: Sequence[Bar], metric: str, path: Path, title: str) -> Path:
    """The ``bars`` (sorted, largest first) as horizontal bars, largest on top, each with its standard deviation
    as an error bar; a vertical line at 0. Returns ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = list(bars)[:MAX_BARS]
    fig, ax = plt.subplots(figsize=(8, max(2.5, 0.35 * len(shown) + 1.5)))
    y = list(range(len(shown)))[::-1]  # the first (largest) bar on top
    drops = [b.drop for b in shown]
    ax.barh(y, drops, xerr=[b.std for b in shown], color=["tab:blue" if d >= 0 else "tab:gray" for d in drops],
            capsize=3)
    ax.set_yticks(y, [b.feature for b in shown])
    ax.axvline(0.0, color="black", lw=0.8)
    ax.set_xlabel(f"drop in {metric} when the feature is shuffled (mean ± std over repeats)")
    more = len(bars) - len(shown)
    ax.set_title(title + (f" (top {len(shown)}; {more} more in the table)" if more > 0 else ""))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
