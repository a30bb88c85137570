"""``shoal serve`` and ``shoal predict``: registered on the main app by :func:`register`.

FastAPI, uvicorn and torch are imported inside the commands, so ``shoal --help`` stays fast.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from shoal.cli.common import HomeOption, console, err_console, home_dir, user_errors

if TYPE_CHECKING:
    import uvicorn
    from fastapi import FastAPI

    from shoal.serving.service import Service

__all__ = ["register", "worker_app", "worker_protocol"]

SPEC_ENV = "SHOAL_SERVE_SPEC"  # how `shoal serve --workers N` hands its options to the worker processes
_LOOPBACK = ("127.0.0.1", "localhost", "::1")
MAX_PORT = 65_535
LOOPS = ("auto", "uvloop", "asyncio")  # uvicorn's names; auto: uvloop where installed

BackendOption = Annotated[str, typer.Option(
    help="auto (where the bundle was exported with `shoal export`: PyTorch, ONNX Runtime and the raw graph timed "
         "end to end at the batch sizes served, each batch to the fastest; else PyTorch), torch, onnx, onnx-int8, "
         "onnx-fp16 or raw (the self-contained graph of `shoal export --raw`: preprocessing inside).")]


def register(app: typer.Typer) -> None:
    """Add ``serve`` and ``predict`` to the ``shoal`` command."""
    app.command()(serve)
    app.command()(predict)


def serve(
    run: Annotated[str, typer.Argument(help="Run id (or prefix, or 'latest'), model (NAME@ALIAS) or bundle folder.")],
    host: Annotated[str, typer.Option(help="Address to bind; anything but loopback is reachable by others.")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port, 0 to 65535 (0: a free port the system picks).")] = 8000,
    workers: Annotated[int, typer.Option(help="Server processes (each loads the model).")] = 1,
    admin_token: Annotated[str | None, typer.Option(
        "--admin-token", envvar="SHOAL_ADMIN_TOKEN", show_default=False,
        help="Token for /admin/* (header 'Authorization: Bearer TOKEN'); admin endpoints are off without one.",
    )] = None,
    max_batch_rows: Annotated[int, typer.Option(help="Most rows per model call.")] = 256,
    max_wait_ms: Annotated[float, typer.Option(help="Most a request waits to be batched with others.")] = 2.0,
    batching: Annotated[bool, typer.Option(help="Merge concurrent requests into one model call.")] = True,
    max_rows_per_request: int = 1024,
    max_body_bytes: int = 1 << 20,
    body_timeout_s: Annotated[float, typer.Option(help="The whole body must arrive within this; else 408.")] = 10.0,
    header_timeout_s: Annotated[float, typer.Option(
        help="A request's headers must arrive within this of its first byte; else 408 and a close.")] = 10.0,
    max_text_bytes: Annotated[int, typer.Option(help="UTF-8 bytes per text field; over it: 422.")] = 65_536,
    max_id_bytes: Annotated[int, typer.Option(help="UTF-8 bytes per id; over it: 422.")] = 2048,
    max_list_ids: Annotated[int, typer.Option(help="Ids in one list feature's cell; over it: 422.")] = 1024,
    max_media_bytes: Annotated[int, typer.Option(
        help="Bytes of one image or audio value (base64 decoded, or a multipart file part); over it: 422 (a file "
             "part: 413). Media values are base64 or uploaded files, never paths; raise --max-body-bytes too for "
             "large ones.")] = 4 << 20,
    max_inflight_per_client: Annotated[int, typer.Option(
        help="Requests of one client in flight at once; one more: 429 with Retry-After.")] = 32,
    client_error_rate: Annotated[float, typer.Option(
        help="4xx answers a second one client may sustain (after a burst); past it: 429 (0: no limit).")] = 10.0,
    client_error_burst: Annotated[int, typer.Option(help="4xx answers one client may get in a burst.")] = 50,
    client_bytes_rate: Annotated[float, typer.Option(
        help="Request body bytes a second one client may sustain (after a burst); past it its next request waits, "
             "over 1 s: 429 (0: no limit).")] = float(8 << 20),
    client_bytes_burst: Annotated[int, typer.Option(help="Request body bytes one client may send at once.")] = 8 << 20,
    client_key: Annotated[str, typer.Option(
        help="One client is: ip, connection, or auto (per address; loopback per connection).")] = "auto",
    threads: Annotated[int | None, typer.Option(help="Torch threads per process (default: torch's).")] = None,
    access_log: Annotated[bool, typer.Option(help="Log every request (uvicorn access log).")] = False,
    backend: BackendOption = "auto",
    loop: Annotated[str, typer.Option(
        help="Event loop: auto (uvloop where installed, else asyncio's), uvloop or asyncio.")] = "auto",
    follow_s: Annotated[float, typer.Option(
        "--follow-s", min=0, help="Serving NAME@ALIAS: check every this many seconds whether the alias moved, "
                                  "and swap to its version (0: never).")] = 2.0,
    home: HomeOption = None,
) -> None:
    """Serve a bundle over HTTP: POST /predict, /healthz, /readyz, /model, /metrics. SIGHUP reloads it; a model
    alias (NAME@ALIAS) is followed when it moves."""
    with user_errors():
        if not 0 <= port <= MAX_PORT:
            raise ValueError(f"--port {port}: a TCP port is 0 to {MAX_PORT} (0: a free port the system picks)")
        if loop not in LOOPS:
            raise ValueError(f"--loop {loop!r}: choose one of {', '.join(LOOPS)}")
        import uvicorn
        from pydantic import ValidationError

        from shoal.artifacts.refs import resolve
        from shoal.serving.settings import ServeSettings

        try:
            settings = ServeSettings(max_batch_rows=max_batch_rows, max_wait_ms=max_wait_ms, batching=batching,
                                     max_rows_per_request=max_rows_per_request, max_body_bytes=max_body_bytes,
                                     body_timeout_s=body_timeout_s, header_timeout_s=header_timeout_s,
                                     max_text_bytes=max_text_bytes,
                                     max_id_bytes=max_id_bytes, max_list_ids=max_list_ids,
                                     max_media_bytes=max_media_bytes,
                                     max_inflight_per_client=max_inflight_per_client,
                                     client_error_rate=client_error_rate, client_error_burst=client_error_burst,
                                     client_bytes_rate=client_bytes_rate, client_bytes_burst=client_bytes_burst,
                                     client_key=client_key,
                                     admin_token=admin_token, workers=workers, backend=backend,
                                     follow_s=follow_s, freeze_heap=True)
        except ValidationError as err:  # one line, each option named as on the command line (never the token)
            raise ValueError("; ".join(
                f"--{str(e['loc'][0]).replace('_', '-')}"
                f"{'' if e['loc'][0] == 'admin_token' else ' ' + str(e['input'])}: {e['msg']}"
                for e in err.errors(include_url=False))) from None
        h = home_dir(home)
        logging.getLogger("shoal.serving").setLevel(logging.INFO)
        if host not in _LOOPBACK:
            err_console.print(f"[yellow]warning:[/] binding {host}: the server is reachable from other "
                              "machines; put it behind your own proxy and access control")
        if workers > 1:
            resolve(run, h)  # fail here, not in every worker
            os.environ[SPEC_ENV] = json.dumps({"ref": str(run), "home": str(h), "threads": threads,
                                               "settings": settings.model_dump()})
            console.print(f"serving {run} on http://{host}:{port} with {workers} workers "
                          f"(SIGHUP to the main process replaces them one at a time)")
            # A replacement worker loads torch and the model before it counts as ready; uvicorn's 5 s default
            # would abort a SIGHUP restart on a busy machine, keeping the old workers.
            uvicorn.run("shoal.cli.serve:worker_app", factory=True, host=host, port=port, workers=workers,
                        http="shoal.cli.serve:worker_protocol", access_log=access_log, loop=loop,
                        proxy_headers=False, timeout_graceful_shutdown=30, timeout_worker_healthcheck=60)
            return
        from shoal.serving.app import create_app
        from shoal.serving.protocol import server_config

        _set_threads(threads)
        app = create_app(run, settings, h)
        service: Service = app.state.service
        m = service.model
        console.print(f"serving {m.name} version {m.version} ({m.predictor.backend}) from {m.folder} on "
                      f"http://{host}:{port}; admin {'on' if admin_token else 'off'}; SIGHUP reloads")
        config = server_config(app, settings.header_timeout_s, host=host, port=port, access_log=access_log,
                               timeout_graceful_shutdown=30, loop=loop)
        # uvicorn.run would make the loop itself; serving through our own runner (for SIGHUP) must ask for it
        with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
            runner.run(_serve(uvicorn.Server(config), service))


async def _serve(server: uvicorn.Server, service: Service) -> None:
    loop = asyncio.get_running_loop()
    pending: set[asyncio.Task[None]] = set()

    def on_hup() -> None:
        task = loop.create_task(service.reload_logged())
        pending.add(task)
        task.add_done_callback(pending.discard)

    loop.add_signal_handler(signal.SIGHUP, on_hup)
    try:
        await server.serve()
    finally:
        loop.remove_signal_handler(signal.SIGHUP)


def _measured(choice: dict[str, Any] | None) -> str:
    """`` (median ms per call: 256 rows torch 2.1, onnxruntime 28; cached)`` for ``auto``'s decision."""
    if not choice:
        return ""
    sizes = "; ".join(f"{n} rows " + ", ".join(f"{b} {ms:.3g}" for b, ms in per.items())
                      for n, per in choice["measured_ms"].items())
    return f" (median ms per call: {sizes}{'; cached' if choice.get('cached') else ''})"


