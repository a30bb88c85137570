"""Multi-task against two single-task models on a click log with a planted post-click conversion, same splits.

    python benchmarks/multitask.py --json OUT.json [--quick] [--rows N] [--seed S]

Data: ``shoal synth --tasks click,conversion`` (``generate(path, SynthSpec(rows, tasks=("click", "conversion"),
base_rate, task_rate))``: 13 dense and 26 sparse columns, the planted click and a conversion that can only follow a
click, whose logit shares 0.8 of the click's planted effects and adds ids of its own), 300,000 rows (60,000 with
``--quick``), split 80/10/10 by row into three Parquet files. Every system trains on the same training file,
selects (early stopping) on the same validation file and is scored on the same test file.

Systems: the demo's DLRM (``shoal.cli.demo.synthetic_config``: 16-d embeddings, bottom MLP [64, 32], top MLP
[128, 64], 100,000 buckets per id column, 2 epochs, batch 512, Adam 1e-3 and Adagrad 0.05 on the embeddings,
early stopping patience 1), with the same model and training settings for each:

- ``single-click``: ``label: {column: click}``;
- ``single-conversion``: ``label: {column: conversion}``;
- ``shared_bottom``, ``mmoe``: ``label: {kind: multitask, tasks: [click, conversion], heads: {kind: ...}}`` with
  the heads' defaults (width 64, towers [32]; MMoE 4 experts of [64]);
- ``bayes``: the true probabilities of the generator (each task's ceiling, over all rows of the log).

Rows ``{bench, dataset, system, metric, value}``: test ``{task}_auc`` and ``{task}_ne`` (NE with the training
base rate), ``valid_{task}_auc`` (what a setting may be chosen on), ``train_s`` (wall seconds of ``shoal.train``,
the encoder pass and the bundle write included), and for each multitask system ``conversion_auc_gain_vs_single``
(its test conversion AUC minus the single-task model's) and ``conversion_lift_ratio_vs_single`` (its AUC lift above
0.5 over the single-task model's). The bar: multi-task >= the single-task model on the sparser task's AUC.
"""

from __future__ import annotations

import argparse
import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

try:
    from benchmarks.common import markdown_table, row, timer, write_json
except ImportError:  # pragma: no cover - run as a script
    from common import markdown_table, row, timer, write_json  # type: ignore[no-redef]

BENCH = "multitask"
DATASET = "synth_tasks"
TASKS = ("click", "conversion")
SPARSE_TASK = "conversion"
ROWS, QUICK_ROWS = 300_000, 60_000
BASE_RATE, TASK_RATE = 0.1, 0.1  # click 10 %, conversion 10 % of clicks: 1 % of rows
BUCKETS = 100_000  # embedding rows per id column, as the demo's
SYSTEMS = ("single-click", "single-conversion", "shared_bottom", "mmoe", "bayes")
METRICS = (*(f"{t}_{m}" for t in TASKS for m in ("auc", "ne")), *(f"valid_{t}_auc" for t in TASKS), "train_s",
           "conversion_auc_gain_vs_single", "conversion_lift_ratio_vs_single")


@dataclass(frozen=True)
class Splits:
    """The three Parquet files and each task's Bayes ceiling (``{task: (auc, ne)}``)."""

    train: Path
    valid: Path
    test: Path
    bayes: dict[str, tuple[float, float]] = field(default_factory=dict)


def make_splits(root: Path, rows: int, seed: int = 0) -> Splits:
    """Generate the two-task log under ``root`` and split it 80/10/10 by row into train/valid/test Parquet files."""
    from shoal.data.synthetic import SynthSpec, generate

    log = root / "log.parquet"
    truth = generate(log, SynthSpec(rows=rows, tasks=TASKS, base_rate=BASE_RATE, task_rate=TASK_RATE, seed=seed))
    table = pq.read_table(log)
    a, b = int(0.8 * rows), int(0.9 * rows)
    paths = {name: root / f"{name}.parquet" for name in ("train", "valid", "test")}
    for path, (lo, hi) in zip(paths.values(), ((0, a), (a, b), (b, rows)), strict=True):
        pq.write_table(table.slice(lo, hi - lo), path)
    bayes = {t.name: (t.bayes_auc, t.bayes_ne) for t in truth.tasks}
    print(", ".join(f"{t.name}: base rate {t.base_rate:.4f}, Bayes AUC {t.bayes_auc:.4f}, NE {t.bayes_ne:.4f}"
                    for t in truth.tasks), flush=True)
    return Splits(paths["train"], paths["valid"], paths["test"], bayes)


