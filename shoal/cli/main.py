"""The ``shoal`` command line (typer + rich). Library code logs; only this module prints."""

from __future__ import annotations

import os

# OpenMP threads that spin while waiting make torch 5-10x slower as soon as another process shares the cores
# (measured here: a DLRM epoch took 75 s instead of 8 s). Waiting passively costs little when the machine is
# idle. Set before torch is loaded; an explicit OMP_WAIT_POLICY in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import logging  # noqa: E402
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from shoal.artifacts.registry import RegistryError, RunRecord, resolve_home
from shoal.config import ConfigError
from shoal.data.readers import BadInputError
from shoal.training.callbacks import Callbacks

app = typer.Typer(help="shoal: train, compress and serve models on dense, sparse and text features.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
console = Console()
err_console = Console(stderr=True)

HomeOption = Annotated[
    Path | None, typer.Option("--home", help="Registry folder (default: $SHOAL_HOME or ./shoal-runs).")
]

_USER_ERRORS = (ConfigError, BadInputError, RegistryError, FileNotFoundError, ValueError)


@contextmanager
def _user_errors() -> Iterator[None]:
    """Print expected errors (bad config, bad data, unknown run) as one clear message and exit 2."""
    try:
        yield
    except _USER_ERRORS as err:
        err_console.print(f"[bold red]error:[/] {err}", markup=True, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


def _home(home: Path | None) -> Path:
    return resolve_home(home, os.environ)


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log details.")] = False) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


class RichCallbacks(Callbacks):
    """A progress bar with rows/s and the running loss; one line per validation."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task: Any = None
        self.scan: Any = None

    def on_scan(self, rows: int) -> None:
        if self.scan is None:
            self.scan = self.progress.add_task("scan", total=None, rate="", loss="")  # reading: no rate or loss yet
        self.progress.update(self.scan, completed=rows, description=f"scan {rows:,} rows")

    def on_start(self, rows_per_epoch: int, epochs: int, resumed_rows: int) -> None:
        if self.scan is not None:
            self.progress.update(self.scan, total=1, completed=1)
        self.task = self.progress.add_task("train", total=rows_per_epoch * epochs, completed=resumed_rows,
                                           rate="", loss="")

    def on_step(self, rows: int, loss: float, rows_per_s: float) -> None:
        self.progress.update(self.task, completed=rows, loss=f"loss {loss:.4f}", rate=f"{rows_per_s:,.0f} rows/s")

    def on_end(self, stopped_early: bool) -> None:
        done = next(t.completed for t in self.progress.tasks if t.id == self.task)
        self.progress.update(self.task, total=done, description="train (stopped early)" if stopped_early else "train")

    def on_eval(self, epoch: int, step: int, metrics: dict[str, float]) -> None:
        shown = [(k, metrics[k]) for k in ("auc", "accuracy", "macro_f1", "ne", "logloss", "calibration")
                 if k in metrics and not (k == "accuracy" and "auc" in metrics)]
        text = "  ".join(f"{k} {v:.4f}" for k, v in shown)
        self.progress.console.print(f"  epoch {epoch} step {step}: valid {text}")


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
        TextColumn("{task.fields[rate]}"), TextColumn("{task.fields[loss]}"),
        TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False,
    )


def _metrics_table(title: str, columns: dict[str, dict[str, Any]]) -> Table:
    table = Table(title=title)
    table.add_column("metric")
    for name in columns:
        table.add_column(name, justify="right")
    keys: list[str] = []
    for col in columns.values():
        keys += [k for k in col if k not in keys]
    for k in keys:
        cells = []
        for col in columns.values():
            v = col.get(k)
            cells.append("" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v))
        table.add_row(k, *cells)
    return table


def _split_metrics(metrics: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for key, value in metrics.items():
        split, _, name = key.partition("_")
        out.setdefault(split, {})[name] = value
    return out


def _confusion_table(title: str, classes: list[str], cm: list[list[int]]) -> Table:
    table = Table(title=f"{title} (rows: true class, columns: predicted)")
    table.add_column("true \\ predicted")
    for c in classes:
        table.add_column(c, justify="right")
    table.add_column("recall", justify="right")
    for c, row in zip(classes, cm, strict=True):
        i = classes.index(c)
        table.add_row(c, *(f"[bold]{v}[/]" if j == i else str(v) for j, v in enumerate(row)),
                      f"{row[i] / max(sum(row), 1):.3f}")
    return table


def _print_run(record: RunRecord) -> None:
    console.print(f"run [bold]{record.run_id}[/] ({record.name}, {record.status}) -> {record.artifact_dir}")
    teachers = (record.summary.get("distill") or {}).get("teachers") or []
    if len(teachers) > 1:
        console.print(f"teachers (an ensemble, the mean of their probabilities): {' '.join(teachers)}")
    elif record.parent:
        console.print(f"{'teacher' if record.kind in ('distill', 'compress') else 'parent'}: {record.parent}")
    if record.metrics:
        console.print(_metrics_table("metrics", _split_metrics(record.metrics)))
    s = record.summary
    for split in ("valid", "test"):
        if f"{split}_confusion" in s:
            console.print(_confusion_table(f"{split} confusion matrix", s["classes"], s[f"{split}_confusion"]))
            console.print(f"saved {s[f'{split}_confusion_png']}")
    if s.get("quarantined_rows"):
        console.print(f"[yellow]{s['quarantined_rows']} bad rows quarantined[/] -> {s.get('quarantine_file')}"
                      f" {s.get('quarantined_by_reason')}")


def _train_with_progress(fn: Callable[[Callbacks], RunRecord]) -> RunRecord:
    with _progress() as progress:
        return fn(RichCallbacks(progress))


@app.command()
def train(
    config: Annotated[Path | None, typer.Argument(help="YAML run config.")] = None,
    resume: Annotated[str | None, typer.Option("--resume", help="Continue this killed run (id or prefix).")] = None,
    home: HomeOption = None,
    nproc: Annotated[int | None, typer.Option("--nproc", help="Processes per node: torchrun + DDP.")] = None,
    nnodes: Annotated[int, typer.Option("--nnodes", help="Nodes (run the same command on each).")] = 1,
    rdzv_endpoint: Annotated[str | None, typer.Option(
        "--rdzv-endpoint", help="HOST:PORT of the rendezvous, for --nnodes > 1.")] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda (cuda: nccl, bf16 autocast).")] = "auto",
) -> None:
    """Train a model from a config; prints the run id and its metrics. With --nproc N (or a CUDA device, or
    train.embeddings.backend: torchrec) it runs N processes through torch.distributed.run (docs/distributed.md)."""
    from shoal.training import runs

    with _user_errors():
        h = _home(home)
        if device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"--device must be auto, cpu or cuda, not {device!r}")
        if nproc is None:
            nproc = _distributed_nproc(config, resume, h, device)
        if nproc is not None:
            from shoal.distributed.launch import DistributedRunError, launch

            try:
                run_id = launch(config, h, nproc=nproc, nnodes=nnodes, rdzv_endpoint=rdzv_endpoint,
                                device=device, resume=resume, progress=True)  # type: ignore[arg-type]
            except DistributedRunError as err:
                err_console.print(f"[bold red]error:[/] {err}", markup=True, highlight=False, soft_wrap=True)
                raise typer.Exit(1) from None
            if run_id is None:
                console.print("rank 0 ran on another node: its registry holds the run")
                return
            from shoal.artifacts.registry import Registry

            _print_run(Registry(h).get(run_id))
            return
        if resume is not None:
            record = _train_with_progress(lambda cb: runs.resume(resume, h, cb))
        elif config is None:
            raise ValueError("give a CONFIG file to train, or --resume RUN to continue a run")
        else:
            record = _train_with_progress(lambda cb: runs.train(config, h, cb))
        _print_run(record)


def _distributed_nproc(config: Path | None, resume: str | None, home: Path, device: str) -> int | None:
    """1 when a run without --nproc still needs the distributed trainer (--device cuda, TorchRec tables, or
    resuming a run that was started with torchrun, with its process count); None for the one-process trainer."""
    if device == "cuda":
        return 1
    if resume is not None:
        from shoal.artifacts.registry import Registry

        record = Registry(home).get(resume)
        world = record.summary.get("world_size")
        backend = record.config.get("train", {}).get("embeddings", {}).get("backend", "native")
        return int(world) if world else 1 if backend == "torchrec" else None
    if config is not None:
        from shoal.config import load_config

        return 1 if load_config(config).train.embeddings.backend == "torchrec" else None
    return None


@app.command("eval")
def eval_(
    run: Annotated[str, typer.Argument(help="Run id (or prefix, or 'latest') or bundle folder.")],
    data: Annotated[Path, typer.Option("--data", help="Labelled file, read like the training data.")],
    quarantine: Annotated[Path | None, typer.Option(help="Write bad rows here instead of failing.")] = None,
    home: HomeOption = None,
) -> None:
    """Metrics of a trained model on a file: AUC, NE, calibration, log loss, accuracy (binary labels), or
    accuracy, macro-F1, log loss, NE and the confusion matrix (multiclass)."""
    from shoal.training import runs

    with _user_errors():
        report = runs.evaluate_file(run, data, _home(home), quarantine=quarantine)
        classes, confusion = report.pop("classes", None), report.pop("confusion", None)
        console.print(_metrics_table(f"{run} on {data}", {"value": report}))
        if classes is not None and confusion is not None:
            console.print(_confusion_table("confusion matrix", classes, confusion))


@app.command("runs")
def runs_(home: HomeOption = None, limit: int = 20) -> None:
    """List runs in the registry, newest first."""
    from shoal.artifacts.registry import Registry

    with _user_errors():
        records = Registry(_home(home)).list(limit=limit)
        table = Table(title=f"runs in {_home(home)}")
        table.add_column("run", no_wrap=True)
        for col in ("name", "kind", "status", "model", "valid AUC / acc", "valid NE", "created"):
            table.add_column(col)
        for r in records:
            m = r.metrics
            quality = (f"{m['valid_auc']:.4f}" if "valid_auc" in m
                       else f"{m['valid_accuracy']:.2%}" if "valid_accuracy" in m else "")
            table.add_row(
                r.run_id, r.name, r.kind, r.status, str(r.config.get("model", {}).get("name", "")),
                quality, f"{m['valid_ne']:.4f}" if "valid_ne" in m else "",
                time.strftime("%Y-%m-%d %H:%M", time.localtime(r.created_at)),
            )
        console.print(table)


@app.command()
def show(run: Annotated[str, typer.Argument(help="Run id, prefix or 'latest'.")], home: HomeOption = None) -> None:
    """A run's config, metrics and summary."""
    import json

    from shoal.artifacts.registry import Registry

    with _user_errors():
        record = Registry(_home(home)).get(run)
        _print_run(record)
        summary = {k: v for k, v in record.summary.items() if k not in ("history", "traceback")}
        console.print_json(json.dumps({"summary": summary, "config": record.config}, default=str))


@app.command()
def synth(
    out: Annotated[Path, typer.Argument(help="Parquet file to write.")] = Path("data/synthetic.parquet"),
    rows: int = 200_000,
    dense: int = 13,
    sparse: int = 26,
    base_rate: float = 0.03,
    max_cardinality: int = 1_000_000,
    seed: int = 0,
) -> None:
    """Write a synthetic click log with a known ground truth (and its Bayes-optimal AUC/NE)."""
    from shoal.data.synthetic import SynthSpec, generate

    with _user_errors():
        spec = SynthSpec(rows=rows, dense=dense, sparse=sparse, base_rate=base_rate,
                         max_cardinality=max_cardinality, seed=seed)
        out.parent.mkdir(parents=True, exist_ok=True)
        with Progress(TextColumn("synth"), BarColumn(), TextColumn("{task.completed:,}/{task.total:,} rows"),
                      TimeElapsedColumn(), console=console) as progress:
            task = progress.add_task("synth", total=rows)
            truth = generate(out, spec, progress=lambda n: progress.update(task, completed=n))
        console.print(f"wrote {out} ({rows:,} rows): base rate {truth.base_rate:.4f}, "
                      f"Bayes-optimal AUC {truth.bayes_auc:.4f}, NE {truth.bayes_ne:.4f}")


@app.command()
def inspect(
    file: Annotated[Path, typer.Argument(help="CSV/TSV/Parquet/JSONL file.")],
    label: Annotated[str | None, typer.Option(help="The label column (guessed when omitted).")] = None,
    write: Annotated[Path | None, typer.Option("--write", "-w", help="Write a starter config here.")] = None,
    max_rows: int = 200_000,
) -> None:
    """Infer a schema: columns, kind, cardinality, missing rate; optionally write a starter config."""
    from shoal.inspect import inspect_file, starter_config

    with _user_errors():
        profile = inspect_file(file, label=label, max_rows=max_rows)
        table = Table(title=f"{file} ({profile.format}, {profile.rows:,} rows read, "
                            f"header: {'yes' if profile.header else 'no'})")
        for col in ("column", "kind", "type", "distinct", "missing %", "example", "why"):
            table.add_column(col)
        for c in profile.columns:
            distinct = f"{'>=' if c.cardinality_capped else ''}{c.cardinality:,}"
            table.add_row(c.name, c.kind, c.dtype, distinct, f"{c.missing_pct:.1f}", str(c.example)[:24], c.reason)
        console.print(table)
        if write is not None:
            write.parent.mkdir(parents=True, exist_ok=True)
            write.write_text(starter_config(profile, write), encoding="utf-8")
            console.print(f"wrote starter config {write}; train it with: shoal train {write}")


@app.command()
def demo(
    rows: int = 200_000,
    home: HomeOption = None,
    workdir: Annotated[Path, typer.Option(help="Where the synthetic data goes.")] = Path("data"),
) -> None:
    """Synthetic click log -> train DLRM -> evaluate against the Bayes-optimal ceiling -> distil a student ->
    export it to ONNX -> teacher vs student, quality and latency side by side -> serve the student on
    127.0.0.1, query it (one request malformed) and shut the server down."""
    from shoal.cli.demo import DEMO_STUDENT, distil_and_compare, serve_and_query, synthetic_config
    from shoal.data.synthetic import SynthSpec, generate, load_truth, truth_path
    from shoal.training import runs

    with _user_errors():
        started = time.perf_counter()
        data = workdir / f"synthetic-{rows}.parquet"
        if not truth_path(data).exists():
            console.rule("1. synthesize a click log")
            workdir.mkdir(parents=True, exist_ok=True)
            with Progress(TextColumn("synth"), BarColumn(), TimeElapsedColumn(), console=console) as progress:
                task = progress.add_task("synth", total=rows)
                generate(data, SynthSpec(rows=rows), progress=lambda n: progress.update(task, completed=n))
        truth = load_truth(data)
        console.print(f"{data}: {truth.rows:,} rows, base rate {truth.base_rate:.4f}")
        console.rule("2. train DLRM")
        cfg = synthetic_config(data.resolve())
        record = _train_with_progress(lambda cb: runs.train(cfg, _home(home), cb))
        console.rule("3. evaluate")
        m = _split_metrics(record.metrics)["valid"]
        table = Table(title=f"DLRM on the synthetic log (run {record.run_id}), validation split")
        for col in ("metric", "DLRM", "Bayes-optimal ceiling", "base rate predictor"):
            table.add_column(col, justify="right")
        table.add_row("AUC", f"{m['auc']:.4f}", f"{truth.bayes_auc:.4f}", "0.5000")
        table.add_row("NE", f"{m['ne']:.4f}", f"{truth.bayes_ne:.4f}", "1.0000")
        table.add_row("calibration", f"{m['calibration']:.3f}", "1.000", "1.000")
        table.add_row("log loss", f"{m['logloss']:.4f}", f"{truth.bayes_logloss:.4f}", "")
        console.print(table)
        s = record.summary
        console.print(f"trained {s['rows_trained']:,} rows in {s['train_seconds']:.1f} s "
                      f"({s['train_rows_per_s']:,.0f} rows/s)")
        console.rule(f"4. distil a {DEMO_STUDENT} student, export it to ONNX")
        with _progress() as progress:
            student, sides = distil_and_compare(record.run_id, _home(home), RichCallbacks(progress))
        console.rule("5. teacher vs student")
        table = Table(title=f"teacher {record.run_id} vs student {student.run_id} (validation split; latency: "
                            "1 thread, encoding excluded)")
        table.add_column("")
        for side in sides:
            table.add_column(side.name, justify="right")
        cells = [("AUC", lambda x: f"{x.metrics['valid_auc']:.4f}"), ("NE", lambda x: f"{x.metrics['valid_ne']:.4f}"),
                ("p50 ms (batch 1)", lambda x: f"{x.bench.p50_ms:.3f}"),
                ("p99 ms (batch 1)", lambda x: f"{x.bench.p99_ms:.3f}"),
                ("rows/s (batch 256)", lambda x: f"{x.bench.rows_per_s:,.0f}"),
                ("size MiB", lambda x: f"{x.bench.size_mib:.2f}")]
        for label, cell in cells:
            table.add_row(label, *(cell(side) for side in sides))
        base = sides[0]
        table.add_row("p99 speed-up", *(f"{base.bench.p99_ms / side.bench.p99_ms:.1f}x" for side in sides))
        gain = (base.metrics["valid_auc"] - 0.5)
        table.add_row("AUC gain kept", *(f"{(side.metrics['valid_auc'] - 0.5) / gain:.1%}" if gain > 0 else "-"
                                         for side in sides))
        console.print(table)
        console.rule("6. serve the student on 127.0.0.1 and query it")
        import json

        backend, exchanges = serve_and_query(student.artifact_dir / "bundle", data, _home(home))
        table = Table(title=f"shoal serve {student.run_id} ({backend}), then shut down")
        for col in ("request", "status", "answer"):
            table.add_column(col)
        for ex in exchanges:
            if "predictions" in ex.body:
                answer = f"click probability {ex.body['predictions'][0]['probability']:.4f}"
            elif isinstance(ex.body.get("detail"), list):  # 422: pydantic's errors, each naming its field
                answer = "; ".join(str(e.get("msg")) for e in ex.body["detail"])
            else:
                answer = json.dumps(ex.body.get("detail", ex.body))
            table.add_row(ex.what, str(ex.status), answer)
        console.print(table)
        console.print(f"demo took {time.perf_counter() - started:.0f} s")
        console.print(f"next: shoal show {student.run_id}   |   shoal compress {record.run_id} --budget-ms 0.1   |   "
                      "shoal runs")


from shoal.cli.academy import academy_app  # noqa: E402

app.add_typer(academy_app, name="academy")

from shoal.cli.serve import register as register_serving  # noqa: E402

register_serving(app)

from shoal.cli.export import register as register_export  # noqa: E402

register_export(app)

from shoal.cli.distill import register as register_distill  # noqa: E402

register_distill(app)


def main() -> None:  # pragma: no cover - console script entry
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
