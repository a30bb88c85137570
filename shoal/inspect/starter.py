"""The starter config: YAML for a profiled file that trains as it is, each choice commented."""

from __future__ import annotations

import json
import math
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa

from shoal.config import BagConfig, DLRMConfig, MLPConfig, TrainConfig
from shoal.data.features.base import feature_seed
from shoal.data.hashing import bucketize, hash_strings
from shoal.inspect.profile import FileProfile
from shoal.inspect.stats import _MAX_BUCKETS, _MIN_BUCKETS, LABEL_NAMES

TEXT_BAG_TRAIN = {"epochs": 5, "batch_size": 256, "lr": 0.01, "embedding_lr": 0.1}
#: A regression label's training settings: L2 on the embedding rows. A squared error keeps moving an id's row
#: toward the residuals of its few rows, so the tables of sparse ids fit noise; the penalty shrinks a rarely seen
#: id's row toward zero (the overall effect) as ridge regression shrinks its coefficient.
REGRESSION_TRAIN = {"embedding_weight_decay": 1e-3}
#: Optimizer steps a starter config aims for (within MAX_EPOCHS); early stopping ends it sooner when it overfits.
TARGET_STEPS = 2000
MAX_EPOCHS = 20
_VALID_FRACTION = 0.1
_SMALL_TABLE = 4096  # embedding rows a column with few values gets at least (64 per value up to 64 values)
#: A sparse column with at most this many distinct values (all counted) gets ``encoding: vocab``: a row per value.
VOCAB_MAX_DISTINCT = 10_000
#: ``max_size`` of a vocabulary proposed from the first rows of a file only (the rest may hold many more ids).
VOCAB_MAX_SIZE = 100_000


def sparse_buckets(cardinality: int, capped: bool = False) -> int:
    """Embedding rows for a sparse feature: the power of two >= ``max(8 * cardinality, min(64 * cardinality,
    4096))``, within [16, 1,000,000].

    Ids hash to rows, so two ids may share one: with B rows an id shares its row with another about
    ``cardinality / B`` of the time. A column with few values gets 64 rows per value (collisions ~1-2%, and
    its table stays small), a larger one at least 8 (~12%, mostly among its rare ids).
    """
    if capped:
        return _MAX_BUCKETS
    k = max(cardinality, 1)
    want = 2 ** math.ceil(math.log2(max(8 * k, min(64 * k, _SMALL_TABLE))))
    return int(min(_MAX_BUCKETS, max(_MIN_BUCKETS, want)))


def unshared_buckets(name: str, values: tuple[str, ...], buckets: int) -> int:
    """``buckets`` doubled (at most 8 times) until no two of ``values`` hash to the same row of feature ``name``:
    every value of a column with few values gets a row of its own."""
    if not values:
        return buckets
    hashes = hash_strings(pa.array(values, pa.string()), feature_seed(name))
    for _ in range(8):
        if len(np.unique(bucketize(hashes, buckets))) == len(values) or buckets * 2 > _MAX_BUCKETS:
            break
        buckets *= 2
    return buckets


def sparse_options(name: str, values: tuple[str, ...], cardinality: int, capped: bool, truncated: bool) -> str:
    """The YAML options of a sparse feature with ``cardinality`` distinct values seen: ``encoding: vocab`` (a row
    per value, none shared) for at most :data:`VOCAB_MAX_DISTINCT` of them, all counted (with a ``max_size`` when
    only the first rows were read); else hashed into ``buckets`` rows. ``min_count: 2`` sends ids seen once to
    the out-of-vocabulary row, so that row is trained and an id first seen after training gets a learned vector."""
    if not capped and cardinality <= VOCAB_MAX_DISTINCT:
        return "encoding: vocab, min_count: 2" + (f", max_size: {VOCAB_MAX_SIZE}" if truncated else "")
    return f"buckets: {unshared_buckets(name, values, sparse_buckets(cardinality, capped))}"


