"""``shoal auto``: the command over :mod:`shoal.auto`, with a live view of the search and its leaderboard.

    auto run 20240501-101500-a1b2c3: logistic, mlp, dlrm; valid auc (maximize), budget 10:00
    budget ━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━  4:31 / 10:00
    best: trial 17 (dlrm) valid auc 0.7712
    trial 23 (mlp): epoch 3 valid auc 0.7601
    ┏━━━━━━━┳━━━━━━━━┳━━━━━━━━━━┳━━━━━━━━┳━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━━┓
    ┃ trial ┃ family ┃ state    ┃    auc ┃ time s ┃ run                     ┃   (the latest trials)
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from shoal.cli.common import (
    AliasOption,
    HomeOption,
    RegisterOption,
    command_started,
    console,
    home_dir,
    metrics_table,
    register_choice,
    split_metrics,
    user_errors,
)
from shoal.training.callbacks import Callbacks

__all__ = ["leaderboard_table", "register"]

SHOWN_TRIALS = 12  # rows of the live table (the latest trials)
BOARD_ROWS = 15  # rows of the final leaderboard


def register(app: typer.Typer) -> None:
    """Add ``auto`` to the ``shoal`` command line."""
    app.command("auto")(auto)


def auto(
    data: Annotated[Path | None, typer.Argument(help="CSV/TSV/Parquet/JSONL file with a label column.")] = None,
    label: Annotated[str | None, typer.Option("--label", help="The label column.")] = None,
    valid: Annotated[Path | None, typer.Option(
        "--valid", help="Validation file (default: 10% of DATA's rows held out).")] = None,
    test: Annotated[Path | None, typer.Option(
        "--test", help="Test file, read once at the end for the winner only.")] = None,
    time_budget: Annotated[str, typer.Option(
        "--time-budget", help="Wall-clock budget of the search: 90s, 10m, 1h30m.")] = "10m",
    metric: Annotated[str | None, typer.Option(
        "--metric", help="auc, ne or accuracy (binary label); accuracy, macro_f1 or ne (classes); rmse, mae, r2 "
                         "or nmse (a number); micro_f1, macro_f1, mean_auc or ne (tags); mean_task_score or "
                         "mean_ne (several labels: --label a,b). Default: the first of each.")] = None,
    latency_budget_ms: Annotated[float | None, typer.Option(
        "--latency-budget-ms", help="Then compress the winner to this p99 per row (batch 1).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seeds the sampler, the split and every trial.")] = 0,
    ensemble: Annotated[int, typer.Option(
        "--ensemble", help="Also build an ensemble of up to K trials (2-5) by forward selection on the validation "
                           "rows, score it beside the winner, and print the shoal distill command that makes it "
                           "one model.")] = 0,
    refit: Annotated[bool, typer.Option(
        "--refit/--no-refit", help="Then train the kept config again on every row of DATA, its validation rows "
                                   "too (with --valid: DATA and that file), for the epochs its validation chose; "
                                   "the test file scores that model, best.yaml is its config (not with "
                                   "--latency-budget-ms). --no-refit keeps the trial's model.")] = True,
    recheck: Annotated[bool, typer.Option(
        "--recheck/--no-recheck", help="Under 10,000 validation rows, train the leading trials again on 3 fresh "
                                       "splits of every row (DATA, and the --valid file: --no-recheck where it "
                                       "is chosen to differ from DATA) and keep the best mean.")] = True,
    family: Annotated[list[str] | None, typer.Option(
        "--family", help="Search only this model family (repeat for several).")] = None,
    resume: Annotated[str | None, typer.Option(
        "--resume", help="Continue this auto run's search with --time-budget more.")] = None,
    header: Annotated[bool | None, typer.Option(
        "--header/--no-header", help="Whether the first line of a CSV/TSV DATA names the columns (default: "
                                     "guessed).", show_default=False)] = None,
    label_kind: Annotated[str | None, typer.Option(
        "--label-kind", help="binary, multiclass, regression or multilabel: the label's kind when inspect guesses "
                             "it wrong (e.g. integer class codes read as a number). Default: as inspect guesses.",
        show_default=False)] = None,
    register_as: RegisterOption = None,
    alias: AliasOption = None,
    home: HomeOption = None,
) -> None:
    """The best model for DATA within a time budget: profiles the file, searches model families and their
    hyperparameters with Optuna (TPE, pruning of bad trials), registers every trial, writes the best config as
    YAML; with --latency-budget-ms compresses the winner. Ctrl-C stops and keeps the best so far."""
    started = command_started()  # the budget counts the process's start and the imports below
    import shoal.auto as search

    with user_errors():
        h = home_dir(home)
        budget = search.parse_duration(time_budget)
        view = LiveView()
        with view.live:
            if resume is not None:
                result = search.resume(resume, h, budget_s=budget, view=view, started=started)
            else:
                if data is None or label is None:
                    raise ValueError("give the DATA file and its --label column (or --resume RUN to continue a "
                                     "search)")
                settings = search.AutoSettings(data=data, label=label, valid=valid, test=test, budget_s=budget,
                                               metric=metric, seed=seed, latency_budget_ms=latency_budget_ms,
                                               families=tuple(family) if family else None, ensemble=ensemble,
                                               header=header, label_kind=label_kind, refit=refit,
                                               recheck=recheck)
                result = search.auto(settings, h, view=view, started=started)
        report(result)
        if result.best is not None:
            state: Any = result.record.summary.get("auto") or {}
            compress = state.get("compress") or {}
            chosen = compress["run_id"] if compress.get("chosen") else result.record.run_id
            register_choice(h, register_as, alias, chosen, f"chosen by shoal auto {result.record.run_id}: trial "
                            f"{result.best.number} ({result.best.family}), valid {result.metric.name} "
                            f"{result.best.value:.4f}")
        if result.interrupted:
            raise typer.Exit(130)


def _print_ensemble(ens: dict[str, Any] | None, metric: str, winner: dict[str, Any]) -> None:
    """The ensemble beside the winner (``--ensemble K``), and how to make it one model."""
    for line in ensemble_lines(ens, metric, winner):
        console.print(line, highlight=False)


def ensemble_lines(ens: dict[str, Any] | None, metric: str, winner: dict[str, Any]) -> list[str]:
    """An auto run's ensemble (its summary's ``auto.ensemble``) beside the winner's metrics, in a line or two."""
    if not ens:
        return []
    if "error" in ens:
        return [f"[yellow]no ensemble[/]: {ens['error']}"]
    parts = []
    for split in ("valid", "test"):
        if split in ens and metric in ens[split]:
            mine = winner.get(f"{split}_{metric}")
            parts.append(f"{split} {metric} {ens[split][metric]:.4f}"
                         + (f" (winner {mine:.4f})" if isinstance(mine, float) else ""))
    weights = "/".join(f"{w:.2f}" for w in ens["weights"])
    return [f"ensemble of {len(ens['members'])} trials (forward selection of {len(ens['candidates'])}, weights "
            f"{weights}): {'; '.join(parts)}", f"  one model with its quality: {ens['distill']}"]


