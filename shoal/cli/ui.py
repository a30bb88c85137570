"""``shoal ui``: the registry in a browser (:mod:`shoal.ui`)."""

from __future__ import annotations

from typing import Annotated

import typer

from shoal.cli.common import HomeOption, console, err_console, home_dir, user_errors

__all__ = ["register"]

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def register(app: typer.Typer) -> None:
    """Add ``ui`` to the ``shoal`` command line."""
    app.command()(ui)


def ui(
    host: Annotated[str, typer.Option(help="Address to bind; anything but loopback is reachable by others.")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8050,
    admin_token: Annotated[str | None, typer.Option(
        "--admin-token", envvar="SHOAL_ADMIN_TOKEN", show_default=False,
        help="Token needed to move a model alias from the page; without one the UI is read-only.")] = None,
    home: HomeOption = None,
) -> None:
    """The registry in a browser: runs (sort, filter, search), a run's page (metrics, curves, confusion matrix,
    lineage, config), 2-5 runs compared, models and aliases. Works offline."""
    with user_errors():
        import uvicorn

        from shoal.artifacts.registry import DB_FILENAME
        from shoal.ui.app import create_ui_app

        h = home_dir(home)
        if not (h / DB_FILENAME).is_file():
            raise FileNotFoundError(f"no registry at {h}: train something first, or point --home (or SHOAL_HOME) at "
                                    "one")
        if host not in _LOOPBACK:
            err_console.print(f"[yellow]warning:[/] binding {host}: the runs are readable from other machines")
        mode = "aliases can be moved with the token" if admin_token else "read-only"
        console.print(f"shoal ui on http://{host}:{port}/ (registry {h}; {mode})")
        uvicorn.run(create_ui_app(h, admin_token), host=host, port=port, log_level="warning")
