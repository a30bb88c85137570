"""Compress: the most accurate bundle that answers one row within a latency budget, on this machine.

``shoal compress RUN --budget-ms X`` distils the teacher into a few student families and sizes (the teacher's
rows are scored once for all of them), serves each student four ways (PyTorch and ONNX Runtime, fp32 and
dynamic int8), measures the p99 latency of one-row calls and the validation quality of every candidate, and
picks the most accurate candidate whose p99 is within the budget (the teacher itself competes too)::

    quality ▲             ● teacher (too slow)
            │     ●──●                     frontier: no other candidate is both faster and better
            │  ●──┘   ○  ○                 chosen: the best point left of the budget line
            │ ●    ○                       ○: dominated candidates
            └─────────┊──────────▶ p99 ms (batch 1)
                    budget

Quality is measured on the validation rows (never the test file), latency with :func:`shoal.runtime.latency.latency`
on real validation rows, one thread, **end to end**: each call takes one raw row (as read from the file), encodes it
with the bundle's encoder and runs the model, as a served request does; the model call alone is kept beside it
(``model_p99_ms``). The chosen bundle is copied into a new run (kind ``compress``, parent:
the teacher) with the chosen serving form recorded in its ``bundle.json``; a PNG of quality against latency
is saved beside it. When no candidate meets the budget, nothing is chosen and the nearest one is reported.
"""

from __future__ import annotations

import copy
import itertools
import json
import logging
import shutil
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from shoal.artifacts.bundle import Bundle, load_bundle
from shoal.artifacts.registry import Registry, RunKind, RunRecord, RunSummary
from shoal.data.batch import Batch
from shoal.data.readers import BadRowSink, Chunk
from shoal.data.split import HeldOutSplit
from shoal.data.stream import batches, chunks
from shoal.distill import STUDENTS, distill, student_config, teacher_outputs
from shoal.export.onnx import ExportError, export_onnx
from shoal.metrics import HEADLINE
from shoal.runtime.latency import latency
from shoal.runtime.onnx import OnnxPredictor
from shoal.training.callbacks import Callbacks
from shoal.training.evaluation import report

__all__ = ["SYSTEMS", "Candidate", "CompressResult", "StudentSpec", "compress", "default_students", "frontier"]

log = logging.getLogger(__name__)

SYSTEMS = ("torch-fp32", "torch-int8", "onnx-fp32", "onnx-int8", "onnx-raw")  # onnx-raw: model.raw.onnx, one call
LATENCY_ROWS = 256  # one-row calls cycle through this many validation rows


@dataclass(frozen=True)
class StudentSpec:
    """A candidate student: a short label for tables and the model config (``{"name": ..., sizes}``)."""

    label: str
    model: dict[str, Any]


def default_students(text: bool) -> list[StudentSpec]:
    """Three families and sizes, small enough that compress on the demo log takes a few minutes on 2 cores."""
    if text:  # a bytecnn teacher's text becomes hashed n-grams for these (see shoal.distill.student_config)
        return [StudentSpec("logistic", STUDENTS["logistic"]),
                StudentSpec("bag-8", {"name": "bag", "embedding_dim": 8}),
                StudentSpec("bag-32", {"name": "bag", "embedding_dim": 32})]
    return [StudentSpec("logistic", STUDENTS["logistic"]),
            StudentSpec("mlp-8x32", {"name": "mlp", "embedding_dim": 8, "hidden": [32]}),
            StudentSpec("dlrm-8", {"name": "dlrm", "embedding_dim": 8, "bottom_mlp": [16], "top_mlp": [32]})]


