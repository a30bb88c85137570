"""Distillation: a small student trained on a big teacher's temperature-softened outputs.

Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network" (arXiv:1503.02531). The student's
loss mixes the hard labels and the teacher's "dark knowledge"::

    loss = a * CE(y, s) + (1 - a) * T^2 * KL(teacher_T || student_T)

where ``student_T`` is ``softmax(s / T)`` (multiclass) or ``sigmoid(s / T)`` (binary: a two-class softmax), and
``T^2`` keeps the soft term's gradients at the scale of the hard term's as ``T`` grows.

A teacher and its student may read the rows differently (``bytecnn`` reads byte sequences, ``bag`` hashed
n-grams), so the two meet at the level of raw rows: the teacher scores every training row once, keyed by the
row's line number in the training file (:class:`TeacherOutputs`, saved as ``teacher-logits.npz`` in the
student's run folder); the student's :class:`~shoal.trainer.Trainer` then looks its mini-batches up by
``Batch.lines`` (:class:`DistillLoss`)::

    training file ──> teacher encoder ──> teacher ──> logits by line   (once: teacher-logits.npz)
          │                                                │
          └────────> student encoder ──> student ──> DistillLoss(student logits, batch.lines) ──> step

The student reads the same data config with the same seed, so the teacher's held-out validation rows stay held
out for the student too. An optional transfer set (unlabeled rows) is labelled by the teacher and trained on
with the soft term only (:func:`distill`'s ``transfer``).

The teacher may be an ensemble of runs trained on the same rows (§3-4 of the paper: "an ensemble of models ...
distilled into a single model"). Each teacher encodes and scores every row its own way; their probabilities are
averaged (the arithmetic mean, the paper's first choice) and the student learns the logits of that mean
(:func:`ensemble_logits`)::

    teacher 1 ──> p1 ─┐
    teacher 2 ──> p2 ─┼─> p = (p1 + ... + pK) / K ──> logit(p) (binary) | log p (multiclass) ──> teacher-logits.npz
    teacher K ──> pK ─┘

    import shoal.distill
    run = shoal.distill.distill("latest", "mlp", home="shoal-runs", temperature=2.0, alpha=0.5)
    run = shoal.distill.distill(["run-a", "run-b", "run-c"], "mlp", home="shoal-runs")   # an ensemble
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F

from shoal.bundle import Bundle
from shoal.callbacks import Callbacks
from shoal.config import FileSpec, RunConfig, load_config, parse_config
from shoal.data.batch import Batch
from shoal.data.readers import BadRowSink, Chunk, detect_format
from shoal.data.stream import chunks, valid_mask
from shoal.registry import Registry, RunRecord

__all__ = [
    "STUDENTS",
    "TEACHER_FILE",
    "DistillLoss",
    "TeacherOutputs",
    "distill",
    "distillation_loss",
    "ensemble_logits",
    "resume_distill",
    "student_config",
    "teacher_outputs",
]

log = logging.getLogger(__name__)

TEACHER_FILE = "teacher-logits.npz"

# ``--student NAME``: the model, small; any other setting comes from the teacher's config.
STUDENTS: dict[str, dict[str, Any]] = {
    "logistic": {"name": "logistic"},
    "mlp": {"name": "mlp", "embedding_dim": 8, "hidden": [32]},
    "bag": {"name": "bag", "embedding_dim": 16},
    "dlrm": {"name": "dlrm", "embedding_dim": 8, "bottom_mlp": [16], "top_mlp": [32]},
}
# A byte-sequence text feature becomes a bag of hashed n-grams for a bag student (as configs/agnews.yaml) ...
NGRAM_TEXT = {"tokens": "ngrams", "buckets": 1_000_000, "ngram_min": 3, "ngram_max": 5, "word_ngrams": 2}
# ... and then trains with the rates of a bag model (those of configs/agnews.yaml and configs/sst2.yaml).
NGRAM_TRAIN = {"lr": 0.01, "embedding_lr": 0.1}


# -- the loss ---------------------------------------------------------------------------------------------------
def distillation_loss(student: torch.Tensor, labels: torch.Tensor, teacher: torch.Tensor, temperature: float,
                      alpha: float, labelled: torch.Tensor | None = None) -> torch.Tensor:
    """``a * CE(y, s) + (1 - a) * T^2 * KL(teacher_T || student_T)``, the mean over rows.

    ``student`` and ``teacher`` are logits, (B,) for a binary label (sigmoid) or (B, C) (softmax); ``labels``
    (B,) holds 0/1 or class indices. Rows whose ``labelled`` is False (transfer rows) take the soft term only.
    """
    t = float(temperature)
    if student.ndim == 1:
        y = labels.to(student.dtype)
        ce = F.binary_cross_entropy_with_logits(student, y, reduction="none")  # (B,)
        p_t = torch.sigmoid(teacher / t)
        # KL of two Bernoullis = cross-entropy(p_t, p_s) - entropy(p_t), both as logits for stability
        kl = (F.binary_cross_entropy_with_logits(student / t, p_t, reduction="none")
              - F.binary_cross_entropy_with_logits(teacher / t, p_t, reduction="none"))  # (B,)
    else:
        ce = F.cross_entropy(student, labels.long(), reduction="none")  # (B,)
        log_p_t = F.log_softmax(teacher / t, dim=1)  # (B, C)
        kl = (log_p_t.exp() * (log_p_t - F.log_softmax(student / t, dim=1))).sum(dim=1)  # (B,)
    w = torch.full_like(ce, alpha) if labelled is None else alpha * labelled.to(ce.dtype)
    return (w * ce + (1.0 - w) * (t * t) * kl).mean()


@dataclass
class TeacherOutputs:
    """The teacher's logits for the rows of one training file, keyed by line number (sorted).

    ``labelled`` is False for transfer rows: their label is the teacher's own guess, so the student learns them
    from the soft targets only.
    """

    lines: np.ndarray  # (N,) int64, increasing
    logits: np.ndarray  # (N,) or (N, C) float32
    labelled: np.ndarray  # (N,) bool

    def __len__(self) -> int:
        return len(self.lines)

    def lookup(self, lines: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(logits, labelled) of the rows at ``lines`` (any order). Raises when a line was never scored."""
        pos = np.minimum(np.searchsorted(self.lines, lines), max(len(self.lines) - 1, 0))
        missing = len(self.lines) == 0 or bool((self.lines[pos] != lines).any())
        if missing:
            lost = lines if len(self.lines) == 0 else lines[self.lines[pos] != lines]
            raise ValueError(
                f"no teacher output for line(s) {lost[:5].tolist()} of the training file ({len(lost)} rows of this "
                "batch): the student reads rows the teacher did not score. Does the student read the teacher's "
                "training file with the same options? (delete teacher-logits.npz to score the rows again)"
            )
        return self.logits[pos], self.labelled[pos]

    def save(self, path: Path) -> Path:
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, lines=self.lines, logits=self.logits, labelled=self.labelled)
        tmp.replace(path)
        return path

    @staticmethod
    def load(path: Path) -> TeacherOutputs:
        with np.load(path) as z:
            return TeacherOutputs(z["lines"], z["logits"], z["labelled"])


