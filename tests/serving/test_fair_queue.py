"""Fair scheduling of the micro-batcher (issue 23): one client's big request, or many requests, cannot make another
client's wait behind all of them (:mod:`shoal.serving.fair_queue`, :class:`~shoal.serving.batcher.MicroBatcher`).
Every order here is counted, never timed."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from shoal.serving import fair_queue
from shoal.serving.batcher import MicroBatcher
from shoal.serving.fair_queue import FairQueue
from shoal.serving.metrics import ServeMetrics


def _drain(queue: FairQueue[str]) -> list[str]:
    return [queue.pop() for _ in range(len(queue))]


def test_the_module_example_a_late_small_job_goes_before_the_rest_of_a_big_request() -> None:
    queue: FairQueue[str] = FairQueue()
    for i in range(4):
        queue.push(f"A{i}", "A", 256)
    assert queue.pop() == "A0" and queue.virtual == 256  # A0 runs
    assert queue.push("B0", "B", 1) == 257
    assert _drain(queue) == ["B0", "A1", "A2", "A3"]


def test_one_client_is_first_in_first_out_and_clients_alternate_by_cost() -> None:
    queue: FairQueue[str] = FairQueue()
    for i in range(3):
        queue.push(f"A{i}", "A", 10)  # tags 10 20 30
    for i in range(6):
        queue.push(f"B{i}", "B", 5)  # tags 5 10 15 20 25 30: twice as many jobs at half the cost
    assert _drain(queue) == ["B0", "A0", "B1", "B2", "A1", "B3", "B4", "A2", "B5"]  # ties: first come first
    for i in range(3):
        queue.push(f"C{i}", "C", 0)  # no cost: the order of arrival
    assert _drain(queue) == ["C0", "C1", "C2"]


def test_idle_clients_are_forgotten_and_start_level_with_the_others(monkeypatch: Any) -> None:
    monkeypatch.setattr(fair_queue, "_FORGET_AT", 2)
    queue: FairQueue[str] = FairQueue()
    for i in range(5):
        queue.push(f"idle{i}", f"idle{i}", 1)
    queue.push("busy", "busy", 100)
    _drain(queue)  # every client idle again: at most _FORGET_AT of them remembered
    assert len(queue._last) <= 2
    queue.push("late", "idle0", 1)
    assert queue.pop() == "late" and queue.virtual == 101  # from the virtual time, not from its old tag


class _Gate:
    """A stand-in model: records each batch; the first one blocks until :meth:`open` (from the event loop)."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.running = threading.Event()
        self._open = threading.Event()

    def __call__(self, model: Any, rows: Sequence[str]) -> np.ndarray:
        self.batches.append(list(rows))
        if len(self.batches) == 1:
            self.running.set()
            assert self._open.wait(10), "the test never opened the gate"
        return np.zeros(len(rows))

    def open(self) -> None:
        self._open.set()


def _run(gate: _Gate, max_batch_rows: int, scenario: Callable[[MicroBatcher], Any]) -> Any:
    batcher = MicroBatcher(gate, max_batch_rows=max_batch_rows, max_wait_ms=0, metrics=ServeMetrics())

    async def main() -> Any:
        await batcher.start()
        try:
            return await asyncio.wait_for(scenario(batcher), 10)
        finally:
            gate.open()
            await batcher.stop()

    return asyncio.run(main())


async def _while_the_first_batch_runs(gate: _Gate) -> None:
    while not gate.running.is_set():
        await asyncio.sleep(0.001)


def test_a_legitimate_request_is_scheduled_before_the_later_slices_of_an_attackers_request() -> None:
    gate = _Gate()

    async def scenario(batcher: MicroBatcher) -> list[np.ndarray]:
        big = asyncio.ensure_future(batcher.submit("model", ["a"] * 16, client="attacker"))  # 4 slices of 4 rows
        await _while_the_first_batch_runs(gate)
        small = asyncio.ensure_future(batcher.submit("model", ["b"], client="legit"))
        await asyncio.sleep(0)  # submitted: queued behind the 3 slices left in order of arrival
        assert batcher.queued_jobs == 4
        gate.open()
        return list(await asyncio.gather(big, small))

    big, small = _run(gate, 4, scenario)
    assert gate.batches == [["a"] * 4, ["b"], ["a"] * 4, ["a"] * 4, ["a"] * 4]  # FIFO: "b" fifth, after all four
    assert big.shape == (16,) and small.shape == (1,)


def test_a_client_with_many_costly_requests_waits_behind_a_cheap_later_one() -> None:
    gate = _Gate()

    async def scenario(batcher: MicroBatcher) -> None:
        first = asyncio.ensure_future(batcher.submit("model", ["first"], client="attacker", cost=50_000))
        await _while_the_first_batch_runs(gate)
        attacks = [asyncio.ensure_future(batcher.submit("model", [f"a{i}"], client="attacker", cost=50_000))
                   for i in range(3)]  # several requests in flight: rows near the id limits, a big body each
        legit = asyncio.ensure_future(batcher.submit("model", ["legit"], client="legit", cost=700))
        await asyncio.sleep(0)
        gate.open()
        await asyncio.gather(first, *attacks, legit)

    _run(gate, 1, scenario)
    assert gate.batches == [["first"], ["legit"], ["a0"], ["a1"], ["a2"]]


def test_without_clients_the_batcher_keeps_the_order_of_arrival() -> None:
    gate = _Gate()

    async def scenario(batcher: MicroBatcher) -> None:
        first = asyncio.ensure_future(batcher.submit("model", ["x"] * 6))
        await _while_the_first_batch_runs(gate)
        later = [asyncio.ensure_future(batcher.submit("model", [f"r{i}"] * (i + 1))) for i in range(3)]
        await asyncio.sleep(0)
        gate.open()
        await asyncio.gather(first, *later)

    _run(gate, 4, scenario)
    assert gate.batches == [["x"] * 4, ["x"] * 2 + ["r0"], ["r1"] * 2, ["r2"] * 3]


def test_a_lone_request_to_a_fast_model_runs_on_the_event_loop_a_slow_one_in_the_worker(monkeypatch: Any) -> None:
    """The hop to the worker thread is skipped only for a lone request (nothing queued, nothing arriving) when the
    last batch ran under INLINE_S; the first batch (duration unknown), a slow model's and concurrent ones hop."""
    from shoal.serving import batcher as batcher_module

    threads: list[int] = []
    slow = {"on": False}

    def model(_: Any, rows: Sequence[str]) -> np.ndarray:
        threads.append(threading.get_ident())
        if slow["on"]:
            threading.Event().wait(0.02)
        return np.zeros(len(rows))

    monkeypatch.setattr(batcher_module, "INLINE_S", 0.01)
    batcher = MicroBatcher(model, max_batch_rows=8, max_wait_ms=0, metrics=ServeMetrics())

    async def main() -> tuple[int, list[bool]]:
        await batcher.start()
        try:
            on_loop = []
            for step in range(4):  # unknown -> worker; fast -> loop; then slow (on the loop once) -> worker
                slow["on"] = step >= 2
                await batcher.submit("model", ["r"])
                on_loop.append(threads[-1] == threading.get_ident())
            slow["on"] = False
            await asyncio.gather(*(batcher.submit("model", ["c"], client=str(i)) for i in range(3)))
            return threading.get_ident(), on_loop
        finally:
            await batcher.stop()

    loop_thread, on_loop = asyncio.run(main())
    assert on_loop == [False, True, True, False]
    assert threads[-1] != loop_thread  # jobs queued together: the worker runs them, the loop keeps reading
