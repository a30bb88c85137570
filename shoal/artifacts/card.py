"""``shoal card REF``: a model card in Markdown — what a model is, what it learned from, how good and how fast it
is, and its limits — from the registry alone (no torch, no data read).

Sections, after Mitchell et al., "Model Cards for Model Reporting" (2019), kept to what shoal knows: the model and
its versions, lineage (data files with their content hashes, parent run or teachers), the label and features,
metrics on the validation and test rows, latency where ``shoal compress`` measured it, limits (inputs the model
accepts, what it never saw) and the run's pictures.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from shoal.artifacts.models import ModelNotFoundError, ModelRegistry, is_model_ref
from shoal.artifacts.registry import Registry, RunRecord
from shoal.artifacts.run import RunKind

__all__ = ["model_card"]


def _part(config: dict[str, Any], key: str) -> dict[str, Any]:
    value = config.get(key)
    return value if isinstance(value, dict) else {}  # an auto run's config holds its search settings instead


def _when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) if t else "-"


def _size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) if folder.is_dir() else 0


def _metrics_table(metrics: dict[str, Any]) -> list[str]:
    splits = [s for s in ("valid", "test") if any(k.startswith(f"{s}_") for k in metrics)]
    names = sorted({k.split("_", 1)[1] for k in metrics if k.split("_", 1)[0] in splits})
    if not names:
        return ["No metrics (the run had no validation or test rows)."]
    out = ["| metric | " + " | ".join(splits) + " |", "|---|" + "---:|" * len(splits)]
    for name in names:
        cells = []
        for split in splits:
            v = metrics.get(f"{split}_{name}")
            cells.append(f"{v:.4f}" if isinstance(v, float) else ("-" if v is None else f"{v:,}"))
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    return out


def _latency(registry: Registry, run_id: str) -> list[str]:
    """Rows measured by ``shoal compress`` runs for this run, newest first."""
    rows = []
    for rec in registry.list(limit=10_000):
        if rec.kind != RunKind.COMPRESS:
            continue
        for c in (rec.summary.get("compress") or {}).get("candidates", []):
            if c.get("run_id") == run_id:
                rows.append(f"| {c['system']} | {c['p50_ms']:.3f} | {c['p99_ms']:.3f} | {c['size_mib']:.2f} | "
                            f"{rec.run_id} |")
    if not rows:
        return [f"Not measured. `shoal compress {run_id[:15]}` measures it end to end beside smaller students; "
                "`shoal bench` measures one bundle."]
    return ["One row at a time on the machine `shoal compress` ran on:", "",
            "| system | p50 ms | p99 ms | size MiB | measured by |", "|---|---:|---:|---:|---|", *rows]


def model_card(ref: str, home: str | os.PathLike[str]) -> str:
    """The Markdown card of a model reference (``NAME@ALIAS``, ``NAME@v3``, ``NAME``) or a run (id, prefix,
    ``latest``)."""
    registry = Registry(home)
    models = ModelRegistry(home)
    version = None
    if is_model_ref(ref):
        try:
            version = models.resolve(ref)
        except ModelNotFoundError:
            if "@" in ref:
                raise
    record: RunRecord = registry.get(version.run_id if version else ref)
    s, cfg = record.summary, record.config
    title = f"{version.name} v{version.version}" if version else f"run {record.run_id}"
    out = [f"# Model card: {title}", ""]
    if version:
        others = [f"v{v.version}" + (f" ({', '.join(v.aliases)})" if v.aliases else "")
                  for v in models.versions(version.name)]
        out += [f"- **Model**: `{version.name}`, version {version.version}"
                + (f", aliases: {', '.join(f'`{a}`' for a in version.aliases)}" if version.aliases else ""),
                f"- **Versions**: {', '.join(others)}"]
        if version.note:
            out.append(f"- **Note**: {version.note}")
    model = _part(cfg, "model")
    bundle = record.artifact_dir / "bundle"
    out += [f"- **Run**: `{record.run_id}` ({record.kind}, {record.status}), trained {_when(record.finished_at)}",
            f"- **Architecture**: `{model.get('name', '?')}` "
            + ", ".join(f"{k}={v}" for k, v in model.items() if k != "name"),
            f"- **Bundle**: `{bundle}` ({_size(bundle) / 2**20:.1f} MiB)", ""]

    out += ["## Lineage", ""]
    for split, f in ((s.get("lineage") or {}).get("data") or {}).items():
        digest = f"sha256 `{f['sha256']}`" if f.get("sha256") else "not hashed (over 1 GiB, or a folder)"
        out.append(f"- {split} data: `{f['path']}`, {f.get('bytes', 0):,} bytes, modified {f.get('modified', '-')}, "
                   f"{digest}")
    if not (s.get("lineage") or {}).get("data"):
        out.append("- data: not recorded (a run from before lineage was kept)")
    teachers = (s.get("distill") or {}).get("teachers") or []
    if teachers:
        out.append(f"- distilled from: {', '.join(f'`{t}`' for t in teachers)}")
    elif record.parent:
        out.append(f"- parent run: `{record.parent}`")
    out.append("")

    label = _part(cfg, "label")
    rows = ", ".join(f"{s[k]:,} {k.split('_')[0]}" for k in ("train_rows", "valid_rows", "test_rows") if s.get(k))
    out += ["## Data and label", "", f"- rows: {rows or '-'}"
            + (f"; {s['quarantined_rows']:,} bad rows quarantined" if s.get("quarantined_rows") else "")]
    if s.get("classes"):
        out.append(f"- label `{label.get('column')}`: {len(s['classes'])} classes ({', '.join(s['classes'])})")
    else:
        base = s.get("train_base_rate")
        out.append(f"- label `{label.get('column')}`: binary, positive = {label.get('positive')}"
                   + (f", training base rate {base:.4f}" if isinstance(base, float) else ""))
    out += ["", "| feature | kind | reads column | options |", "|---|---|---|---|"]
    features = cfg.get("features")
    for f in features if isinstance(features, list) else []:
        if not isinstance(f, dict):
            continue
        opts = ", ".join(f"{k}={v}" for k, v in f.items() if k not in ("name", "kind", "column") and v is not None)
        opts = opts.replace("|", "\\|")  # a list separator, not a table cell border
        out.append(f"| {f.get('name')} | {f.get('kind')} | {f.get('column') or f.get('name')} | {opts} |")
    out += ["", "## Metrics", "", *_metrics_table(record.metrics), "",
            "NE is the log loss relative to predicting the training base rate (below 1 is better than it).", ""]
    out += ["## Latency", "", *_latency(registry, record.run_id), ""]
    out += ["## Limits", "",
            "- Inputs: one JSON object per row with the columns above (`shoal serve`: `GET /model` lists the "
            "types); numbers outside float32's range, ids or texts over the server's limits are refused (422).",
            "- Ids never seen in training share hashed embedding rows with seen ones: their predictions fall back "
            "towards what the other features say.",
            f"- Learned from {s.get('train_rows', 0):,} rows of the files above; rows unlike them (other markets, "
            "other periods) are outside what the metrics describe.", ""]
    pictures = [s[k] for k in ("learning_curve_png", "valid_curves_png", "test_curves_png", "valid_confusion_png",
                               "test_confusion_png", "valid_regression_png", "test_regression_png") if s.get(k)]
    if pictures:
        out += ["## Pictures", "", *[f"![{Path(p).stem}]({p})" for p in pictures], ""]
    return "\n".join(out)
