"""ONNX export of a bundle (fp32, int8, fp16 embedding tables) and its parity check.

``nn.EmbeddingBag`` exports as an ONNX ``Loop``, far slower than torch's kernel; ``Gather`` over a padded
index matrix followed by a weighted sum is plain Gather + Mul + ReduceSum. So the exported graph takes the
sparse inputs in a padded form (:mod:`shoal.runtime.feed`), computes exactly the mean pooling of
:class:`~shoal.models.embeddings.SparseArch`, and reuses the trained weights; :func:`export_onnx` proves it on
real rows (fp32: max abs logit difference <= :data:`FP32_TOLERANCE`) every time it writes a file::

    report = export_onnx("runs/2024.../bundle", int8=True)      # writes bundle/onnx/
    predictor = OnnxPredictor("runs/2024.../bundle/onnx", variant="int8")
    proba = predictor.predict_proba(batch)                      # (B,) binary, (B, C) multiclass

What is written (``bundle/onnx/``): ``model.onnx`` (fp32), ``model.int8.onnx`` (dynamic int8 weights, with
``int8``), ``model.fp16.onnx`` (fp16 embedding tables, with ``fp16_embeddings``) and ``export.json`` (the input
layout, the parity figures and the sizes on disk).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shoal.artifacts.bundle import Bundle, load_bundle
from shoal.data.batch import Batch
from shoal.data.split import HeldOutSplit
from shoal.errors import ShoalError
from shoal.export.graph import count_loops, embeddings_to_fp16, quantize_int8
from shoal.export.padded import layout_for, trace_to_onnx
from shoal.metrics import TaskPrior, probabilities, sigmoid
from shoal.runtime.feed import InputLayout
from shoal.runtime.onnx import EXPORT_FORMAT, EXPORT_VERSION, FILES, OnnxPredictor

__all__ = [
    "FP16_TOLERANCE",
    "FP32_TOLERANCE",
    "INT8_TOLERANCE",
    "ExportError",
    "ExportReport",
    "export_onnx",
    "sample_rows",
]

log = logging.getLogger(__name__)

OPSET = 17
FP32_TOLERANCE = 1e-4  # max |logit(onnx) - logit(torch)|: the same arithmetic, reordered sums only
FP16_TOLERANCE = 1e-2  # fp16 tables keep ~3 significant digits per embedding value
INT8_TOLERANCE = 0.01  # |metric(int8) - metric(torch)| for AUC (binary) or accuracy (multiclass), on the rows checked
PARITY_ROWS = 2000


class ExportError(ShoalError, ValueError):
    """An export whose parity check failed, or a bundle that cannot be exported."""


@dataclass
class ExportReport:
    """What :func:`export_onnx` wrote and how close each file is to the PyTorch model on real rows.

    ``parity[variant]`` holds ``max_abs_logit_diff`` and ``max_abs_proba_diff`` against torch, the metric of
    each (``auc``/``logloss`` or ``accuracy``/``logloss``) for torch and for the variant, and ``ok``.
    """

    dir: Path
    files: dict[str, str]  # variant -> file name inside ``dir``
    sizes_mib: dict[str, float]  # variant (and "torch": model.safetensors) -> MiB on disk
    parity: dict[str, dict[str, Any]]
    rows: int
    rows_source: str
    layout: dict[str, Any]
    seconds: float
    loops: int = 0  # ONNX Loop/Scan nodes in the fp32 graph (0: the fast form)

    def path(self, variant: str = "fp32") -> Path:
        return self.dir / self.files[variant]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["dir"] = str(self.dir)
        return d


# -- real rows for the parity check -------------------------------------------------------------------------
def sample_rows(bundle: Bundle, bundle_dir: Path | None = None, rows: int = PARITY_ROWS,
                data: Path | None = None) -> tuple[Batch, str]:
    """Up to ``rows`` encoded rows to check parity on, and where they came from.

    Tried in order: ``data``; the run's test, validation and held-out split files; its training file. When
    none can be read (a bundle copied without its data), random ids and dense values are used instead, with
    source ``"random"`` (parity still holds on them; the metrics are then left out).
    """
    from shoal.data.readers import BadRowSink
    from shoal.data.stream import batches

    cfg = bundle.config
    candidates: list[tuple[Path, Any, HeldOutSplit | None]] = []  # (file, reading options, split file)
    if data is not None:
        candidates.append((Path(data), cfg.data, None))
    for split in ("test", "valid"):
        where = _split_file(cfg.data, split)
        if where is not None:
            candidates.append((*where, None))
    if bundle_dir is not None:
        held_out = HeldOutSplit(Path(bundle_dir).parent)  # the run folder holds the bundle and the split file
        candidates.append((held_out.path, cfg.data, held_out))
    candidates.append((Path(cfg.data.train), cfg.data, None))
    found: list[Batch] = []
    sources: list[str] = []
    need = rows
    for path, options, held in candidates:
        if need <= 0 or not path.is_file() or str(path) in sources:
            continue
        try:
            got = _split_rows(bundle, held, need) if held is not None else _take(
                batches(path, options, bundle.encoder, BadRowSink("count")), need)
        except Exception as err:  # an unreadable file: try the next one
            log.warning("could not read parity rows from %s: %s", path, err)
            continue
        if got is not None:
            found.append(got)
            sources.append(str(path))
            need -= len(got)
    if found:
        return Batch.concat(found), " + ".join(sources)
    layout = layout_for(bundle.encoder)
    return random_rows(layout, list(bundle.encoder.buckets), rows, seed=0), "random"


def _split_file(data: Any, split: str) -> tuple[Path, Any] | None:
    """(path, reading options) of the config's ``split`` file, or None."""
    if hasattr(data, "file"):
        return data.file(split)
    path = getattr(data, split, None)
    return (Path(path), data) if path is not None else None


