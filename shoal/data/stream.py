"""Files -> chunks -> encoded batches, with the config's reading options and a deterministic valid split."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from shoal.config import DataConfig
from shoal.data.batch import Batch
from shoal.data.encoder import Encoder
from shoal.data.readers import BadRowSink, ByteRange, Chunk, read_chunks, read_range

__all__ = ["batches", "chunk_at", "chunks", "valid_mask"]


def chunks(path: Path, data: DataConfig, columns: list[str], sink: BadRowSink) -> Iterator[Chunk]:
    """Stream ``columns`` of ``path`` in chunks of ``data.chunk_rows`` rows, read as ``data`` says."""
    return read_chunks(
        Path(path), fmt=data.format, columns=columns, sink=sink, header=data.header, names=data.columns,
        delimiter=data.delimiter, missing=data.missing, chunk_rows=data.chunk_rows, quoting=data.quoting,
    )


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


def valid_mask(lines: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """True for the rows held out for validation: a stable hash of the line number, independent of chunking."""
    if fraction <= 0:
        return np.zeros(len(lines), dtype=bool)
    with np.errstate(over="ignore"):
        h = lines.astype(np.uint64) ^ (np.uint64(seed & 0xFFFFFFFF) * np.uint64(0x9E3779B97F4A7C15))
        h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        h = h ^ (h >> np.uint64(31))
    return (h % np.uint64(1_000_000)).astype(np.int64) < int(fraction * 1_000_000)