def train_settings(rows: int | None, valid_fraction: float, text_bag: bool,
                   regression: bool = False) -> dict[str, int | float]:
    """Training settings sized for ``rows`` training rows (None: more than were read, so a large file).

    The defaults suit millions of rows; on a few thousand they make a handful of optimizer steps. So the batch
    is about 1% of the rows (a power of two in [32, 1024], at most 256 for a text bag) and the epochs reach
    about :data:`TARGET_STEPS` steps (at least the defaults', at most :data:`MAX_EPOCHS`), with one more epoch
    of patience once there are more than 5. A text bag keeps fastText-like rates (:data:`TEXT_BAG_TRAIN`); a
    regression label adds :data:`REGRESSION_TRAIN`.
    """
    base: dict[str, int | float] = {**(TEXT_BAG_TRAIN if text_bag else {}), **(REGRESSION_TRAIN if regression else {})}
    if rows is None:
        return base
    n = max(1, int(rows * (1.0 - valid_fraction)))
    batch = 2 ** int(math.log2(max(n / 100, 1)))
    batch = min(256 if text_bag else 1024, max(32, batch))
    steps = math.ceil(n / batch)
    least = int(base.get("epochs", TrainConfig.model_fields["epochs"].default))
    epochs = min(MAX_EPOCHS, max(least, math.ceil(TARGET_STEPS / steps)))
    patience = int(TrainConfig.model_fields["early_stopping_patience"].default) + (epochs > 5)
    return {**base, "epochs": epochs, "batch_size": batch, "early_stopping_patience": patience}


def _twin_name(name: str, taken: set[str]) -> str:
    """A feature name for ``name``'s values read as ids: ``<name>_id``, with more underscores if that is taken."""
    twin = f"{name}_id"
    while twin in taken:
        twin = twin.replace("_id", "__id", 1)
    return twin


def no_label_message(profile: FileProfile) -> str:
    """Why no starter config is written without a label, the candidate columns, and the fix (``--label``)."""
    names = ", ".join(LABEL_NAMES)
    if profile.label_candidates:
        found = "; candidates (2 values, or the classes of a multiclass label): " + ", ".join(
            f"{c} ({profile.column(c).cardinality} values)" for c in profile.label_candidates)
    else:
        found = "; no column has 2 values or looks like the classes of a multiclass label"
    return (f"{profile.path}: no column is named like a label ({names}) and shoal does not guess the label from "
            f"the values{found}. Name the label column with --label COLUMN")


def _y(value: object) -> str:
    """A YAML flow scalar or sequence for plain data (JSON is valid YAML)."""
    return json.dumps(value, ensure_ascii=False)


def _comment(text: str) -> str:
    return " ".join(text.split())


def _row_time(profile: FileProfile) -> str | None:
    """With several time columns, the row's time that the others' ages are measured at: the first named like an
    event's time (``ts``, ``timestamp``, ``event_time``), else the first with an hour of day (not dates only),
    else the first; None with fewer than 2."""
    times = [c for c in profile.columns if c.kind == "time"]
    if len(times) < 2:
        return None
    for c in times:
        if c.name.lower() in ("ts", "timestamp", "time", "event_time", "event_ts", "datetime"):
            return c.name
    hourly = [c for c in times if "hour" in c.time_parts]
    return (hourly or times)[0].name


