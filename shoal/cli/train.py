"""``shoal train``, ``eval``, ``runs`` and ``show``: the commands over :mod:`shoal.training.runs` and the registry."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from shoal.cli.common import (
    HomeOption,
    confusion_table,
    console,
    home_dir,
    metrics_table,
    print_run,
    train_with_progress,
    user_errors,
)

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add ``train``, ``eval``, ``runs`` and ``show`` to the ``shoal`` command line."""
    app.command()(train)
    app.command("eval")(eval_)
    app.command("runs")(runs_)
    app.command()(show)


def train(
    config: Annotated[Path | None, typer.Argument(help="YAML run config.")] = None,
    resume: Annotated[str | None, typer.Option("--resume", help="Continue this killed run (id or prefix).")] = None,
    home: HomeOption = None,
    nproc: Annotated[int | None, typer.Option("--nproc", help="Processes per node: torchrun + DDP.")] = None,
    nnodes: Annotated[int, typer.Option("--nnodes", help="Nodes (run the same command on each).")] = 1,
    rdzv_endpoint: Annotated[str | None, typer.Option(
        "--rdzv-endpoint", help="HOST:PORT of the rendezvous, for --nnodes > 1.")] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda (cuda: nccl, bf16 autocast).")] = "auto",
    overrides: Annotated[list[str] | None, typer.Option(
        "--set", help="KEY=VALUE: override a config value by its dotted key (repeatable), e.g. "
                      "--set train.epochs=3 --set model.embedding_dim=32 --set features.city.buckets=4096.")] = None,
    tensorboard: Annotated[bool, typer.Option(
        "--tensorboard", help="Write TensorBoard event files into the run folder's tensorboard/ "
                              "(train.tensorboard: true; needs pip install tensorboard).")] = False,
    tensorboard_dir: Annotated[Path | None, typer.Option(
        "--tensorboard-dir", help="Write them into DIR/<run id>/ instead (implies --tensorboard); "
                                  "view with: tensorboard --logdir DIR.")] = None,
) -> None:
    """Train a model from a config; prints the run id and its metrics. With --nproc N (or a CUDA device, or
    train.embeddings.backend: torchrec) it runs N processes through torch.distributed.run (docs/distributed.md)."""
    with user_errors():
        h = home_dir(home)
        if device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"--device must be auto, cpu or cuda, not {device!r}")
        overrides = [*(overrides or []), *_tensorboard_overrides(tensorboard, tensorboard_dir)]
        if overrides and (config is None or resume is not None):
            raise ValueError("--set and --tensorboard override a CONFIG file's values; a resumed run keeps the "
                             "config it started with")
        if overrides and config is not None:
            with tempfile.TemporaryDirectory(prefix="shoal-set-") as tmp:  # one file for every process to read
                _train(_overridden(config, overrides, Path(tmp)), None, h, nproc, nnodes, rdzv_endpoint, device)
            return
        _train(config, resume, h, nproc, nnodes, rdzv_endpoint, device)


def _tensorboard_overrides(on: bool, folder: Path | None) -> list[str]:
    """``--tensorboard`` and ``--tensorboard-dir`` as ``--set`` overrides (so every process of a job reads them
    from the config); fails at once, before the first pass, when the tensorboard package is missing."""
    if not on and folder is None:
        return []
    from shoal.training.tensorboard import require_tensorboard

    require_tensorboard()
    if folder is None:
        return ["train.tensorboard=true"]
    return [f"train.tensorboard={json.dumps(str(folder.resolve()))}"]  # a quoted YAML string: any path


def _overridden(config: Path, overrides: list[str], folder: Path) -> Path:
    """``config`` with ``--set`` values applied and validated, written to ``folder`` (data paths made absolute)."""
    import yaml

    from shoal.config import load_config

    cfg = load_config(config, overrides)
    path = folder / config.name
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False), encoding="utf-8")
    return path


def _train(config: Path | None, resume: str | None, h: Path, nproc: int | None, nnodes: int,
           rdzv_endpoint: str | None, device: str) -> None:
    """The body of ``shoal train`` once its options are checked."""
    if nproc is None:
        nproc = _distributed_nproc(config, resume, h, device)
    if nproc is not None:
        from shoal.artifacts.registry import Registry
        from shoal.distributed.launch import launch

        run_id = launch(config, h, nproc=nproc, nnodes=nnodes, rdzv_endpoint=rdzv_endpoint,
                        device=device, resume=resume, progress=True)  # type: ignore[arg-type]
        if run_id is None:
            console.print("rank 0 ran on another node: its registry holds the run")
            return
        print_run(Registry(h).get(run_id))
        return
    if resume is not None:
        from shoal.distill import resume as resume_run

        record = train_with_progress(lambda cb: resume_run(resume, h, cb))
    elif config is None:
        raise ValueError("give a CONFIG file to train, or --resume RUN to continue a run")
    else:
        from shoal.training import runs

        record = train_with_progress(lambda cb: runs.train(config, h, cb))
    print_run(record)


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


