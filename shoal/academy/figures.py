"""Plots graded on what they show: the matplotlib figure a lab saved, its axes, lines, points and images.

:func:`saved_figures` records every figure saved with ``fig.savefig`` or ``plt.savefig`` while a ``with`` block
runs; :func:`expect_figure` checks the one saved to the expected path: a real PNG, axes labelled, the data
plotted (``plotted_lines`` gives each line's and each scatter's points to compare with what the plot should show).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from shoal.academy.checks import CheckFailed, assert_png

__all__ = ["expect_figure", "expect_series_plot", "has_line", "has_point", "images", "plotted_lines",
           "saved_figures"]


@contextmanager
def saved_figures() -> Iterator[list[tuple[Any, Path]]]:
    """Yield a list that fills with ``(figure, path)`` for each figure saved inside the block."""
    import matplotlib

    matplotlib.use("Agg", force=False)  # the grader never opens a window
    from matplotlib.figure import Figure

    saved: list[tuple[Any, Path]] = []
    original = Figure.savefig

    def savefig(self: Any, fname: Any, *args: Any, **kwargs: Any) -> Any:
        saved.append((self, Path(fname) if isinstance(fname, str | Path) else Path(str(fname))))
        return original(self, fname, *args, **kwargs)

    Figure.savefig = savefig  # type: ignore[method-assign]
    try:
        yield saved
    finally:
        Figure.savefig = original  # type: ignore[method-assign]


def plotted_lines(fig: Any) -> list[tuple[np.ndarray, np.ndarray, str]]:
    """(x, y, label) of every line and every scatter of points in ``fig``'s axes, as float arrays."""
    out = []
    for ax in fig.axes:
        for line in ax.get_lines():
            x = np.asarray(line.get_xdata(), dtype=float).ravel()
            y = np.asarray(line.get_ydata(), dtype=float).ravel()
            if x.size and y.size:
                out.append((np.broadcast_to(x, y.shape) if x.size == 1 else x, y, str(line.get_label())))
        for coll in ax.collections:
            offsets = np.asarray(coll.get_offsets(), dtype=float).reshape(-1, 2)
            if offsets.size:
                out.append((offsets[:, 0], offsets[:, 1], str(coll.get_label())))
    return out


def images(fig: Any) -> list[np.ndarray]:
    """The arrays of every image (``imshow``, ``matshow``) in ``fig``'s axes."""
    return [np.asarray(im.get_array(), dtype=float) for ax in fig.axes for im in ax.get_images()]


def expect_figure(saved: list[tuple[Any, Path]], path: Path, what: str, *, labelled: bool = True) -> Any:
    """The figure saved to ``path``, or a hint: saved with matplotlib, something drawn, axes labelled."""
    assert_png(path, what)
    mine = [fig for fig, p in saved if p.resolve() == path.resolve()]
    if not mine:
        raise CheckFailed(f"{what} at {path} was not saved with matplotlib's savefig while the check ran: draw it with "
                          "matplotlib and save it with fig.savefig(path) (the check reads the figure's contents)")
    fig = mine[-1]
    drawn = [ax for ax in fig.axes if ax.get_lines() or ax.collections or ax.get_images() or ax.patches]
    if not drawn:
        raise CheckFailed(f"{what} is empty: nothing is plotted on its axes")
    for x, y, _ in plotted_lines(fig):
        if not (np.isfinite(x).any() and np.isfinite(y).any()):
            raise CheckFailed(f"{what} has a line with no finite values: check what you pass to plot")
    if labelled:
        for ax in drawn:
            if ax.get_images() and not ax.get_lines() and not ax.collections:
                continue  # an image panel: titles, not axis labels
            if not (ax.get_xlabel().strip() and ax.get_ylabel().strip()):
                raise CheckFailed(f"{what}: label the axes (ax.set_xlabel(...), ax.set_ylabel(...)), with units, so "
                                  "that a reader knows what is plotted against what")
    return fig


def has_line(fig: Any, y: list[float] | np.ndarray, *, rel: float = 1e-4) -> bool:
    """Whether ``fig`` plots a line (or scatter) whose y values are ``y`` (a loss curve, an AUC per epoch)."""
    target = np.asarray(y, dtype=float)
    for _, ys, _ in plotted_lines(fig):
        if ys.shape == target.shape and np.allclose(ys, target, rtol=rel, atol=1e-8):
            return True
    return False


def has_point(fig: Any, x: float, y: float, *, rel: float = 1e-3) -> bool:
    """Whether ``fig`` plots the point (x, y) on some line or scatter."""
    for xs, ys, _ in plotted_lines(fig):
        if xs.shape != ys.shape:
            continue
        if any(math.isclose(a, x, rel_tol=rel) and math.isclose(b, y, rel_tol=rel) for a, b in zip(xs, ys,
                                                                                                   strict=True)):
            return True
    return False


def expect_series_plot(draw: Callable[[list[float], Path], Any], values: list[float], path: Path, what: str,
                       missing: str) -> Any:
    """Call the learner's ``draw(values, path)`` and return the figure it saved to ``path`` (a fresh file, axes
    labelled), or fail with ``missing`` when no line of it shows ``values``."""
    path.unlink(missing_ok=True)
    with saved_figures() as saved:
        draw(list(values), path)
    fig = expect_figure(saved, path, what)
    if not has_line(fig, values):
        raise CheckFailed(missing)
    return fig