@dataclass
class Candidate:
    """One bundle served one way: its validation quality and its one-row latency on this machine."""

    student: str  # a StudentSpec label, or "teacher"
    run_id: str
    system: str  # one of SYSTEMS
    metric: str  # the task's headline metric (shoal.metrics.HEADLINE): higher is better
    quality: float  # on the validation rows
    p50_ms: float  # raw row -> answer (encoder included)
    p99_ms: float
    size_mib: float
    model_p99_ms: float = float("nan")  # the model call alone, on an encoded row
    on_frontier: bool = False
    within_budget: bool = False

    @property
    def name(self) -> str:
        return f"{self.student} {self.system}"


@dataclass
class CompressResult:
    budget_ms: float
    teacher: str
    candidates: list[Candidate]
    chosen: Candidate | None  # None: no candidate meets the budget
    nearest: Candidate  # the fastest candidate (the one to look at when nothing meets the budget)
    png: Path
    record: RunRecord
    students: dict[str, str] = field(default_factory=dict)  # label -> distilled run id

    def to_dict(self) -> dict[str, Any]:
        return {"budget_ms": self.budget_ms, "teacher": self.teacher, "png": str(self.png),
                "candidates": [asdict(c) for c in self.candidates], "students": self.students,
                "chosen": None if self.chosen is None else asdict(self.chosen), "nearest": asdict(self.nearest)}


def frontier(candidates: Sequence[Candidate]) -> list[Candidate]:
    """The Pareto frontier, fastest first: candidates that no other one beats on both latency and quality."""
    best = -np.inf
    out = []
    for c in sorted(candidates, key=lambda c: (c.p99_ms, -c.quality)):
        if c.quality > best:
            out.append(c)
            best = c.quality
    return out


# -- measuring one bundle ---------------------------------------------------------------------------------------
def raw_validation_rows(bundle: Bundle, run_dir: Path, n: int = LATENCY_ROWS) -> list[Chunk]:
    """Up to ``n`` of the run's validation rows as read from the file (raw columns), one-row chunks: what a
    latency measured end to end encodes on every call."""
    first = raw_validation_table(bundle, run_dir, whole=False)
    if first is None or not len(first):
        return []
    return [Chunk(first.table.slice(i, 1), first.lines[i:i + 1], first.file) for i in range(min(n, len(first)))]


def raw_validation_table(bundle: Bundle, run_dir: Path, whole: bool = True) -> Chunk | None:
    """The run's validation rows as read from the file (raw columns, with their line numbers): its ``data.valid``
    file (``whole`` False: its first chunk only), else the held-out split; None when it has neither."""
    found = bundle.config.data.file("valid")
    columns = bundle.encoder.columns(with_label=False)
    if found is not None:
        read = chunks(found[0], found[1], columns, BadRowSink("count"))
        parts = list(read) if whole else list(itertools.islice(read, 1))
        if not parts:
            return None
        import pyarrow as pa

        return Chunk(pa.concat_tables([c.table.select(columns) for c in parts]),
                     np.concatenate([c.lines for c in parts]), parts[0].file)
    split = HeldOutSplit(run_dir)
    if not split.exists():
        return None
    rows = split.read()
    return Chunk(rows.table.select(columns), rows.lines, rows.file)


def export_raw(bundle_dir: Path, out: Path) -> Path | None:
    """``model.raw.onnx`` of the bundle in ``bundle_dir`` written to ``out`` (parity checked), or None (logged)
    when the raw export does not compute this bundle (e.g. a text feature's unknown tokens mode)."""
    from shoal.export.raw import export_raw_onnx

    try:
        return export_raw_onnx(bundle_dir, out, form="auto", parity_rows=64).path
    except ExportError as err:
        log.info("no raw graph for %s: %s", bundle_dir, err)
        return None


