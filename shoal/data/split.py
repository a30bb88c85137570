"""The validation rows held out of the training file: which lines they are, and the split file that keeps them.

Unless ``data.valid`` names a file, a run validates on ``data.valid_fraction`` of the training lines, chosen by
:func:`valid_mask` (a stable hash of the line number, so the choice does not depend on chunking). The first pass
writes those rows to ``valid-split.parquet`` in the run folder; validation, the ONNX parity check and compress
read them back from there with :class:`HeldOutSplit`::

    line in the training file:  1  2  3  4  5  6  7  8 ...
    valid_mask (fraction 0.25):  .  x  .  .  .  x  .  . ...
    valid-split.parquet:        | d0 | s0 | ... | label | __shoal_line__ |
                                | .. | .. | ... |  ...  |       2        |
                                | .. | .. | ... |  ...  |       6        |

The ``__shoal_line__`` column keeps each row's line in the training file, so a held-out row is the same row
(e.g. for a teacher's outputs in :mod:`shoal.distill`) wherever it is read.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from shoal.data.features.base import id_lists, is_id_list
from shoal.data.readers import Chunk

__all__ = ["HeldOutSplit", "valid_mask"]


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


class HeldOutSplit:
    """The split file of the run in ``run_dir``: written during the first pass, read back in chunks.

    Writing (``fmt`` is the training file's ``data.format``; JSONL columns are stored as text, since their
    types may vary from block to block)::

        with HeldOutSplit(run_dir, fmt) as split:   # removes an earlier split file
            split.write(held_rows)                  # a Chunk of held-out rows, once per training chunk

    Reading: :meth:`chunks` streams it, :meth:`read` takes its first rows at once.
    """

    FILE = "valid-split.parquet"
    LINE = "__shoal_line__"  # the column holding each row's line in the training file

    def __init__(self, run_dir: Path, fmt: str | None = None) -> None:
        self.path = Path(run_dir) / self.FILE
        self.fmt = fmt
        self._writer: pq.ParquetWriter | None = None

    def exists(self) -> bool:
        return self.path.is_file()

    # -- writing ---------------------------------------------------------------------------------------------
    def __enter__(self) -> HeldOutSplit:
        self.path.unlink(missing_ok=True)
        return self

    def write(self, rows: Chunk) -> None:
        """Append held-out rows with their line numbers (the file's schema is the first write's)."""
        table = rows.table
        if self.fmt == "jsonl":
            table = pa.table({c: id_lists(table.column(c)) if is_id_list(table.column(c).type)
                              else pc.cast(table.column(c), pa.string()) for c in table.column_names})
        table = table.append_column(self.LINE, pa.array(rows.lines, pa.int64()))
        self._writer = self._writer or pq.ParquetWriter(self.path, table.schema)
        self._writer.write_table(table.cast(self._writer.schema))

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    # -- reading ---------------------------------------------------------------------------------------------
    def chunks(self, chunk_rows: int, source: str | None = None) -> Iterator[Chunk]:
        """The held-out rows in chunks of ``chunk_rows``; ``source`` names them in bad-row reports (default: the
        split file; the trainer names the training file, where their line numbers point)."""
        for rb in pq.ParquetFile(self.path).iter_batches(batch_size=chunk_rows):
            yield self._chunk(pa.Table.from_batches([rb]), source)

    def read(self, rows: int | None = None) -> Chunk:
        """The first ``rows`` held-out rows (all when None) as one chunk."""
        table = pq.read_table(self.path)
        return self._chunk(table if rows is None else table.slice(0, rows), None)

    def _chunk(self, table: pa.Table, source: str | None) -> Chunk:
        return Chunk(table.drop_columns([self.LINE]), table.column(self.LINE).to_numpy(), source or str(self.path))