class DistillLoss:
    """The :class:`~shoal.trainer.Trainer` loss of a student: :func:`distillation_loss` against the teacher's
    logits of each mini-batch's rows, looked up by ``batch.lines``."""

    def __init__(self, teacher: TeacherOutputs, temperature: float = 2.0, alpha: float = 0.5) -> None:
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, not {temperature!r} (1 is the plain softmax; try 2 to 4)")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], not {alpha!r} (the weight of the hard labels; 0.5 mixes)")
        self.teacher = teacher
        self.temperature = temperature
        self.alpha = alpha

    def __call__(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        assert batch.label is not None
        t_logits, labelled = self.teacher.lookup(batch.lines)
        if t_logits.shape[1:] != logits.shape[1:]:
            raise ValueError(f"teacher logits have shape {t_logits.shape[1:]} per row, the student's "
                             f"{tuple(logits.shape[1:])}: teacher and student must predict the same label")
        return distillation_loss(logits, torch.from_numpy(batch.label), torch.from_numpy(t_logits),
                                 self.temperature, self.alpha, torch.from_numpy(labelled))


# -- the teacher's pass -----------------------------------------------------------------------------------------
def _logsumexp(x: np.ndarray, axis: int, keepdims: bool = False) -> np.ndarray:
    m = np.max(x, axis=axis, keepdims=True)
    out = m + np.log(np.exp(x - m).sum(axis=axis, keepdims=True))
    return out if keepdims else np.squeeze(out, axis=axis)


def ensemble_logits(logits: Sequence[np.ndarray]) -> np.ndarray:
    """The logits of the mean of several teachers' probabilities, float32.

    ``logits`` holds one array per teacher for the same rows in the same order: (N,) binary logits or (N, C)
    multiclass ones. Binary: ``logit(mean_k sigmoid(z_k))``; multiclass: ``log(mean_k softmax(z_k))`` (logits up
    to a constant per row, which softmax ignores). Averaging probabilities, not logits, is Hinton et al.'s
    arithmetic mean: a teacher that is unsure pulls the mean toward uncertainty instead of being outvoted by one
    confident logit. It is computed in log space (``log mean_k p_k = logsumexp_k log p_k - log K``), so very
    confident teachers still give finite logits.
    """
    if len(logits) == 0:
        raise ValueError("no teacher logits to average; give at least one teacher")
    shapes = sorted({np.shape(z) for z in logits})
    if len(shapes) != 1:
        raise ValueError(f"the teachers' logits have different shapes {shapes}: an ensemble's teachers must score "
                         "the same rows and predict the same label")
    z = np.stack([np.asarray(x, np.float64) for x in logits])  # (K, N) or (K, N, C)
    log_k = np.log(len(logits))
    if z.ndim == 2:
        log_p = _logsumexp(-np.logaddexp(0.0, -z), axis=0) - log_k  # (N,) log mean sigmoid(z)
        log_q = _logsumexp(-np.logaddexp(0.0, z), axis=0) - log_k  # (N,) log mean sigmoid(-z) = log(1 - p)
        return (log_p - log_q).astype(np.float32)
    log_softmax = z - _logsumexp(z, axis=2, keepdims=True)  # (K, N, C)
    return (_logsumexp(log_softmax, axis=0) - log_k).astype(np.float32)  # (N, C)


def _score(teachers: Sequence[Bundle], chunk: Chunk, sink: BadRowSink,
           with_label: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(lines, logits) of a chunk's rows: one teacher's logits; an ensemble's (:func:`ensemble_logits`) on the
    rows every teacher could encode, in the first teacher's order."""
    scored = []
    for t in teachers:
        batch = t.encoder.encode(chunk, sink, with_label=with_label)
        scored.append((batch.lines, t.predict_logits(batch)))
    if len(scored) == 1:
        return scored[0][0], scored[0][1].astype(np.float32)
    lines = scored[0][0]
    for other, _ in scored[1:]:
        lines = lines[np.isin(lines, other)]  # a row one teacher rejected as bad has no ensemble output
    aligned = []
    for own, z in scored:
        order = np.argsort(own, kind="stable")
        aligned.append(z[order[np.searchsorted(own, lines, sorter=order)]])
    return lines, ensemble_logits(aligned)


def _training_chunks(columns: list[str], cfg: RunConfig, path: Path | None = None) -> Iterator[Chunk]:
    """The raw rows the student trains on (held-out rows left out), read as ``cfg`` says."""
    source = Path(path or cfg.data.train)
    data = cfg.data if path is None else cfg.data.model_copy(update={"format": "parquet"})
    split = path is None and cfg.data.holds_out
    for chunk in chunks(source, data, columns, BadRowSink("count")):  # bad rows are the student trainer's to report
        if split:
            keep = ~valid_mask(chunk.lines, cfg.data.valid_fraction, cfg.train.seed)
            chunk = chunk.rows(keep)
        if len(chunk):
            yield chunk


def _as_teachers(teacher: Bundle | Sequence[Bundle]) -> list[Bundle]:
    teachers = [teacher] if isinstance(teacher, Bundle) else list(teacher)
    if not teachers:
        raise ValueError("no teacher given; give a teacher bundle or a list of them (an ensemble)")
    classes = {tuple(t.classes or ()) for t in teachers}
    if len(classes) > 1:
        raise ValueError(f"the teachers' classes differ ({sorted(classes)}): an ensemble's teachers must predict "
                         "the same classes in the same order (train them on the same data and label)")
    return teachers


def _columns_of(teachers: Sequence[Bundle]) -> list[str]:
    return list(dict.fromkeys(c for t in teachers for c in t.encoder.columns()))


def teacher_outputs(teacher: Bundle | Sequence[Bundle], cfg: RunConfig, path: Path | None = None,
                    labelled_rows: int | None = None) -> TeacherOutputs:
    """Score once every training row of ``cfg`` (``path`` instead: a Parquet file, all rows) with the teacher.

    ``teacher`` is a bundle or a list of bundles, an ensemble: the logits of the mean of their probabilities
    (:func:`ensemble_logits`), on the rows all of them could encode. ``labelled_rows``: rows after this line
    number are transfer rows (``labelled`` False).
    """
    teachers = _as_teachers(teacher)
    silent = BadRowSink("count")
    lines, logits = [], []
    for chunk in _training_chunks(_columns_of(teachers), cfg, path):
        chunk_lines, chunk_logits = _score(teachers, chunk, silent)
        lines.append(chunk_lines)
        logits.append(chunk_logits)
    if not lines:
        raise ValueError(f"{path or cfg.data.train}: the teacher found no training rows to score")
    all_lines = np.concatenate(lines).astype(np.int64)
    order = np.argsort(all_lines, kind="stable")
    all_lines = all_lines[order]
    labelled = np.ones(len(all_lines), bool) if labelled_rows is None else all_lines <= labelled_rows
    return TeacherOutputs(all_lines, np.concatenate(logits)[order], labelled)


# -- the student's config ---------------------------------------------------------------------------------------
def _split_difference(reference: RunConfig, other: RunConfig) -> tuple[str, Any, Any] | None:
    """The first setting by which ``other`` reads other training rows or labels than ``reference``:
    (field, reference's value, other's value), or None when both read the same rows the same way."""
    drop = {"chunk_rows", "test", "on_bad_rows"}
    a, b = reference.data.model_dump(mode="json", exclude=drop), other.data.model_dump(mode="json", exclude=drop)
    diff = sorted(k for k in a if a[k] != b.get(k))
    if diff:
        return f"data.{diff[0]}", a[diff[0]], b.get(diff[0])
    if reference.train.seed != other.train.seed and reference.data.holds_out:
        return "train.seed", reference.train.seed, other.train.seed
    if reference.label.model_dump() != other.label.model_dump():
        return "label", reference.label.model_dump(mode="json"), other.label.model_dump(mode="json")
    return None


def _same_split(teacher: RunConfig, student: RunConfig, source: str) -> None:
    """A student config must read the teacher's training rows and hold the same rows out."""
    found = _split_difference(teacher, student)
    if found is None:
        return
    field, a, b = found
    if field == "train.seed":
        raise ValueError(f"{source}: train.seed is {b}, the teacher's is {a}; the seed picks the held-out rows, so "
                         f"set train.seed: {a}")
    if field == "label":
        raise ValueError(f"{source}: the label differs from the teacher's {a}; a student predicts its teacher's label")
    raise ValueError(f"{source}: {field} is {b!r}, the teacher's is {a!r}; a student must read the teacher's "
                     "training data the same way (copy the teacher's data: block)")


def _same_teachers(configs: Sequence[RunConfig], run_ids: Sequence[str]) -> None:
    """The teachers of an ensemble must have been trained on the same rows, with the same rows held out and the
    same label: their outputs are averaged row by row."""
    for cfg, run_id in zip(configs[1:], run_ids[1:], strict=True):
        found = _split_difference(configs[0], cfg)
        if found is not None:
            field, a, b = found
            raise ValueError(f"teacher {run_id}: {field} is {b!r}, teacher {run_ids[0]}'s is {a!r}; the teachers of "
                             "an ensemble must be trained on the same data (the same data: block, label and, with a "
                             "held-out split, train.seed), so distil from runs of one data set")


def student_config(teacher: RunConfig, student: str | Path | RunConfig | dict[str, Any],
                   name: str | None = None) -> RunConfig:
    """The config of a student of ``teacher``.

    ``student`` is a model name of :data:`STUDENTS` or a model config (``{"name": "mlp", "hidden": [16]}``): the
    teacher's config with that model (a byte-sequence text feature becomes hashed n-grams, with a bag model's
    learning rates, for any model but ``bytecnn``); or a YAML file or a :class:`RunConfig`, which must read the
    teacher's data with the same split.
    """
    if isinstance(student, RunConfig) or (not isinstance(student, dict) and (
            Path(student).suffix in (".yaml", ".yml") or Path(student).is_file())):
        cfg = student if isinstance(student, RunConfig) else load_config(student)
        _same_split(teacher, cfg, "the student config" if isinstance(student, RunConfig) else str(student))
        return cfg
    if isinstance(student, dict):
        model, key = dict(student), str(student.get("name"))
    elif str(student) in STUDENTS:
        model, key = dict(STUDENTS[str(student)]), str(student)
    else:
        raise ValueError(f"unknown student {str(student)!r}; give a model name ({', '.join(STUDENTS)}) "
                         "or a YAML config path")
    doc = teacher.resolved()
    doc["model"] = model
    doc["name"] = name or f"{teacher.name}-{key}-student"
    switched = False
    if key != "bytecnn":
        bagged = {f["column"] or f["name"] for f in doc["features"] if f["kind"] == "text" and f["tokens"] == "ngrams"}
        features = []
        for f in doc["features"]:
            if f["kind"] == "text" and f["tokens"] == "bytes":
                switched = True
                if (f["column"] or f["name"]) in bagged:
                    continue  # the teacher also reads this text as n-grams: the student keeps that feature only
                f.update(NGRAM_TEXT)
            features.append(f)
        doc["features"] = features
    if switched:
        doc["train"].update(NGRAM_TRAIN)
    return parse_config(doc, source=f"student {key!r} of {teacher.name!r}")


# -- a transfer set ---------------------------------------------------------------------------------------------
def _strings(table: pa.Table) -> pa.Table:
    return pa.table({c: pc.cast(table.column(c), pa.string()) for c in table.column_names})


def _label_names(bundle: Bundle, logits: np.ndarray) -> pa.Array:
    """The teacher's hard guess of each transfer row, written as the label column says it (``bundle``: the first
    teacher; an ensemble's teachers share the label and classes)."""
    label = bundle.config.label
    if logits.ndim == 2:
        classes = bundle.encoder.classes_
        return pa.array([classes[i] for i in logits.argmax(axis=1)], pa.string())
    return pa.array(np.where(logits > 0, label.positive[0], label.negative[0]), pa.string())


def _file_spec(cfg: RunConfig, split: Literal["valid", "test"]) -> FileSpec | None:
    """The ``split`` file with all its reading options spelled out (they no longer follow ``data``)."""
    found = cfg.data.file(split)
    if found is None:
        return None
    path, o = found
    return FileSpec.model_validate({"path": path, "format": detect_format(path, o.format), "header": o.header,
                                    "columns": o.columns, "delimiter": o.delimiter, "quoting": o.quoting})


def with_transfer(teacher: Bundle | Sequence[Bundle], cfg: RunConfig, transfer: Path,
                  run_dir: Path) -> tuple[RunConfig, TeacherOutputs]:
    """The student's training rows plus the transfer rows (labelled by the teacher, or the ensemble: a list of
    bundles) in one Parquet file.

    Writes ``train+transfer.parquet`` (training rows, held-out rows left out, then the transfer rows) and, when
    the teacher held rows out of its training file, ``valid.parquet`` (those rows); returns the student config
    that reads them (its test file unchanged) and the teacher's outputs keyed by line of the new file.
    """
    teachers = _as_teachers(teacher)
    student_cols = set(_columns(cfg))
    columns = list(dict.fromkeys([*_columns_of(teachers), *_columns(cfg)]))
    train_path, valid_path = run_dir / "train+transfer.parquet", run_dir / "valid.parquet"
    writers: dict[str, pq.ParquetWriter] = {}

    def write(path: Path, table: pa.Table) -> None:
        table = _strings(table.select(columns))
        if str(path) not in writers:
            writers[str(path)] = pq.ParquetWriter(path, table.schema)
        writers[str(path)].write_table(table)

    rows = 0
    try:
        for chunk in chunks(cfg.data.train, cfg.data, columns, BadRowSink("count")):
            held = (valid_mask(chunk.lines, cfg.data.valid_fraction, cfg.train.seed) if cfg.data.holds_out
                    else np.zeros(len(chunk), bool))
            if held.any():
                write(valid_path, chunk.table.filter(pa.array(held)))
            write(train_path, chunk.table.filter(pa.array(~held)))
            rows += int((~held).sum())
        fmt = detect_format(transfer, None)
        options = cfg.data.model_copy(update={"format": fmt}) if fmt == detect_format(Path(cfg.data.train),
                                                                                      cfg.data.format) else \
            cfg.data.model_copy(update={"format": fmt, "header": True, "columns": None})
        features = [c for c in columns if c != cfg.label.column]
        added = 0
        for chunk in chunks(transfer, options, features, BadRowSink("count")):
            lines, logits = _score(teachers, chunk, BadRowSink("count"), with_label=False)
            good = np.isin(chunk.lines, lines)
            table = chunk.table.filter(pa.array(good))
            table = table.append_column(cfg.label.column, _label_names(teachers[0], logits))
            write(train_path, table)
            added += len(table)
    finally:
        for w in writers.values():
            w.close()
    if added == 0:
        raise ValueError(f"{transfer}: no usable transfer rows (the file needs the feature columns "
                         f"{sorted(student_cols - {cfg.label.column})})")
    log.info("transfer set %s: %d rows added to %d training rows", transfer, added, rows)
    data: dict[str, Any] = {"train": train_path, "format": "parquet", "valid_fraction": 0.0,
                            "valid": _file_spec(cfg, "valid") if cfg.data.valid is not None
                            else FileSpec(path=valid_path, format="parquet") if valid_path.exists() else None,
                            "test": _file_spec(cfg, "test")}
    student = cfg.model_copy(update={"data": cfg.data.model_copy(update=data)})
    return student, teacher_outputs(teachers, student, train_path, labelled_rows=rows)


def _columns(cfg: RunConfig) -> list[str]:
    return list(dict.fromkeys([*(f.source for f in cfg.features), cfg.label.column]))


# -- the whole run ----------------------------------------------------------------------------------------------
def distill(teacher: str | Sequence[str], student: str | Path | RunConfig | dict[str, Any],
            home: str | Path = "shoal-runs", *, temperature: float = 2.0, alpha: float = 0.5,
            transfer: Path | None = None, callbacks: Callbacks | None = None, outputs: TeacherOutputs | None = None,
            name: str | None = None, train: dict[str, Any] | None = None) -> RunRecord:
    """Train ``student`` on the soft targets of the ``teacher`` run; returns the student's finished record.

    ``teacher`` is a run id (or prefix, or ``latest``), or a list of them: an ensemble of runs trained on the same
    data, whose probabilities are averaged (:func:`ensemble_logits`); the student's config then derives from the
    first one's. The student run (kind ``distill``) records the (first) teacher as ``parent``, every teacher in
    ``summary["distill"]["teachers"]`` and the settings beside them. ``outputs`` reuses teacher outputs already
    computed for these teachers and data (``shoal compress`` scores the rows once for all its candidates);
    ``train`` overrides training settings of the student (e.g. ``{"epochs": 3}``).
    """
    from shoal.runs import _fit, load

    DistillLoss(TeacherOutputs(np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros(0, bool)),
                temperature, alpha)  # checks temperature and alpha before any work
    registry = Registry(Path(home))
    refs = [teacher] if isinstance(teacher, str) else list(teacher)
    if not refs:
        raise ValueError("no teacher given; give a teacher run id, or several for an ensemble")
    t_records = [registry.get(ref) for ref in refs]
    ids = [r.run_id for r in t_records]
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        raise ValueError(f"teacher run {twice[0]} is given more than once ({refs}); name each teacher of an "
                         "ensemble once")
    bundles = [load(run_id, home) for run_id in ids]
    _same_teachers([b.config for b in bundles], ids)
    teachers = _as_teachers(bundles)
    cfg = student_config(bundles[0].config, student, name)
    if train:
        doc = cfg.resolved()
        cfg = parse_config({**doc, "train": {**doc["train"], **train}}, source="student train settings")
    record = registry.create_run(cfg.name, cfg.resolved(), kind="distill", parent=ids[0])
    run_dir = record.artifact_dir
    try:
        if transfer is not None:
            cfg, outputs = with_transfer(teachers, cfg, Path(transfer), run_dir)
        elif outputs is None:
            outputs = teacher_outputs(teachers, cfg)
        cache = outputs.save(run_dir / TEACHER_FILE)
    except Exception as err:
        registry.update(record.run_id, status="failed", finished=True,
                        summary={"error": f"{type(err).__name__}: {err}"})
        raise
    settings = {"teacher": ids[0], "teacher_model": bundles[0].config.model.name,  # the first teacher's
                "teacher_metrics": t_records[0].metrics,
                "teachers": ids, "teacher_models": [b.config.model.name for b in bundles],
                "ensemble": "mean of probabilities" if len(ids) > 1 else None,
                "temperature": temperature, "alpha": alpha,
                "teacher_rows": len(outputs), "teacher_outputs": str(cache),
                "transfer": None if transfer is None else str(transfer),
                "transfer_rows": int((~outputs.labelled).sum()),
                "config": cfg.resolved()}  # what the trainer reads (with a transfer set: the joined file)
    record = registry.update(record.run_id, summary={"distill": settings})
    return _fit(registry, record, cfg, callbacks, resume=False, loss=DistillLoss(outputs, temperature, alpha))


def resume_distill(registry: Registry, record: RunRecord, callbacks: Callbacks | None = None) -> RunRecord:
    """Continue a killed distillation run from its checkpoint, with its cached teacher outputs."""
    from shoal.runs import _fit

    settings = record.summary.get("distill")
    cache = record.artifact_dir / TEACHER_FILE
    if not settings or not cache.is_file():
        teachers = " ".join((settings or {}).get("teachers") or [str(record.parent)])
        raise ValueError(f"run {record.run_id} stopped before its teacher's outputs were saved; nothing to resume "
                         f"(distil again: shoal distill {teachers} --student ...)")
    cfg = parse_config(settings["config"], source=f"run {record.run_id}")
    loss = DistillLoss(TeacherOutputs.load(cache), settings["temperature"], settings["alpha"])
    record = registry.update(record.run_id, status="running")
    return _fit(registry, record, cfg, callbacks, resume=True, loss=loss)
