"""A rank's share of the training rows, cut into steps that every rank takes together.

Rank r of W trains on the chunks ``ci`` (``data.chunk_rows`` rows each, in file order) with ``ci % W == r``.
Each epoch, every chunk is shuffled with the generator seeded by (seed, epoch, ci), as in one process, and the
rank's shuffled rows are cut into mini-batches of exactly ``batch_size / W`` rows (a chunk's remainder carries
over to the next chunk). Every rank runs the same number of steps per epoch, ``ceil(max_r rows_r / (batch_size /
W))``: a rank with fewer rows goes on from its first rows again, as torch's DistributedSampler pads, but those
rows weigh 0 in the loss (:meth:`StepPlan.padding_weights`)::

    W = 2, batch_size / W = 4, rank rows 10 and 7: 3 steps      real rows    loss weights
    rank 0:  [a0 a1 a2 a3] [a4 a5 a6 a7] [a8 a9 a0 a1]         4, 4, 2      none | 8/7 x4     | 4 4 0 0
    rank 1:  [b0 b1 b2 b3] [b4 b5 b6 b0] [b1 b2 b3 b4]         4, 3, 0      none | 8/7 x3, 0  | 0 0 0 0

Collectives never wait on a rank that has run out, and every step is a full batch on every rank (TorchRec's
row-wise sharding needs equal batch sizes).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shoal.config import RunConfig
from shoal.data.batch import Batch
from shoal.data.encoder import Encoder
from shoal.data.readers import BadRowSink, ByteRange, Chunk, byte_ranges, detect_format, read_parquet_chunks
from shoal.data.split import valid_mask
from shoal.data.stream import chunk_at, chunks
from shoal.distributed.context import RankContext

__all__ = ["RankRows", "StepPlan"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StepPlan:
    """How the ranks' rows make equal steps of ``rank_batch`` rows a rank (see the module docstring)."""

    rank_rows: list[int]  # training rows of each rank
    rank_batch: int
    rank: int

    @property
    def steps(self) -> int:
        """Steps per epoch: enough for the rank with the most rows."""
        return -(-max(self.rank_rows) // self.rank_batch)

    def real_rows(self, step: int) -> list[int]:
        """The rows of each rank at ``step`` that are not padding."""
        return [min(max(rows - step * self.rank_batch, 0), self.rank_batch) for rows in self.rank_rows]

    def padding_weights(self, step: int) -> np.ndarray | None:
        """The loss weights of this rank's rows at ``step``, or None when no rank pads at that step.

        A rank that has run out of rows goes on with its first rows again (every rank must take every step), but
        those rows weigh 0: training on rows seen earlier in the epoch is the "one-epoch" overfitting of models
        with large embedding tables (Zhang et al. 2022). The real rows weigh W * b / R, R the real rows of the
        step over all ranks, so the step is the mean over those R rows, as one process would take it."""
        real = self.real_rows(step)
        world = len(self.rank_rows)
        if sum(real) == world * self.rank_batch:
            return None
        weights = np.zeros(self.rank_batch, dtype=np.float32)
        weights[:real[self.rank]] = world * self.rank_batch / sum(real)  # a step's real rows come first
        return weights


class RankRows:
    """This rank's training rows (:class:`~shoal.training.data.TrainRows`): its chunks of the training file, one
    item per step.

    ``spans``: where each chunk of a CSV/TSV/JSONL file lies (:meth:`byte_ranges`), so the rank reads its chunks'
    bytes alone; None for Parquet (its row groups are read instead) or a file whose lines are not its records
    (every rank parses the whole file). ``cached``: the rank's encoded chunks, in order, when they fit in memory.
    ``plan`` is set once every rank's row count is known.
    """

    def __init__(self, config: RunConfig, ctx: RankContext, encoder: Encoder, spans: list[ByteRange] | None,
                 cached: list[Batch] | None) -> None:
        self.config = config
        self.ctx = ctx
        self.encoder = encoder
        self.spans = spans
        self.cached = cached
        self.plan: StepPlan | None = None  # set once every rank's row count is known

    @staticmethod
    def byte_ranges(config: RunConfig, chunk_spans: list[tuple[int, int, int]]) -> list[ByteRange] | None:
        """After the first pass: where each training chunk of a CSV/TSV/JSONL file lies (``chunk_spans``: the
        first and last line and the rows of each); None for Parquet or a file whose lines are not its records."""
        path = Path(config.data.train)
        if detect_format(path, config.data.format) == "parquet" or config.data.filter:
            return None  # Parquet: row groups; filtered: the chunks are known only once read
        spans = byte_ranges(path, chunk_spans)
        if spans is None:
            log.warning("%s: its lines are not its records (a quoted line end, a lone \\r, a blank JSONL line or "
                        "bad rows at the end): every process parses the whole file to find its chunks", path)
        return spans

    def input_shards(self) -> str:
        """How the rank reads its chunks (the run summary's ``input_shards``)."""
        if self.config.data.filter:
            return "whole source, filtered by every process"
        if detect_format(Path(self.config.data.train), self.config.data.format) == "parquet":
            return "parquet row groups"
        return "byte ranges" if self.spans is not None else "whole file, parsed by every process"

    def own_chunks(self) -> Iterator[tuple[int, Chunk]]:
        """(chunk index, training rows of the chunk) for this rank's chunks, streamed from the file.

        Parquet: only the row groups that hold this rank's chunks are read. CSV/TSV/JSONL: only the byte ranges of
        this rank's chunks; where the file's lines are not its records, the whole file is parsed and the other
        ranks' chunks are skipped."""
        cfg, ctx = self.config, self.ctx
        path = Path(cfg.data.train)
        own: Iterator[tuple[int, Chunk]]
        columns = self.encoder.columns()
        if detect_format(path, cfg.data.format) == "parquet":
            own = read_parquet_chunks(path, columns=columns, chunk_rows=cfg.data.chunk_rows,
                                      select=lambda ci: ci % ctx.world == ctx.rank, row_filter=cfg.data.filter)
        elif self.spans is not None:
            spans = self.spans
            own = ((ci, chunk_at(path, cfg.data, columns, spans[ci])) for ci in range(ctx.rank, len(spans), ctx.world))
        else:
            own = ((ci, c) for ci, c in enumerate(chunks(path, cfg.data, columns, BadRowSink("count")))
                   if ci % ctx.world == ctx.rank)
        for ci, chunk in own:
            if cfg.data.holds_out:
                chunk = chunk.rows(~valid_mask(chunk.lines, cfg.data.valid_fraction, cfg.train.seed))
            yield ci, chunk

    def count(self) -> int:
        """This rank's training rows."""
        if self.cached is not None:
            return sum(len(b) for b in self.cached)
        return sum(len(c.lines) for _, c in self.own_chunks())

    def chunks(self, epoch: int, skip: int) -> Iterator[tuple[int, Batch]]:
        """(step in the epoch, this rank's mini-batch of ``batch_size / W`` rows), from step ``skip`` on.

        One item is one step: the loop cuts it with the global batch size, so it stays whole. The rows of step s
        are rows [s * b, (s + 1) * b) of the rank's stream, its shuffled chunks and then, as padding, the same
        again: so a step's real rows come first (:meth:`StepPlan.padding_weights`).
        """
        plan = self.plan
        assert plan is not None, "the step plan is made once every rank has counted its rows"
        b, total = plan.rank_batch, plan.steps
        step, pending, pending_rows = 0, [], 0  # type: tuple[int, list[Batch], int]
        while step < total:  # a second pass pads a rank that has fewer rows than the largest shard
            for batch in self._shuffled(epoch):
                pending.append(batch)
                pending_rows += len(batch)
                if pending_rows < b:
                    continue
                rows = Batch.concat(pending)
                start = 0
                while len(rows) - start >= b and step < total:
                    if step >= skip:
                        mb = rows.slice(start, start + b)
                        mb.weight = plan.padding_weights(step)
                        yield step, mb
                    start, step = start + b, step + 1
                if step >= total:
                    return
                pending = [rows.slice(start, len(rows))] if start < len(rows) else []
                pending_rows = len(rows) - start

    def rows_in_step(self, index: int, batch: Batch) -> int:
        assert self.plan is not None
        return sum(self.plan.real_rows(index))  # every rank's real rows (an item of chunks is a step)

    def _shuffled(self, epoch: int) -> Iterator[Batch]:
        """This rank's chunks, encoded, each shuffled by (seed, epoch, chunk index)."""
        seed = self.config.train.seed
        if self.cached is not None:
            own: Iterator[tuple[int, Batch]] = ((ci * self.ctx.world + self.ctx.rank, b)
                                                for ci, b in enumerate(self.cached))
        else:
            silent = BadRowSink("count")
            own = ((ci, self.encoder.encode(c, silent)) for ci, c in self.own_chunks())
        for ci, batch in own:
            if len(batch):
                yield batch.take(np.random.default_rng([seed, epoch, ci]).permutation(len(batch)))
