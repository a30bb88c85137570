"""The self-contained graph as a predictor: raw rows in, one ONNX Runtime call, the served answer out.

``shoal export RUN --raw`` writes ``bundle/onnx/model.raw.onnx`` (:mod:`shoal.export.raw`): the encoder's
preprocessing and the model in one graph. :class:`RawGraphPredictor` runs it on validated raw rows, so a request
costs one :func:`~shoal.export.raw.raw_feed` (bytes and lengths, no hashing in Python) and one ``session.run``::

    raw row {"d0": 3.0, "s0": "a9f3", "title": "..."}          the Python-encoder path (today's, the fallback)
      -> raw_feed  -> session.run(model.raw.onnx) -> answer      -> encoder.encode -> torch / model.onnx -> answer

The answer is what the encoded path gives: the graph's ``logits`` turned into probabilities in float64 by the same
functions (:func:`~shoal.metrics.probabilities`, :func:`~shoal.metrics.sigmoid`), values for a regression label.

:class:`EndToEndPredictor` is what ``shoal serve`` and ``shoal predict`` hold: the raw graph for the batch sizes
where it answers (measured end to end by ``auto``, :func:`select_end_to_end`), the encoded predictor for the
others and for the rows the graph cannot take (an id longer than the export's ``max_bytes``, a dense cell that is
not a number: there the encoder's bad-row report is the answer).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from shoal.artifacts.bundle import Bundle, answers, task_of
from shoal.data.batch import Batch
from shoal.data.readers import BadRowSink, Chunk
from shoal.export.raw_feed import FAST_ROWS
from shoal.runtime.choice import BackendChoice, ChoiceCache, Route, choice_key, decide, measure
from shoal.runtime.latency import BenchResult, peak_rss_mib, time_system
from shoal.runtime.onnx import failed_parity
from shoal.runtime.predictor import Predictor, RoutedPredictor, TorchPredictor, select_predictor
from shoal.runtime.refs import content_version

__all__ = ["RAW_BACKEND", "EncodedPath", "EndToEndPredictor", "RawGraphPredictor", "bench_end_to_end",
           "raw_graph_refusal", "raw_timing_rows", "select_end_to_end"]

log = logging.getLogger(__name__)

RAW_BACKEND = "onnxruntime-raw"


class RawGraphPredictor:
    """``bundle/onnx/model.raw.onnx`` run by ONNX Runtime: raw rows (a pyarrow table or row dicts keyed by
    column) -> probabilities (B,) binary, (B, C) multiclass, (B, T) multilabel, or values (B,) for regression.

    Raises ValueError (from :func:`~shoal.export.raw.raw_feed`) for rows the graph cannot take; the caller then
    takes the encoded path, whose encoder reports the bad row."""

    backend = RAW_BACKEND

    def __init__(self, folder: Path, threads: int | None = None) -> None:
        from shoal.export.raw import RAW_FILE, RawOnnxModel

        self.model = RawOnnxModel(Path(folder) / "onnx" / RAW_FILE, threads=threads)
        self.contract = self.model.contract
        self.task = task_of(self.contract)

    def predict_rows(self, rows: pa.Table | Sequence[Mapping[str, Any]]) -> np.ndarray:
        logits = self.model.predict_logits(rows)
        kinds = [t["kind"] for t in self.contract["tasks"]] if self.task == "multitask" else None
        return answers(logits, self.task, kinds)

    def predict_proba(self, rows: pa.Table) -> np.ndarray:
        """Rows as a table (what ``auto`` times): a few rows go as row dicts, as the server sends them."""
        return self.predict_rows(rows.to_pylist() if len(rows) <= FAST_ROWS else rows)


class EncodedPath:
    """Today's path as one call, for timing it against the raw graph: raw table -> encoder -> ``predictor``."""

    def __init__(self, bundle: Bundle, predictor: Predictor) -> None:
        self.encoder = bundle.encoder
        self.predictor = predictor
        self.backend = predictor.backend

    def predict_proba(self, rows: pa.Table) -> np.ndarray:
        chunk = Chunk(rows, np.arange(1, len(rows) + 1, dtype=np.int64), "rows")
        return self.predictor.predict_proba(self.encoder.encode(chunk, BadRowSink("count"), with_label=False))


