"""What a search leaves: the leaderboard of its trials, a PNG of the validation metric against trial and time, and
the best config as YAML that ``shoal train`` reproduces.

The rows are read back from the Optuna study (its SQLite file in the auto run's folder), where each trial keeps
its family, child run, state, cost and the search time at its end as user attributes, so a resumed search reports
every trial of every session.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from shoal.config import FileSpec

__all__ = ["TrialRow", "best_yaml", "family_bests", "leaderboard", "progress_png", "rows_of"]

STATES = ("complete", "pruned", "timeout", "interrupted", "failed")


@dataclass(frozen=True)
class TrialRow:
    """One trial of the leaderboard."""

    number: int
    family: str
    state: str  # one of STATES
    value: float | None  # the final validation metric (complete), else the last one reported
    seconds: float  # the trial's wall-clock time
    elapsed_s: float  # search time (all sessions) when it ended
    run_id: str | None
    epochs: int
    params: dict[str, Any]
    cut: bool = False  # completed at its deadline, with the best weights of its validations so far
    train_seconds: float | None = None  # of ``seconds``, those training (the rest: reading, encoding, start-up)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def rows_of(study: Any) -> list[TrialRow]:
    """The trials of an Optuna study that ran (a trial skipped for lack of time is left out), by number."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        a = t.user_attrs
        if "state" not in a:
            continue  # asked but never trained: no time left for it, or stopped before it started
        value = t.value if t.value is not None else (
            t.intermediate_values[max(t.intermediate_values)] if t.intermediate_values else None)
        rows.append(TrialRow(t.number, str(a.get("family", t.params.get("family", "?"))), str(a["state"]),
                             None if value is None else float(value), float(a.get("seconds", 0.0)),
                             float(a.get("elapsed_s", 0.0)), a.get("run_id"), int(a.get("epochs", 0)),
                             {k: v for k, v in t.params.items() if k != "family"}, bool(a.get("cut", False)),
                             None if a.get("train_seconds") is None else float(a["train_seconds"])))
    return sorted(rows, key=lambda r: r.number)


def leaderboard(rows: list[TrialRow], maximize: bool) -> list[TrialRow]:
    """Completed trials best first, then the others (pruned, timed out, ...) by trial number."""
    done = [r for r in rows if r.state == "complete" and r.value is not None]
    done.sort(key=lambda r: (-r.value if maximize else r.value, r.number))  # type: ignore[operator]
    return done + [r for r in rows if r not in done]


def family_bests(board: list[TrialRow]) -> set[int]:
    """The trial numbers of each family's first row of ``board`` (a leaderboard, best first): its best."""
    return set({r.family: r.number for r in reversed(board)}.values())


def best_yaml(config: dict[str, Any], path: Path, test: Path | FileSpec | None = None, refit: bool = False) -> Path:
    """Write the winner's resolved config (with the test file, when the search had one) as YAML to ``path``;
    ``refit``: the config is the winner's refit on every row (:mod:`shoal.auto.refit`)."""
    doc = dict(config)
    if isinstance(doc.get("train"), dict):  # trials skip the pictures; a run of the winner's config draws them
        doc["train"] = {**doc["train"], "pictures": True}
    if test is not None:
        doc["data"] = {**doc["data"], "test": str(test) if isinstance(test, Path) else test.model_dump(mode="json")}
    header = ("# The best config found by `shoal auto`; `shoal train` on this file trains the same model again\n"
              + ("# (same data, seed and settings: every row, for the epochs the search's validation chose).\n"
                 if refit else "# (same data, validation rows, seed and settings, so the same validation metric).\n"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def progress_png(rows: list[TrialRow], metric: str, maximize: bool, path: Path, title: str) -> Path:
    """The validation metric of every trial against its number (left) and the search time at its end (right):
    completed trials as dots coloured by family, stopped ones as crosses at their last value, the best so far as a
    step line; returns ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    families = sorted({r.family for r in rows})
    colors = {f: plt.get_cmap("tab10")(i % 10) for i, f in enumerate(families)}
    shown = [r for r in rows if r.value is not None]
    for ax, x_of, label in ((axes[0], lambda r: r.number, "trial"),
                            (axes[1], lambda r: r.elapsed_s, "search time, s")):
        for r in shown:
            done = r.state == "complete"
            ax.scatter(x_of(r), r.value, color=colors[r.family], marker="o" if done else "x",
                       alpha=1.0 if done else 0.5, s=30)
        best: float | None = None
        xs, ys = [], []
        for r in sorted((r for r in shown if r.state == "complete"), key=x_of):
            assert r.value is not None
            if best is None or (r.value > best if maximize else r.value < best):
                best = r.value
            xs.append(x_of(r))
            ys.append(best)
        if xs:
            ax.step(xs, ys, where="post", color="black", lw=1, label="best so far")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"validation {metric}")
    for f in families:
        axes[1].scatter([], [], color=colors[f], label=f)
    axes[1].scatter([], [], color="gray", marker="x", label="stopped early")
    axes[1].legend(fontsize=7, loc="best")
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