def eval_(
    run: Annotated[str, typer.Argument(help="Run id (or prefix, or 'latest') or bundle folder.")],
    data: Annotated[Path, typer.Option("--data", help="Labelled file, read like the training data.")],
    quarantine: Annotated[Path | None, typer.Option(help="Write bad rows here instead of failing.")] = None,
    home: HomeOption = None,
) -> None:
    """Metrics of a trained model on a file: AUC, NE, calibration, log loss, accuracy and the confusion matrix at
    p >= 0.5 (binary labels), or accuracy, macro-F1, log loss, NE and the confusion matrix (multiclass)."""
    from shoal.training import runs

    with user_errors():
        report = runs.evaluate_file(run, data, home_dir(home), quarantine=quarantine)
        classes, confusion = report.pop("classes", None), report.pop("confusion", None)
        console.print(metrics_table(f"{run} on {data}", {"value": report}))
        if classes is not None and confusion is not None:
            console.print(confusion_table("confusion matrix", classes, confusion))


def runs_(home: HomeOption = None, limit: int = 20) -> None:
    """List runs in the registry, newest first. A run whose process died without a word (kill -9, out of memory)
    shows `killed`: resume it with `shoal train --resume RUN`."""
    from shoal.artifacts.registry import Registry

    with user_errors():
        records = Registry(home_dir(home)).list(limit=limit)
        table = Table(title=f"runs in {home_dir(home)}")
        table.add_column("run", no_wrap=True)
        for col in ("name", "kind", "status", "model", "valid AUC / acc / R²", "valid NE / NMSE", "created"):
            table.add_column(col)
        from shoal.metrics import headline

        for r in records:
            m = r.metrics
            found = headline(m, "valid_")
            quality = ("" if found is None else f"{found[1]:.2%}" if found[0] == "accuracy"
                       else f"{found[1]:.4f}" if found[0] == "auc" else f"{found[0]} {found[1]:.4f}")
            ne = m.get("valid_ne", m.get("valid_nmse", m.get("valid_mean_ne")))
            table.add_row(
                r.run_id, r.name, r.kind.value, r.status.value, str(r.config.get("model", {}).get("name", "")),
                quality, f"{ne:.4f}" if ne is not None else "",
                time.strftime("%Y-%m-%d %H:%M", time.localtime(r.created_at)),
            )
        console.print(table)


def show(
    run: Annotated[str, typer.Argument(help="Run id, prefix or 'latest'.")],
    home: HomeOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole summary and config as JSON.")] = False,
) -> None:
    """A run on one screen: metrics, data, model, training, pictures (--json: everything)."""
    from shoal.artifacts.registry import Registry

    with user_errors():
        record = Registry(home_dir(home)).get(run)
        if as_json:
            summary = {k: v for k, v in record.summary.items() if k != "traceback"}
            console.print_json(json.dumps({"run_id": record.run_id, "status": record.status, "metrics":
                                           record.metrics, "summary": summary, "config": record.config},
                                          default=str))
            return
        print_run(record)
        if record.kind == "auto":
            from shoal.cli.auto import leaderboard_table, summary_lines

            console.print(leaderboard_table(dict(record.summary)))
            for line in summary_lines(dict(record.summary), dict(record.metrics)):
                console.print(line, highlight=False)
        for line in _overview(record.config, dict(record.summary)):
            console.print(line, highlight=False)
        console.print(f"more: shoal show {record.run_id} --json", style="dim")  # a prefix may match a trial's run


def _overview(config: dict[str, Any], s: dict[str, Any]) -> list[str]:
    """A few lines: the data, the features by kind, the model and how training went."""
    def part(key: str) -> dict[str, Any]:
        value = config.get(key)
        return value if isinstance(value, dict) else {}  # an auto run's config is its search settings

    data, train, model = part("data"), part("train"), part("model")
    src = data.get("train")
    src = src.get("path") if isinstance(src, dict) else src
    out = []
    if src is not None:
        rows = ", ".join(f"{s[k]:,} {k.split('_')[0]}" for k in ("train_rows", "valid_rows", "test_rows")
                         if s.get(k))
        out.append(f"data: {src}" + (f" ({rows} rows)" if rows else ""))
    kinds: dict[str, int] = {}
    features = config.get("features")
    for f in features if isinstance(features, list) else []:
        if isinstance(f, dict):
            kinds[f.get("kind", "?")] = kinds.get(f.get("kind", "?"), 0) + 1
    if kinds:
        out.append("features: " + ", ".join(f"{n} {k}" for k, n in kinds.items()))
    if model:
        name = model.get("name", "?")
        out.append(f"model: name={name}" + "".join(f", {k}={v}" for k, v in model.items() if k != "name"))
    if "steps" in s:
        seconds = s.get("train_seconds")
        out.append(f"training: {s.get('epochs_run')} of {train.get('epochs')} epochs, {s['steps']:,} steps"
                   + (f", {seconds:.1f} s" if isinstance(seconds, int | float) else "")
                   + (", stopped early (best epoch kept)" if s.get("stopped_early") else ""))
    return out
