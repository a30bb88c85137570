"""``shoal register``, ``alias`` and ``models``: named model versions and their aliases
(:mod:`shoal.artifacts.models`); ``shoal gc``: the disk finished runs no longer need (:mod:`shoal.artifacts.gc`)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.markdown import Markdown
from rich.table import Table

from shoal.cli.common import HomeOption, console, home_dir, user_errors

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add ``register``, ``alias``, ``models`` and ``gc`` to the ``shoal`` command line."""
    app.command("register")(register_)
    app.command()(alias)
    app.command()(models)
    app.command()(card)
    app.command()(gc)
    app.command("export-mlflow")(export_mlflow)


def register_(
    run: Annotated[str, typer.Argument(help="The run to register: id, prefix or 'latest'.")],
    name: Annotated[str, typer.Argument(help="The model's name, e.g. ctr-feed.")],
    alias_: Annotated[str | None, typer.Option("--alias", help="Also point this alias at the new version.")] = None,
    note: Annotated[str, typer.Option(help="A note kept with the version.")] = "",
    home: HomeOption = None,
) -> None:
    """Register a completed run as the next version of a named model."""
    from shoal.artifacts.models import ModelRegistry

    with user_errors():
        v = ModelRegistry(home_dir(home)).register(name, run, alias=alias_, note=note)
        console.print(f"registered run {v.run_id} as [bold]{v.ref}[/]"
                      + (f"; {name}@{alias_} -> v{v.version}" if alias_ else ""))


def alias(
    ref: Annotated[str, typer.Argument(help="NAME@ALIAS, e.g. ctr-feed@production.")],
    version: Annotated[str | None, typer.Argument(help="The version it points at: 3 or v3.")] = None,
    delete: Annotated[bool, typer.Option("--delete", help="Remove the alias.")] = False,
    home: HomeOption = None,
) -> None:
    """Point an alias at a version (atomically), or remove it with --delete."""
    from shoal.artifacts.models import ModelRegistry, split_ref

    with user_errors():
        name, label = split_ref(ref)
        if not label:
            raise ValueError(f"{ref!r}: expected NAME@ALIAS, e.g. ctr-feed@production")
        registry = ModelRegistry(home_dir(home))
        if delete:
            registry.delete_alias(name, label)
            console.print(f"removed {name}@{label}")
            return
        if version is None:
            raise ValueError("give the VERSION the alias points at (e.g. 3 or v3), or --delete")
        number = int(version.lstrip("vV")) if version.lstrip("vV").isdigit() else None
        if number is None:
            raise ValueError(f"version {version!r} is not a number such as 3 or v3")
        before = registry.set_alias(name, label, number)
        console.print(f"{name}@{label} -> v{number}" + (f" (was v{before})" if before is not None else ""))


def models(
    name: Annotated[str | None, typer.Argument(help="Only this model's versions.")] = None,
    home: HomeOption = None,
) -> None:
    """The registered models: versions, their runs, aliases and validation metric."""
    from shoal.artifacts.models import ModelRegistry
    from shoal.artifacts.registry import Registry

    with user_errors():
        h = home_dir(home)
        versions = ModelRegistry(h).versions(name)
        if not versions:
            console.print("no model is registered" + (f" under {name!r}" if name else "")
                          + "; register a run with `shoal register RUN NAME`")
            return
        runs = Registry(h)
        table = Table(title=f"models in {h}")
        for col in ("model", "version", "aliases", "run", "valid metric", "registered", "note"):
            table.add_column(col)
        from shoal.metrics import headline

        for v in versions:
            metrics = runs.get(v.run_id).metrics
            found = headline(metrics, "valid_") or headline(metrics, "test_")
            shown = f"{found[0]} {found[1]:.4f}" if found else "-"
            table.add_row(v.name, f"v{v.version}", ", ".join(v.aliases), v.run_id, shown,
                          time.strftime("%Y-%m-%d %H:%M", time.localtime(v.created_at)), v.note)
        console.print(table)


def _bytes(n: int) -> str:
    """1,234,567 -> '1.2 MB'."""
    size = float(n)
    for unit in ("B", "KB", "MB"):
        if size < 1024:
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1024
    return f"{size:,.1f} GB"


def gc(
    keep_last: Annotated[int, typer.Option("--keep-last", min=0, help="Leave the N most recent runs whole.")] = 5,
    failed: Annotated[bool, typer.Option("--failed", help="Also delete the files of failed and killed runs "
                                                          "(they can then not be resumed).")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Delete; without it, only show what would go.")] = False,
    home: HomeOption = None,
) -> None:
    """Free disk: checkpoints of finished runs (and, with --failed, failed runs' files). Registered model versions,
    running runs and the most recent runs are never touched. Shows what it frees; deletes only with --yes."""
    from shoal.artifacts.gc import apply_gc, plan_gc

    with user_errors():
        plan = plan_gc(home_dir(home), keep_last=keep_last, failed=failed)
        if not plan.items:
            console.print(f"nothing to free ({len(plan.kept)} runs kept whole)")
            return
        table = Table(title=f"{'deleting' if yes else 'would delete'} {_bytes(plan.bytes)}")
        for col in ("run", "status", "frees", "files", "why"):
            table.add_column(col)
        for item in plan.items:
            names = ", ".join(p.name for p in item.paths[:4]) + (", ..." if len(item.paths) > 4 else "")
            table.add_row(item.run_id, item.status, _bytes(item.bytes), names, item.why)
        console.print(table)
        kept = sorted(set(plan.kept.values()))
        console.print(f"kept whole: {len(plan.kept)} runs ({'; '.join(kept)})" if kept else "", highlight=False)
        if not yes:
            console.print("nothing deleted: run again with --yes to delete these files")
            return
        console.print(f"freed {_bytes(apply_gc(plan))}")


def card(
    ref: Annotated[str, typer.Argument(help="NAME@ALIAS, NAME@v3, NAME, or a run id / prefix / 'latest'.")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write the Markdown here instead of printing.")]
    = None,
    home: HomeOption = None,
) -> None:
    """A model card in Markdown: versions, lineage (data hashes, teachers), label and features, metrics, latency,
    limits, pictures."""
    from shoal.artifacts.card import model_card

    with user_errors():
        text = model_card(ref, home_dir(home))
        if out is None:
            console.print(Markdown(text))
            return
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
        console.print(f"wrote {out}")


def export_mlflow(
    run: Annotated[str, typer.Argument(help="Run id, prefix, 'latest' or NAME@ALIAS.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The MLflow file store (mlruns folder).")] = Path("mlruns"),
    home: HomeOption = None,
) -> None:
    """Write a run in MLflow's file-store format (params, metrics with their history, tags, bundle and pictures as
    artifacts), for `mlflow ui --backend-store-uri OUT`."""
    from shoal.artifacts.mlflow_export import export_mlflow as write
    from shoal.artifacts.refs import model_run

    with user_errors():
        h = home_dir(home)
        folder = write(model_run(run, h), h, out)
        console.print(f"wrote {folder}\nsee it: MLFLOW_ALLOW_FILE_STORE=true mlflow ui --backend-store-uri {out} "
                      f"(MLflow 3 asks for the variable, or `mlflow migrate-filestore` to move it into a database)",
                      highlight=False)
