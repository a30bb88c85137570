"""How the training loop runs on this process: the parts that differ between one process and a distributed job.

The :class:`~shoal.training.loop.Trainer` is given a :class:`Strategy`; :class:`SingleProcess` is the default, and
:class:`shoal.distributed.strategy.DistributedStrategy` runs one rank of a torch.distributed job (input shards,
DDP, sparse all-reduce, rank 0's files). A strategy decides:

* the data: the first pass and this process's training rows (:meth:`Strategy.prepare`);
* the model: where it lives and how its tables are sharded (:meth:`Strategy.setup`), the module the training
  steps call (:meth:`Strategy.training_module`) and whether the sparse optimizer step runs inside the backward
  (``fuse_sparse_step``);
* validation: how a set is scored (:meth:`Strategy.scores`) and how processes agree on its metrics
  (:meth:`Strategy.agree`);
* files: whether this process writes them and reports progress (``is_main``) and how it checkpoints
  (:meth:`Strategy.checkpointer`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import torch
from torch import nn
from torch.optim.lr_scheduler import LRScheduler

from shoal.config import RunConfig, TrainConfig
from shoal.models.embeddings import SparseArch
from shoal.training.callbacks import Callbacks
from shoal.training.checkpoints import Checkpointer
from shoal.training.data import EvalSet, FileRows, TrainingData
from shoal.training.evaluation import Scores, scores
from shoal.training.optimizers import RowWiseAdagrad, lr_schedule

__all__ = ["SingleProcess", "Strategy", "build_optimizers", "build_schedule", "steps_per_epoch"]


class Strategy(Protocol):
    """What the training loop asks of the process it runs on (see the module docstring)."""

    @property
    def fuse_sparse_step(self) -> bool: ...

    @property
    def is_main(self) -> bool: ...

    def prepare(self, config: RunConfig, run_dir: Path, callbacks: Callbacks) -> TrainingData: ...

    def setup(self, model: nn.Module) -> nn.Module: ...

    def training_module(self, model: nn.Module) -> nn.Module: ...

    def scores(self, model: nn.Module, data: TrainingData, rows: EvalSet) -> Scores: ...

    def agree(self, metrics: dict[str, float]) -> dict[str, float]: ...

    def checkpointer(self, run_dir: Path) -> Checkpointer: ...


class SingleProcess:
    """Training in this process alone: the model as built, every row, every file."""

    fuse_sparse_step = True  # embedding rows updated inside the backward (SparseArch.fuse): no sparse .grad
    is_main = True

    def prepare(self, config: RunConfig, run_dir: Path, callbacks: Callbacks) -> TrainingData:
        return TrainingData.scan(config, run_dir, callbacks)

    def setup(self, model: nn.Module) -> nn.Module:
        return model

    def training_module(self, model: nn.Module) -> nn.Module:
        return model

    def scores(self, model: nn.Module, data: TrainingData, rows: EvalSet) -> Scores:
        return scores(model, data.eval_batches(rows))

    def agree(self, metrics: dict[str, float]) -> dict[str, float]:
        return metrics

    def checkpointer(self, run_dir: Path) -> Checkpointer:
        return Checkpointer(run_dir)


def build_optimizers(model: nn.Module, train: TrainConfig,
                     fuse_sparse_step: bool) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer | None]:
    """Adam on the dense parameters; row-wise Adagrad on the sparse embedding tables (None without any).

    ``fuse_sparse_step``: the Adagrad step runs inside the backward (no sparse ``.grad``, rows gathered once); a
    distributed run needs the ``.grad`` to all-reduce it first.
    """
    sparse_ids = {id(m.weight) for m in model.modules() if isinstance(m, nn.EmbeddingBag) and m.sparse}
    sparse = [p for p in model.parameters() if id(p) in sparse_ids]
    dense = [p for p in model.parameters() if id(p) not in sparse_ids]
    opt_dense = torch.optim.Adam(dense, lr=train.lr, weight_decay=train.weight_decay)
    opt_sparse = (RowWiseAdagrad(sparse, lr=train.embedding_lr, weight_decay=train.embedding_weight_decay)
                  if sparse else None)
    if fuse_sparse_step and opt_sparse is not None:
        for m in model.modules():
            if isinstance(m, SparseArch):
                m.fuse(opt_sparse)
    return opt_dense, opt_sparse


def build_schedule(opt_dense: torch.optim.Optimizer, data: TrainingData) -> LRScheduler | None:
    """The scheduler of Adam's learning rate (``train.lr_schedule``) over the run's ``epochs`` x
    :func:`steps_per_epoch` steps; None for ``constant``. Row-wise Adagrad is not scheduled (see
    :mod:`shoal.training.optimizers`)."""
    t = data.config.train
    return lr_schedule(opt_dense, t.lr_schedule, t.epochs * steps_per_epoch(data), t.warmup)


def steps_per_epoch(data: TrainingData) -> int:
    """The steps an epoch of this process takes, known after the first pass: a distributed rank's step plan (every
    rank takes as many; in the run summary), else one per ``batch_size`` rows of each training chunk (the loop cuts
    the mini-batches chunk by chunk). Rows streamed from disk (not cached) are known only as a total, so then it is
    the most their chunks can take, one partial batch more each: the run may end a few steps before its schedule
    does, never after (a schedule past its end would keep its last rate)."""
    if "steps_per_epoch" in data.summary:
        return int(data.summary["steps_per_epoch"])
    b = data.config.train.batch_size
    if isinstance(data.train, FileRows) and data.train.cached is not None:
        return sum(-(-len(rows) // b) for rows in data.train.cached)
    rows, chunks = int(data.summary["train_rows"]), max(len(data.chunk_spans), 1)
    return (rows + chunks * (b - 1)) // b
