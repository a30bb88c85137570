"""This process's place in a torch.distributed job."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["RankContext"]


@dataclass
class RankContext:
    """This process's place in the job: rank, world size, device, and a second group for sparse gradients."""

    rank: int
    world: int
    local_rank: int
    device: torch.device
    sparse_group: dist.ProcessGroup | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0
