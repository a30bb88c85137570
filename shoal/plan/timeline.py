"""A PNG timeline of one predicted training step: the compute lane (overhead, input, forward, embeddings,
backward, optimizer, exposed communication) above the network lane (the all-reduce running under the backward)."""

from __future__ import annotations

from pathlib import Path

from shoal.plan.step import StepPlan

__all__ = ["COLORS", "save_timeline"]

COLORS = {"overhead": "#9e9e9e", "input": "#bcaaa4", "dense": "#1f77b4", "embedding": "#2ca02c",
          "optimizer": "#9467bd", "comm": "#d62728"}


def save_timeline(step: StepPlan, path: Path, title: str = "") -> Path:
    """Draw ``step``'s phases as horizontal bars in milliseconds; returns ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    lanes = ["network", "compute"]
    fig, ax = plt.subplots(figsize=(11, 3.2))
    for phase in step.phases:
        y = lanes.index(phase.lane)
        ax.barh(y, phase.seconds * 1e3, left=phase.start * 1e3, height=0.6, color=COLORS[phase.kind],
                edgecolor="white", linewidth=0.5)
        if phase.seconds > 0.06 * step.step_s:
            ax.text((phase.start + phase.seconds / 2) * 1e3, y, phase.name, ha="center", va="center", fontsize=7,
                    color="white", clip_on=True)
    ax.set_yticks(range(len(lanes)), [f"{lane}\n(each of {step.world} processes)" if lane == "compute" else lane
                                      for lane in lanes])
    ax.set_xlabel("milliseconds")
    ax.set_xlim(0, step.step_s * 1e3 * 1.02)
    ax.set_title(title or f"one step: {step.step_s * 1e3:.2f} ms, {step.rows_per_s:,.0f} rows/s, "
                          f"bottleneck: {step.bottleneck}", fontsize=10)
    ax.legend(handles=[Patch(color=c, label=k) for k, c in COLORS.items()], loc="upper center",
              bbox_to_anchor=(0.5, -0.35), ncol=len(COLORS), fontsize=8, frameon=False)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
