"""ONNX export of a bundle (fp32, int8, fp16 embedding tables), its parity check, and :class:`OnnxPredictor`.

``nn.EmbeddingBag`` exports as an ONNX ``Loop`` that runs 5-18x slower than torch; ``Gather`` over a padded
index matrix followed by a weighted sum is plain Gather + Mul + ReduceSum. So the exported graph takes the
sparse inputs in a padded form (:mod:`shoal.padded`), computes exactly the mean pooling of
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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from shoal.artifacts.bundle import Bundle, load_bundle
from shoal.data.batch import Batch
from shoal.export.graph import count_loops, embeddings_to_fp16, quantize_int8
from shoal.export.padded import InputLayout, layout_for, padded_feed, trace_to_onnx
from shoal.metrics import probabilities

__all__ = [
    "FP16_TOLERANCE",
    "FP32_TOLERANCE",
    "INT8_TOLERANCE",
    "ExportError",
    "ExportReport",
    "OnnxPredictor",
    "export_onnx",
    "sample_rows",
]

log = logging.getLogger(__name__)

EXPORT_FORMAT = "shoal-onnx"
EXPORT_VERSION = 1
OPSET = 17
FILES = {"fp32": "model.onnx", "int8": "model.int8.onnx", "fp16": "model.fp16.onnx"}
FP32_TOLERANCE = 1e-4  # max |logit(onnx) - logit(torch)|: the same arithmetic, reordered sums only
FP16_TOLERANCE = 1e-2  # fp16 tables keep ~3 significant digits per embedding value
INT8_TOLERANCE = 0.01  # |metric(int8) - metric(torch)| for AUC (binary) or accuracy (multiclass), on the rows checked
PARITY_ROWS = 2000


class ExportError(ValueError):
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
    candidates: list[tuple[Path, Any, bool]] = [(Path(data), cfg.data, False)] if data is not None else []
    for split in ("test", "valid"):
        where = _split_file(cfg.data, split)
        if where is not None:
            candidates.append((*where, False))
    if bundle_dir is not None:
        candidates.append((Path(bundle_dir).parent / "valid-split.parquet", cfg.data, True))
    candidates.append((Path(cfg.data.train), cfg.data, False))
    found: list[Batch] = []
    sources: list[str] = []
    need = rows
    for path, options, is_split in candidates:
        if need <= 0 or not path.is_file() or str(path) in sources:
            continue
        try:
            got = _read_rows(bundle, path, need) if is_split else _take(
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


def _read_rows(bundle: Bundle, path: Path, rows: int) -> Batch | None:
    """Rows of the trainer's held-out split file (parquet, with a line-number column)."""
    import pyarrow.parquet as pq

    from shoal.data.readers import BadRowSink, Chunk

    table = pq.read_table(path).slice(0, rows)
    line_col = "__shoal_line__"
    lines = table.column(line_col).to_numpy() if line_col in table.column_names else np.arange(1, len(table) + 1)
    if line_col in table.column_names:
        table = table.drop_columns([line_col])
    batch = bundle.encoder.encode(Chunk(table, lines, str(path)), BadRowSink("count"))
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
           "outputs": _outputs(b), "classes": b.classes, "files": files, "sizes_mib": sizes}
    _write_json(out / "export.json", doc)  # OnnxPredictor reads the layout from here

    reference = b.predict_logits(rows)
    parity: dict[str, dict[str, Any]] = {}
    tolerances = {"fp32": FP32_TOLERANCE, "fp16": FP16_TOLERANCE}
    for variant in files:
        got = OnnxPredictor(out, variant=variant, threads=threads).predict_logits(rows)
        parity[variant] = _compare(reference, got, rows.label, tolerances.get(variant))
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
    return len(b.classes) if b.classes else 1


def _mib(path: Path) -> float:
    return path.stat().st_size / 2**20


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=True, default=str), encoding="utf-8")
    tmp.replace(path)


def _quality(proba: np.ndarray, label: np.ndarray) -> dict[str, float]:
    """AUC and log loss (binary), accuracy and log loss (multiclass): the metric change of a variant."""
    eps = 1e-7
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