def validation_rows(bundle: Bundle, run_dir: Path) -> Batch:
    """The run's validation rows, encoded by ``bundle``: its ``data.valid`` file, else the held-out split."""
    found = bundle.config.data.file("valid")
    sink = BadRowSink("count")
    if found is not None:
        got = [b for b in batches(found[0], found[1], bundle.encoder, sink) if len(b)]
    else:
        split = HeldOutSplit(run_dir)
        if not split.exists():
            raise FileNotFoundError(f"run {run_dir.name} has no validation rows (no data.valid, no {split.FILE}); "
                                    "compress picks on validation quality, so train the teacher with a validation set")
        got = [bundle.encoder.encode(split.read(), sink)]
    if not got or not sum(len(b) for b in got):
        raise ValueError(f"run {run_dir.name}: no usable validation rows to measure quality on")
    return Batch.concat(got)


def _torch_int8(model: nn.Module) -> nn.Module:
    """Dynamic int8 of the Linear layers (torch.ao); embedding tables stay fp32."""
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():  # torch 2.13 warns that torch.ao quantization will move to torchao; it works
        warnings.simplefilter("ignore")
        return quantize_dynamic(copy.deepcopy(model), {nn.Linear}, dtype=torch.qint8)


def _predictor(bundle: Bundle, onnx_dir: Path, system: str) -> Callable[[Batch], np.ndarray]:
    if system == "torch-fp32":
        return bundle.predict_logits
    if system == "torch-int8":
        return Bundle(_torch_int8(bundle.model), bundle.encoder, bundle.config, bundle.meta).predict_logits
    return OnnxPredictor(onnx_dir, variant=system.split("-")[1], threads=1).predict_logits


def measure(bundle: Bundle, onnx_dir: Path, rows: Batch, systems: Sequence[str], student: str, run_id: str,
            sizes: dict[str, float], seconds: float = 0.5, raw: Sequence[Chunk] = (),
            raw_graph: tuple[Path, Chunk] | None = None) -> list[Candidate]:
    """Validation quality and one-row latency (one thread) of ``bundle`` served as each of ``systems``: end to end
    on the ``raw`` one-row chunks (encoded on every call), and the model call alone on encoded rows. ``onnx-raw``
    (with ``raw_graph``: the graph and the raw validation rows) is measured on the raw rows themselves: quality on
    those the encoder kept, latency on one row dict per call (raw_feed + one session run)."""
    assert rows.label is not None
    extra: list[Candidate] = []
    if "onnx-raw" in systems:
        systems = [s for s in systems if s != "onnx-raw"]
        if raw_graph is not None and len(np.unique(rows.lines)) == len(rows):  # rows matched by line number
            try:
                extra.append(_measure_raw(bundle, rows, *raw_graph, student, run_id, seconds))
            except ValueError as err:  # a validation row the graph cannot take (an id past its max_bytes)
                log.info("no onnx-raw candidate for %s: %s", student, err)
    metric = HEADLINE[bundle.task]  # higher is better
    ones = [rows.slice(i, i + 1) for i in range(min(len(rows), LATENCY_ROWS))]
    linear_mib = sum(m.weight.numel() * 4 for m in bundle.model.modules() if isinstance(m, nn.Linear)) / 2**20
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    out = []
    try:
        for system in systems:
            predict = _predictor(bundle, onnx_dir, system)
            quality = report(rows.label, predict(rows), bundle.prior)[metric]
            cycle = itertools.cycle(ones)
            alone = latency(lambda: predict(next(cycle)), seconds=seconds, warmup=10)  # noqa: B023 - called here
            stats = alone
            if raw:
                sink = BadRowSink("count")  # validation rows were checked when the run read them
                encode = bundle.encoder.encode
                rows_in = itertools.cycle(raw)
                stats = latency(lambda: predict(encode(next(rows_in), sink, with_label=False)),  # noqa: B023
                                seconds=seconds, warmup=10)
            size = sizes[system.split("-")[1]] if system.startswith("onnx") else sizes["torch"] - (
                0.75 * linear_mib if system == "torch-int8" else 0.0)
            out.append(Candidate(student, run_id, system, metric, float(quality), stats.p50_ms, stats.p99_ms, size,
                                 model_p99_ms=alone.p99_ms))
    finally:
        torch.set_num_threads(saved)
    return out + extra


