"""``shoal plan``: predicted step time, memory, communication and cost of a config on a cluster; sharding advice;
``--calibrate`` measures this machine for ``--cluster local``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from shoal.cli.common import HomeOption, console, home_dir, user_errors

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add ``plan`` to the ``shoal`` command line."""
    app.command()(plan)


def _mib(nbytes: float) -> str:
    return f"{nbytes / 2**20:,.1f} MiB" if nbytes < 2**30 else f"{nbytes / 2**30:,.2f} GiB"


def _ms(seconds: float) -> str:
    """Milliseconds with 3 decimals, or 3 significant digits below 0.01 ms (a GPU's layers: 0.000 said nothing)."""
    ms = seconds * 1e3
    return f"{ms:,.3f}" if ms >= 0.01 or ms == 0 else f"{ms:.3g}"


def _print(p: Any) -> None:
    step = p.step
    console.print(f"[bold]{p.config}[/] ({p.model}) on [bold]{p.cluster}[/]: {step.world} process(es) "
                  f"({p.processes_per_node} a node x {step.nodes}), global batch {step.batch:,} ({step.rank_batch:,} "
                  f"a process), tables {p.sharding}")
    console.print(f"dense parameters {p.cost.dense_params:,}, table rows x dim {p.cost.table_params:,} "
                  f"({_mib(p.cost.table_params * 4)}), forward {p.cost.fwd_flops:,.0f} FLOPs a row")
    phases = Table(title=f"one step: {_ms(step.step_s)} ms -> {step.rows_per_s:,.0f} rows/s; bottleneck: "
                         f"{step.bottleneck}")
    for col in ("phase", "lane", "ms", "% of step"):
        phases.add_column(col, justify="left" if col in ("phase", "lane") else "right")
    exposed = sum(ph.seconds for ph in step.phases if ph.name == "all-reduce (exposed)")
    for ph in step.phases:
        if ph.lane == "compute":
            share = f"{100 * ph.seconds / step.step_s:.1f}"
        else:  # the all-reduce beside the backward: how much of it the backward hides (the rest: "exposed")
            hidden = max(ph.seconds - exposed, 0.0) / ph.seconds if ph.seconds else 1.0
            share = f"({100 * hidden:.0f}% under backward)"
        phases.add_row(ph.name, ph.lane, _ms(ph.seconds), share)
    console.print(phases)
    layers = Table(title="layers (per step, forward + backward)")
    for col in ("layer", "GFLOP", "ms"):
        layers.add_column(col, justify="left" if col == "layer" else "right")
    for name, flops, seconds in sorted(step.layer_seconds, key=lambda x: -x[2])[:8]:
        layers.add_row(name, f"{flops / 1e9:.4f}", _ms(seconds))
    console.print(layers)
    if p.host_memory is None:  # a CPU: one memory holds it all
        title = f"memory per process: {_mib(step.peak_bytes)} of {_mib(p.device_memory)}"
    else:
        title = (f"memory per process: GPU {_mib(step.peak_bytes)} of {_mib(p.device_memory)}, host "
                 f"{_mib(step.host_bytes)} of {_mib(p.host_memory)}")
    memory = Table(title=title)
    memory.add_column("what")
    if p.host_memory is not None:
        memory.add_column("where")
    memory.add_column("size", justify="right")
    for where, items in (("GPU", step.memory), ("host", step.host_memory)):
        for k, v in items.items():
            if v:
                memory.add_row(*([k] if p.host_memory is None else [k, where]), _mib(v))
    console.print(memory)
    if len(p.options) > 1:
        from shoal.plan.planner import fits
        from shoal.plan.sharding import placement

        shard = Table(title=f"embedding placement: recommended [bold]{p.recommended}[/]")
        peak = "peak memory" if p.host_memory is None else "peak GPU memory"
        for col in ("placement", "step ms", "rows/s", peak, "table traffic / step", "balance", "fits"):
            shard.add_column(col, justify="left" if col == "placement" else "right")
        for name, o in p.options.items():
            traffic = o.comm_bytes["all_to_all"] + o.comm_bytes["sparse_all_gather"]
            balance = placement(name, p.cost, o.world).balance  # the fullest process's table bytes / the mean
            shard.add_row(name, _ms(o.step_s), f"{o.rows_per_s:,.0f}", _mib(o.peak_bytes), _mib(traffic),
                          f"{balance:.2f}x", "yes" if fits(o, p.rates) else "no")
        console.print(shard)
        console.print(f"why: {p.reason}")
    if p.epoch_s is not None:
        cost = f", {p.epoch_cost:,.2f} USD" if p.epoch_cost is not None else ""
        console.print(f"epoch of {p.shape.rows or 0:,} rows: {p.epoch_s:,.1f} s{cost}")
    if p.serving is not None:
        s = p.serving
        how = "measured" if s.measured else "predicted"
        servers = f"; {s.servers} server(s) of {s.cores_per_server} {s.unit}s for {s.qps:,.0f} QPS" if s.qps else ""
        console.print(f"serving ({how}): p50 {s.p50_ms:.3f} ms, p99 {s.p99_ms:.3f} ms at batch 1, "
                      f"{s.rows_per_s_per_core:,.0f} rows/s a {s.unit} at batch 256{servers}")
    for note in p.notes:
        loud = note.startswith("DOES NOT FIT")
        console.print(f"[bold red]{escape(note)}[/]" if loud else f"[dim]note: {escape(note)}[/]")