def _take(stream: Iterator[Batch], rows: int) -> Batch | None:
    got: list[Batch] = []
    n = 0
    for b in stream:
        if len(b):
            got.append(b.slice(0, rows - n) if n + len(b) > rows else b)
            n += len(got[-1])
        if n >= rows:
            break
    return Batch.concat(got) if got else None


def _split_rows(bundle: Bundle, split: HeldOutSplit, rows: int) -> Batch | None:
    """The first ``rows`` rows of the run's held-out split file, encoded."""
    from shoal.data.readers import BadRowSink

    batch = bundle.encoder.encode(split.read(rows), BadRowSink("count"))
    return batch if len(batch) else None


def random_rows(layout: InputLayout, buckets: list[int], rows: int, seed: int = 0, max_list: int = 4) -> Batch:
    """Random encoded rows: one id per row for single inputs, lists of 0..``max_list`` ids for list inputs."""
    rng = np.random.default_rng(seed)
    ids, offsets = [], []
    dense_dim = layout.dense_dim
    for k, b in enumerate(buckets):
        lengths = rng.integers(0, max_list + 1, rows) if k in layout.lists else np.ones(rows, np.int64)
        offsets.append(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64))
        ids.append(rng.integers(0, b, int(lengths.sum())).astype(np.int64))
    return Batch(dense=rng.normal(size=(rows, dense_dim)).astype(np.float32), ids=ids, offsets=offsets,
                 label=None, lines=np.arange(1, rows + 1))


