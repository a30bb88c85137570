"""Distributed training on torch.distributed: ``shoal train CONFIG --nproc N`` (torchrun, DDP, TorchRec).

* :mod:`shoal.distributed.launch` builds the ``torch.distributed.run`` command and runs it;
* ``python -m shoal.distributed`` (:mod:`shoal.distributed.worker`) is what every rank runs;
* :mod:`shoal.distributed.strategy` is how the :class:`~shoal.training.loop.Trainer` runs on one rank: DDP,
  sparse all-reduce, rank 0's validation and files; :mod:`shoal.distributed.shards` is the rank's input shard;
  :mod:`shoal.distributed.context` is the rank's place in the job.

Kept free of heavy imports (torch is loaded by the submodules), so ``shoal --help`` stays fast.
"""

from __future__ import annotations

__all__ = ["DistributedRunError", "launch"]


def __getattr__(name: str) -> object:
    if name in __all__:
        from shoal.distributed import launch as _launch

        return getattr(_launch, name)
    raise AttributeError(f"module 'shoal.distributed' has no attribute {name!r}")