def _set_threads(threads: int | None) -> None:
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def worker_app() -> FastAPI:
    """The app of one worker process of ``shoal serve --workers N`` (options from the parent, see SPEC_ENV)."""
    from shoal.serving.app import create_app
    from shoal.serving.settings import ServeSettings

    spec: dict[str, Any] = json.loads(os.environ[SPEC_ENV])
    _set_threads(spec["threads"])
    logging.getLogger("shoal.serving").setLevel(logging.INFO)
    return create_app(spec["ref"], ServeSettings(**spec["settings"]), Path(spec["home"]))


def worker_protocol(**kwargs: Any) -> asyncio.Protocol:
    """The HTTP protocol of one worker process: uvicorn's, with the header deadline of the parent's options.

    Named by a string in ``uvicorn.run`` because the worker processes are spawned: a class made at run time does
    not pickle. uvicorn calls it once per connection with its ``config``, ``server_state`` and ``app_state``.
    """
    from shoal.serving.protocol import deadline_protocol

    global _WORKER_PROTOCOL
    if _WORKER_PROTOCOL is None:
        _WORKER_PROTOCOL = deadline_protocol(float(json.loads(os.environ[SPEC_ENV])["settings"]["header_timeout_s"]))
    return _WORKER_PROTOCOL(**kwargs)