class EndToEndPredictor:
    """Raw rows -> answer, as serving runs it: the raw graph for the batch sizes it answers, ``encoded`` (a
    :class:`~shoal.runtime.predictor.Predictor` on encoded batches) for the others and as the fallback.

    ``backend`` is the one-line summary (``auto: onnxruntime-raw for 1-40 rows, torch for 41+ rows``); ``choice``
    what ``auto`` measured (end to end), None for an explicit backend."""

    def __init__(self, encoded: Predictor, raw: RawGraphPredictor | None = None,
                 routes: tuple[Route, ...] | None = None, choice: BackendChoice | None = None) -> None:
        if raw is None and routes is not None and any(r.backend == RAW_BACKEND for r in routes):
            raise ValueError(f"routes send batches to {RAW_BACKEND}, but no raw graph was given")
        self.encoded = encoded
        self.raw = raw
        self.routes = routes if routes is not None else ((Route(1, RAW_BACKEND),) if raw is not None else ())
        self.choice = choice if choice is not None else getattr(encoded, "choice", None)
        self.backend = (choice.describe() if choice is not None
                        else RAW_BACKEND if raw is not None and self.routes == (Route(1, RAW_BACKEND),)
                        else BackendChoice(self.routes, {}, "given", 0.0).describe() if raw is not None
                        else encoded.backend)

    def raw_for(self, rows: int) -> RawGraphPredictor | None:
        """The raw graph when it answers a batch of ``rows`` rows, else None (take the encoded path)."""
        if self.raw is None:
            return None
        chosen = self.routes[0].backend
        for route in self.routes:
            if rows >= route.min_rows:
                chosen = route.backend
        return self.raw if chosen == RAW_BACKEND else None

    def predict_proba(self, batch: Batch) -> np.ndarray:
        """Encoded rows -> answer: the encoded path (rows the raw graph could not take, or not routed to it)."""
        return self.encoded.predict_proba(batch)


# -- choosing -----------------------------------------------------------------------------------------------------
def raw_graph_refusal(bundle: Bundle, folder: Path) -> str | None:
    """Why the raw graph beside the bundle in ``folder`` cannot answer for it (None: it can).

    Refused: no ``onnx/model.raw.onnx``; a graph older than the weights (retrained after the export); a graph
    whose input contract is not the one this bundle's encoder gives (another encoder, an older export format, an
    image graph written under a Pillow whose resize takes its passes in the other order). Image and audio features
    are computed (decoded by :func:`~shoal.export.raw.raw_feed`, resized or turned into log-mel in the graph, with
    parity checked at export), so a media bundle's raw graph answers; a media cell the feed cannot take (a path, a
    bad file) goes to the encoder's path, as does a time the feed cannot read."""
    from shoal.export.onnx import ExportError
    from shoal.export.raw import RAW_FILE, raw_contract

    path = folder / "onnx" / RAW_FILE
    if not path.is_file():
        return f"no {path.relative_to(folder)} (write it with: shoal export RUN --raw)"
    if path.stat().st_mtime < (folder / "model.safetensors").stat().st_mtime:
        return f"{path} is older than the bundle's weights (retrained since?); re-export: shoal export RUN --raw"
    try:
        import json

        written = json.loads((path.parent / "raw_inputs.json").read_text(encoding="utf-8"))
        expected = raw_contract(bundle.encoder, written.get("max_bytes"))
    except (OSError, ValueError, ExportError) as err:
        return f"{path}: {err}"
    if json.loads(json.dumps(expected, default=str)) != written:
        return f"{path} was exported from another encoder or format; re-export: shoal export RUN --raw"
    return None


def select_end_to_end(bundle: Bundle, folder: Path, backend: str = "auto", *, batch_sizes: Sequence[int] = (1, 256),
                      version: str | None = None) -> EndToEndPredictor:
    """What ``shoal serve`` and ``shoal predict`` run for the bundle in ``folder``; the only place that chooses.

    ``raw``: the raw graph for every batch (an error naming the reason and the fix when it cannot answer for this
    bundle), the PyTorch network for rows it cannot take. ``auto`` with a usable raw graph: every candidate (the
    raw graph; PyTorch and, where exported, ONNX Runtime fp32, each behind the Python encoder) is timed END TO END
    on raw rows at ``batch_sizes`` and each batch goes to the fastest for its size (cached beside the export, as
    :func:`~shoal.runtime.predictor.select_predictor` does). Otherwise: :func:`select_predictor`, the encoded path
    (the encoder's cost is the same for every encoded backend, so timing them on encoded batches decides the same).
    """
    if backend != "raw" and backend != "auto":
        return EndToEndPredictor(select_predictor(bundle, folder, backend, batch_sizes=batch_sizes, version=version))
    refusal = raw_graph_refusal(bundle, folder)
    if backend == "raw":
        if refusal is not None:
            raise ValueError(f"--backend raw: {refusal}")
        return EndToEndPredictor(TorchPredictor(bundle), RawGraphPredictor(folder))
    if refusal is not None:
        log.info("serving through the Python encoder: %s", refusal)
        return EndToEndPredictor(select_predictor(bundle, folder, "auto", batch_sizes=batch_sizes, version=version))
    return _measured(bundle, folder, batch_sizes, version)


