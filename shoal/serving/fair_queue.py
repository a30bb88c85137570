"""Self-clocked fair queueing: the order in which the micro-batcher takes the jobs of many clients.

Golestani, "A Self-Clocked Fair Queueing Scheme for Broadband Applications", INFOCOM 1994. Each job gets a finish
tag, the later of its client's previous tag and the virtual time, plus the job's cost; jobs leave in tag order, and
the virtual time is the tag of the job that left last. A client's jobs are thus spaced by their costs, and a client
that was idle starts at the virtual time, level with the others, never behind their backlog::

    A sends 1,024 rows (4 slices of 256 rows, cost 256 each); B sends 1 row (cost 1) while slice A0 runs
    tags      A0 256   A1 512   A2 768   A3 1024          B0 256 + 1 = 257 (the virtual time was 256: A0 left)
    FIFO      A0 | A1 | A2 | A3 | B0                      B waits for 4 model calls
    fair      A0 | B0 | A1 | A2 | A3                      B waits for the call in progress only

A job waits for the batch in progress and, of each other client, for at most about its own cost of work plus one
job; one client's long backlog delays nobody else. Ties keep the order of arrival.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable
from typing import Generic, TypeVar

__all__ = ["FairQueue"]

T = TypeVar("T")
_FORGET_AT = 1024  # idle clients remembered beyond the busy ones before they are forgotten


class FairQueue(Generic[T]):
    """Items of many clients, taken in self-clocked fair order (see the module)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, T]] = []  # (finish tag, arrival number, item)
        self._last: dict[Hashable, float] = {}  # client -> finish tag of its latest item
        self._arrivals = itertools.count()
        self.virtual = 0.0  # the finish tag of the item taken last

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, item: T, client: Hashable, cost: float) -> float:
        """Queue ``item`` of ``client``, costing ``cost`` (>= 0, any unit shared by all items); returns its tag."""
        assert cost >= 0, cost
        tag = max(self.virtual, self._last.get(client, 0.0)) + cost
        self._last[client] = tag
        heapq.heappush(self._heap, (tag, next(self._arrivals), item))
        return tag

    def peek(self) -> T:
        """The item :meth:`pop` would take (the queue must not be empty)."""
        return self._heap[0][2]

    def pop(self) -> T:
        """Take the item with the smallest tag (the queue must not be empty)."""
        tag, _, item = heapq.heappop(self._heap)
        self.virtual = tag
        if len(self._last) > len(self._heap) + _FORGET_AT:
            # A client whose latest tag is behind the virtual time has nothing queued, and its next item starts
            # at the virtual time anyway: forget it (the rest, one per client with items queued, stay).
            self._last = {c: t for c, t in self._last.items() if t > self.virtual}
        return item
