"""The files a search reads: DATA profiled into its starter config, the validation and test files beside it, and
the winner's one evaluation on the test file.

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
from shoal.inspect import inspect_file, starter_config

__all__ = ["STARTER_FILE", "file_spec", "prepare", "search_config", "test_report"]

log = logging.getLogger(__name__)

STARTER_FILE = "starter.yaml"


def prepare(data: Path, label: str | None, valid: Path | None, folder: Path) -> tuple[RunConfig, DataShape]:
    """Profile the file (``shoal inspect``), write its starter config to ``folder``, measure its texts."""
    profile = inspect_file(data, label=label)
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
    """The winner's metrics on the test file (read as :func:`_file_spec` says; bad rows counted, not fatal)."""
    from shoal.training.evaluation import report, scores
    from shoal.training.runs import load

    bundle = load(run_id, home)
    path, options = (spec, data) if isinstance(spec, Path) else (spec.path, data.model_copy(
        update={"columns": spec.columns}))
    sink = BadRowSink("count")
    encoded = (b for b in batches(path, options, bundle.encoder, sink) if len(b))
    return {**report(*scores(bundle.model, encoded), bundle.prior), "bad_rows": sink.count}
