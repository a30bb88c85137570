"""The model's own embedding step, timed with its real features, in place of the per-id rates."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from shoal.plan.cluster import load_cluster
from shoal.plan.cost import model_cost
from shoal.plan.inputs import input_shape
from shoal.plan.rates import rates_for
from shoal.plan.sharding import placement
from shoal.plan.sparse_step import SparseTime, _feature_ids, time_sparse_steps
from shoal.plan.step import plan_step
from tests.plan.conftest import run_config

CPU = Path(__file__).resolve().parents[2] / "configs" / "clusters" / "local-2core.yaml"


def test_feature_ids_have_the_asked_lengths_and_distinct_rows() -> None:
    ids, offsets = _feature_ids(2.5, 0.4, 100, 1000, np.random.default_rng(0))
    assert len(offsets) == 101 and offsets[-1] == len(ids) == 250
    assert len(np.unique(ids)) == 100  # 0.4 x 250
    assert ids.min() >= 1 and ids.max() < 1000  # 0 is the missing id


def test_the_timed_step_counts_the_embedding_ops_once() -> None:
    cfg = run_config({"name": "logistic"}, sparse=4, buckets=500, batch=64)
    shape = input_shape(cfg, 64)
    cost = model_cost(cfg, shape)
    # a distributed rank's step (unfused: sparse .grad, then step()); the fused one differs only in its backward
    timed = time_sparse_steps(cost, shape, 32, fused=False, threads=1, llc_bytes=1 << 20, seconds=0.01)
    assert timed is not None and timed.seconds > 0
    assert 0 < timed.ops < cost.ops["unfused"]  # the tables' forward, backward and step, not the dense part or Adam
    rates = replace(rates_for(load_cluster(CPU), 2), op_s=1e-6, step_s=0.0)
    sparse = SparseTime(seconds=0.004, ops=timed.ops, fused=False)
    step = plan_step(cost, shape, rates, world=2, nodes=1, batch=64, sharding=placement("data_parallel", cost, 2),
                     cache_bytes=0, chunk_rows=64, sparse=sparse)
    phases = {p.name: p.seconds for p in step.phases}
    assert abs(phases["embedding lookups"] + phases["embedding backward + Adagrad"] - 0.004) < 1e-12
    ops = cost.ops["unfused"] - timed.ops
    assert phases[f"overhead ({ops} ops)"] == pytest.approx(1e-6 * ops)
    # timed for a distributed rank: one process's fused step keeps the per-id rates
    one = plan_step(cost, shape, rates, world=1, nodes=1, batch=64, sharding=placement("data_parallel", cost, 1),
                    cache_bytes=0, chunk_rows=64, sparse=sparse)
    assert f"overhead ({cost.ops['fused']} ops)" in {p.name for p in one.phases}


def test_with_two_processes_the_ranks_are_timed_together_with_their_row_exchange() -> None:
    """world=2: both ranks take the step at once and exchange their rows (gloo), so the figure holds the
    collectives; the plan then adds no modelled all-gather or coalesce (they are in the timed step)."""
    cfg = run_config({"name": "logistic"}, sparse=4, buckets=500, batch=64)
    shape = input_shape(cfg, 32)
    cost = model_cost(cfg, shape)
    timed = time_sparse_steps(cost, shape, 32, fused=False, threads=1, llc_bytes=1 << 20, seconds=0.02, world=2)
    assert timed is not None and timed.world == 2 and timed.seconds > 0 and not timed.fused
    assert timed.dense_all_reduce  # DDP all-reduced gradients of the model's dense sizes in the timed step
    rates = replace(rates_for(load_cluster(CPU), 2), op_s=1e-6, step_s=0.0)
    step = plan_step(cost, shape, rates, world=2, nodes=1, batch=64, sharding=placement("data_parallel", cost, 2),
                     cache_bytes=0, chunk_rows=64, sparse=timed)
    phases = {p.name: p.seconds for p in step.phases}
    assert "all-gather (sparse rows)" not in phases and "coalesce + Adagrad (all ranks' rows)" not in phases
    assert "all-reduce (exposed)" not in phases and step.comm_bytes["all_reduce"] > 0  # timed, still reported
    assert phases["embedding lookups"] + phases["embedding backward + row exchange + Adagrad + dense all-reduce"] \
        == pytest.approx(timed.seconds)
    assert step.comm_bytes["sparse_all_gather"] > 0  # the volume is still reported
    alone = plan_step(cost, shape, rates, world=2, nodes=1, batch=64, sharding=placement("data_parallel", cost, 2),
                      cache_bytes=0, chunk_rows=64, sparse=replace(timed, world=1))
    assert "all-gather (sparse rows)" in {p.name for p in alone.phases}


def test_the_timed_step_cycles_through_the_sampled_rows() -> None:
    """A timed step must not take the same batch again (its rows would stay in the cache): it cycles through
    mini-batches of the training file's first chunk when the plan read it, else through made-up ones."""
    from shoal.data.batch import Batch
    from shoal.plan.sparse_step import _pool

    cfg = run_config({"name": "logistic"}, sparse=2, buckets=500, batch=64)
    shape = input_shape(cfg, 64)
    cost = model_cost(cfg, shape)
    made_up = _pool(cost.tables, shape, 32, [t.rows for t in cost.tables], seed=0)
    assert len(made_up) > 1 and not np.array_equal(made_up[0].ids[0], made_up[1].ids[0])
    gen = np.random.default_rng(1)
    ids = [gen.integers(1, 500, 200), gen.integers(1, 500, 200)]
    sample = Batch(dense=np.zeros((200, 4), np.float32), ids=ids, offsets=[np.arange(201)] * 2,
                   label=np.zeros(200, np.float32), lines=np.arange(200))
    sampled = _pool(cost.tables, replace(shape, sample=sample), 32, [500, 100], seed=0)
    assert len(sampled) == 200 // 32
    rows = np.concatenate([b.ids[0] for b in sampled])
    assert len(np.unique(rows)) > 100  # distinct rows across the batches, as an epoch meets them
    assert set(rows) <= set(ids[0].tolist())
    assert (np.concatenate([b.ids[1] for b in sampled]) < 100).all()  # folded into the shrunk table
