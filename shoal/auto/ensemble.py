"""An ensemble of a search's best trials (``shoal auto --ensemble K``): how the mean of their probabilities scores
on the validation rows (and the test file), beside the winner alone.

    members   the K best complete trials that still have their bundle and read the same rows as the winner
              (same data block and train.seed, so no member trained on rows another is validated on)
    rows      the validation rows each member held out (or --valid), matched by line number; a row a member
              rejects as bad is left out for all
    outputs   the mean of the members' probabilities (:func:`shoal.distill.ensemble_logits`: Hinton et al.'s
              arithmetic mean, in log space), values for a regression label, per tag or task as its kind says

An ensemble costs K model calls per row; to serve its quality at one model's cost, distil it: the report gives the
``shoal distill`` command (the members as an ensemble of teachers, the winner's model as the student).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from shoal.artifacts.bundle import Bundle
from shoal.artifacts.registry import Registry
from shoal.auto.report import TrialRow
from shoal.config import DataConfig, FileSpec, parse_config
from shoal.data.readers import BadRowSink, Chunk
from shoal.data.split import HeldOutSplit
from shoal.data.stream import chunks
from shoal.distill.teachers import ensemble_logits
from shoal.training.evaluation import report

__all__ = ["Scored", "ensemble_members", "ensemble_report", "rows_key", "score_rows", "scored_together"]

CHUNK_ROWS = 65_536


class Scored:
    """A member's logits on some rows, keyed by line number (with the labels)."""

    def __init__(self, lines: np.ndarray, labels: np.ndarray, logits: np.ndarray) -> None:
        order = np.argsort(lines, kind="stable")
        self.lines, self.labels, self.logits = lines[order], labels[order], logits[order]

    def at(self, lines: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        idx = np.searchsorted(self.lines, lines)
        return self.labels[idx], self.logits[idx]


def score_rows(bundle: Bundle, parts: Iterable[Chunk]) -> Scored:
    """``bundle``'s logits on the labelled rows of ``parts`` (bad rows counted and left out)."""
    sink = BadRowSink("count")
    lines, labels, logits = [], [], []
    for chunk in parts:
        batch = bundle.encoder.encode(chunk, sink, with_label=True)
        if not len(batch):
            continue
        assert batch.label is not None
        lines.append(np.asarray(batch.lines))
        labels.append(np.asarray(batch.label))
        logits.append(np.asarray(bundle.predict_logits(batch)))
    if not lines:
        raise ValueError("no rows to score the ensemble on")
    return Scored(np.concatenate(lines), np.concatenate(labels), np.concatenate(logits))


def ensemble_members(registry: Registry, board: Sequence[TrialRow], k: int) -> list[str]:
    """The run ids of up to ``k`` best complete trials that kept their bundle and read the winner's rows."""
    done = [r for r in board if r.state == "complete" and r.run_id is not None]
    if not done:
        return []
    first = registry.get(str(done[0].run_id))
    same = rows_key(first.config)
    out = []
    for r in done:
        record = registry.get(str(r.run_id))
        if (record.artifact_dir / "bundle").is_dir() and rows_key(record.config) == same:
            out.append(record.run_id)
        if len(out) == k:
            break
    return out


def rows_key(config: dict[str, Any]) -> tuple[str, int]:
    """What decides the rows a trial trained on and validated on."""
    cfg = parse_config(config, source="a trial")
    return cfg.data.model_dump_json(), cfg.train.seed


def _parts(registry: Registry, run_id: str, valid: Path | FileSpec | None, data: DataConfig,
           columns: list[str]) -> Iterable[Chunk]:
    if valid is None:
        split = HeldOutSplit(registry.get(run_id).artifact_dir)
        if not split.exists():
            raise ValueError(f"run {run_id} has no held-out rows to validate the ensemble on")
        return split.chunks(CHUNK_ROWS)
    path, options = (valid, data) if isinstance(valid, Path) else (valid.path, data.model_copy(
        update={"columns": valid.columns}))
    return chunks(path, options.model_copy(update={"chunk_rows": CHUNK_ROWS}), columns, BadRowSink("count"))


def ensemble_report(registry: Registry, members: Sequence[str], valid: Path | FileSpec | None,
                    test: Path | FileSpec | None) -> dict[str, Any]:
    """The ensemble's metrics on the validation rows (``valid``: a validation file; None: the rows each member
    held out) and, with ``test``, on the test file: ``{"members", "rows", "valid": {...}, "test": {...}}``."""
    from shoal.training.runs import load

    if len(members) < 2:
        raise ValueError("an ensemble needs at least 2 trials with a bundle")
    bundles = [load(m, registry.home) for m in members]
    data = parse_config(registry.get(members[0]).config, source="the winner").data
    out: dict[str, Any] = {"members": list(members)}
    for name, source in (("valid", valid), ("test", test)):
        if name == "test" and source is None:
            continue
        labels, outputs = scored_together(registry, members, bundles, source, data,
                                          f"the ensemble's members share no {name} rows")
        first = bundles[0]
        kinds = (first.task_kinds if first.task == "multitask"
                 else ["binary"] * len(first.tags or []) if first.task == "multilabel" else None)
        z = ensemble_logits(outputs, regression=first.task == "regression", kinds=kinds)
        out[name] = {**report(labels, z, first.prior), "rows": int(len(labels))}
    return out


def scored_together(registry: Registry, runs: Sequence[str], bundles: Sequence[Bundle],
                    source: Path | FileSpec | None, data: DataConfig,
                    none_shared: str) -> tuple[np.ndarray, list[np.ndarray]]:
    """The labels of the rows every run scored (``source``: a file; None: the rows each run held out), matched by
    line number, and each run's outputs on them; ``none_shared``: the error when they share none."""
    scored = [score_rows(b, _parts(registry, r, source, data, b.encoder.columns(True)))
              for r, b in zip(runs, bundles, strict=True)]
    common = scored[0].lines
    for s in scored[1:]:
        common = np.intersect1d(common, s.lines)
    if not len(common):
        raise ValueError(none_shared)
    return scored[0].at(common)[0], [s.at(common)[1] for s in scored]
