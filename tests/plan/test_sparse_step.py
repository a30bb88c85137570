"""The model's own embedding step, timed with its real features, in place of the per-id rates."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shoal.models.torchrec_backend import unavailable
from shoal.plan.calibrate import load_profile
from shoal.plan.cluster import load_cluster
from shoal.plan.comm import all_reduce_s
from shoal.plan.cost import model_cost
from shoal.plan.inputs import input_shape
from shoal.plan.rates import rates_for
from shoal.plan.sharding import placement
from shoal.plan.sparse_step import SparseTime, _feature_ids, time_sparse_steps
from shoal.plan.step import epoch_seconds, plan_step
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


def _torchrec_plan_parts(world: int = 2) -> tuple[Any, Any, Any, Any]:
    cfg = run_config({"name": "dlrm", "embedding_dim": 8}, sparse=4, buckets=1000, batch=64)
    shape = input_shape(cfg, 32)
    cost = model_cost(cfg, shape)
    rates = replace(rates_for(load_cluster(CPU), world), op_s=1e-6, step_s=0.0)
    return cfg, shape, cost, rates


def test_a_timed_torchrec_step_replaces_the_all_to_all_formulas() -> None:
    """A TorchRec placement timed in its ranks (SparseTime.placement): its all-to-alls and fused Adagrad are in
    the figure, so the plan adds no modelled all-to-all for it; the volumes are still reported. Another
    placement (or an untimed one) keeps the formulas."""
    _, shape, cost, rates = _torchrec_plan_parts()
    timed = SparseTime(0.006, 10, False, world=2, dense_all_reduce=True, placement="row_wise")
    step = plan_step(cost, shape, rates, world=2, nodes=1, batch=64, sharding=placement("row_wise", cost, 2),
                     cache_bytes=0, chunk_rows=64, sparse=timed)
    phases = {p.name: p.seconds for p in step.phases}
    assert not any(n.startswith("all-to-all") for n in phases) and step.comm_bytes["all_to_all"] > 0
    assert phases["TorchRec lookups + all-to-alls (timed)"] + phases[
        "embedding backward + all-to-all + fused Adagrad + dense all-reduce"] == pytest.approx(0.006)
    assert "all-reduce (exposed)" not in phases
    for other in ("table_wise", "column_wise"):  # timed for row_wise only: the per-id rates and link formulas
        names = {p.name for p in plan_step(cost, shape, rates, world=2, nodes=1, batch=64,
                                           sharding=placement(other, cost, 2), cache_bytes=0, chunk_rows=64,
                                           sparse=timed).phases}
        assert "all-to-all (ids, pooled)" in names and "embedding lookups" in names


def test_torchrec_placements_pay_the_whole_table_gathers() -> None:
    """shoal's TorchRec backend gathers the whole tables (and accumulators) on every rank at each checkpoint:
    twice their bytes in memory, and a fill of fresh memory plus a ring all-reduce in each epoch's end. The
    native data-parallel placement pays neither."""
    _, shape, cost, rates = _torchrec_plan_parts()
    whole = sum(t.rows * t.dim * 4 + 4 * t.rows for t in cost.tables)
    sharded = plan_step(cost, shape, rates, world=2, nodes=1, batch=64, sharding=placement("table_wise", cost, 2),
                        cache_bytes=0, chunk_rows=64)
    native = plan_step(cost, shape, rates, world=2, nodes=1, batch=64, sharding=placement("data_parallel", cost, 2),
                       cache_bytes=0, chunk_rows=64)
    assert sharded.memory["TorchRec gathers (whole tables, twice)"] == 2 * whole and sharded.gather_bytes == whole
    assert "TorchRec gathers (whole tables, twice)" not in native.memory and native.gather_bytes == 0
    fresh = replace(rates, fresh_bw=1e6)  # filling the gathered tensor costs 2 x whole / 1 MB/s on a 2-process node
    link = rates.link(1)
    extra = 2 * whole / 1e6 + all_reduce_s(whole, 2, link.bandwidth, link.latency)
    assert epoch_seconds(sharded, 6400, 0.0, fresh) - epoch_seconds(native, 6400, 0.0, fresh) == pytest.approx(
        extra + 100 * (sharded.step_s - native.step_s))


def test_the_planner_says_when_torchrec_is_not_timed(monkeypatch: pytest.MonkeyPatch, profile_home: Path) -> None:
    """A config on TorchRec planned on this (calibrated) machine where TorchRec does not import: its step keeps the
    per-id rates and formulas, and a note says why (the install command included)."""
    import shoal.models.torchrec_backend as backend
    from shoal.plan.planner import make_plan
    from shoal.plan.rates import local_cluster

    cfg, _, _, _ = _torchrec_plan_parts()
    cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"embeddings": cfg.train.embeddings.model_copy(
        update={"backend": "torchrec", "sharding": "row_wise"})})})
    monkeypatch.setattr(backend, "unavailable", lambda: "TorchRec is not usable (test); install the scale extra")
    profile = load_profile(profile_home)
    plan = make_plan(cfg, local_cluster(profile), profile=profile, nproc=2, rows=640, read_data=False)
    assert plan.sharding == "row_wise"
    assert any(n.startswith("TorchRec's row_wise step is priced from per-id rates") and "scale extra" in n
               for n in plan.notes)
    assert "all-to-all (ids, pooled)" in {p.name for p in plan.step.phases}


@pytest.mark.skipif(unavailable() is not None, reason="TorchRec is not installed (the scale extra: "
                                                      "make install-scale)")
def test_torchrec_steps_are_timed_in_their_ranks() -> None:
    """With TorchRec installed, a row-wise placement is timed in two processes taking TorchRec's sharded step
    together (KeyedJaggedTensor, all-to-alls, FBGEMM's fused Adagrad)."""
    _, shape, cost, _ = _torchrec_plan_parts()
    timed = time_sparse_steps(cost, shape, 32, fused=False, threads=1, llc_bytes=1 << 20, seconds=0.02, world=2,
                              placement="row_wise")
    assert timed is not None and timed.placement == "row_wise" and timed.world == 2 and timed.seconds > 0
    with pytest.raises(ValueError, match="several processes"):
        time_sparse_steps(cost, shape, 32, fused=False, threads=1, llc_bytes=1 << 20, world=1, placement="row_wise")