# -- export ---------------------------------------------------------------------------------------------------
def export_onnx(bundle: Bundle | str | Path, out_dir: str | Path | None = None, *, int8: bool = False,
                fp16_embeddings: bool = False, rows: Batch | None = None, parity_rows: int = PARITY_ROWS,
                data: Path | None = None, threads: int | None = None) -> ExportReport:
    """Export a bundle to ONNX (plus int8 / fp16-embedding variants) and check each file against PyTorch.

    ``bundle`` is a bundle folder (the files go to ``bundle/onnx`` unless ``out_dir`` is given) or a loaded
    :class:`~shoal.artifacts.bundle.Bundle` (then ``out_dir`` is required). Parity is checked on ``rows`` when given,
    else on up to ``parity_rows`` rows of the run's data (:func:`sample_rows`). Raises :class:`ExportError`
    when the fp32 file differs from torch by more than :data:`FP32_TOLERANCE` (the files are left in place
    to inspect); int8 and fp16 are checked against their documented tolerances and reported.
    """
    started = time.perf_counter()
    bundle_dir: Path | None = None
    if isinstance(bundle, Bundle):
        if out_dir is None:
            raise ExportError("export_onnx(Bundle, ...) needs out_dir (or pass the bundle folder instead)")
        b = bundle
    else:
        bundle_dir = Path(bundle)
        b = load_bundle(bundle_dir)
    out = Path(out_dir) if out_dir is not None else Path(bundle_dir or ".") / "onnx"
    out.mkdir(parents=True, exist_ok=True)
    layout = layout_for(b.encoder, b.model)

    if rows is None:
        rows, source = sample_rows(b, bundle_dir, parity_rows, data)
    else:
        source = "given"
    if len(rows) == 0:
        raise ExportError("no rows to check parity on; pass rows with at least one row")

    fp32 = out / FILES["fp32"]
    trace_to_onnx(b.model, layout, fp32, list(b.encoder.buckets), opset=OPSET)
    files = {"fp32": FILES["fp32"]}
    if int8:
        quantize_int8(fp32, out / FILES["int8"])
        files["int8"] = FILES["int8"]
    if fp16_embeddings:
        embeddings_to_fp16(fp32, out / FILES["fp16"])
        files["fp16"] = FILES["fp16"]

    sizes = {v: _mib(out / f) for v, f in files.items()}
    if bundle_dir is not None and (bundle_dir / "model.safetensors").is_file():
        sizes["torch"] = _mib(bundle_dir / "model.safetensors")
    else:
        sizes["torch"] = sum(t.numel() * t.element_size() for t in b.model.state_dict().values()) / 2**20

    doc = {"format": EXPORT_FORMAT, "version": EXPORT_VERSION, "opset": OPSET, "layout": layout.to_dict(),
           "outputs": _outputs(b), "classes": b.classes, "task": b.task,
           **({"tags": b.tags} if b.tags else {}),
           **({"tasks": b.meta["tasks"]} if b.task == "multitask" else {}), "files": files, "sizes_mib": sizes}
    _write_json(out / "export.json", doc)  # OnnxPredictor reads the layout from here

    reference = b.predict_logits(rows)
    parity: dict[str, dict[str, Any]] = {}
    tolerances = {"fp32": FP32_TOLERANCE, "fp16": FP16_TOLERANCE}
    for variant in files:
        got = OnnxPredictor(out, variant=variant, threads=threads).predict_logits(rows)
        parity[variant] = (_compare_tasks(reference, got, rows.label, tolerances.get(variant), b)
                           if b.task == "multitask" else
                           _compare(reference, got, rows.label, tolerances.get(variant), b.prior, b.task))
    report = ExportReport(dir=out, files=files, sizes_mib=sizes, parity=parity, rows=len(rows), rows_source=source,
                          layout=layout.to_dict(), seconds=time.perf_counter() - started, loops=count_loops(fp32))
    _write_json(out / "export.json", {**doc, "parity": parity, "rows": len(rows), "rows_source": source,
                                      "loops": report.loops})
    if not parity["fp32"]["ok"]:
        raise ExportError(
            f"{fp32}: ONNX logits differ from PyTorch by {parity['fp32']['max_abs_logit_diff']:.3g} on "
            f"{len(rows)} rows (tolerance {FP32_TOLERANCE}); this is a bug in shoal's export of model "
            f"{b.config.model.name!r}, please report it with {out / 'export.json'}"
        )
    for variant, p in parity.items():
        if not p["ok"]:
            log.warning("%s: outside its tolerance %s", variant, p)
    return report


def _outputs(b: Bundle) -> int:
    names = b.classes or b.tags or b.tasks
    return len(names) if names else 1


def _mib(path: Path) -> float:
    return path.stat().st_size / 2**20


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=True, default=str), encoding="utf-8")
    tmp.replace(path)


def _quality(proba: np.ndarray, label: np.ndarray, regression: bool = False) -> dict[str, float]:
    """AUC and log loss (binary), accuracy and log loss (multiclass), RMSE and NMSE (regression, ``proba`` the
    predicted values), mean AUC, micro-F1 and log loss (multilabel: (N, T) ``label``): the metric change of a
    variant."""
    eps = 1e-7
    if label.ndim == 2:
        from shoal.metrics import multilabel_report

        m = multilabel_report(label, proba)
        return {k: m[k] for k in ("mean_auc", "micro_f1", "logloss") if m[k] == m[k]}  # a NaN AUC is left out
    if regression:
        from shoal.metrics import regression_report

        r = regression_report(label, proba)
        return {"rmse": r["rmse"], "nmse": r["nmse"]}
    if proba.ndim == 1:
        from shoal.metrics import auc, log_loss

        y = label.astype(np.float64)
        out = {"logloss": log_loss(y, proba)}
        if 0 < y.sum() < len(y):
            out["auc"] = auc(y, proba)
        return out
    y = label.astype(np.int64)
    picked = np.clip(proba[np.arange(len(y)), y], eps, 1.0)
    return {"accuracy": float((proba.argmax(axis=1) == y).mean()), "logloss": float(-np.log(picked).mean())}