_WORKER_PROTOCOL: type[asyncio.Protocol] | None = None  # made on a worker's first connection


def predict(
    run: Annotated[str, typer.Argument(help="Run id (or prefix, or 'latest') or bundle folder.")],
    file: Annotated[Path, typer.Argument(help="CSV/TSV/Parquet/JSONL rows, read like the training data.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Predictions: *.parquet or *.csv.")],
    quarantine: Annotated[Path | None, typer.Option(
        help="Rows that cannot be encoded, with the reason (default: <out>.quarantine.jsonl).")] = None,
    keep: Annotated[list[str] | None, typer.Option(
        "--keep", help="Input column to copy into the output (repeatable), e.g. an id.")] = None,
    backend: BackendOption = "auto",
    home: HomeOption = None,
) -> None:
    """Score a file with a trained bundle: the same encoder and model as `shoal serve`."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with user_errors():
        from shoal.serving.offline import predict_file

        with Progress(TextColumn("[bold]predict"), BarColumn(), MofNCompleteColumn(), TextColumn("rows"),
                      TimeElapsedColumn(), console=console) as progress:
            task = progress.add_task("predict", total=None)
            summary = predict_file(run, file, out, home_dir(home), quarantine=quarantine, keep=keep,
                                   progress=lambda done, total: progress.update(task, completed=done, total=total),
                                   backend=backend)
        rate = summary.rows_predicted / max(summary.seconds, 1e-9)
        console.print(f"wrote {summary.out}: {summary.rows_predicted:,} rows predicted of "
                      f"{summary.rows_read:,} read in {summary.seconds:.1f} s ({rate:,.0f} rows/s)")
        console.print(f"backend: {summary.backend}{_measured(summary.backend_choice)}")
        if summary.positive:
            console.print(f"probability: that {summary.positive}")
        if summary.quarantined:
            console.print(f"[yellow]{summary.quarantined:,} bad rows quarantined[/] -> "
                          f"{summary.quarantine_file} {summary.by_reason}")