def _measure_raw(bundle: Bundle, rows: Batch, path: Path, table: Chunk, student: str, run_id: str,
                 seconds: float) -> Candidate:
    """The raw graph as a candidate: quality on the validation rows the encoder kept (the graph reads their raw
    columns), p99 of one raw row dict per call; its model call is the whole call."""
    from shoal.export.raw import RawOnnxModel

    assert rows.label is not None
    metric = HEADLINE[bundle.task]
    model = RawOnnxModel(path, threads=1)
    keep = np.isin(table.lines, rows.lines)
    kept = table.table.filter(keep)
    order = np.argsort(table.lines[keep], kind="stable")  # the batch's rows are in line order too
    logits = model.predict_logits(kept.take(order))
    by_line = np.argsort(np.asarray(rows.lines), kind="stable")
    labels = np.asarray(rows.label)[by_line]
    quality = report(labels, np.asarray(logits), bundle.prior)[metric]
    ones = [[r] for r in kept.slice(0, LATENCY_ROWS).to_pylist()]
    cycle = itertools.cycle(ones)
    stats = latency(lambda: model.predict_logits(next(cycle)), seconds=seconds, warmup=10)
    return Candidate(student, run_id, "onnx-raw", metric, float(quality), stats.p50_ms, stats.p99_ms,
                     path.stat().st_size / 2**20, model_p99_ms=stats.p99_ms)


# -- the search -------------------------------------------------------------------------------------------------
Progress = Callable[[str, int, int], None]  # (what is being done, steps done, steps in all)


