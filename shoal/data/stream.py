"""Files -> chunks -> encoded batches, with the config's reading options.

The held-out validation rows (:func:`valid_mask`) and their split file are :mod:`shoal.data.split`'s.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from shoal.config import DataConfig
from shoal.data.batch import Batch
from shoal.data.encoder import Encoder
from shoal.data.readers import BadRowSink, ByteRange, Chunk, read_chunks, read_range
from shoal.data.split import valid_mask  # the split rule, for readers of whole files

__all__ = ["batches", "chunk_at", "chunks", "is_own_source", "valid_mask"]


def chunks(path: Path, data: DataConfig, columns: list[str], sink: BadRowSink) -> Iterator[Chunk]:
    """Stream ``columns`` of ``path`` in chunks of ``data.chunk_rows`` rows, read as ``data`` says. ``data.filter``
    selects the rows of the config's own sources (train, valid, test); any other file (``shoal eval --data``,
    ``shoal predict``) is read whole."""
    return read_chunks(
        Path(path), fmt=data.format, columns=columns, sink=sink, header=data.header, names=data.columns,
        delimiter=data.delimiter, missing=data.missing, chunk_rows=data.chunk_rows, quoting=data.quoting,
        row_filter=data.filter if data.filter and is_own_source(path, data) else None,
    )


def is_own_source(path: Path, data: DataConfig) -> bool:
    """Whether ``path`` is the train, valid or test source of ``data``."""
    own = [data.train] + [s if isinstance(s, Path) else s.path for s in (data.valid, data.test) if s is not None]
    return Path(path) in own


def chunk_at(path: Path, data: DataConfig, columns: list[str], span: ByteRange) -> Chunk:
    """The chunk of a CSV/TSV/JSONL file at ``span`` (:func:`shoal.data.readers.byte_ranges`), read as ``data``
    says, from those bytes alone."""
    return read_range(Path(path), span, fmt=data.format, columns=columns, names=data.columns,
                      delimiter=data.delimiter, missing=data.missing, quoting=data.quoting,
                      chunk_rows=data.chunk_rows)


def batches(path: Path, data: DataConfig, encoder: Encoder, sink: BadRowSink,
            with_label: bool = True) -> Iterator[Batch]:
    """Encoded batches of a whole file, one per chunk."""
    for chunk in chunks(path, data, encoder.columns(with_label), sink):
        yield encoder.encode(chunk, sink, with_label=with_label)
