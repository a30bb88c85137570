"""``--backend auto``, measured: which backend answers which batch sizes, and the file that remembers it.

Neither backend wins everywhere. ONNX Runtime's padded graph is cheap per call (a one-row DLRM: 0.03 ms against
torch's 0.3 ms), but a text bag pads every row to the batch's longest list of n-grams, so at batch 256 it can be
an order of magnitude slower than torch's ``embedding_bag``. So ``auto`` times both on encoded rows of the
bundle's own data, at the batch sizes the caller will send (1 and the server's ``max_batch_rows``, or
``shoal predict``'s chunk), and routes each batch by its size::

    measured ms   1 row    256 rows            routes (a crossover from the two lines t = a + b * rows)
    torch         0.30     2.1          ->     rows < 23: onnxruntime       rows >= 23: torch
    onnxruntime   0.03     28.0

The decision is cached in ``bundle/onnx/backend-choice.json`` (:class:`ChoiceCache`, its one owner), keyed by
the bundle's version, the export, the machine and the thread counts, so a server restart does not measure again
and a retrained or re-exported bundle does.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from shoal.artifacts.bundle import Bundle
from shoal.data.batch import Batch
from shoal.runtime.feed import InputLayout

__all__ = ["CHOICE_FILE", "MAX_MEASURED_ROWS", "BackendChoice", "ChoiceCache", "Route", "choice_key", "decide",
           "measure", "timing_rows"]

log = logging.getLogger(__name__)

CHOICE_FILE = "backend-choice.json"
CHOICE_FORMAT = "shoal-backend-choice"
CHOICE_VERSION = 1
MAX_MEASURED_ROWS = 1024  # bigger batches (shoal predict's 65,536-row chunks) are timed at this size
MAX_CACHED = 8  # entries kept per export: a bundle shared by a few machines or thread settings
BUDGET_S = 1.0  # the whole measurement, every size and backend, warmup included


class _Scorer(Protocol):
    def predict_proba(self, batch: Any) -> np.ndarray: ...


class _Rows(Protocol):
    """What :func:`measure` times on: encoded rows (a :class:`~shoal.data.batch.Batch`) or raw ones (a table)."""

    def __len__(self) -> int: ...

    def take(self, indices: Any) -> Any: ...


@dataclass(frozen=True)
class Route:
    """Batches of ``min_rows`` rows or more (up to the next route's) go to ``backend``."""

    min_rows: int
    backend: str


@dataclass(frozen=True)
class BackendChoice:
    """What ``auto`` measured and decided: ``routes`` by batch size, and the median ms per call behind them."""

    routes: tuple[Route, ...]
    measured_ms: dict[int, dict[str, float]]  # batch size -> backend -> median ms per call
    rows_source: str  # where the timed rows came from: the held-out split, a data file, or "random"
    seconds: float  # how long measuring took
    cached: bool = False
    key: dict[str, Any] = field(default_factory=dict)

    def backend_for(self, rows: int) -> str:
        """The backend that answers a batch of ``rows`` rows."""
        chosen = self.routes[0].backend
        for route in self.routes:
            if rows >= route.min_rows:
                chosen = route.backend
        return chosen

    def describe(self) -> str:
        """One line, e.g. ``auto: onnxruntime for 1-22 rows, torch for 23+ rows``."""
        if len(self.routes) == 1:
            return f"auto: {self.routes[0].backend} at every batch size"
        parts = []
        for route, nxt in zip(self.routes, [*self.routes[1:], None], strict=True):
            span = f"{route.min_rows}+" if nxt is None else (
                f"{route.min_rows}" if nxt.min_rows - 1 == route.min_rows else f"{route.min_rows}-{nxt.min_rows - 1}")
            parts.append(f"{route.backend} for {span} rows")
        return "auto: " + ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {"routes": [{"min_rows": r.min_rows, "backend": r.backend} for r in self.routes],
                "measured_ms": {str(n): dict(ms) for n, ms in self.measured_ms.items()},
                "rows_source": self.rows_source, "seconds": self.seconds, "cached": self.cached, "key": self.key}

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> BackendChoice:
        routes = tuple(Route(int(r["min_rows"]), str(r["backend"])) for r in d["routes"])
        if not routes or routes[0].min_rows != 1:
            raise ValueError(f"routes must start at 1 row, got {d['routes']!r}")
        return BackendChoice(routes=routes,
                             measured_ms={int(n): {str(b): float(v) for b, v in ms.items()}
                                          for n, ms in d["measured_ms"].items()},
                             rows_source=str(d["rows_source"]), seconds=float(d["seconds"]),
                             cached=bool(d.get("cached", False)), key=dict(d.get("key", {})))


# -- deciding from measurements ----------------------------------------------------------------------------------
def decide(measured_ms: Mapping[int, Mapping[str, float]]) -> tuple[Route, ...]:
    """Routes from median ms per call at each measured batch size.

    Each measured size goes to its fastest backend. Between two sizes whose winners differ, the switch happens
    where the two backends' straight lines (``t = a + b * rows`` through their two measurements) cross, which is
    where a fixed cost per call stops mattering more than the cost per row."""
    sizes = sorted(measured_ms)
    if not sizes:
        raise ValueError("no measurements to decide from")
    winners = [_fastest(measured_ms[n]) for n in sizes]
    routes = [Route(1, winners[0])]
    for (lo, small), (hi, big) in zip(zip(sizes, winners, strict=True), zip(sizes[1:], winners[1:], strict=True),
                                      strict=False):
        if big == small:
            continue
        routes.append(Route(_crossover(lo, hi, measured_ms[lo], measured_ms[hi], small, big), big))
    return tuple(routes)


def _fastest(ms: Mapping[str, float]) -> str:
    """The backend with the smallest time (by name on a tie, so a decision is reproducible)."""
    return min(ms.items(), key=lambda item: (item[1], item[0]))[0]


def _crossover(lo: int, hi: int, at_lo: Mapping[str, float], at_hi: Mapping[str, float], small: str,
               big: str) -> int:
    """The first batch size in (lo, hi] where ``big`` is faster than ``small`` on their lines through lo and hi."""
    slope_small = (at_hi[small] - at_lo[small]) / (hi - lo)
    slope_big = (at_hi[big] - at_lo[big]) / (hi - lo)
    gap = at_lo[big] - at_lo[small]  # > = 0: big is not faster at lo
    if slope_small <= slope_big:  # cannot happen when the winners differ; keep the measured sizes' answer
        return hi
    rows = lo + gap / (slope_small - slope_big)
    return int(min(max(math.floor(rows) + 1, lo + 1), hi))


# -- measuring ---------------------------------------------------------------------------------------------------
def measure(predictors: Mapping[str, _Scorer], rows: _Rows, sizes: Sequence[int], *, budget_s: float = BUDGET_S,
            clock: Callable[[], float] = time.perf_counter, rows_source: str = "given") -> BackendChoice:
    """Time every predictor at every batch size on ``rows`` (repeated when fewer), then :func:`decide`.

    The backends take turns call by call (a loaded machine slows both alike), after one untimed warm-up call
    each; each size gets an equal share of ``budget_s`` and at least 3 timed calls per backend, and its figure
    is the median. ``clock`` is injectable so that tests decide without timing anything."""
    if not predictors:
        raise ValueError("no predictors to measure")
    if len(rows) == 0:
        raise ValueError("no rows to measure the backends on")
    sizes = sorted({min(max(int(n), 1), MAX_MEASURED_ROWS) for n in sizes})
    started = clock()
    share = budget_s / len(sizes)
    measured: dict[int, dict[str, float]] = {}
    for n in sizes:
        batches = _batches(rows, n)
        times: dict[str, list[float]] = {name: [] for name in predictors}
        for p in predictors.values():  # warm-up: first calls allocate
            p.predict_proba(batches[0])
        deadline = clock() + share
        turn = 0
        while turn < 3 or (clock() < deadline and turn < 1000):
            batch = batches[turn % len(batches)]
            for name, p in predictors.items():
                t0 = clock()
                p.predict_proba(batch)
                times[name].append(clock() - t0)
            turn += 1
        measured[n] = {name: round(float(np.median(t)) * 1e3, 5) for name, t in times.items()}
    return BackendChoice(decide(measured), measured, rows_source, round(clock() - started, 3))


def _batches(rows: _Rows, n: int) -> list[Any]:
    """A few different batches of ``n`` rows (cycling through the rows, repeated when there are fewer)."""
    count = max(1, min(16, len(rows) // n))
    return [rows.take((np.arange(n) + i * n) % len(rows)) for i in range(count)]


# -- rows to time on ---------------------------------------------------------------------------------------------
def timing_rows(bundle: Bundle, folder: Path, layout: InputLayout, rows: int) -> tuple[Batch, str]:
    """Up to ``rows`` encoded rows that look like the ones the model will score, and where they came from.

    Tried in order, reading at most ``rows`` rows of each: the run's held-out split (beside the bundle), the
    config's validation, test and training files. A text bag's cost grows with its n-grams per row, so real
    rows matter; when none can be read (a bundle copied alone), random ids with text-sized lists."""
    from shoal.data.readers import BadRowSink
    from shoal.data.split import HeldOutSplit
    from shoal.data.stream import chunks

    held = HeldOutSplit(folder.parent)
    encoder, sink = bundle.encoder, BadRowSink("count")
    if held.exists():
        try:
            batch = encoder.encode(next(held.chunks(rows)), sink, with_label=False)
            if len(batch):
                return batch, str(held.path)
        except Exception as err:  # unreadable: try the next source
            log.warning("could not read timing rows from %s: %s", held.path, err)
    cfg = bundle.config.data
    for split in ("valid", "test", "train"):
        try:
            where = cfg.file(split)
            if where is None or not where[0].exists():
                continue
            path, options = where
            chunk = next(chunks(path, options.model_copy(update={"chunk_rows": rows}),
                                encoder.columns(with_label=False), sink))
            batch = encoder.encode(chunk, sink, with_label=False)
            if len(batch):
                return batch.slice(0, rows), str(path)
        except Exception as err:
            log.warning("could not read timing rows from the %s file: %s", split, err)
    return _random_rows(bundle, layout, rows), "random"


def _random_rows(bundle: Bundle, layout: InputLayout, rows: int) -> Batch:
    """Random ids within each input's buckets; lists as long as a 128-byte text's n-grams for text inputs."""
    rng = np.random.default_rng(0)
    texts = {t.name: t for t in bundle.encoder.text_features}
    ids, offsets = [], []
    for k, buckets in enumerate(bundle.encoder.buckets):
        text = texts.get(layout.name(k))
        if k not in layout.lists:
            length = 1
        elif text is None:
            length = 4
        else:
            length = min(text.max_bytes, 128) * (1 if text.sequence else text.ngram_max - text.ngram_min + 1)
        lengths = np.full(rows, length, np.int64) if k not in layout.lists else rng.integers(1, length + 1, rows)
        offsets.append(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64))
        ids.append(rng.integers(0, max(buckets, 1), int(lengths.sum())).astype(np.int64))
    return Batch(dense=rng.normal(size=(rows, layout.dense_dim)).astype(np.float32), ids=ids, offsets=offsets,
                 label=None, lines=np.arange(1, rows + 1))


# -- the cache ---------------------------------------------------------------------------------------------------
def choice_key(version: str, export_dir: Path, sizes: Sequence[int], torch_threads: int,
               onnx_threads: int, *, raw_graph: Path | None = None) -> dict[str, Any]:
    """What a cached decision depends on: the bundle, its export (and its raw graph, when ``raw_graph`` names
    the one timed end to end), the batch sizes, the machine, the threads."""
    import onnxruntime
    import torch

    doc = export_dir / "export.json"
    export = hashlib.sha256(doc.read_bytes()).hexdigest()[:12] if doc.is_file() else "none"
    if raw_graph is not None:  # its contract and its file's identity: a re-export is measured again
        stat = raw_graph.stat()
        contract = (raw_graph.parent / "raw_inputs.json").read_bytes()
        export += "+raw:" + hashlib.sha256(contract + f"{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    return {"bundle_version": version, "export": export,
            "sizes": sorted({min(max(int(n), 1), MAX_MEASURED_ROWS) for n in sizes}),
            "machine": platform.machine(), "cpu": _cpu_model(), "cpus": os.cpu_count() or 0,
            "torch_threads": torch_threads, "onnx_threads": onnx_threads,
            "torch": torch.__version__, "onnxruntime": onnxruntime.__version__}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


class ChoiceCache:
    """``bundle/onnx/backend-choice.json``: decisions by key, for the export beside it. Its one owner.

    An entry of another bundle version or export can never be used again and is dropped on the next write;
    a folder that cannot be written (a read-only bundle) only costs a measurement at each start."""

    def __init__(self, export_dir: Path) -> None:
        self.path = export_dir / CHOICE_FILE

    def load(self, key: Mapping[str, Any]) -> BackendChoice | None:
        entry = self._entries().get(_key_id(key))
        if entry is None:
            return None
        try:
            return BackendChoice.from_dict({**entry, "cached": True})
        except (KeyError, TypeError, ValueError) as err:
            log.warning("%s: ignoring a damaged entry (%s); measuring again", self.path, err)
            return None

    def store(self, choice: BackendChoice) -> None:
        key = choice.key
        entries = {k: e for k, e in self._entries().items()
                   if e.get("key", {}).get("bundle_version") == key.get("bundle_version")
                   and e.get("key", {}).get("export") == key.get("export")}
        entries[_key_id(key)] = {**choice.to_dict(), "cached": False}
        doc = {"format": CHOICE_FORMAT, "version": CHOICE_VERSION,
               "entries": dict(list(entries.items())[-MAX_CACHED:])}
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps(doc, indent=2, sort_keys=True), encoding="utf-8")
            tmp.replace(self.path)
        except OSError as err:
            tmp.unlink(missing_ok=True)
            log.warning("could not cache the backend choice in %s: %s", self.path, err)

    def _entries(self) -> dict[str, dict[str, Any]]:
        if not self.path.is_file():
            return {}
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            log.warning("%s: unreadable (%s); measuring again", self.path, err)
            return {}
        if not isinstance(doc, dict) or doc.get("format") != CHOICE_FORMAT or doc.get("version") != CHOICE_VERSION:
            return {}
        entries = doc.get("entries")
        return {str(k): v for k, v in entries.items() if isinstance(v, dict)} if isinstance(entries, dict) else {}


def _key_id(key: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