class LiveView:
    """The search as it runs: budget bar, best so far, the trial in flight, the latest trials."""

    def __init__(self) -> None:
        self.live = Live(self, console=console, refresh_per_second=4, transient=True)
        self.budget_s = 0.0
        self.started = time.monotonic()
        self.metric = "metric"
        self.best = "best: -"
        self.current = "profiling the data"
        self.rows: list[Any] = []

    # SearchView
    def on_begin(self, run_id: str, families: list[str], budget_s: float, metric: Any) -> None:
        self.budget_s, self.metric, self.started = budget_s, metric.name, time.monotonic()
        self.live.console.print(f"auto run [bold]{run_id}[/]: {', '.join(families)}; valid {metric.name} "
                                f"({metric.direction}), budget {_clock(budget_s)}")

    def on_trial(self, number: int, family: str, params: dict[str, Any]) -> Callbacks:
        self.current = f"trial {number} ({family}): reading the data"
        view = self

        class Follow(Callbacks):
            def on_start(self, rows_per_epoch: int, epochs: int, resumed_rows: int) -> None:
                view.current = f"trial {number} ({family}): training, {epochs} epochs at most"

            def on_eval(self, epoch: int, step: int, metrics: dict[str, float]) -> None:
                value = metrics.get(view.metric)
                shown = f"{value:.4f}" if isinstance(value, float) else "-"
                view.current = f"trial {number} ({family}): epoch {epoch} valid {view.metric} {shown}"

        return Follow()

    def on_trial_end(self, row: Any, best: Any, spent_s: float) -> None:
        self.rows.append(row)
        if best is not None:
            self.best = f"best: trial {best.number} ({best.family}) valid {self.metric} {best.value:.4f}"
        self.current = ""

    def on_phase(self, text: str) -> None:
        self.current = text

    def on_retire(self, family: str, why: str) -> None:
        self.live.console.print(f"[yellow]{family} retired[/] (drawn no more): {why}")

    def __rich__(self) -> RenderableType:
        spent = time.monotonic() - self.started
        bar = Table.grid(expand=True)
        bar.add_column(ratio=1)
        bar.add_column(justify="right")
        bar.add_row(ProgressBar(total=max(self.budget_s, 1e-9), completed=min(spent, self.budget_s)),
                    f" {_clock(spent)} / {_clock(self.budget_s)}")
        table = _trials_table(self.rows[-SHOWN_TRIALS:], self.metric, "latest trials")
        return Group(bar, Text(self.best, style="bold green"), Text(self.current), table)


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
        else f"{seconds // 60}:{seconds % 60:02d}"


