"""The files a search reads: DATA profiled into its starter config, the validation and test files beside it, and
the winner's one evaluation on the test file.

DATA is profiled once, before the auto run exists (:func:`profile_data`): a label that is not a column, or one the
search cannot learn (one value, or more distinct strings than a label's classes), is refused there and leaves no
run behind; :func:`prepare` then writes that profile's starter config in the run's folder.

A validation or test file whose header names DATA's columns differently (same number of columns) is read by
position under DATA's names, with a warning; one with another number of columns is an error before the search.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from shoal.auto.space import DataShape, text_lengths
from shoal.config import DataConfig, FileSpec, RunConfig, load_config
from shoal.data.readers import BadRowSink, detect_format, read_header
from shoal.data.stream import batches
from shoal.inspect import FileProfile, inspect_file, no_label_message, starter_config
from shoal.inspect.stats import COUNTED_VALUES as MAX_CLASSES  # the values inspect counts: a class label's most

__all__ = ["STARTER_FILE", "check_label", "file_spec", "prepare", "profile_data", "search_config", "test_report"]

log = logging.getLogger(__name__)

STARTER_FILE = "starter.yaml"


def profile_data(data: Path, label: str | None, header: bool | None = None,
                 label_kind: str | None = None) -> FileProfile:
    """Profile ``data`` (``shoal inspect``; ``header`` and ``label_kind`` guessed when None) and check its label can
    be learnt: ``ValueError`` for a label that is not a column (the message lists the file's columns), none given
    or found, a ``label_kind`` its values do not allow, or one :func:`check_label` refuses.
    """
    profile = inspect_file(data, label=label, header=header, label_kind=label_kind)
    check_label(profile)
    return profile


def check_label(profile: FileProfile) -> None:
    """Refuse a label with nothing to learn (no value or only one) or that is neither two values,
    classes, a number nor tags (strings with more than :data:`MAX_CLASSES` distinct values: an id, a free text);
    the message names columns with two values that could be the label instead."""
    if profile.label is None:
        raise ValueError(no_label_message(profile))
    column = profile.column(profile.label)
    if profile.label_kind != "binary" or column.cardinality == 2:
        return  # two values, classes, a number, tags or several tasks (inspect_file checked each task)
    if column.cardinality < 2:
        what = ("no value (every cell is missing)" if column.cardinality == 0
                else f"only one value ({column.example!r}): nothing to learn")
    else:
        many = f"{column.cardinality:,}{'+' if column.cardinality_capped else ''}"
        what = f"{many} distinct values that are not numbers: more than a label's {MAX_CLASSES} classes"
    others = [c.name for c in profile.columns if c.name != profile.label and c.cardinality == 2]
    hint = f"; columns with 2 values: {', '.join(others)}" if others else ""
    raise ValueError(f"label column {profile.label!r} of {profile.path.name} has {what}; a label is 2 values "
                     f"(binary), 3 to {MAX_CLASSES} classes, a number (regression) or tags{hint}")


def prepare(profile: FileProfile, valid: Path | None, folder: Path) -> tuple[RunConfig, DataShape]:
    """Write the starter config of ``profile`` (:func:`profile_data`) to ``folder``, measure its texts."""
    starter = folder / STARTER_FILE
    starter.write_text(starter_config(profile, starter), encoding="utf-8")
    base = search_config(load_config(starter), valid)
    return base, DataShape.of(base, profile, text_lengths(base))


def search_config(starter: RunConfig, valid: Path | None) -> RunConfig:
    """The starter config as every trial reads its data: ``valid`` when given, never the test file."""
    spec = {"valid": file_spec(valid, starter.data)} if valid else {}
    data = starter.data.model_copy(update={"test": None, **spec})
    return starter.model_copy(update={"data": data})


def file_spec(path: Path, data: DataConfig) -> Path | FileSpec:
    """How to read a validation or test file beside DATA: as DATA, or, when its header names the same number of
    columns differently, by position under DATA's names (logged)."""
    train = data.file("train")
    assert train is not None
    fmt = detect_format(train[0], data.format)
    if not data.header or fmt not in ("csv", "tsv") or detect_format(path, data.format) != fmt:
        return path
    names = data.columns or read_header(train[0], fmt, data.delimiter)
    theirs = read_header(path, fmt, data.delimiter)
    if theirs == names:
        return path
    if len(theirs) != len(names):
        raise ValueError(f"{path} has the columns {theirs}, {train[0].name} has {names}; give a file with the "
                         "training file's columns")
    log.warning("%s names its columns %s; read by position as %s", path, theirs, names)
    return FileSpec(path=path, columns=list(names))


def test_report(run_id: str, spec: Path | FileSpec, data: DataConfig, home: Path) -> dict[str, Any]:
    """The winner's metrics on the test file (read as :func:`_file_spec` says); bad rows are not fatal: counted
    (``bad_rows``), by reason (``bad_reasons``), the first as an example (``bad_example``: its file, line, column
    and value)."""
    from shoal.training.evaluation import report, scores
    from shoal.training.runs import load

    bundle = load(run_id, home)
    path, options = (spec, data) if isinstance(spec, Path) else (spec.path, data.model_copy(
        update={"columns": spec.columns}))
    sink = BadRowSink("count")
    encoded = (b for b in batches(path, options, bundle.encoder, sink) if len(b))
    metrics = report(*scores(bundle.model, encoded), bundle.prior)  # reads the file: the sink counts after it
    bad = ({"bad_rows": sink.count, "bad_reasons": dict(sink.by_reason), "bad_example": sink.first.message()}
           if sink.first is not None else {"bad_rows": 0})
    return {**metrics, **bad}
