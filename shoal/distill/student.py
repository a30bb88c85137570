"""The student's config: the teacher's, with a small model, reading the same rows with the same split.

A named student also gets smaller media encoders than its teacher: each image or audio feature's CNN at half
the channels (at least 4) with one block per stage (:func:`smaller_media`), since the CNN, not the head, is
what costs time per row; an image feature half the height and width (at least 16 pixels: a quarter of the
CNN's work again); and an audio feature a cheaper spectrogram: a DFT of half the points with the window filling
all of them (half the teacher's window widened to the next power of two of samples: the DFT costs the same either
way), frames end to end (every window: fewer frames for the CNN) and half the mel bands (at most one per 4 of
its DFT's bins, at least 16). At batch 1 the teacher's front end (the windowed DFT over every frame) cost as much
as the student's whole CNN, so a student with the teacher's spectrogram could not be much faster. Teacher and
student meet on raw rows (:mod:`shoal.distill.teachers`), so each computes its own input (resized image,
spectrogram).

A student must train on the rows its teacher scored and hold out the same validation rows (otherwise it would
learn the teacher's outputs on rows it is then scored on); these checks say which setting differs and how to fix
it. The teachers of an ensemble are checked the same way against each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shoal.config import RunConfig, load_config, parse_config

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


# An image or audio feature's CNN in a named student: ``widths`` divided by this (at least MIN_WIDTH), one block.
MEDIA_STUDENT_DIVISOR = 2
MEDIA_STUDENT_MIN_WIDTH = 4
MEDIA_STUDENT_MIN_MELS = 16  # an audio student's mel bands: the teacher's / MEDIA_STUDENT_DIVISOR, at least this
MEDIA_STUDENT_BINS_PER_BAND = 4  # ... and no more than its DFT's bins / this: bands its smaller DFT resolves
MEDIA_STUDENT_MIN_SIDE = 16  # an image student's height and width: the teacher's / MEDIA_STUDENT_DIVISOR, at least this


def _whole_dft_window(window_ms: float, sample_rate: int) -> float:
    """``window_ms`` widened to the DFT it already pays for: the next power of two of its samples, in ms. The
    spectrogram's DFT has that many points whatever the window's length (:class:`~shoal.data.logmel.LogMel`), so
    the wider window costs nothing per frame, and with frames end to end there are fewer of them."""
    taps = max(2, round(window_ms * sample_rate / 1000))
    return (1 << (taps - 1).bit_length()) * 1000 / sample_rate


def smaller_media(feature: dict[str, Any]) -> dict[str, Any]:
    """A media feature's config (resolved) with the student's smaller CNN: half the channels, one block per stage;
    for an image also half the height and width (at least :data:`MEDIA_STUDENT_MIN_SIDE`, never more than the
    teacher's); for audio the cheaper spectrogram: half the window widened to its DFT's whole length
    (:func:`_whole_dft_window`; never wider than the teacher's), a hop of that window (never shorter than the
    teacher's), half the mel bands but no more than a band per :data:`MEDIA_STUDENT_BINS_PER_BAND` bins of its
    DFT (at least :data:`MEDIA_STUDENT_MIN_MELS`, never more than the teacher's)."""
    widths = [max(MEDIA_STUDENT_MIN_WIDTH, w // MEDIA_STUDENT_DIVISOR) for w in feature["widths"]]
    out = {**feature, "widths": [min(w, v) for w, v in zip(widths, feature["widths"], strict=True)], "blocks": 1}
    if feature["kind"] == "image":
        out["size"] = [min(side, max(MEDIA_STUDENT_MIN_SIDE, side // MEDIA_STUDENT_DIVISOR))
                       for side in feature["size"]]
    if feature["kind"] == "audio":
        window = min(feature["window_ms"],
                     _whole_dft_window(feature["window_ms"] / MEDIA_STUDENT_DIVISOR, feature["sample_rate"]))
        n_fft = 1 << (round(window * feature["sample_rate"] / 1000) - 1).bit_length()  # as AudioColumn's
        bands = min(feature["n_mels"] // MEDIA_STUDENT_DIVISOR, n_fft // 2 // MEDIA_STUDENT_BINS_PER_BAND)
        out.update(window_ms=window, hop_ms=max(feature["hop_ms"], window),
                   n_mels=min(feature["n_mels"], max(MEDIA_STUDENT_MIN_MELS, bands)))
    return out


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
    learning rates, for any model but ``bytecnn``; an image or audio feature's CNN is halved,
    :func:`smaller_media`); or a YAML file or a :class:`RunConfig`, which must read the
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
    doc["features"] = [smaller_media(f) if f["kind"] in ("image", "audio") else f for f in doc["features"]]
    if switched:
        doc["train"].update(NGRAM_TRAIN)
    return parse_config(doc, source=f"student {key!r} of {teacher.name!r}")