def compress(teacher: str, budget_ms: float, home: str | Path = "shoal-runs", *,
             students: Sequence[StudentSpec] | None = None, systems: Sequence[str] = SYSTEMS,
             temperature: float = 2.0, alpha: float = 0.5, seconds: float = 0.5, include_teacher: bool = True,
             progress: Progress | None = None, callbacks: Callable[[str], Callbacks] | None = None) -> CompressResult:
    """Distil ``students`` from ``teacher``, serve each as ``systems``, pick the best within ``budget_ms`` (p99).

    ``progress`` is told each step; ``callbacks(label)`` gives the training callbacks of each student.
    """
    from shoal.plots import frontier_png
    from shoal.training.runs import load

    if not budget_ms > 0:
        raise ValueError(f"budget_ms must be > 0 (milliseconds per row, p99 at batch 1), not {budget_ms!r}")
    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown or not systems:
        raise ValueError(f"unknown system(s) {unknown}; choose from {', '.join(SYSTEMS)}")
    registry = Registry(Path(home))
    t_record = registry.get(teacher)
    t_bundle = load(t_record.run_id, home)
    text = any(f.tokens == "bytes" for f in t_bundle.config.text)
    specs = list(students) if students is not None else default_students(text)
    if not specs:
        raise ValueError("give at least one student to try")
    record = registry.create_run(f"{t_bundle.config.name}-compressed", t_bundle.config.resolved(),
                                 kind=RunKind.COMPRESS, parent=t_record.run_id)
    work = record.artifact_dir
    total = 2 * len(specs) + 1 + int(include_teacher)
    step = 0

    def tell(what: str) -> None:
        nonlocal step
        if progress is not None:
            progress(what, step, total)
        step += 1

    int8 = any(s.endswith("int8") for s in systems)
    with registry.recording(record.run_id):
        tell("score the training rows with the teacher")
        outputs = teacher_outputs(t_bundle, t_bundle.config)
        candidates: list[Candidate] = []
        trained: dict[str, str] = {}
        if include_teacher:
            tell("measure the teacher")
            t_dir = t_record.artifact_dir / "bundle"
            rep = export_onnx(t_dir, work / "teacher-onnx", int8=int8)
            candidates += measure(t_bundle, rep.dir, validation_rows(t_bundle, t_record.artifact_dir), systems,
                                  "teacher", t_record.run_id, rep.sizes_mib, seconds,
                                  raw_validation_rows(t_bundle, t_record.artifact_dir),
                                  _raw_graph(systems, t_dir, rep.dir, t_bundle, t_record.artifact_dir))
        for spec in specs:
            tell(f"distil {spec.label}")
            cfg = student_config(t_bundle.config, spec.model, name=f"{t_bundle.config.name}-{spec.label}-student")
            rec = distill(t_record.run_id, cfg, home, temperature=temperature, alpha=alpha, outputs=outputs,
                          callbacks=callbacks(spec.label) if callbacks else None)
            trained[spec.label] = rec.run_id
            tell(f"export and measure {spec.label}")
            s_dir = rec.artifact_dir / "bundle"
            rep = export_onnx(s_dir, int8=int8)
            s_bundle = load_bundle(s_dir)
            candidates += measure(s_bundle, rep.dir, validation_rows(s_bundle, rec.artifact_dir), systems,
                                  spec.label, rec.run_id, rep.sizes_mib, seconds,
                                  raw_validation_rows(s_bundle, rec.artifact_dir),
                                  _raw_graph(systems, s_dir, rep.dir, s_bundle, rec.artifact_dir))
        tell("choose")
    for c in frontier(candidates):
        c.on_frontier = True
    for c in candidates:
        c.within_budget = c.p99_ms <= budget_ms
    within = [c for c in candidates if c.within_budget]
    chosen = max(within, key=lambda c: (c.quality, -c.p99_ms)) if within else None
    nearest = min(candidates, key=lambda c: c.p99_ms)
    png = frontier_png(candidates, chosen, budget_ms, work / "compress.png",
                       f"{t_bundle.config.name}: {candidates[0].metric} vs p99 latency (batch 1)")
    result = CompressResult(budget_ms, t_record.run_id, candidates, chosen, nearest, png, record, trained)
    summary: RunSummary = {"compress": result.to_dict()}
    metrics: dict[str, Any] = {}
    if chosen is not None:
        source = registry.get(chosen.run_id)
        bundle = _register_bundle(source.artifact_dir / "bundle", work, chosen,
                                  work / "teacher-onnx" if chosen.student == "teacher" else None)
        summary["bundle"] = str(bundle)
        metrics = dict(source.metrics)
        registry.update(record.run_id, summary={"chosen_config": source.config})
    result.record = registry.complete(record.run_id, metrics, summary)
    return result


def _raw_graph(systems: Sequence[str], bundle_dir: Path, onnx_dir: Path, bundle: Bundle,
               run_dir: Path) -> tuple[Path, Chunk] | None:
    """The raw graph (written into ``onnx_dir``) and the raw validation rows, when ``onnx-raw`` is asked for and
    the bundle has both."""
    if "onnx-raw" not in systems:
        return None
    table = raw_validation_table(bundle, run_dir)
    path = export_raw(bundle_dir, onnx_dir) if table is not None and len(table) else None
    return None if path is None or table is None else (path, table)


def _register_bundle(source: Path, work: Path, chosen: Candidate, onnx_dir: Path | None) -> Path:
    """Copy the chosen bundle (and its ONNX export) into the compress run, with the serving form in its meta."""
    target = work / "bundle"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target)
    if onnx_dir is not None:
        shutil.copytree(onnx_dir, target / "onnx", dirs_exist_ok=True)
    doc_path = target / "bundle.json"
    doc = json.loads(doc_path.read_text(encoding="utf-8"))
    doc["meta"]["compressed"] = {"system": chosen.system, "student": chosen.student, "source_run": chosen.run_id,
                                 "p99_ms": chosen.p99_ms, f"valid_{chosen.metric}": chosen.quality}
    doc_path.write_text(json.dumps(doc, indent=2, sort_keys=True), encoding="utf-8")
    return target
