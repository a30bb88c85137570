"""Micro-batching: concurrent requests merged into one model call, bounded by rows and by wait.

Requests wait as jobs of at most ``max_batch_rows`` rows (a bigger request is split, and its parts are joined
again in order) in a fair queue (:class:`~shoal.serving.fair_queue.FairQueue`): the jobs of different clients are
taken in turn by cost, so one client's big request or many requests do not make another client's wait behind all
of them. One consumer task takes the first job, then keeps taking jobs until the batch would exceed
``max_batch_rows`` or ``max_wait_ms`` has passed since the first one, and runs the batch in a worker thread, so
the event loop keeps accepting requests meanwhile (a lone request, with nothing queued nor arriving, runs on the
event loop itself when the last batch took under :data:`INLINE_S`: the hop to the thread and back cost a
one-client request ~0.15-0.2 ms of its ~1 ms, and a model that fast holds the loop no longer than the hop)::

    requests   A(1 row)  B(3 rows)  C(1 row)      D(300 rows, max_batch_rows=256)
    queue      [A] [B] [C]                        [D:0-256] [D:256-300]
    batches    |--A B C (5 rows)--|  |--D:0-256--|  |--D:256-300 ...--|
               <= max_wait_ms                      (full: no wait)
    E(1 row) of another client, sent while D:0-256 runs, is taken before D:256-300.

While a batch runs, the next one fills up, so under load batches grow by themselves. A batch waits for company
only while other requests are on their way (``arriving``: being read or validated by the server), so a lone
client pays no wait. A batch holds jobs of one model version only, so a hot swap never mixes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from shoal.serving.fair_queue import FairQueue
from shoal.serving.metrics import ServeMetrics

__all__ = ["MicroBatcher"]

log = logging.getLogger(__name__)

RunBatch = Callable[[Any, list[Any]], np.ndarray]  # (model, rows) -> (rows,) or (rows, C) probabilities
INLINE_S = 0.001  # a lone request runs on the event loop when the last batch took less than this (1 ms)


@dataclass(eq=False)
class _Job:
    model: Any  # the version the rows were validated against
    rows: Sequence[Any]
    future: asyncio.Future[np.ndarray]


class MicroBatcher:
    """Merge concurrent :meth:`submit` calls into batches run by ``run`` on one worker thread.

    ``batching=False`` runs every job alone (still on the worker thread): the baseline batching is compared to.
    """

    def __init__(self, run: RunBatch, max_batch_rows: int, max_wait_ms: float, metrics: ServeMetrics,
                 batching: bool = True) -> None:
        if max_batch_rows < 1:
            raise ValueError(f"max_batch_rows must be >= 1, not {max_batch_rows}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, not {max_wait_ms}")
        self.run = run
        self.max_batch_rows = max_batch_rows
        self.max_wait_s = max_wait_ms / 1000.0
        self.metrics = metrics
        self.batching = batching
        self._queue: FairQueue[_Job] | None = None
        self._queued: asyncio.Event | None = None  # set when jobs are queued
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._last_run_s = float("inf")  # how long the last batch ran: unknown, so the first goes to the thread
        self._busy = False  # a batch is on the worker thread
        self.arriving = 0  # requests being read and validated: they may join the batch being collected

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def queued_jobs(self) -> int:
        """Jobs waiting for a batch (a request of more than ``max_batch_rows`` rows is several)."""
        return len(self._queue) if self._queue is not None else 0

    async def start(self) -> None:
        self._queue = FairQueue()
        self._queued = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shoal-model")
        self._task = asyncio.create_task(self._consume(), name="shoal-batcher")

    async def stop(self) -> None:
        """Finish the jobs already queued, then stop the consumer and the worker thread."""
        if self._queue is not None:
            await self._drain()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        self._task = self._executor = self._queue = self._queued = None

    async def _drain(self) -> None:
        assert self._queue is not None
        while (self._queue or self._busy) and self.running:
            await asyncio.sleep(0.001)

    async def submit(self, model: Any, rows: Sequence[Any], client: Hashable = "",
                     cost: float | None = None) -> np.ndarray:
        """Probabilities for ``rows`` (validated against ``model``), in order. ``client``: who sent them (the
        jobs of different clients are taken in turn); ``cost``: what the request costs (default: its rows; the
        server gives its body bytes), shared among its jobs by rows."""
        if self._queue is None or self._queued is None or not self.running:
            raise RuntimeError("the batcher is not running (start the app's lifespan first)")
        loop = asyncio.get_running_loop()
        jobs = [_Job(model, rows[i:i + self.max_batch_rows], loop.create_future())
                for i in range(0, len(rows), self.max_batch_rows)]
        per_row = 1.0 if cost is None else cost / max(1, len(rows))
        for job in jobs:
            self._queue.push(job, client, per_row * len(job.rows))
        self._queued.set()
        self.metrics.queue_rows.inc(len(rows))
        if len(jobs) == 1:
            return await jobs[0].future
        parts = await asyncio.gather(*(j.future for j in jobs))
        return np.concatenate(parts)

    async def _next_batch(self) -> list[_Job]:
        queue, queued = self._queue, self._queued
        assert queue is not None and queued is not None
        while not queue:
            queued.clear()
            await queued.wait()
        first = queue.pop()
        batch, rows = [first], len(first.rows)
        if not self.batching:
            return batch
        deadline = asyncio.get_running_loop().time() + self.max_wait_s
        while rows < self.max_batch_rows:
            if not queue:
                if self.arriving == 0:
                    break  # nobody else is on the way: waiting would only add latency
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    break
                queued.clear()
                try:
                    await asyncio.wait_for(queued.wait(), left)
                except TimeoutError:
                    break
                continue
            job = queue.peek()
            if job.model is not first.model or rows + len(job.rows) > self.max_batch_rows:
                break  # it opens the next batch
            batch.append(queue.pop())
            rows += len(job.rows)
        return batch

    async def _consume(self) -> None:
        while True:
            batch = await self._next_batch()
            self._busy = True
            try:
                await self._run(batch)
            finally:
                self._busy = False

    def _timed(self, model: Any, rows: list[Any]) -> np.ndarray:
        started = time.perf_counter()
        try:
            return self.run(model, rows)
        finally:
            self._last_run_s = time.perf_counter() - started

    async def _run(self, batch: list[_Job]) -> None:
        loop = asyncio.get_running_loop()
        rows = [r for job in batch for r in job.rows]
        self.metrics.queue_rows.dec(len(rows))
        self.metrics.batch_rows.observe(len(rows))
        self.metrics.batch_requests.observe(len(batch))
        try:
            if len(batch) == 1 and not self._queue and self.arriving == 0 and self._last_run_s < INLINE_S:
                proba = self._timed(batch[0].model, rows)  # a lone request to a fast model: no thread hop
            else:
                proba = await loop.run_in_executor(self._executor, self._timed, batch[0].model, rows)
        except Exception as err:
            if len(batch) == 1:
                _settle(batch[0], error=err)
                return
            # One request's rows may be what failed: run each alone, so only that request sees the error.
            for job in batch:
                try:
                    _settle(job, await loop.run_in_executor(self._executor, self.run, job.model, list(job.rows)))
                except Exception as job_err:
                    _settle(job, error=job_err)
            return
        start = 0
        for job in batch:
            stop = start + len(job.rows)
            _settle(job, proba[start:stop])
            start = stop


def _settle(job: _Job, result: np.ndarray | None = None, error: BaseException | None = None) -> None:
    if job.future.done():  # the request was cancelled (its client went away)
        return
    if error is not None:
        job.future.set_exception(error)
    else:
        assert result is not None
        job.future.set_result(result)
