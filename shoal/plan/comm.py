"""Collective communication times (the alpha-beta model: a latency per message, a bandwidth per byte).

For W processes on a ring whose slowest link has bandwidth ``bw`` (bytes/s, each direction) and latency
``alpha`` (seconds per message):

* all-reduce of n bytes (reduce-scatter then all-gather, Patarasuk & Yuan 2009; NCCL and gloo's ring):
  ``2 (W - 1) / W x n / bw + 2 (W - 1) alpha``: each process sends and receives ``2 (W - 1) / W x n``;
* all-gather of n bytes from each process: ``(W - 1) x n / bw + (W - 1) alpha`` (each receives the others');
* all-to-all where each process sends n bytes in all, spread evenly: ``(W - 1) / W x n / bw + (W - 1) alpha``.
"""

from __future__ import annotations

__all__ = ["all_gather_s", "all_reduce_bytes", "all_reduce_s", "all_to_all_s"]


def all_reduce_bytes(nbytes: float, world: int) -> float:
    """Bytes each process sends (and receives) in a ring all-reduce of ``nbytes``."""
    return 2 * (world - 1) / world * nbytes if world > 1 else 0.0


def all_reduce_s(nbytes: float, world: int, bandwidth: float, latency: float) -> float:
    """Seconds of a ring all-reduce of ``nbytes`` over ``world`` processes."""
    if world <= 1:
        return 0.0
    return all_reduce_bytes(nbytes, world) / bandwidth + 2 * (world - 1) * latency


def all_gather_s(nbytes: float, world: int, bandwidth: float, latency: float) -> float:
    """Seconds of a ring all-gather of ``nbytes`` from each of ``world`` processes."""
    if world <= 1:
        return 0.0
    return (world - 1) * nbytes / bandwidth + (world - 1) * latency


def all_to_all_s(nbytes: float, world: int, bandwidth: float, latency: float) -> float:
    """Seconds of an all-to-all where each process sends ``nbytes`` in all, an equal part to every process."""
    if world <= 1:
        return 0.0
    return (world - 1) / world * nbytes / bandwidth + (world - 1) * latency
