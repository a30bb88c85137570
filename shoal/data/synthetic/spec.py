"""What to generate: :class:`SynthSpec`, validated on construction, and the random streams its seed feeds.

Every random draw of the generator comes from ``np.random.default_rng([seed, tag, ...])`` with one of the tags
below, so the model parameters, the pilot sample that calibrates the bias and each chunk of rows have their own
independent stream: changing ``rows`` does not change the parameters, and chunk ``i`` is the same whatever the
number of chunks after it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["MAX_CARDINALITY_CAP", "MAX_CHUNK_ROWS", "SynthSpec"]

MAX_CARDINALITY_CAP = 10_000_000
"""Largest allowed ``max_cardinality`` (ids are 24-bit, ``2^24 > 10^7``)."""

MAX_CHUNK_ROWS = 10_000_000
"""Largest allowed ``chunk_rows`` (keeps a chunk's string bytes within 32-bit Arrow offsets)."""

_TAG_PARAMS = 0  # stream [seed, 0]: the model parameters
_TAG_CHUNK = 1  # stream [seed, 1, i]: the rows and labels of chunk i
_TAG_PILOT = 2  # stream [seed, 2]: the pilot sample the bias is calibrated on
_TAG_TARGET = 3  # stream [seed, 3, i]: the numeric target's noise in chunk i (the labels do not change with it)
_TAG_TASK = 4  # stream [seed, 4, t, i]: the draws of further task t in chunk i (the first task does not change)
TARGET_SCALE = 10.0  # a numeric target is TARGET_SCALE x the planted logit, plus noise


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _is_real(value: object) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


@dataclass(frozen=True)
class SynthSpec:
    """What to generate.  Validated on construction; a bad field raises :class:`ValueError` naming it."""

    rows: int = 200_000
    """Number of rows (>= 1)."""
    dense: int = 13
    """Dense columns ``d0..d{dense-1}``: non-negative counts as float64, ~5% null (>= 0)."""
    sparse: int = 26
    """Sparse columns ``s0..s{sparse-1}``: string ids, ~3% null; the last one is a ``"|"``-joined list of
    1..5 ids (>= 4: the planted interactions use the single-id ``s0``, ``s1`` and ``s2``)."""
    base_rate: float = 0.03
    """Target mean click probability (0 < base_rate < 1)."""
    max_cardinality: int = 1_000_000
    """Largest cardinality; the others are spread log-uniformly from 10 (1..10,000,000)."""
    zipf_exponent: float = 1.1
    """Exponent of the bounded Zipf law of id frequencies (0 = uniform; 0..10)."""
    seed: int = 0
    """Seed of every random stream (>= 0)."""
    chunk_rows: int = 250_000
    """Rows generated and written per chunk (one Parquet row group each); bounds memory (1..10,000,000)."""
    target: str | None = None
    """Also write a numeric target column of this name (a regression label): ``TARGET_SCALE`` x the planted
    logit plus Gaussian noise of standard deviation ``target_noise`` (the best RMSE any model can reach)."""
    target_noise: float = 5.0
    """Standard deviation of the target's noise (> 0)."""
    tasks: tuple[str, ...] | None = None
    """Several binary labels (multi-task), e.g. ``("click", "conversion")``: the first is the click label (the
    ``label`` column under this name, unchanged), each further one a planted post-click event that can only be 1
    where the first is 1 (:mod:`.tasks`).  ``None``: the single ``label`` column."""
    task_rate: float = 0.1
    """Mean rate of each further task among the rows whose first task is 1 (0 < task_rate < 1)."""

    def __post_init__(self) -> None:
        if isinstance(self.tasks, list):  # a list from a JSON truth file or a caller: keep the frozen spec hashable
            object.__setattr__(self, "tasks", tuple(self.tasks))
        _validate(self)

    @property
    def label_names(self) -> tuple[str, ...]:
        """The label columns, in order: the task names, or ``("label",)``."""
        return self.tasks if self.tasks is not None else ("label",)


def _validate(spec: SynthSpec) -> None:
    """Raise :class:`ValueError` naming the first invalid field of ``spec``."""

    def bad(name: str, allowed: str) -> ValueError:
        return ValueError(f"SynthSpec.{name}={getattr(spec, name)!r} is invalid: {allowed}")

    for name in ("rows", "dense", "sparse", "max_cardinality", "seed", "chunk_rows"):
        if not _is_int(getattr(spec, name)):
            raise bad(name, "must be an integer")
    for name in ("base_rate", "zipf_exponent"):
        value = getattr(spec, name)
        if not _is_real(value) or not math.isfinite(float(value)):
            raise bad(name, "must be a finite number")
    if spec.rows < 1:
        raise bad("rows", "must be >= 1")
    if spec.dense < 0:
        raise bad("dense", "must be >= 0")
    if spec.sparse < 4:
        raise bad(
            "sparse",
            "must be >= 4 (the planted interactions need single-id s0, s1 and s2; the last column is a list)",
        )
    if not 0.0 < spec.base_rate < 1.0:
        raise bad("base_rate", "must satisfy 0 < base_rate < 1")
    if not 1 <= spec.max_cardinality <= MAX_CARDINALITY_CAP:
        raise bad("max_cardinality", f"must satisfy 1 <= max_cardinality <= {MAX_CARDINALITY_CAP:,}")
    if not 0.0 <= spec.zipf_exponent <= 10.0:
        raise bad("zipf_exponent", "must satisfy 0 <= zipf_exponent <= 10")
    if spec.seed < 0:
        raise bad("seed", "must be >= 0")
    if not 1 <= spec.chunk_rows <= MAX_CHUNK_ROWS:
        raise bad("chunk_rows", f"must satisfy 1 <= chunk_rows <= {MAX_CHUNK_ROWS:,}")
    features = {*(f"d{k}" for k in range(spec.dense)), *(f"s{j}" for j in range(spec.sparse))}
    if spec.tasks is not None:
        problem = _tasks_problem(spec.tasks, features, spec.target)
        if problem:
            raise bad("tasks", problem)
    if not _is_real(spec.task_rate) or not 0.0 < float(spec.task_rate) < 1.0:
        raise bad("task_rate", "must satisfy 0 < task_rate < 1 (e.g. 0.1: one click in ten converts)")
    if spec.target is not None:
        taken = {"label", *spec.label_names, *features}
        if not isinstance(spec.target, str) or not spec.target or spec.target in taken:
            raise bad("target", "must be a column name other than label, d0.. and s0.. (e.g. 'amount')")
    if not _is_real(spec.target_noise) or not 0.0 < float(spec.target_noise) < math.inf:
        raise bad("target_noise", "must be a finite number > 0")


def _tasks_problem(tasks: object, features: set[str], target: str | None) -> str:
    """Why ``tasks`` cannot name the label columns ("" when it can)."""
    example = "e.g. ('click', 'conversion'), on the command line --tasks click,conversion"
    if not isinstance(tasks, tuple) or not all(isinstance(name, str) for name in tasks):
        return f"must be a tuple of task names, {example}"
    if len(tasks) < 2:
        return (f"must name two or more tasks (the first is the click label, each further one a post-click "
                f"event), {example}; without tasks the log has the single column 'label'")
    for i, name in enumerate(tasks):
        if not name.strip():
            return f"task {i + 1} has an empty name; give every task a name, {example}"
        if tasks.count(name) > 1:
            return f"task names must be distinct, {name!r} is given {tasks.count(name)} times"
        if name in features:
            return (f"task {name!r} collides with a feature column (d0.., s0..); "
                    f"choose another name, {example}")
        if name == target:
            return f"task {name!r} is also the numeric target's name; give the target or the task another name"
    return ""