def _trials_table(rows: list[Any], metric: str, title: str) -> Table:
    """Trials (TrialRow objects or their dicts) as a table: number, family, state, metric, time, run."""
    table = Table(title=title)
    for col in ("trial", "family", "state", f"valid {metric}", "epochs", "time s", "run"):
        table.add_column(col, justify="right" if col not in ("family", "state", "run") else "left")
    for r in rows:
        d = r if isinstance(r, dict) else r.to_dict()
        value = d.get("value")
        style = "" if d["state"] == "complete" else "dim"
        state = f"{d['state']} (cut)" if d.get("cut") else d["state"]  # at its deadline, best weights kept
        table.add_row(str(d["number"]), d["family"], state, "-" if value is None else f"{value:.4f}",
                      str(d.get("epochs", "")), f"{d['seconds']:.1f}", str(d.get("run_id") or ""), style=style)
    return table


def leaderboard_table(summary: dict[str, Any], limit: int = BOARD_ROWS) -> Table:
    """The leaderboard of an auto run's summary (``shoal auto`` at its end, ``shoal show``): best first."""
    state = summary.get("auto") or {}
    board = summary.get("leaderboard") or []
    counts = state.get("trials") or {}
    done = ", ".join(f"{n} {k}" for k, n in counts.items() if k != "total")
    title = (f"leaderboard: {counts.get('total', len(board))} trials ({done}) in {state.get('spent_s', 0):.0f} s "
             f"of {state.get('budget_s', 0):.0f} s")
    table = _trials_table(board[:limit], str(state.get("metric", "metric")), title)
    if len(board) > limit:
        table.caption = f"the best {limit} of {len(board)} trials; all of them: shoal show RUN --json"
    return table


def report(result: Any) -> None:
    """The end of a search: leaderboard, the winner, its config, PNG and test metrics, compress, next steps."""
    record = result.record
    console.print(leaderboard_table(dict(record.summary)))
    state = record.summary.get("auto") or {}
    best = result.best
    if result.interrupted:
        console.print("[yellow]interrupted[/]: the search stopped; the best so far is kept "
                      f"(continue it: shoal auto --resume {record.run_id} --time-budget 10m)")
    if best is None:
        console.print("[bold red]no trial finished[/]: give a larger --time-budget")
        return
    selection = state.get("selection") or {}
    kept = _kept_or_best(state, best.number)
    console.print(f"[bold green]{kept}:[/] trial {best.number} ({best.family}), valid {result.metric.name} "
                  f"{best.value:.4f} -> run {best.run_id}")
    if "difference" in selection:
        console.print(f"selection: {selection['reason']}")
    if state.get("recheck"):
        console.print(recheck_line(state["recheck"], result.metric.name))
    if state.get("refit"):
        console.print(refit_line(state["refit"]))
    if record.metrics:
        console.print(metrics_table("the winner", split_metrics(record.metrics)))
    tested = state.get("test") or {}
    if tested.get("bad_rows"):
        reasons = tested.get("bad_reasons") or {}
        why = (", ".join(f"{reason}: {n:,}" for reason, n in sorted(reasons.items(), key=lambda kv: -kv[1]))
               or "e.g. label values the training file does not have")
        example = f"; the first: {escape(tested['bad_example'])}" if tested.get("bad_example") else ""
        console.print(f"[yellow]{tested['bad_rows']:,} rows of the test file could not be read[/] ({why}) and are "
                      f"left out of the test metrics{example}", highlight=False)
    console.print(f"best config: {result.best_config}   (reproduce: shoal train {result.best_config})")
    console.print(f"saved {result.png}")
    seeds = ", ".join(str(s.get("sampler_seed")) for s in state.get("sessions", []))
    console.print(f"auto run {record.run_id} ({record.status}): seed {state.get('seed')}, sampler seeds {seeds}; "
                  f"spent {result.spent_s:.1f} s of {state['sessions'][-1]['budget_s']:g} s this session")
    _print_ensemble(state.get("ensemble"), result.metric.name, record.metrics)
    compress = state.get("compress")
    if compress:
        console.print(compress_line(compress))
    served = compress["run_id"] if compress and compress.get("chosen") else record.run_id
    console.print(f"next: shoal show {record.run_id}   |   shoal serve {served}")