def starter_config(profile: FileProfile, config_path: Path) -> str:
    """YAML text of a run config for ``profile`` that :func:`shoal.config.load_config` accepts once written
    to ``config_path`` (``data.train`` is relative to that file's folder). Model ``dlrm`` with the default
    training settings, or for a text-only file ``bag`` with :data:`TEXT_BAG_TRAIN`. Raises ``ValueError`` when
    the profile has no label or no usable feature.
    """
    if profile.label is None:
        raise ValueError(no_label_message(profile))
    features = [c for c in profile.columns if c.kind in ("dense", "sparse", "text", "image", "audio", "time")]
    if not features:
        raise ValueError(f"{profile.path}: no usable feature columns besides the label {profile.label!r}")
    label = profile.column(profile.label)
    config_dir = Path(config_path).resolve().parent
    train = Path(os.path.relpath(Path(profile.path).resolve(), config_dir)).as_posix()
    whole = " (the first rows only)" if profile.truncated else ", the whole file"
    read = f"{profile.rows:,} rows read{whole}"
    out = [
        f"# Starter config generated by `shoal inspect` from {Path(profile.path).name} ({read}).",
        "# Review before training:",
        "#   - the label column and which value is positive (label.positive / label.negative), or its classes;",
        "#   - each feature's kind: dense (a number; transform log1p for counts, standardize otherwise) or",
        "#     sparse (an id or integer code; encoding: vocab gives each id seen in training a row of its own,",
        f"#     for columns with at most {VOCAB_MAX_DISTINCT:,} distinct ids; else buckets = embedding rows, 8-64x",
        "#     the distinct ids seen, so that ids rarely share a row) or text (raw text; max_bytes holds 99% of the",
        "#     texts whole) or time (a timestamp: hour of day, day of week... as ids; relative_to: its age in days",
        "#     at the row's time);",
        "#   - the columns left out (commented out under features) and columns with many missing values;",
        "#   - model and train settings: epochs and batch size sized for the rows read (a text-only file: bag).",
        f"name: {_y(Path(profile.path).stem)}",
        "data:",
        f"  train: {_y(train)}",
        f"  format: {_y(profile.format)}",
    ]
    if profile.format in ("csv", "tsv"):
        out.append(f"  header: {'true' if profile.header else 'false'}")
        if not profile.header:
            out.append(f"  columns: {_y([c.name for c in profile.columns])}")
        out.append(f"  delimiter: {_y(profile.delimiter)}")
        out.append(f"  missing: {_y(list(profile.missing))}")
    out.append(f"  valid_fraction: {_VALID_FRACTION}")
    unlabelled = profile.column(profile.label).missing if profile.label and profile.label_kind != "multitask" else 0
    if profile.bad_rows or unlabelled:  # set aside and counted, where the default would stop at the first
        why = [f"{profile.bad_rows:,} rows had the wrong number of columns"] if profile.bad_rows else []
        why += [f"{unlabelled:,} rows have no label"] if unlabelled else []
        out.append(f"  on_bad_rows: quarantine  # {'; '.join(why)}")
    if profile.label_kind == "multitask":
        out += ["label:", "  kind: multitask  # several labels, one model (an empty cell: unknown for that task)",
                "  tasks:"]
        for task in profile.label_tasks:
            fields = [f"column: {_y(task['column'])}"] + ([f"kind: {task['kind']}"] if task["kind"] != "binary" else [])
            fields += [f"{k}: {_y(task[k])}" for k in ("positive", "negative") if task.get(k)]
            out.append(f"    - {{{', '.join(fields)}}}  # {_comment(profile.column(task['column']).reason)}")
        out.append("  heads: {kind: shared_bottom}  # or mmoe: experts mixed per task, for tasks that pull apart")
    else:
        out += ["label:", f"  column: {_y(profile.label)}  # {_comment(label.reason)}"]
    if profile.label_kind == "regression":
        out.append("  kind: regression")
    if profile.label_kind == "multilabel":
        out.append("  kind: multilabel")
        out.append(f"  separator: {_y(profile.label_separator or '|')}")
    if profile.label_classes:
        out.append("  kind: multiclass")
        out.append(f"  classes: {_y(list(profile.label_classes))}")
    if profile.label_positive:
        out.append(f"  positive: {_y(list(profile.label_positive))}")
        out.append(f"  negative: {_y(list(profile.label_negative))}")
    out.append("features:")
    taken = {c.name for c in profile.columns}
    row_time = _row_time(profile)
    for c in profile.columns:
        if c.kind == "label":
            continue
        if c.kind == "dense":
            bins = f", bins: {c.bins}" if c.bins else ""
            marks = "".join(f", {k}: {_y(v)}" for k, v in (c.number_format or {}).items())  # how its text reads
            entry = f"{{name: {_y(c.name)}, kind: dense, transform: {c.transform or 'standardize'}{bins}{marks}}}"
            if c.also_ids:
                twin = _twin_name(c.name, taken)
                taken.add(twin)
                ids = sparse_options(twin, c.values, c.cardinality, c.cardinality_capped, profile.truncated)
                out.append(f"  - {entry}  # {_comment(c.reason)}")
                out.append(f"  - {{name: {_y(twin)}, column: {_y(c.name)}, kind: sparse, {ids}}}"
                           f"  # {c.name}'s values as ids")
                continue
        elif c.kind == "sparse":
            ids = sparse_options(c.name, c.values, c.cardinality, c.cardinality_capped, profile.truncated)
            entry = f"{{name: {_y(c.name)}, kind: sparse, {ids}"
            if c.multi_id_separator is not None:
                entry += f", separator: {_y(c.multi_id_separator)}"
            entry += "}"
        elif c.kind == "text":
            max_bytes = f", max_bytes: {c.max_bytes}" if c.max_bytes else ""
            entry = f"{{name: {_y(c.name)}, kind: text, buckets: 1000000{max_bytes}}}"
        elif c.kind == "time":
            parts = f", parts: [{', '.join(c.time_parts)}]" if c.time_parts and list(c.time_parts) != ["hour",
                                                                                                      "weekday"] else ""
            relative = f", relative_to: {_y(row_time)}" if row_time is not None and c.name != row_time else ""
            entry = f"{{name: {_y(c.name)}, kind: time{parts}{relative}}}"
            if relative:
                c = replace(c, reason=f"{c.reason}; and its age in days at {row_time} (the row's time)")
            elif row_time is not None:
                c = replace(c, reason=f"{c.reason}; the row's time (the other times' ages are measured at it)")
        elif c.kind in ("image", "audio"):
            options = "".join(f", {k}: {_y(v)}" for k, v in (c.media or {}).items())
            entry = f"{{name: {_y(c.name)}, kind: {c.kind}{options}}}"
        else:
            out.append(f"  # left out {_y(c.name)}: {_comment(c.reason)}")
            continue
        missing = f"; {c.missing_pct:g}% missing" if c.missing else ""
        out.append(f"  - {entry}  # {_comment(c.reason)}{missing}")
    # text only: fastText's architecture (bag) is the fast, strong start; anything else: DLRM
    # images or sounds: their CNN vectors beside the other inputs in an MLP
    media = any(c.kind in ("image", "audio") for c in features)
    name = "bag" if all(c.kind == "text" for c in features) else "mlp" if media else "dlrm"
    family = BagConfig if name == "bag" else MLPConfig if media else DLRMConfig
    model = family.model_validate({"name": name}).model_dump(mode="json")
    out += ["model:", f"  name: {_y(name)}"]
    out += [f"  {k}: {_y(v)}" for k, v in model.items() if k != "name"]
    regression = profile.label_kind == "regression"
    settings = train_settings(None if profile.truncated else profile.rows, _VALID_FRACTION, name == "bag", regression)
    training = TrainConfig.model_validate(settings)
    steps = math.ceil(profile.rows * (1 - _VALID_FRACTION) / training.batch_size) * training.epochs
    sized = ("the defaults (a large file)" if profile.truncated else
             f"sized for {profile.rows:,} rows: batch about 1% of them, epochs for about {TARGET_STEPS:,} steps "
             f"(here {steps:,} at most), early stopping on the validation loss keeps the best epoch")
    out.append(f"train:  # {sized}" + ("; fastText-like rates for a bag of text n-grams" if name == "bag" else "")
               + ("; L2 on the embedding rows for a regression label (ids seen a few times fit noise)"
                  if regression else ""))
    out += [f"  {k}: {_y(v)}" for k, v in training.model_dump(mode="json").items()]
    return "\n".join(out) + "\n"

