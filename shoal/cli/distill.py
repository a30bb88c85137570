"""``shoal distill`` and ``shoal compress``: the commands over :mod:`shoal.distill` and :mod:`shoal.compress.search`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from shoal.cli.common import (
    AliasOption,
    HomeOption,
    RegisterOption,
    console,
    home_dir,
    print_run,
    register_choice,
    training_progress,
    user_errors,
)
from shoal.training.progress import RichCallbacks

__all__ = ["register"]

_Temperature = Annotated[float, typer.Option(help="Softens the teacher's outputs: sigmoid/softmax(logits / T).")]
_Alpha = Annotated[float, typer.Option(help="Weight of the hard labels (1 - alpha: of the teacher's soft targets).")]


def _quality(metrics: dict[str, Any], split: str) -> str:
    from shoal.metrics import headline

    found = headline(metrics, f"{split}_")
    return "-" if found is None else f"{found[1]:.4f} ({found[0]})"


def distill(
    runs: Annotated[list[str], typer.Argument(
        help="The teacher: run id (or prefix, or 'latest'). Several runs: an ensemble of teachers trained on the "
             "same data, whose probabilities are averaged.", show_default=False)],
    student: Annotated[str, typer.Option("--student", help="A model name (logistic, mlp, bag, dlrm) or a YAML "
                                                           "config reading the teacher's data.")],
    temperature: _Temperature = 2.0,
    alpha: _Alpha = 0.5,
    transfer: Annotated[Path | None, typer.Option(help="Unlabeled rows the teacher labels for the student.")] = None,
    augment: Annotated[int, typer.Option(
        "--augment", metavar="K", help="Make K new rows from each training row (texts: word masking and n-gram "
        "sampling; other columns: MUNGE), for the teacher to label; the student learns them from its soft "
        "targets only. 0: off.")] = 0,
    epochs: Annotated[int | None, typer.Option(help="Student epochs (default: the teacher's).")] = None,
    home: HomeOption = None,
) -> None:
    """Train a student on the teacher's temperature-softened outputs mixed with the hard labels (several
    teachers: on their ensemble, the mean of their probabilities)."""
    from shoal.artifacts.registry import Registry
    from shoal.distill import Augmentation
    from shoal.distill import distill as run_distill

    with user_errors():
        h = home_dir(home)
        registry = Registry(h)
        teachers = [registry.get(run) for run in runs]
        ids = [t.run_id for t in teachers]
        augmentation = Augmentation(copies=augment)  # a bad K fails here, before any work
        if augment:
            console.print(f"augmenting the training rows: {augment} new rows from each; the teacher scores them "
                          "before training starts (shoal -v distill ... logs the progress)")
        with training_progress() as progress:
            record = run_distill(ids, student, h, temperature=temperature, alpha=alpha, transfer=transfer,
                                 augment=augmentation, callbacks=RichCallbacks(progress),
                                 train={"epochs": epochs} if epochs else None)
        print_run(record)
        settings = record.summary.get("distill") or {}
        if settings.get("augment"):
            console.print(f"augmented transfer set: {settings['augment']['rows']:,} rows ({augment} per training "
                          "row), soft targets only")
        title = f"teacher {ids[0]}" if len(ids) == 1 else f"{len(ids)} teachers"
        table = Table(title=f"{title} -> student {record.run_id} (T={temperature:g}, a={alpha:g})")
        for col in ("", "model", "valid", "test"):
            table.add_column(col, justify="left" if col in ("", "model") else "right")
        for i, teacher in enumerate(teachers, 1):
            table.add_row("teacher" if len(teachers) == 1 else f"teacher {i} ({teacher.run_id})",
                          str(teacher.config["model"]["name"]), _quality(teacher.metrics, "valid"),
                          _quality(teacher.metrics, "test"))
        table.add_row("student", str(record.config["model"]["name"]), _quality(record.metrics, "valid"),
                      _quality(record.metrics, "test"))
        console.print(table)
        compress_hint = f"   |   shoal compress {ids[0]} --budget-ms 0.1" if len(ids) == 1 else ""
        console.print(f"next: shoal export {record.run_id} --onnx   |   shoal bench {record.run_id}{compress_hint}")


def compress(
    run: Annotated[str, typer.Argument(help="The teacher: run id (or prefix, or 'latest').")],
    budget_ms: Annotated[float, typer.Option("--budget-ms", help="p99 milliseconds per row at batch 1.")],
    temperature: _Temperature = 2.0,
    alpha: _Alpha = 0.5,
    seconds: Annotated[float, typer.Option(help="Seconds of timed one-row calls per candidate.")] = 0.5,
    teacher: Annotated[bool, typer.Option("--teacher/--no-teacher", help="Let the teacher compete too.")] = True,
    register_as: RegisterOption = None,
    alias: AliasOption = None,
    home: HomeOption = None,
) -> None:
    """Distil students of several families and sizes, serve each as torch/ONNX x fp32/int8, and keep the most
    accurate one whose p99 latency (batch 1) is within the budget. Exit code 1 when none is. --register NAME
    registers the chosen one as a model version."""
    from shoal.artifacts.registry import Registry
    from shoal.compress.search import compress as run_compress

    with user_errors():
        h = home_dir(home)
        record = Registry(h).get(run)
        columns = (TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                   TimeElapsedColumn())
        with Progress(*columns, console=console) as progress:
            task = progress.add_task("compress", total=None)

            def tell(what: str, done: int, total: int) -> None:
                progress.update(task, description=what, completed=done, total=total)

            def training(label: str) -> RichCallbacks:
                cb = RichCallbacks(progress)
                cb.on_eval = lambda *a: None  # type: ignore[method-assign]  # one bar line per student is enough
                return cb

            result = run_compress(record.run_id, budget_ms, h, temperature=temperature, alpha=alpha, seconds=seconds,
                                  include_teacher=teacher, progress=tell, callbacks=training)
        metric = result.candidates[0].metric
        table = Table(title=f"compress {record.name} ({record.run_id}): budget p99 <= {budget_ms:g} ms per row, "
                            "raw row -> answer (encoder included)")
        for col in ("student", "system", f"valid {metric}", "p50 ms", "p99 ms", "model p99 ms", "size MiB",
                    "frontier", "budget"):
            table.add_column(col, justify="left" if col in ("student", "system") else "right")
        for c in sorted(result.candidates, key=lambda c: c.p99_ms):
            style = "bold green" if c is result.chosen else ""
            table.add_row(c.student, c.system, f"{c.quality:.4f}", f"{c.p50_ms:.3f}", f"{c.p99_ms:.3f}",
                          f"{c.model_p99_ms:.3f}", f"{c.size_mib:.2f}", "*" if c.on_frontier else "",
                          "ok" if c.within_budget else "over",
                          style=style)
        console.print(table)
        console.print(f"saved {result.png}")
        if result.chosen is None:
            n = result.nearest
            console.print(f"[bold red]no candidate meets p99 <= {budget_ms:g} ms[/]; the nearest is {n.name} at "
                          f"{n.p99_ms:.3f} ms (valid {metric} {n.quality:.4f}). Raise --budget-ms to at least "
                          f"{n.p99_ms:.3g}, or measure on a quieter machine.")
            raise typer.Exit(1)
        c = result.chosen
        console.print(f"[bold green]chosen:[/] {c.name}: valid {metric} {c.quality:.4f} at p99 {c.p99_ms:.3f} ms "
                      f"-> run {result.record.run_id} (bundle {result.record.summary['bundle']})")
        register_choice(h, register_as, alias, result.record.run_id,
                        f"chosen by shoal compress: {c.name}, p99 {c.p99_ms:.3f} ms <= {budget_ms:g} ms")
        console.print(f"next: shoal show {result.record.run_id}   |   shoal serve {result.record.run_id}")


def register(app: typer.Typer) -> None:
    """Add ``distill`` and ``compress`` to the ``shoal`` command line."""
    app.command("distill")(distill)
    app.command("compress")(compress)