def refit_line(refit: dict[str, Any]) -> str:
    """What ``--refit`` did (``auto.refit``): the run trained on every row, or why the trial's model stands."""
    if refit.get("skipped"):
        return f"refit skipped: {escape(refit['skipped'])}"
    if refit.get("error"):
        return f"[yellow]refit failed[/] ({escape(refit['error'])}): the trial's model is kept"
    rows = refit.get("rows")
    epochs = f"{refit['epochs']} epoch{'s' * (refit['epochs'] != 1)}"
    return (f"refit: trial {refit['trial']}'s config on every row" + (f" ({rows:,})" if isinstance(rows, int) else "")
            + f", {epochs}, {refit['seconds']:.1f} s -> run {refit['run_id']} (the model tested and served)")


def recheck_line(recheck: dict[str, Any], metric: str) -> str:
    """What the recheck did (``auto.recheck``): each leader's mean on the fresh splits and the one kept, or why the
    kept trial stands."""
    if recheck.get("skipped"):
        return f"recheck skipped: {escape(recheck['skipped'])}"
    if recheck.get("error"):
        return f"[yellow]recheck failed[/] ({escape(recheck['error'])}): the trial chosen on validation is kept"
    leaders = ", ".join(f"trial {t['trial']} {t['mean']:.4f}" if isinstance(t.get("mean"), int | float)
                        else f"trial {t['trial']} -" for t in recheck["trials"])
    splits = "1 fresh split" if recheck["splits"] == 1 else f"{recheck['splits']} fresh splits"
    return (f"recheck ({recheck['valid_rows']:,} validation rows): mean {metric} on {splits} of "
            f"{recheck['rows']:,} rows: {leaders} -> trial {recheck['chosen']} ({recheck['seconds']:.1f} s)")


def _kept_or_best(state: dict[str, Any], number: Any) -> str:
    """"kept" when the selection rule kept the starter trial over a better one on validation, or the recheck a
    trial other than the first it rechecked, else "best"."""
    selection, recheck = state.get("selection") or {}, state.get("recheck") or {}
    trials = recheck.get("trials") or [{}]
    moved = recheck.get("chosen") == number and trials[0].get("trial") != number
    return "kept" if selection.get("starter") == number or moved else "best"


def compress_line(compress: dict[str, Any]) -> str:
    """What compressing the winner gave (``auto.compress``): the model chosen, none within the budget, or the
    error that stopped it."""
    head = f"compress (p99 <= {compress['budget_ms']:g} ms, {compress['seconds']:.0f} s): "
    if compress.get("error"):
        return head + f"[red]failed[/]: {escape(compress['error'])}"
    chosen = compress.get("chosen")
    if chosen:
        return head + f"chosen {chosen['name']} at p99 {chosen['p99_ms']:.3f} ms -> run {compress['run_id']}"
    return head + (f"[red]no candidate meets the budget[/] (nearest p99 {compress['nearest_p99_ms']:.3f} ms); "
                   f"see shoal show {compress['run_id']}")


def summary_lines(summary: dict[str, Any], metrics: dict[str, Any] | None = None) -> list[str]:
    """An auto run's outcome as ``shoal show`` prints it: the trial kept and why, its config, the picture, the
    seeds and time spent, the ensemble (beside the winner's ``metrics``), compress."""
    state = summary.get("auto") or {}
    best = state.get("best")
    out = []
    if best:
        selection = state.get("selection") or {}
        value = best.get("value")
        kept = _kept_or_best(state, best.get("number"))
        out.append(f"{kept}: trial {best.get('number')} ({best.get('family')}), valid {state.get('metric')} "
                   + (f"{value:.4f}" if isinstance(value, int | float) else "-") + f" -> run {best.get('run_id')}")
        if selection.get("reason"):
            out.append(f"selection: {selection['reason']}")
    if state.get("recheck"):
        out.append(recheck_line(state["recheck"], str(state.get("metric"))))
    if state.get("refit"):
        out.append(refit_line(state["refit"]))
    if state.get("best_config"):
        out.append(f"best config: {state['best_config']}")
    if state.get("png"):
        out.append(f"picture: {state['png']}")
    sessions = state.get("sessions") or []
    if sessions:
        seeds = ", ".join(str(x.get("sampler_seed")) for x in sessions)
        out.append(f"seed {state.get('seed')}, sampler seeds {seeds}; spent {state.get('spent_s', 0):.1f} s of "
                   f"{state.get('budget_s', 0):g} s in {len(sessions)} session{'s' * (len(sessions) > 1)}"
                   + (" (interrupted)" if state.get("interrupted") else ""))
    for family, why in (state.get("retired") or {}).items():
        out.append(f"{family} retired (drawn no more): {why}")
    out += ensemble_lines(state.get("ensemble"), str(state.get("metric")), metrics or {})
    if state.get("compress"):
        out.append(compress_line(state["compress"]))
    return out