def plan(
    config: Annotated[Path | None, typer.Argument(help="Run config (YAML); not needed with --calibrate.")] = None,
    cluster: Annotated[str, typer.Option(help="Cluster YAML (configs/clusters/), or 'local' (calibrated).")] = "local",
    nproc: Annotated[int | None, typer.Option(help="Training processes per node (default: one per GPU, else 1).")]
    = None,
    rows: Annotated[int | None, typer.Option(help="Training rows, for the epoch time (default: the file's).")]
    = None,
    qps: Annotated[float | None, typer.Option(help="Serving target: queries (rows) per second.")] = None,
    run: Annotated[str | None, typer.Option(help="A trained run: measure its bundle for serving.")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the plan as JSON here.")] = None,
    png: Annotated[Path | None, typer.Option(help="Write the step's timeline as a PNG here.")] = None,
    calibrate: Annotated[bool, typer.Option("--calibrate", help="Measure this machine for --cluster local.")]
    = False,
    quick: Annotated[bool, typer.Option(help="With --calibrate: shorter, smaller measurements.")] = False,
    home: HomeOption = None,
) -> None:
    """Predict a config's training step, memory, communication and cost on a cluster; advise table sharding."""
    from shoal.config import load_config
    from shoal.plan import calibrate as measure
    from shoal.plan import load_cluster, load_profile, local_cluster, make_plan, profile_path, save_timeline

    with user_errors():
        folder = home_dir(home)
        if calibrate:
            with console.status("calibrating this machine (about a minute) ..."):
                profile = measure(folder, quick=quick)
            console.print(f"calibrated in {profile['seconds']} s -> {profile_path(folder)}")
            if config is None:
                return
        if config is None:
            raise ValueError("give a CONFIG to plan (or --calibrate alone to measure this machine)")
        cfg = load_config(config)
        measured: dict[str, Any] | None = load_profile(folder) if cluster == "local" else None
        spec = local_cluster(measured) if measured is not None else load_cluster(cluster)
        bundle = None
        if run is not None:
            from shoal.artifacts.refs import resolve

            bundle = resolve(run, folder).folder
        p = make_plan(cfg, spec, profile=measured, nproc=nproc, rows=rows, qps=qps, run_bundle=bundle)
        _print(p)
        try:
            if json_out is not None:
                json_out.parent.mkdir(parents=True, exist_ok=True)
                json_out.write_text(json.dumps(p.to_dict(), indent=1) + "\n", encoding="utf-8")
                console.print(f"wrote {json_out}")
            if png is not None:
                console.print(f"wrote {save_timeline(p.step, png)}")
        except OSError as err:  # a folder given as the file, no permission, a full disk
            raise ValueError(f"cannot write {err.filename}: {err.strerror or err}") from None
