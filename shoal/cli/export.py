"""``shoal export`` and ``shoal bench``: the commands over :mod:`shoal.export.onnx` and :mod:`shoal.runtime.latency`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from shoal.artifacts.refs import resolve
from shoal.cli.common import HomeOption, console, home_dir, user_errors

__all__ = ["register"]


def _metric_cell(p: dict[str, Any]) -> str:
    for key in ("auc", "accuracy", "rmse"):
        if key in p:
            return f"{p[f'torch_{key}']:.4f} -> {p[key]:.4f} ({key}, {p[key] - p[f'torch_{key}']:+.4f})"
    return "-"


def export(
    run: Annotated[str, typer.Argument(help="Run id (or prefix, or 'latest') or bundle folder.")],
    onnx: Annotated[bool, typer.Option("--onnx", help="Write ONNX (model.onnx) and check parity.")] = False,
    int8: Annotated[bool, typer.Option("--int8", help="Also write dynamic int8 (model.int8.onnx).")] = False,
    fp16_embeddings: Annotated[bool, typer.Option("--fp16-embeddings",
                                                  help="Also write fp16 embedding tables (model.fp16.onnx).")] = False,
    rows: Annotated[int, typer.Option(help="Rows to check parity on.")] = 2000,
    data: Annotated[Path | None, typer.Option(help="Check parity on this file (default: the run's data).")] = None,
    out: Annotated[Path | None, typer.Option(help="Folder to write to (default: BUNDLE/onnx).")] = None,
    raw: Annotated[bool, typer.Option(
        "--raw", help="Also write model.raw.onnx: the encoding in the graph, so it takes the RAW columns (dense: "
                      "float32, NaN for missing; ids: their UTF-8 bytes + lengths; lists: + per-row counts; texts: "
                      "their UTF-8 bytes + lengths; images: decoded pixels + sizes; sounds: samples + lengths) and "
                      "gives probabilities; raw_inputs.json describes them.")] = False,
    raw_max_bytes: Annotated[int, typer.Option(help="With --raw: the most bytes an id may have.")] = 64,
    raw_form: Annotated[str, typer.Option(
        help="With --raw: how ids are hashed in the graph: 'unrolled' (ids at most --raw-max-bytes long), 'loop' "
             "(an ONNX Loop, ids of any length) or 'auto' (both timed end to end on the run's rows at batch 1 and "
             "256; the faster is written).")] = "auto",
    home: HomeOption = None,
) -> None:
    """Export a trained bundle to ONNX (fp32, optionally int8 and fp16 embeddings) and check parity."""
    from shoal.export.onnx import export_onnx

    with user_errors():
        if not onnx and not raw:
            raise ValueError("choose a format: --onnx (encoded inputs) and/or --raw (raw columns), e.g. "
                             "shoal export RUN --onnx --int8")
        folder = resolve(run, home_dir(home)).folder
        if not onnx:  # --raw alone
            _export_raw(folder, out, raw_max_bytes, raw_form)
            return
        with console.status("exporting and checking parity"):
            report = export_onnx(folder, out, int8=int8, fp16_embeddings=fp16_embeddings, parity_rows=rows, data=data)
        table = Table(title=f"ONNX export -> {report.dir} (parity on {report.rows:,} rows of {report.rows_source})")
        for col in ("variant", "file", "size MiB", "max |Δ logit|", "metric: torch -> onnx", "ok"):
            table.add_column(col, justify="left" if col in ("variant", "file", "metric: torch -> onnx") else "right")
        table.add_row("torch", "model.safetensors", f"{report.sizes_mib['torch']:.2f}", "", "", "")
        for variant, file in report.files.items():
            p = report.parity[variant]
            table.add_row(variant, file, f"{report.sizes_mib[variant]:.2f}", f"{p['max_abs_logit_diff']:.2e}",
                          _metric_cell(p), "[green]yes[/]" if p["ok"] else "[red]no[/]")
        console.print(table)
        console.print(f"inputs: {', '.join(report.layout['input_names'])}; Loop nodes: {report.loops}; "
                      f"{report.seconds:.1f} s. Serve it with OnnxPredictor, measure it with: shoal bench {run}")
        if raw:
            _export_raw(folder, out, raw_max_bytes, raw_form)


def _export_raw(folder: Path, out: Path | None, max_bytes: int, form: str) -> None:
    """``--raw``: write model.raw.onnx and raw_inputs.json (:mod:`shoal.export.raw`) and say what they take."""
    from shoal.export.raw import export_raw_onnx

    with console.status("exporting the raw-input graph and checking parity"):
        report = export_raw_onnx(folder, out, max_bytes=max_bytes, form=form)
    own = (f", {report.own_rows_diff:.1e} on rows of {report.own_rows_source}" if report.own_rows_source else "")
    console.print(f"raw inputs -> {report.path}: {', '.join(report.inputs)} (described in {report.contract_path}); "
                  f"max |Δ p| vs the Python encoder {report.max_abs_proba_diff:.1e} on {report.parity_rows} "
                  f"synthetic rows{own}")
    if report.form_ms:
        times = "; ".join(f"{f} " + ", ".join(f"{ms:.3f} ms at batch {b}" for b, ms in t.items())
                          for f, t in report.form_ms.items())
        console.print(f"id hashing: {report.form} form, the faster end to end ({times})")
    for name, (h, w) in report.usual_sizes.items():
        console.print(f"image {name!r}: most images are {h} x {w}; a batch of only those takes constant resize "
                      "weights")


def bench(
    run: Annotated[str, typer.Argument(help="Run id (or prefix, or 'latest') or bundle folder.")],
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the figures as JSON rows here.")] = None,
    batch: Annotated[int, typer.Option(help="Batch size of the rows/s figure.")] = 256,
    seconds: Annotated[float, typer.Option(help="Seconds of timed calls per figure.")] = 2.0,
    threads: Annotated[int, typer.Option(help="Threads for torch and ONNX Runtime.")] = 1,
    isolate: Annotated[bool, typer.Option(help="Each system in a fresh process (its own peak RSS).")] = True,
    export_missing: Annotated[bool, typer.Option(
        "--export/--no-export", help="Export to a temporary folder when BUNDLE/onnx is missing.")] = True,
    end_to_end: Annotated[bool, typer.Option(
        "--e2e/--no-e2e", help="Also time raw row -> answer in process (encoder included; the raw graph where "
                               "exported with --raw).")] = True,
    http: Annotated[bool, typer.Option(
        "--http", help="Also start `shoal serve` on loopback and time POST /predict, one row per request: one "
                       "client, then --clients clients (p50/p99, requests/s).")] = False,
    clients: Annotated[int, typer.Option(help="With --http: the concurrent clients of the second load.")] = 64,
    home: HomeOption = None,
) -> None:
    """p50/p99 latency at batch 1, rows/s at batch 256, size and peak RSS: PyTorch vs ONNX Runtime fp32/int8 (the
    model call alone), then raw row -> answer end to end (the Python encoder + model, and the raw graph), and
    with --http over HTTP (shoal serve on loopback, one client and many)."""
    import tempfile

    from shoal.artifacts.bundle import load_bundle
    from shoal.export.onnx import export_onnx, sample_rows
    from shoal.export.raw_runtime import bench_end_to_end, raw_timing_rows
    from shoal.runtime.latency import bench_bundle, bench_rows

    with user_errors():
        if batch < 1 or seconds <= 0 or threads < 1 or clients < 1:
            raise ValueError(f"batch, seconds, threads and clients must be positive (got {batch}, {seconds}, "
                             f"{threads}, {clients})")
        folder = resolve(run, home_dir(home)).folder
        bundle = load_bundle(folder)
        onnx_dir = folder / "onnx"
        with tempfile.TemporaryDirectory(prefix="shoal-bench-") as tmp:
            if not (onnx_dir / "export.json").is_file():
                if export_missing:
                    console.print(f"[yellow]{onnx_dir} has no export: exporting fp32 and int8 to a temporary folder"
                                  f" for this bench[/] (keep one with: shoal export {run} --onnx --int8)")
                    with console.status("exporting"):
                        export_onnx(folder, Path(tmp), int8=True)
                    onnx_dir = Path(tmp)
                else:
                    console.print(f"[yellow]{onnx_dir} has no export: benching torch only[/]")
            rows, source = sample_rows(bundle, folder, rows=max(batch, 256))
            with console.status("measuring" + (" (one process per system)" if isolate else "")):
                results = bench_bundle(folder, rows, onnx_dir, batch=batch, threads=threads, seconds=seconds,
                                       isolate=isolate)
            e2e: list[Any] = []
            over_http: list[dict[str, Any]] = []
            if end_to_end or http:
                raw_rows, raw_source = raw_timing_rows(bundle, folder, max(batch, 256))
            if end_to_end:
                with console.status("measuring raw row -> answer, in process"):
                    e2e = bench_end_to_end(folder, raw_rows, batch=batch, threads=threads, seconds=seconds)
            if http:
                from shoal.runtime.http_load import bench_http

                with console.status(f"measuring POST /predict: shoal serve on loopback, 1 and {clients} clients"):
                    over_http = bench_http(folder, raw_rows.to_pylist(), Path(tmp) / "serve.log",
                                           clients=sorted({1, clients}), seconds=seconds,
                                           args=("--threads", str(threads)))
        torch_p99 = next((r.p99_ms for r in results if r.system == "torch"), None)
        table = Table(title=f"bench {bundle.config.name}: the model call alone, on encoded rows ({len(rows)} rows "
                            f"of {source}, {threads} threads)")
        for col in ("system", "p50 ms (batch 1)", "p99 ms (batch 1)", f"rows/s (batch {batch})", "size MiB",
                    "peak RSS MiB", "p99 speed-up"):
            table.add_column(col, justify="left" if col == "system" else "right")
        for r in results:
            speed = f"{torch_p99 / r.p99_ms:.2f}x" if torch_p99 else ""
            table.add_row(r.system, f"{r.p50_ms:.3f}", f"{r.p99_ms:.3f}", f"{r.rows_per_s:,.0f}", f"{r.size_mib:.2f}",
                          f"{r.peak_rss_mib:.0f}", speed)
        console.print(table)
        if not isolate:
            console.print("peak RSS is cumulative: all systems ran in this process (--isolate measures each alone)")
        if e2e:
            _print_end_to_end(e2e, results, batch, f"{len(raw_rows)} raw rows of {raw_source}", run)
        if over_http:
            _print_http(over_http, f"{len(raw_rows)} raw rows of {raw_source}")
        if json_out is not None:
            json_out.parent.mkdir(parents=True, exist_ok=True)
            figures = bench_rows([*results, *e2e], bundle.config.name) + [
                {"bench": "bench", "dataset": bundle.config.name, "system": f"http-{h['clients']}-clients",
                 "metric": m, "value": float(h[m])}
                for h in over_http for m in ("requests_per_s", "latency_ms_p50", "latency_ms_p99", "errors_5xx")]
            json_out.write_text(json.dumps(figures, indent=1) + "\n", encoding="utf-8")
            console.print(f"wrote {json_out}")


def _print_end_to_end(e2e: list[Any], model_only: list[Any], batch: int, source: str, run: str) -> None:
    """The end-to-end table, each row beside the model call alone of the same model (``e2e-torch`` / ``torch``)."""
    alone = {r.system: r for r in model_only}
    table = Table(title=f"end to end: raw row -> answer in process, encoder included ({source})")
    for col in ("path", "p50 ms (batch 1)", "p99 ms (batch 1)", f"rows/s (batch {batch})",
                "model call alone p50 / p99 ms", "p99 vs e2e-torch"):
        table.add_column(col, justify="left" if col == "path" else "right")
    base = next((r.p99_ms for r in e2e if r.system == "e2e-torch"), None)
    for r in e2e:
        model = alone.get({"e2e-torch": "torch", "e2e-onnx-fp32": "onnx-fp32"}.get(r.system, ""))
        table.add_row({"e2e-torch": "e2e-torch (Python encoder + PyTorch)",
                       "e2e-onnx-fp32": "e2e-onnx-fp32 (Python encoder + model.onnx)",
                       "e2e-raw": "e2e-raw (model.raw.onnx, one call)"}.get(r.system, r.system),
                      f"{r.p50_ms:.3f}", f"{r.p99_ms:.3f}", f"{r.rows_per_s:,.0f}",
                      f"{model.p50_ms:.3f} / {model.p99_ms:.3f}" if model else "-",
                      f"{base / r.p99_ms:.2f}x" if base else "")
    console.print(table)
    if not any(r.system == "e2e-raw" for r in e2e):
        console.print(f"no raw graph beside the bundle: write one with shoal export {run} --raw, and serving takes "
                      "it where it is faster (docs/serving.md)")


def _print_http(loads: list[dict[str, Any]], source: str) -> None:
    """The HTTP table: per load, requests/s and the latency a client sees (request written -> answer read)."""
    table = Table(title=f"over HTTP: POST /predict, one row per request, shoal serve on loopback ({source}; "
                        f"backend {loads[0]['backend']})")
    for col in ("clients", "requests/s", "p50 ms", "p99 ms", "4xx", "5xx"):
        table.add_column(col, justify="right")
    for h in loads:
        table.add_row(str(h["clients"]), f"{h['requests_per_s']:,.0f}", f"{h['latency_ms_p50']:.3f}",
                      f"{h['latency_ms_p99']:.3f}", str(h["errors_4xx"]), str(h["errors_5xx"]))
    console.print(table)
    console.print("the load generator shares the machine with the server: on few cores it slows the server too")


def register(app: typer.Typer) -> None:
    """Add ``export`` and ``bench`` to the ``shoal`` command line."""
    app.command("export")(export)
    app.command("bench")(bench)
