"""An ensemble of a search's trials (``shoal auto --ensemble K``): up to K trials chosen by forward selection on
the validation rows, how the mean of their probabilities scores there (and on the test file), beside the winner.

    candidates the complete trials that still have their bundle (the best few and each family's best) and read the
              same rows as the best one (same data block and train.seed, so none trained on rows another is
              validated on)
    selection  Caruana et al.'s ensemble selection (ICML 2004), as AutoGluon's and auto-sklearn's final ensembles:
              start from the best trial, then add, with replacement, the candidate whose addition improves the
              validation metric most (a tie broken by the log loss: accuracy moves by whole rows); stop when none
              improves it (or after ROUNDS additions). A trial added twice
              counts twice in the mean, so a strong model outweighs a diverse one it was paired with; at most K
              distinct trials join.
    rows      the validation rows each candidate held out (or --valid), matched by line number; a row a candidate
              rejects as bad is left out for all
    outputs   the weighted mean of the members' probabilities (:func:`shoal.distill.ensemble_logits`: Hinton et
              al.'s arithmetic mean, in log space), values for a regression label, per tag or task as its kind says

The weights are chosen on the validation rows, so the ensemble's validation metric is optimistic, as the best trial's
is; the test file, read once at the end, says what it is worth.

An ensemble costs K model calls per row; to serve its quality at one model's cost, distil it: the report gives the
``shoal distill`` command (the members as an ensemble of teachers, averaged equally; the winner's model as the
student).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from shoal.artifacts.bundle import Bundle
from shoal.artifacts.registry import Registry
from shoal.auto.report import TrialRow, family_bests
from shoal.config import DataConfig, FileSpec, parse_config
from shoal.data.readers import BadRowSink, Chunk
from shoal.data.split import HeldOutSplit
from shoal.data.stream import chunks
from shoal.distill.teachers import ensemble_logits
from shoal.training.evaluation import report

__all__ = ["Scored", "ensemble_candidates", "ensemble_report", "forward_select", "rows_key", "score_rows",
           "scored_together"]

CHUNK_ROWS = 65_536
ROUNDS = 20  # additions of the forward selection at most (Caruana et al. saw no gain past a few dozen)


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


def ensemble_candidates(registry: Registry, board: Sequence[TrialRow], k: int) -> list[str]:
    """The run ids of the candidates of an ensemble of at most ``k`` trials, best first: among the complete trials
    that kept their bundle and read the rows of the best one, each family's best, then the best others, up to
    ``2 k`` in all (or one per family, if there are more families)."""
    done = [r for r in board if r.state == "complete" and r.run_id is not None]
    if not done:
        return []
    same = rows_key(registry.get(str(done[0].run_id)).config)
    usable = []
    for r in done:
        record = registry.get(str(r.run_id))
        if (record.artifact_dir / "bundle").is_dir() and rows_key(record.config) == same:
            usable.append(r)
    firsts = family_bests(usable)
    others = [r.number for r in usable if r.number not in firsts]
    picked = firsts | set(others[:max(0, 2 * k - len(firsts))])
    return [str(r.run_id) for r in usable if r.number in picked]


def forward_select(labels: np.ndarray, outputs: Sequence[np.ndarray], combine: Callable[[list[np.ndarray]], np.ndarray],
                   score: Callable[[np.ndarray, np.ndarray], float], maximize: bool, k: int,
                   rounds: int = ROUNDS,
                   tiebreak: Callable[[np.ndarray, np.ndarray], float] | None = None) -> list[int]:
    """Caruana et al.'s forward selection with replacement: the indexes of ``outputs`` in the ensemble, a repeated
    index counting once per repeat (``outputs[0]``, the best alone, first). Each round adds the output that makes
    ``score(labels, combine(members))`` best, if it beats the ensemble so far, or ties it and lowers ``tiebreak``
    (e.g. the log loss, where the metric moves by whole rows, as accuracy does); at most ``k`` distinct indexes."""

    def signed(value: float) -> float:
        return value if maximize else -value

    def negated_tiebreak(z: np.ndarray) -> float:
        return -tiebreak(labels, z) if tiebreak is not None else 0.0

    chosen = [0]
    z = combine([outputs[0]])
    current = (signed(score(labels, z)), negated_tiebreak(z))
    for _ in range(rounds):
        allowed = range(len(outputs)) if len(set(chosen)) < k else sorted(set(chosen))
        best, best_key = None, current
        for j in allowed:
            z = combine([outputs[i] for i in chosen + [j]])
            value = signed(score(labels, z))
            if not np.isfinite(value) or value < best_key[0]:
                continue  # worse on the metric: the tiebreak is not needed
            candidate = (value, negated_tiebreak(z))
            if candidate > best_key:
                best, best_key = j, candidate
        if best is None:
            break
        chosen.append(best)
        current = best_key
    return chosen


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


def ensemble_report(registry: Registry, candidates: Sequence[str], valid: Path | FileSpec | None,
                    test: Path | FileSpec | None, metric: str, maximize: bool, k: int) -> dict[str, Any]:
    """The ensemble that :func:`forward_select` builds from ``candidates`` (best first) on the validation rows
    (``valid``: a validation file; None: the rows each candidate held out), at most ``k`` trials, and its metrics
    there and, with ``test``, on the test file: ``{"candidates", "members", "weights", "valid": {...}, "test":
    {...}}`` (``weights``: each member's share of the mean). ``{"candidates", "error"}`` when no trial improves the
    best one's ``metric`` on validation."""
    from shoal.training.runs import load

    if len(candidates) < 2:
        raise ValueError("an ensemble needs at least 2 trials with a bundle")
    bundles = [load(c, registry.home) for c in candidates]
    data = parse_config(registry.get(candidates[0]).config, source="the winner").data
    first = bundles[0]
    kinds = (first.task_kinds if first.task == "multitask"
             else ["binary"] * len(first.tags or []) if first.task == "multilabel" else None)

    def combine(outputs: list[np.ndarray]) -> np.ndarray:
        return ensemble_logits(outputs, regression=first.task == "regression", kinds=kinds)

    def score(labels: np.ndarray, z: np.ndarray) -> float:
        return float(report(labels, z, first.prior).get(metric, float("nan")))

    def logloss(labels: np.ndarray, z: np.ndarray) -> float:
        return float(report(labels, z, first.prior).get("logloss", 0.0))

    labels, outputs = scored_together(registry, candidates, bundles, valid, data,
                                      "the ensemble's candidates share no valid rows")
    chosen = forward_select(labels, outputs, combine, score, maximize, k, tiebreak=logloss)
    members = list(dict.fromkeys(chosen))  # distinct, in the order they joined
    out: dict[str, Any] = {"candidates": list(candidates)}
    if len(members) < 2:
        return {**out, "error": f"no other trial improves the best one's validation {metric} when averaged in (of "
                                f"{len(candidates)} candidates): the best trial stands alone"}
    out["members"] = [candidates[i] for i in members]
    out["weights"] = [chosen.count(i) / len(chosen) for i in members]
    out["valid"] = {**report(labels, combine([outputs[i] for i in chosen]), first.prior), "rows": int(len(labels))}
    if test is not None:
        picked = [bundles[i] for i in members]
        labels, scored = scored_together(registry, out["members"], picked, test, data,
                                         "the ensemble's members share no test rows")
        by_index = dict(zip(members, scored, strict=True))
        out["test"] = {**report(labels, combine([by_index[i] for i in chosen]), first.prior),
                       "rows": int(len(labels))}
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