def config(splits: Splits, system: str, overrides: dict[str, Any] | None = None, buckets: int = BUCKETS
           ) -> dict[str, Any]:
    """The demo's DLRM config on ``splits`` with the label of ``system``; ``overrides`` updates sections such as
    ``train`` or ``label`` (the tiny test's settings, or a setting tried on validation)."""
    from shoal.cli.demo import synthetic_config

    cfg = synthetic_config(splits.train, buckets=buckets).model_dump(mode="json", exclude_unset=True)
    cfg["name"] = f"multitask-bench-{system}"
    cfg["data"] = {"train": str(splits.train), "valid": str(splits.valid), "test": str(splits.test),
                   "chunk_rows": cfg["data"]["chunk_rows"]}
    if system.startswith("single-"):
        cfg["label"] = {"column": system.removeprefix("single-")}
    else:
        cfg["label"] = {"kind": "multitask", "tasks": [{"column": t} for t in TASKS], "heads": {"kind": system}}
    cfg["train"] = {**cfg["train"], "pictures": False}
    for section, values in (overrides or {}).items():
        cfg[section] = {**cfg[section], **values}
    return cfg


def train_one(splits: Splits, system: str, home: Path, overrides: dict[str, Any] | None = None,
              buckets: int = BUCKETS) -> tuple[dict[str, float], float]:
    """Train ``system`` on ``splits``: its metrics as ``{task}_auc``, ``{task}_ne``, ``valid_{task}_auc``, and the
    wall seconds of ``shoal.train``."""
    import shoal
    from shoal.config import parse_config

    cfg = parse_config(config(splits, system, overrides, buckets), source=f"benchmarks/multitask.py {system}")
    with timer() as t:
        record = shoal.train(cfg, home=home)
    m = record.metrics
    tasks = [system.removeprefix("single-")] if system.startswith("single-") else list(TASKS)
    out: dict[str, float] = {}
    for task in tasks:
        key = "" if system.startswith("single-") else f"{task}."
        out[f"{task}_auc"] = float(m[f"test_{key}auc"])
        out[f"{task}_ne"] = float(m[f"test_{key}ne"])
        out[f"valid_{task}_auc"] = float(m[f"valid_{key}auc"])
    return out, t.seconds


def run(rows: int, root: Path, overrides: dict[str, Any] | None = None, buckets: int = BUCKETS,
        systems: Sequence[str] = SYSTEMS[:-1], seed: int = 0) -> list[dict[str, Any]]:
    """Generate the log (``seed``) under ``root``, train every system on it and return the benchmark's rows."""
    splits = make_splits(root, rows, seed)
    results: dict[str, dict[str, float]] = {}
    for system in systems:
        scores, seconds = train_one(splits, system, root / "home", overrides, buckets)
        results[system] = {**scores, "train_s": seconds}
        print(f"{system}: " + ", ".join(f"{k} {v:.4f}" for k, v in results[system].items()), flush=True)
    results["bayes"] = {f"{t}_{m}": v for t, (auc, ne) in splits.bayes.items()
                        for m, v in (("auc", auc), ("ne", ne)) if math.isfinite(v)}
    single = results.get(f"single-{SPARSE_TASK}", {}).get(f"{SPARSE_TASK}_auc")
    for system in ("shared_bottom", "mmoe"):
        if single is None or system not in results:
            continue
        auc = results[system][f"{SPARSE_TASK}_auc"]
        results[system]["conversion_auc_gain_vs_single"] = auc - single
        if single > 0.5:
            results[system]["conversion_lift_ratio_vs_single"] = (auc - 0.5) / (single - 0.5)
    return [row(BENCH, DATASET, system, metric, value) for system, scores in results.items()
            for metric, value in scores.items()]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", required=True, help="Write the rows here.")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_ROWS:,} rows instead of {ROWS:,}.")
    parser.add_argument("--rows", type=int, default=None, help="Rows of the log (overrides --quick).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the log (its parameters and rows).")
    args = parser.parse_args(argv)
    rows = args.rows or (QUICK_ROWS if args.quick else ROWS)
    with tempfile.TemporaryDirectory() as tmp:
        rows_out = run(rows, Path(tmp), seed=args.seed)
    write_json(rows_out, args.json)
    print(markdown_table(rows_out, index=["dataset", "system"], columns="metric",
                         column_order=[m for m in METRICS if any(r["metric"] == m for r in rows_out)]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
