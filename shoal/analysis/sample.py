"""A bounded, uniform sample of a run's rows: the validation split, the training file, or any file read like them.

``shoal explain`` and ``shoal drift`` look at a few thousand rows, never a whole log. :func:`sample_rows` reads
chunks until ``scan`` rows have gone by and keeps a uniform sample of ``rows`` of them (bottom-k: each row draws a
seeded random key, the ``rows`` smallest keys stay), so memory is bounded by ``rows`` plus one chunk::

    chunks  |c0 ........|c1 ........|c2 ........| ... (stop after `scan` rows)
    keys    |.31 .02 .77|.05 .64 .12|.90 .01 .48|
    kept     the `rows` smallest keys -> one Arrow table, in file order

Where the rows come from (:func:`validation_source`, :func:`training_source`) and which columns a file must have
(:func:`check_columns`) live here too, so both commands read data the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shoal.artifacts.bundle import Bundle
from shoal.config import DataConfig
from shoal.data.readers import BadInputError, BadRowSink, Chunk, detect_format, is_multi, read_header
from shoal.data.split import HeldOutSplit
from shoal.data.stream import chunks
from shoal.errors import ShoalError

__all__ = ["AnalysisError", "Rows", "check_columns", "read_options", "run_folder", "sample_rows", "source_rows",
           "split_rows", "training_source", "validation_source"]

log = logging.getLogger(__name__)

SCAN_ROWS = 2_000_000  # rows read at most to draw a sample: a bound on time for a log of any size


class AnalysisError(ShoalError, ValueError):
    """Data that ``explain`` or ``drift`` cannot use; the message names the file, the column and how to fix it."""


@dataclass(frozen=True)
class Rows:
    """A sample of rows: the table (the wanted columns), where it was read, and how many rows went by."""

    table: pa.Table
    source: str  # the file (or split file) the rows come from
    scanned: int  # rows read to draw the sample

    def __len__(self) -> int:
        return self.table.num_rows


def run_folder(bundle_folder: Path) -> Path:
    """The run folder of a bundle folder (``runs/<id>/bundle`` -> ``runs/<id>``); a loose bundle is its own."""
    return bundle_folder.parent if bundle_folder.name == "bundle" else bundle_folder


def check_columns(path: Path, data: DataConfig, wanted: Sequence[str], what: str) -> None:
    """Raise :class:`AnalysisError` naming the columns of ``wanted`` that ``path`` lacks, and the ones it has.

    ``what`` says who needs them (``"run 2024... reads"``). Sources whose columns cannot be listed cheaply are left to
    the reader, which names them too."""
    fmt = detect_format(path, data.format)
    if fmt in ("csv", "tsv") and not data.header:
        have = list(data.columns or [])
    else:
        have = read_header(path, fmt, data.delimiter)
    lost = [c for c in wanted if c not in set(have)]
    if lost:
        raise AnalysisError(f"{path}: column(s) {lost} not found, but {what} them; the file has {have[:50]}. "
                            "Pass a file with the same columns as the run's training data")


def sample_rows(stream: Iterable[Chunk], rows: int, seed: int, source: str, scan: int = SCAN_ROWS) -> Rows:
    """A uniform sample of at most ``rows`` rows of the first ``scan`` rows of ``stream``, in their file order."""
    if rows < 1:
        raise AnalysisError(f"rows is {rows}; the sample needs at least 1 row (e.g. --rows 20000)")
    rng = np.random.default_rng(seed)
    kept: pa.Table | None = None
    keys = np.zeros(0)
    seen = 0
    for chunk in stream:
        table = chunk.table.append_column("__order__", pa.array(np.arange(seen, seen + len(chunk), dtype=np.int64)))
        seen += len(chunk)
        new = rng.random(len(chunk))
        kept = table if kept is None else _concat(kept, table)
        keys = np.concatenate([keys, new])
        if len(keys) > rows:
            top = np.argpartition(keys, rows - 1)[:rows]
            kept, keys = kept.take(pa.array(top)), keys[top]
        if seen >= scan:
            break
    if kept is None or kept.num_rows == 0:
        raise AnalysisError(f"{source}: no rows to sample; pass a file with at least one data row")
    kept = kept.take(pc.sort_indices(kept, [("__order__", "ascending")]))
    return Rows(kept.drop_columns(["__order__"]), source, seen)


def _concat(a: pa.Table, b: pa.Table) -> pa.Table:
    """Two chunks' tables as one: types promoted (JSONL blocks may differ), else every column as text."""
    try:
        return pa.concat_tables([a, b], promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        def text(t: pa.Table) -> pa.Table:
            return pa.table({c: pc.cast(t.column(c), pa.string()) if c != "__order__" else t.column(c)
                             for c in t.column_names})
        return pa.concat_tables([text(a), text(b)])


def read_options(bundle: Bundle, path: Path) -> DataConfig:
    """How to read ``path``: as the run's validation or test file when it is one of them, else as its training data."""
    for split in ("valid", "test"):
        found = bundle.config.data.file(split)
        if found is not None and Path(found[0]).resolve() == Path(path).resolve():
            return found[1]
    return bundle.config.data


def source_rows(bundle: Bundle, path: Path, columns: Sequence[str], rows: int, seed: int, what: str,
                scan: int = SCAN_ROWS) -> Rows:
    """A sample of ``columns`` of any file, read like the run's data (its columns checked first)."""
    data = read_options(bundle, path)
    if not Path(path).exists() and not is_multi(Path(path)):
        raise AnalysisError(f"{path}: file does not exist; pass a CSV/TSV/Parquet/JSONL file with the run's columns")
    check_columns(Path(path), data, columns, what)
    return sample_rows(_read(path, data, columns), rows, seed, str(path), scan)


def _read(path: Path, data: DataConfig, columns: Sequence[str]) -> Iterator[Chunk]:
    """The file's chunks; rows with the wrong number of cells are left out (counted nowhere: a sample)."""
    return chunks(Path(path), data, list(columns), BadRowSink("count"))


def validation_source(bundle: Bundle, bundle_folder: Path, columns: Sequence[str], rows: int, seed: int,
                      ref: str) -> Rows:
    """A sample of the run's validation rows: its ``data.valid`` file, else the held-out split file of the run."""
    found = bundle.config.data.file("valid")
    if found is not None:
        return source_rows(bundle, found[0], columns, rows, seed, f"run {ref} reads")
    split = HeldOutSplit(run_folder(bundle_folder))
    if not split.exists():
        raise AnalysisError(f"run {ref} has no validation rows ({split.path} does not exist: the run held none out, "
                            "or its bundle was copied without its run folder); pass a labelled file with --data FILE")
    return split_rows(split, columns, rows, seed)


def split_rows(split: HeldOutSplit, columns: Sequence[str], rows: int, seed: int) -> Rows:
    """A sample of ``columns`` of a run's held-out split file, streamed."""
    stream = split.chunks(65_536)
    first = next(stream, None)
    if first is None:
        raise AnalysisError(f"{split.path}: the split file holds no rows; pass a labelled file with --data FILE")
    lost = [c for c in columns if c not in first.table.column_names]
    if lost:
        raise AnalysisError(f"{split.path}: column(s) {lost} not found; the split file is from another run: pass a "
                            "labelled file with --data FILE")
    picked = (Chunk(c.table.select(list(columns)), c.lines, c.file) for c in _chain(first, stream))
    return sample_rows(picked, rows, seed, str(split.path))


def _chain(first: Chunk, rest: Iterator[Chunk]) -> Iterator[Chunk]:
    yield first
    yield from rest


def training_source(bundle: Bundle, bundle_folder: Path, columns: Sequence[str], rows: int, seed: int,
                    ref: str) -> Rows:
    """A sample of the run's training rows: its training file when it is still there, else its held-out split
    (rows of the same file, held out at random: the same distribution)."""
    data = bundle.config.data
    train = Path(data.train)
    if train.exists() or is_multi(train):
        try:
            return source_rows(bundle, train, columns, rows, seed, f"run {ref} reads")
        except BadInputError as err:  # the file changed since training: fall back to the split the run kept
            log.warning("%s; comparing with the run's held-out split instead", err)
    split = HeldOutSplit(run_folder(bundle_folder))
    if split.exists():
        try:
            return split_rows(split, columns, rows, seed)
        except AnalysisError:
            pass
    raise AnalysisError(f"run {ref}: its training data {train} cannot be read and the run kept no validation split "
                        f"({split.path}); drift compares against the training rows: restore {train}")