def _measured(bundle: Bundle, folder: Path, batch_sizes: Sequence[int], version: str | None) -> EndToEndPredictor:
    import torch

    from shoal.runtime.predictor import OnnxRuntimePredictor

    if not batch_sizes or min(batch_sizes) < 1:
        raise ValueError(f"batch_sizes must be one or more sizes of at least 1 row, not {list(batch_sizes)!r}")
    raw = RawGraphPredictor(folder)
    encoded: dict[str, Predictor] = {"torch": TorchPredictor(bundle)}
    if (folder / "onnx" / "export.json").is_file() and failed_parity(folder / "onnx") is None:
        onnx = OnnxRuntimePredictor(folder, "fp32")
        encoded[onnx.backend] = onnx
    export_dir = folder / "onnx"
    key = choice_key(version or content_version(folder), export_dir, batch_sizes, torch.get_num_threads(), 1,
                     raw_graph=raw.model.path)
    cache = ChoiceCache(export_dir)
    decision = cache.load(key)
    if decision is None:
        rows, source = raw_timing_rows(bundle, folder, max(key["sizes"]), raw)
        candidates: dict[str, RawGraphPredictor | EncodedPath] = {
            RAW_BACKEND: raw, **{name: EncodedPath(bundle, p) for name, p in encoded.items()}}
        decision = dataclasses.replace(measure(candidates, rows, key["sizes"], rows_source=source), key=key)
        cache.store(decision)
    # the encoded path answers the sizes the raw graph lost, and rows it cannot take: the fastest encoded backend
    by_encoded = {n: {b: ms for b, ms in measured.items() if b in encoded}
                  for n, measured in decision.measured_ms.items()}
    encoded_routes = decide(by_encoded)
    fallback: Predictor = (encoded[encoded_routes[0].backend] if len(encoded_routes) == 1 else RoutedPredictor(
        {r.backend: encoded[r.backend] for r in encoded_routes},
        dataclasses.replace(decision, routes=encoded_routes)))
    return EndToEndPredictor(fallback, raw, decision.routes, decision)


def raw_timing_rows(bundle: Bundle, folder: Path, rows: int,
                    raw: RawGraphPredictor | None = None) -> tuple[pa.Table, str]:
    """Up to ``rows`` raw rows to time on, and where they came from (:func:`shoal.export.raw.timing_rows`); with
    ``raw``, only rows that graph takes."""
    from shoal.export.raw import timing_rows

    return timing_rows(bundle, folder, rows, None if raw is None else raw.predict_rows)


def bench_end_to_end(bundle_dir: str | Path, table: Any, *, batch: int = 256, seconds: float = 2.0,
                     threads: int = 1) -> list[BenchResult]:
    """Raw rows -> answer, in this process: batch-1 latency (one row dict per call, cycling through ``table``'s
    rows, as a JSON request becomes) and rows/s at ``batch`` (a pyarrow table of raw rows, as ``shoal predict``
    reads), for ``e2e-torch``, ``e2e-onnx-fp32`` (where exported) and ``e2e-raw`` (where ``model.raw.onnx`` was
    written). Peak RSS is this process's (cumulative)."""
    import pyarrow as pa
    import torch

    from shoal.artifacts.bundle import load_bundle
    from shoal.runtime.predictor import OnnxRuntimePredictor, TorchPredictor

    folder = Path(bundle_dir)
    bundle = load_bundle(folder)
    if table.num_rows == 0:
        raise ValueError("no rows to bench on")
    systems: dict[str, Callable[[Any], Any]] = {}
    files = {"e2e-torch": folder / "model.safetensors", "e2e-onnx-fp32": folder / "onnx" / "model.onnx",
             "e2e-raw": folder / "onnx" / "model.raw.onnx"}
    schema = table.schema

    def encoded(path: EncodedPath) -> Callable[[Any], Any]:
        return lambda rows: path.predict_proba(rows if isinstance(rows, pa.Table)
                                               else pa.Table.from_pylist(rows, schema=schema))

    systems["e2e-torch"] = encoded(EncodedPath(bundle, TorchPredictor(bundle)))
    if (folder / "onnx" / "export.json").is_file():
        systems["e2e-onnx-fp32"] = encoded(EncodedPath(bundle, OnnxRuntimePredictor(folder, "fp32")))
    if raw_graph_refusal(bundle, folder) is None:
        systems["e2e-raw"] = RawGraphPredictor(folder, threads=threads).predict_rows
    ones = [[r] for r in table.slice(0, 256).to_pylist()]
    big = table.take(np.arange(batch) % table.num_rows)
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        out = []
        for name, predict in systems.items():
            stats, rps = time_system(name, predict, ones, big, seconds)
            out.append(BenchResult(name, stats.p50_ms, stats.p99_ms, rps, len(big), files[name].stat().st_size / 2**20,
                                   peak_rss_mib(), False))
        return out
    finally:
        torch.set_num_threads(saved)
