"""Two parts of a step that their bytes do not price, timed on this machine for a calibrated plan (the mean of
repeated calls, as a run pays them).

* **input**: the loop shuffles each cached chunk once an epoch (:meth:`~shoal.data.batch.Batch.take`, a gather of
  every dense value and, per jagged feature, of its rows' id runs) and cuts its mini-batches as views; a step pays
  its rows' share of that gather. Priced as bytes it looks free (3 x the encoded bytes / memory bandwidth), but the
  gather walks each feature's ids in Python-sized pieces: timed on the training file's first chunk (or made-up
  rows of the same shape), it is ten times that.
* **Adam**: one step of ``torch.optim.Adam`` over tensors of the model's own dense parameter sizes. On a CPU
  the single-tensor implementation runs a dozen elementwise ops a tensor, each waking the thread pool once the
  tensor is large enough to split, so the step costs far more than its 28 bytes a parameter (e.g. 1.3 ms instead
  of 0.09 ms for a 143k-parameter MLP on 2 cores). Its ops are counted, so that the per-op overhead
  (:mod:`shoal.plan.ops`) does not count them again.
* **the dot interaction**: DLRM's batched (F, d) x (d, F) products and the gather of their upper triangle,
  forward and backward, on the model's own F and d (:func:`~shoal.plan.calibrate.interaction_step`): their speed
  moves with the shape more than one calibrated rate says (2 cores: 9 vectors of 64 ran at two thirds of the rate
  measured on 27 of 16). Its ops are counted too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from shoal.config import TrainConfig
from shoal.data.batch import Batch
from shoal.plan.calibrate import evictor, interaction_step, mean_seconds
from shoal.plan.cost import ModelCost
from shoal.plan.inputs import InputShape
from shoal.plan.ops import count_ops
from shoal.plan.sparse_step import made_up_batch

__all__ = ["MeasuredParts", "time_parts"]

MADE_UP_ROWS = 8192  # rows of the made-up chunk whose shuffle is timed when no data was read


@dataclass(frozen=True)
class MeasuredParts:
    """Seconds a step of ``rows`` rows pays for its share of the chunk's shuffle, for the dense Adam step (and the
    ops of that step), and for each dot interaction layer's forward and backward (and their ops)."""

    input_s: float
    adam_s: float
    adam_ops: int
    layer_s: dict[str, float] = field(default_factory=dict)
    layer_ops: int = 0


def _chunk(shape: InputShape) -> Batch:
    """The rows whose shuffle is timed: the sampled first chunk, else made-up rows of ``shape``."""
    if shape.sample is not None:
        return shape.sample
    features = range(len(shape.ids_per_row))
    return made_up_batch(shape, MADE_UP_ROWS, list(features), [max(shape.buckets[k], 2) for k in features],
                         np.random.default_rng(0), dense=True)


def time_parts(cost: ModelCost, shape: InputShape, rows: int, train: TrainConfig, threads: int,
               seconds: float = 0.2, llc_bytes: float = 0.0, walked: dict[str, float] | None = None) -> MeasuredParts:
    """Time the input, Adam (over ``cost.dense_tensors``) and dot interaction (``cost.interactions``) parts of a
    step of ``rows`` rows (see the module docstring) with ``threads``; ``walked``: the bytes of the step's parts
    (:func:`~shoal.plan.step.walked_bytes`), the others' walked before each timed call of Adam and of an
    interaction (:func:`~shoal.plan.calibrate.evictor`, at most a few ``llc_bytes``)."""
    walked = walked or {}
    before_adam = evictor(walked.get("activations", 0.0) + walked.get("rows", 0.0), llc_bytes)
    before_interaction = evictor(sum(walked.values()), llc_bytes)
    chunk = _chunk(shape)
    order = np.random.default_rng(0).permutation(len(chunk))
    input_s = mean_seconds(lambda: chunk.take(order), seconds, warmup=1) * rows / max(len(chunk), 1)
    adam_s, adam_ops, layer_s, layer_ops = 0.0, 0, {}, 0
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        params = [torch.zeros(n, requires_grad=True) for n in cost.dense_tensors]
        if params:
            gen = torch.Generator().manual_seed(0)
            for p in params:
                p.grad = torch.randn(p.shape, generator=gen) * 1e-3
            adam = torch.optim.Adam(params, lr=train.lr, weight_decay=train.weight_decay)  # as build_optimizers
            adam_ops = count_ops(adam.step)
            adam_s = mean_seconds(adam.step, seconds, before=before_adam)
        for name, (vectors, dim) in cost.interactions.items():
            step = interaction_step(rows, vectors, dim)
            layer_ops += count_ops(step)
            layer_s[name] = mean_seconds(step, seconds, before=before_interaction)
    finally:
        torch.set_num_threads(saved)
    return MeasuredParts(input_s, adam_s, adam_ops, layer_s, layer_ops)
