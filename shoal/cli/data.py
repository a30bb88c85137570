"""``shoal synth`` and ``shoal inspect``: the commands over :mod:`shoal.data.synthetic` and :mod:`shoal.inspect`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from shoal.cli.common import console, user_errors

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add ``synth`` and ``inspect`` to the ``shoal`` command line."""
    app.command()(synth)
    app.command()(inspect)


def synth(
    out: Annotated[Path, typer.Argument(help="Parquet file to write.")] = Path("data/synthetic.parquet"),
    rows: int = 200_000,
    dense: int = 13,
    sparse: int = 26,
    base_rate: float = 0.03,
    max_cardinality: int = 1_000_000,
    seed: int = 0,
    target: Annotated[str | None, typer.Option(help="Also write a numeric target column of this name (a "
                                                    "regression label: 10 x the planted logit + noise).")] = None,
    target_noise: Annotated[float, typer.Option(help="Standard deviation of the target's noise: the best "
                                                     "RMSE any model can reach.")] = 5.0,
    tasks: Annotated[str | None, typer.Option(help="Several binary labels, comma-separated (e.g. click,conversion): "
                                                   "the first names the click label, each further one is a planted "
                                                   "post-click event, 1 only where the first is 1.")] = None,
    task_rate: Annotated[float, typer.Option(help="Rate of each further task among the rows whose first task is "
                                                  "1 (with --tasks).")] = 0.1,
) -> None:
    """Write a synthetic click log with a known ground truth (and its Bayes-optimal AUC/NE per task)."""
    from shoal.data.synthetic import SynthSpec, generate

    with user_errors():
        names = None if tasks is None else tuple(name.strip() for name in tasks.split(","))
        spec = SynthSpec(rows=rows, dense=dense, sparse=sparse, base_rate=base_rate,
                         max_cardinality=max_cardinality, seed=seed, target=target, target_noise=target_noise,
                         tasks=names, task_rate=task_rate)
        out.parent.mkdir(parents=True, exist_ok=True)
        with Progress(TextColumn("synth"), BarColumn(), TextColumn("{task.completed:,}/{task.total:,} rows"),
                      TimeElapsedColumn(), console=console) as progress:
            task = progress.add_task("synth", total=rows)
            truth = generate(out, spec, progress=lambda n: progress.update(task, completed=n))
        if not truth.tasks:
            console.print(f"wrote {out} ({rows:,} rows): base rate {truth.base_rate:.4f}, "
                          f"Bayes-optimal AUC {truth.bayes_auc:.4f}, NE {truth.bayes_ne:.4f}")
        else:
            console.print(f"wrote {out} ({rows:,} rows, {len(truth.tasks)} tasks):")
            first = truth.tasks[0]
            for each in truth.tasks:
                share = each.base_rate / max(first.base_rate, 1e-12)  # a further task is 1 only where the first is
                among = "" if each is first else f" ({share:.1%} of {first.name})"
                console.print(f"  {each.name}: base rate {each.base_rate:.4f}{among}, "
                              f"Bayes-optimal AUC {each.bayes_auc:.4f}, NE {each.bayes_ne:.4f}")
        if target is not None:
            console.print(f"numeric target {target!r}: noise floor RMSE {truth.target_rmse:.4g}, "
                          f"best R^2 {truth.target_r2:.4f}")


def inspect(
    file: Annotated[Path, typer.Argument(help="CSV/TSV/Parquet/JSONL file.")],
    label: Annotated[str | None, typer.Option(help="The label column (guessed when omitted); several, comma-"
                                                   "separated (click,conversion): a multitask label.")] = None,
    write: Annotated[Path | None, typer.Option("--write", "-w", help="Write a starter config here.")] = None,
    max_rows: int = 200_000,
    header: Annotated[bool | None, typer.Option(
        "--header/--no-header", help="Whether the first line of a CSV/TSV names the columns (default: guessed).",
        show_default=False)] = None,
    label_kind: Annotated[str | None, typer.Option(
        "--label-kind", help="binary, multiclass, regression or multilabel: the label's kind when the guess is wrong "
                             "(e.g. integer class codes read as a number). Default: guessed.",
        show_default=False)] = None,
) -> None:
    """Infer a schema: columns, kind, cardinality, missing rate; optionally write a starter config."""
    from shoal.inspect import inspect_file, starter_config

    with user_errors():
        profile = inspect_file(file, label=label, max_rows=max_rows, header=header, label_kind=label_kind)
        table = Table(title=f"{file} ({profile.format}, {profile.rows:,} rows read, "
                            f"header: {'yes' if profile.header else 'no'})")
        for col in ("column", "kind", "type", "distinct", "missing %", "example", "why"):
            table.add_column(col)
        for c in profile.columns:
            distinct = f"{'>=' if c.cardinality_capped else ''}{c.cardinality:,}"
            table.add_row(c.name, c.kind, c.dtype, distinct, f"{c.missing_pct:.1f}", str(c.example)[:24], c.reason)
        console.print(table)
        if profile.bad_rows:
            why = ", ".join(f"{reason}: {n:,}" for reason, n in profile.bad_reasons)
            rows = f"{profile.bad_rows:,} row{'s' if profile.bad_rows != 1 else ''}"
            console.print(f"[yellow]warning: {rows} could not be read ({why}) and are left out of these figures; "
                          "the starter config sets such rows aside (data.on_bad_rows: quarantine), and `shoal "
                          "train` counts them and writes each with its line to the quarantine file[/]",
                          highlight=False)
        if profile.label is not None and label is None:
            why = profile.column(profile.label).reason
            others = f"; other candidates: {', '.join(profile.label_candidates)}" if profile.label_candidates else ""
            style = "bold yellow" if "GUESSED" in why else "bold"
            console.print(f"[{style}]label: {profile.label}[/] ({why}){others}", highlight=False)
        if write is not None:
            write.parent.mkdir(parents=True, exist_ok=True)
            write.write_text(starter_config(profile, write), encoding="utf-8")
            console.print(f"wrote starter config {write}; train it with: shoal train {write}")
