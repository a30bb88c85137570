"""``shoal register``, ``alias`` and ``models``: named model versions and their aliases
(:mod:`shoal.artifacts.models`)."""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.table import Table

from shoal.cli.common import HomeOption, console, home_dir, user_errors

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add ``register``, ``alias`` and ``models`` to the ``shoal`` command line."""
    app.command("register")(register_)
    app.command()(alias)
    app.command()(models)


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
        for v in versions:
            metrics = runs.get(v.run_id).metrics
            key = next((k for k in ("valid_auc", "valid_accuracy", "test_auc", "test_accuracy") if k in metrics), None)
            shown = f"{key.split('_', 1)[1]} {metrics[key]:.4f}" if key else "-"
            table.add_row(v.name, f"v{v.version}", ", ".join(v.aliases), v.run_id, shown,
                          time.strftime("%Y-%m-%d %H:%M", time.localtime(v.created_at)), v.note)
        console.print(table)