def _compare(reference: np.ndarray, got: np.ndarray, label: np.ndarray | None,
             tolerance: float | None) -> dict[str, Any]:
    """Differences of ``got`` against the torch ``reference`` logits, and the metric of each on ``label``."""
    if got.shape != reference.shape:
        raise ExportError(f"ONNX output shape {got.shape} differs from PyTorch's {reference.shape}")
    p_ref, p_got = probabilities(reference), probabilities(got)
    out: dict[str, Any] = {"max_abs_logit_diff": float(np.abs(reference - got).max()),
                           "max_abs_proba_diff": float(np.abs(p_ref - p_got).max())}
    ok = True if tolerance is None else out["max_abs_logit_diff"] <= tolerance
    if label is not None and np.isfinite(label).all():
        ref_q, got_q = _quality(p_ref, label), _quality(p_got, label)
        for k in ref_q:
            out[f"torch_{k}"], out[k] = ref_q[k], got_q[k]
        key = "auc" if "auc" in ref_q else "accuracy" if "accuracy" in ref_q else None
        if tolerance is None and key is not None:  # int8: judged by the metric change
            ok = abs(got_q[key] - ref_q[key]) <= INT8_TOLERANCE
    out["tolerance"] = tolerance if tolerance is not None else {"metric_change": INT8_TOLERANCE}
    out["ok"] = bool(ok)
    return out


# -- serving --------------------------------------------------------------------------------------------------
def session_options(threads: int | None = None) -> Any:
    """ONNX Runtime options for a small CPU box: ``threads`` intra-op threads (default 1), one inter-op
    thread, sequential execution, all graph optimizations, and no busy-waiting between ops (spinning threads
    slow every other process on shared cores, as OpenMP's do: see shoal/cli.py).

    One thread is the default because these graphs are many small ops: on 2 cores, DLRM on criteo_small ran
    at p99 0.065 ms (batch 1) and 920k rows/s (batch 256) with 1 thread, 0.19 ms and 450k rows/s with 2.
    Give ``threads=2`` for wide convolutions (bytecnn on long texts)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads or 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.log_severity_level = 3
    return so


@dataclass
class OnnxPredictor:
    """An exported model served by ONNX Runtime, with :class:`~shoal.artifacts.bundle.Bundle`'s prediction methods.

    ``path`` is the export folder (``bundle/onnx``), a bundle folder holding one, or a ``.onnx`` file beside
    its ``export.json``. ``variant`` picks ``fp32``, ``int8`` or ``fp16``::

        p = OnnxPredictor("runs/.../bundle/onnx", variant="int8")
        p.predict_logits(batch)   # (B,) or (B, C) float32
        p.predict_proba(batch)    # (B,) sigmoid for binary, (B, C) softmax for multiclass (float64)
    """

    path: str | Path
    variant: str = "fp32"
    threads: int | None = None
    layout: InputLayout = field(init=False)
    meta: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        import onnxruntime as ort

        path = Path(self.path)
        if (path / "onnx" / "export.json").is_file():
            path = path / "onnx"
        if path.suffix == ".onnx":
            folder, file = path.parent, path
        else:
            folder = path
            if self.variant not in FILES:
                raise ValueError(f"variant must be one of {', '.join(FILES)}, not {self.variant!r}")
            file = folder / FILES[self.variant]
        doc_path = folder / "export.json"
        if not doc_path.is_file():
            raise FileNotFoundError(f"{folder}: no export.json; export the bundle first: shoal export RUN --onnx")
        if not file.is_file():
            flag = {"int8": " --int8", "fp16": " --fp16-embeddings"}.get(self.variant, "")
            raise FileNotFoundError(f"{file} does not exist; write it with: shoal export RUN --onnx{flag}")
        self.meta = json.loads(doc_path.read_text(encoding="utf-8"))
        if self.meta.get("format") != EXPORT_FORMAT or self.meta.get("version") != EXPORT_VERSION:
            raise ValueError(f"{doc_path}: not a shoal ONNX export of version {EXPORT_VERSION}; re-export it")
        self.layout = InputLayout.from_dict(self.meta["layout"])
        self.session = ort.InferenceSession(str(file), session_options(self.threads),
                                            providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]  # inputs the graph kept

    @property
    def classes(self) -> list[str] | None:
        classes = self.meta.get("classes")
        return list(classes) if classes else None

    def feed(self, batch: Batch) -> dict[str, np.ndarray]:
        """The session's inputs for ``batch`` (the padded form of :func:`shoal.padded.padded_feed`)."""
        full = padded_feed(batch, self.layout)
        return {name: full[name] for name in self.input_names}

    def predict_logits(self, batch: Batch, batch_size: int = 8192) -> np.ndarray:
        if 0 < len(batch) <= batch_size:  # one call (serving): no chunk list, no concatenation
            return self.session.run(None, self.feed(batch))[0]
        out = []
        for start in range(0, len(batch), batch_size):
            part = batch.slice(start, start + batch_size) if len(batch) > batch_size else batch
            out.append(self.session.run(None, self.feed(part))[0])
        if not out:
            return np.zeros((0,) if self.meta.get("outputs", 1) == 1 else (0, self.meta["outputs"]), np.float32)
        return np.concatenate(out)

    def predict_proba(self, batch: Batch) -> np.ndarray:
        """Probabilities: shape (B,) for a binary label (of the positive class), (B, C) for a multiclass one."""
        return probabilities(self.predict_logits(batch))