def _compare_tasks(reference: np.ndarray, got: np.ndarray, label: np.ndarray | None, tolerance: float | None,
                   b: Bundle) -> dict[str, Any]:
    """:func:`_compare` for a multitask model's (N, T) outputs: a regression task's difference counts in standard
    deviations of its training label, a binary task's as a logit; the metric is the mean of each task's AUC or R^2
    (:func:`~shoal.metrics.multitask_report`, the rows with unknown labels left out)."""
    from shoal.metrics import multitask_report

    prior = b.prior
    tasks = [t for t in prior if isinstance(t, TaskPrior)] if isinstance(prior, list) else []
    scale = np.array([float(t.get("train_label_std", 1.0)) for t in b.meta["tasks"]])
    diff = np.abs(reference.astype(np.float64) - got.astype(np.float64)) / scale
    out: dict[str, Any] = {"max_abs_logit_diff": float(diff.max()) if diff.size else 0.0}
    ok = True if tolerance is None else out["max_abs_logit_diff"] <= tolerance
    if label is not None and len(label):
        ref_q = multitask_report(label, reference, tasks)["mean_task_score"]
        got_q = multitask_report(label, got, tasks)["mean_task_score"]
        out["torch_mean_task_score"], out["mean_task_score"] = ref_q, got_q
        if tolerance is None and ref_q == ref_q:  # int8: judged by the metric change
            ok = abs(got_q - ref_q) <= INT8_TOLERANCE
    out["tolerance"] = tolerance if tolerance is not None else {"metric_change": INT8_TOLERANCE}
    out["ok"] = bool(ok)
    return out


def _compare(reference: np.ndarray, got: np.ndarray, label: np.ndarray | None,
             tolerance: float | None, prior: Any = None, task: str = "") -> dict[str, Any]:
    """Differences of ``got`` against the torch ``reference`` logits, and the metric of each on ``label``.
    A regression model's outputs are values in the label's units: their difference counts in standard
    deviations of the training label (``prior["std"]``), so the tolerance means the same at any scale."""
    if got.shape != reference.shape:
        raise ExportError(f"ONNX output shape {got.shape} differs from PyTorch's {reference.shape}")
    regression = isinstance(prior, dict)
    if regression:
        scale = float(prior["std"])
        p_ref, p_got = reference.astype(np.float64), got.astype(np.float64)
        out: dict[str, Any] = {"max_abs_logit_diff": float(np.abs(reference - got).max()) / scale,
                               "max_abs_value_diff": float(np.abs(reference - got).max())}
    else:
        prob = sigmoid if task == "multilabel" else probabilities
        p_ref, p_got = prob(reference), prob(got)
        out = {"max_abs_logit_diff": float(np.abs(reference - got).max()),
               "max_abs_proba_diff": float(np.abs(p_ref - p_got).max())}
    ok = True if tolerance is None else out["max_abs_logit_diff"] <= tolerance
    if label is not None and np.isfinite(label).all():
        ref_q, got_q = _quality(p_ref, label, regression), _quality(p_got, label, regression)
        for k in ref_q:
            out[f"torch_{k}"], out[k] = ref_q[k], got_q[k]
        key = "auc" if "auc" in ref_q else "mean_auc" if "mean_auc" in ref_q else "accuracy" if "accuracy" in ref_q \
            else "nmse" if "nmse" in ref_q else None
        if tolerance is None and key is not None:  # int8: judged by the metric change
            ok = abs(got_q[key] - ref_q[key]) <= INT8_TOLERANCE
    out["tolerance"] = tolerance if tolerance is not None else {"metric_change": INT8_TOLERANCE}
    out["ok"] = bool(ok)
    return out
