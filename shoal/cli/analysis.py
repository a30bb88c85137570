"""``shoal explain`` and ``shoal drift``: the commands over :mod:`shoal.analysis`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from shoal.cli.common import HomeOption, console, home_dir, user_errors

__all__ = ["register"]

RowsOption = Annotated[int, typer.Option("--rows", help="Rows compared at most (a uniform sample, seeded).")]
SeedOption = Annotated[int, typer.Option("--seed", help="Seed of the sample and the shuffles.")]
JsonOption = Annotated[Path | None, typer.Option("--json", help="Also write the result to this JSON file.")]


def register(app: typer.Typer) -> None:
    """Add ``explain`` and ``drift`` to the ``shoal`` command line."""
    app.command()(explain)
    app.command()(drift)


def _write_json(path: Path | None, doc: dict[str, Any]) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    console.print(f"wrote {path}")


def explain(
    run: Annotated[str, typer.Argument(help="Run id, prefix, 'latest', NAME@ALIAS or a bundle folder.")],
    data: Annotated[Path | None, typer.Option("--data", help="A labelled file (default: the run's validation rows).")]
    = None,
    json_out: JsonOption = None,
    rows: RowsOption = 20_000,
    repeats: Annotated[int, typer.Option("--repeats", help="Shuffles per feature.")] = 3,
    seed: SeedOption = 0,
    home: HomeOption = None,
) -> None:
    """Permutation importance: the drop of the run's main metric (AUC, accuracy, R^2) when each feature is shuffled;
    a table, and a bar chart in the run folder."""
    from shoal.analysis import explain as run_explain

    with user_errors():
        result = run_explain(run, home_dir(home), data, rows=rows, repeats=repeats, seed=seed)
        console.print(f"{result.rows:,} rows of {result.source}: {result.metric} {result.baseline:.4f} with nothing "
                      f"shuffled; each feature shuffled {result.repeats} times", highlight=False)
        table = Table(title=f"permutation importance, run {result.run}")
        for col, justify in (("#", "right"), ("feature", "left"), ("kind", "left"), (f"drop in {result.metric}",
                             "right"), ("± std", "right")):
            table.add_column(col, justify=justify)  # type: ignore[arg-type]
        for k, imp in enumerate(result.importances, 1):
            style = "bold" if imp.drop > 2 * imp.std and imp.drop > 0 else "dim" if imp.drop <= imp.std else ""
            table.add_row(str(k), imp.feature, imp.kind, f"{imp.drop:.4f}", f"{imp.std:.4f}", style=style)
        console.print(table)
        if result.bad_rows:
            console.print(f"[yellow]{result.bad_rows} rows of the sample could not be encoded and were left out[/]")
        if result.png is not None:
            console.print(f"saved {result.png}")
        _write_json(json_out, result.to_dict())


def drift(
    run: Annotated[str, typer.Argument(help="Run id, prefix, 'latest', NAME@ALIAS or a bundle folder.")],
    data: Annotated[Path, typer.Option("--data", help="The new file, with the run's feature columns.")],
    json_out: JsonOption = None,
    threshold: Annotated[float, typer.Option("--threshold", help="Flag a feature whose PSI is above this.")] = 0.2,
    rows: RowsOption = 20_000,
    seed: SeedOption = 0,
    strict: Annotated[bool, typer.Option("--strict", help="Exit with code 1 when a feature is flagged.")] = False,
    home: HomeOption = None,
) -> None:
    """Per-feature drift of a new file against the run's training data: population stability index, unseen ids,
    text lengths; features above the threshold are flagged."""
    from shoal.analysis import drift as run_drift

    with user_errors():
        report = run_drift(run, data, home_dir(home), threshold=threshold, rows=rows, seed=seed)
        table = Table(title=f"drift: {report.data} ({report.rows:,} rows) against run {report.run}'s training data "
                            f"({report.reference_rows:,} rows of {report.reference})")
        for col, justify in (("feature", "left"), ("kind", "left"), ("PSI", "right"), ("unseen ids", "right"),
                             ("missing (train -> new)", "right"), ("", "left"), ("why", "left")):
            table.add_column(col, justify=justify)  # type: ignore[arg-type]
        for f in report.features:
            missing = (f"{f.stats['train_missing']:.1%} -> {f.stats['missing']:.1%}" if "missing" in f.stats else "")
            table.add_row(f.feature, f.kind, "" if f.psi is None else f"{f.psi:.3f}",
                          "" if f.oov_rate is None else f"{f.oov_rate:.1%}", missing,
                          "[bold red]DRIFT[/]" if f.flagged else "", f.why)
        console.print(table)
        flagged = report.flagged
        console.print(f"[bold red]{len(flagged)} feature(s) drifted[/] (threshold {report.threshold:g}): "
                      f"{', '.join(flagged)}" if flagged else f"no feature above the threshold {report.threshold:g}")
        _write_json(json_out, report.to_dict())
    if strict and flagged:
        raise typer.Exit(1)
