"""Where the embedding tables live across W processes (TorchRec's vocabulary), and what each placement costs.

* ``data_parallel``: every process holds every table; the rows a step touched are exchanged (shoal's native
  tables all-gather their sparse gradients). No lookup traffic, the most memory, traffic that grows with W.
* ``table_wise``: each table whole on one process (largest first onto the least loaded: LPT). Forward: ids go
  to their table's process, pooled embeddings come back (all-to-all); backward: their gradients. Memory and
  lookups are as balanced as the table sizes allow.
* ``row_wise``: each table's rows split evenly over the processes. Every process pools partial sums for the
  whole global batch, reduced to the row's owner: the most traffic, the best balance; for tables larger than one
  device.
* ``column_wise``: each table's columns (the embedding dimension) split over the processes; every process
  looks up every id, with dimension d / W.

Per process and step, with b rows a process, L ids a row, F pooled features of dimension d (float32, int64 ids)::

    table_wise   ids (W-1)/W b L 8,   pooled (W-1)/W b F d 4 forward, the same backward
    row_wise     ids (W-1)/W b L 8,   pooled (W-1)/W B F d 4 forward (reduce-scatter), the same backward
    column_wise  ids (W-1) b L 8,     pooled (W-1)/W b F d 4 forward, the same backward
"""

from __future__ import annotations

from dataclasses import dataclass

from shoal.plan.comm import all_gather_s, all_to_all_s
from shoal.plan.cost import ModelCost
from shoal.plan.rates import Rates

__all__ = ["PLACEMENTS", "ShardingOption", "placement", "table_wise_bins"]

PLACEMENTS = ("data_parallel", "table_wise", "row_wise", "column_wise")


def table_wise_bins(sizes: list[float], world: int) -> list[list[int]]:
    """Tables (by index) on each of ``world`` processes: largest first onto the least loaded (LPT)."""
    bins: list[list[int]] = [[] for _ in range(world)]
    loads = [0.0] * world
    for k in sorted(range(len(sizes)), key=lambda i: -sizes[i]):
        j = loads.index(min(loads))
        bins[j].append(k)
        loads[j] += sizes[k]
    return bins


@dataclass(frozen=True)
class ShardingOption:
    """A placement for W processes: the share of all table bytes on the fullest process (``table_share``), its
    lookups relative to one process's batch doing every table (``lookup_share``), and its imbalance (max / mean
    table bytes)."""

    name: str
    world: int
    table_share: float
    lookup_share: float
    balance: float

    def _volumes(self, b: int, cost: ModelCost) -> tuple[float, float]:
        """(ids bytes, pooled bytes) one process sends per step in the forward."""
        w = self.world
        ids = sum(t.lookups for t in cost.tables) * b * 8
        pooled = sum(t.dim for t in cost.tables) * b * 4
        if self.name == "table_wise":
            return (w - 1) / w * ids, (w - 1) / w * pooled
        if self.name == "row_wise":
            return (w - 1) / w * ids, (w - 1) * pooled  # partial pools of the global batch: W b rows
        if self.name == "column_wise":
            return (w - 1) * ids, (w - 1) / w * pooled
        return 0.0, 0.0

    def bytes_per_step(self, b: int, cost: ModelCost, world: int) -> float:
        """Bytes one process sends per step for its lookups (forward and backward)."""
        ids, pooled = self._volumes(b, cost)
        return ids + 2 * pooled

    def forward_comm_s(self, b: int, cost: ModelCost, rates: Rates, world: int, nodes: int) -> float:
        if self.name == "data_parallel" or world <= 1 or not cost.tables:
            return 0.0
        link = rates.link(nodes)
        ids, pooled = self._volumes(b, cost)
        if self.name == "column_wise":
            ids_s = all_gather_s(ids / max(world - 1, 1), world, link.bandwidth, link.latency)
        else:
            ids_s = all_to_all_s(ids * world / max(world - 1, 1), world, link.bandwidth, link.latency)
        return ids_s + all_to_all_s(pooled * world / max(world - 1, 1), world, link.bandwidth, link.latency)

    def backward_comm_s(self, b: int, cost: ModelCost, rates: Rates, world: int, nodes: int) -> float:
        if self.name == "data_parallel" or world <= 1 or not cost.tables:
            return 0.0
        link = rates.link(nodes)
        _, pooled = self._volumes(b, cost)
        return all_to_all_s(pooled * world / max(world - 1, 1), world, link.bandwidth, link.latency)


def placement(name: str, cost: ModelCost, world: int) -> ShardingOption:
    """The :class:`ShardingOption` ``name`` for ``cost``'s tables over ``world`` processes."""
    if name not in PLACEMENTS:
        raise ValueError(f"unknown sharding {name!r}; choose from {', '.join(PLACEMENTS)}")
    if world <= 1 or name == "data_parallel" or not cost.tables:
        return ShardingOption(name if world > 1 else "data_parallel", world, 1.0, 1.0, 1.0)
    if name in ("row_wise", "column_wise"):
        return ShardingOption(name, world, 1 / world, 1.0, 1.0)
    sizes = [float(t.bytes) for t in cost.tables]
    lookups = [t.lookups * t.dim for t in cost.tables]
    bins = table_wise_bins(sizes, world)
    fullest = max(sum(sizes[k] for k in bin_) for bin_ in bins)
    busiest = max(sum(lookups[k] for k in bin_) for bin_ in bins)
    total_lookups = sum(lookups) or 1.0
    return ShardingOption("table_wise", world, fullest / sum(sizes), world * busiest / total_lookups,
                          fullest / (sum(sizes) / world))
