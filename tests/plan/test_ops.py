"""The step's fixed and narrow costs: a training step's ops counted on the model's twin and the overhead built
from them; the embedding rates chosen by all tables' footprint together; narrow matmuls at memory speed; the
calibration's thread policy."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from shoal.config import TrainConfig
from shoal.plan.calibrate import TRAINING_OMP_WAIT_POLICY, load_profile
from shoal.plan.cluster import parse_cluster
from shoal.plan.cost import ModelCost, model_cost
from shoal.plan.inputs import input_shape
from shoal.plan.ops import count_ops, step_ops
from shoal.plan.planner import make_plan
from shoal.plan.rates import Rates, local_cluster, rates_for
from shoal.plan.sharding import placement
from shoal.plan.step import StepPlan, plan_step
from tests.plan.conftest import run_config

CPU = {"cores": 8, "gflops_per_core": 50, "memory_bw_gbs": 40, "memory_gib": 64}
CLUSTER = parse_cluster({"name": "cpu", "node": {"cpu": CPU, "intra": {"bandwidth_gbs": 10, "latency_us": 5}}})


def test_count_ops_counts_each_dispatched_op() -> None:
    x = torch.ones(4)
    assert count_ops(lambda: x.add(1).mul(2).sum()) == 3


def test_adam_adds_ops_per_parameter_tensor() -> None:
    def ops(layers: int) -> int:
        model = torch.nn.Sequential(*(torch.nn.Linear(4, 4) for _ in range(layers)))
        return step_ops(model, (torch.randn(8, 4),), TrainConfig(), fused=False)

    one, three = ops(1), ops(3)
    # each Linear: forward addmm, backward mm + mm + sum, and Adam's update of 2 tensors (about 10 ops each)
    assert 2 * 20 < three - one < 2 * 60


def test_model_ops_follow_structure_not_batch() -> None:
    small = run_config({"name": "mlp", "embedding_dim": 8, "hidden": [16]}, sparse=3, buckets=1000, batch=64)
    deep = run_config({"name": "mlp", "embedding_dim": 8, "hidden": [16, 16, 16]}, sparse=3, buckets=1000, batch=64)
    wide = run_config({"name": "mlp", "embedding_dim": 8, "hidden": [16]}, sparse=3, buckets=10**7, batch=64)
    ops = {name: model_cost(cfg, input_shape(cfg, 64)).ops for name, cfg in
           (("small", small), ("deep", deep), ("wide", wide))}
    assert ops["small"] == ops["wide"]  # the tables' size changes no op
    assert ops["deep"]["fused"] > ops["small"]["fused"] > 0
    assert ops["small"]["unfused"] > ops["small"]["fused"]  # a sparse gradient, then Adagrad's step()


def _step(cfg_batch: int = 256, sparse: int = 3, buckets: int = 1000,
          op_s: float = 0.0) -> tuple[ModelCost, Rates, StepPlan]:
    cfg = run_config({"name": "mlp", "embedding_dim": 8, "hidden": [16]}, sparse=sparse, buckets=buckets,
                     batch=cfg_batch)
    shape = input_shape(cfg, cfg_batch)
    cost = model_cost(cfg, shape)
    rates = dataclasses.replace(rates_for(CLUSTER, 1), op_s=op_s)
    step = plan_step(cost, shape, rates, world=1, nodes=1, batch=cfg_batch,
                     sharding=placement("data_parallel", cost, 1), cache_bytes=0, chunk_rows=1000)
    return cost, rates, step


def test_calibrated_overhead_is_per_op() -> None:
    cost, rates, step = _step(op_s=2e-6)
    overhead = next(p for p in step.phases if p.kind == "overhead")
    assert overhead.name == f"overhead ({cost.ops['fused']} ops)"
    assert overhead.seconds == pytest.approx(rates.step_s + 2e-6 * cost.ops["fused"])
    _, described, plain = _step()  # a cluster file's overheads: per layer and feature
    overhead = next(p for p in plain.phases if p.kind == "overhead")
    assert overhead.name == "overhead"
    assert overhead.seconds == pytest.approx(described.step_s + 2 * described.layer_s + 3 * described.feature_s)


def test_embedding_rates_see_all_tables_together() -> None:
    """26 tables of 100k rows are one 2.6M-row weight: its rows are as far out of cache as one table that size."""
    profile_rates = {"fused/small": [1e-8, 0.0, 1e-8, 0.0], "fused/large": [1e-8, 0.0, 1e-7, 0.0],
                     "unfused/small": [1e-8, 0.0, 1e-8, 0.0], "unfused/large": [1e-8, 0.0, 1e-7, 0.0]}
    seconds = {}
    for sparse in (1, 26):
        cfg = run_config({"name": "logistic"}, sparse=sparse, buckets=100_000, batch=1024)
        shape = input_shape(cfg, 1024)
        cost = model_cost(cfg, shape)
        rates = dataclasses.replace(rates_for(CLUSTER, 1), embedding=profile_rates, llc_bytes=2**20)
        step = plan_step(cost, shape, rates, world=1, nodes=1, batch=1024,
                         sharding=placement("data_parallel", cost, 1), cache_bytes=0, chunk_rows=1000)
        seconds[sparse] = sum(p.seconds for p in step.phases if p.kind == "embedding")
        unique = sum(t.unique for t in cost.tables) * 1024
        lookups = sum(t.lookups for t in cost.tables) * 1024
        if sparse == 26:  # 26 x 100k rows x (4 + 4 + 4) bytes: beyond 4 x the cache, at the large table's rates
            assert seconds[sparse] == pytest.approx(lookups * 1e-8 + unique * 1e-7)
    assert seconds[1] < seconds[26] / 26 * 2  # one table of 1.2 MB: mostly in cache


def test_narrow_matmul_streams_its_operand() -> None:
    """Linear(i, 1) is not 16x slower per FLOP than Linear(16, 16): it reads its input once, at memory speed."""
    rates = dataclasses.replace(rates_for(CLUSTER, 1), matmul_points=((16, 10e9), (64, 40e9)), memory_bw=8e9)
    assert rates.matmul_flops(1) == pytest.approx(8e9 / 2)  # 2 FLOPs per 4-byte element read
    assert rates.matmul_flops(8) == pytest.approx(10e9)  # no faster than the narrowest measured
    assert rates.matmul_flops(32) == pytest.approx(10e9 + 0.5 * 30e9)  # log-interpolated as before


def test_profile_records_the_thread_policy(profile_home: Path) -> None:
    profile = load_profile(profile_home)
    assert "omp_wait_policy" in profile and profile["overhead"]["1"]["op_s"] > 0
    cfg = run_config({"name": "mlp", "embedding_dim": 8, "hidden": [16]}, sparse=2, buckets=1000)
    notes = {}
    for policy in ("", TRAINING_OMP_WAIT_POLICY):
        p = {**profile, "omp_wait_policy": policy}
        notes[policy] = make_plan(cfg, local_cluster(p), profile=p, nproc=1, read_data=False).notes
    assert any("OMP_WAIT_POLICY=unset" in n for n in notes[""])
    assert not any("OMP_WAIT_POLICY" in n for n in notes[TRAINING_OMP_WAIT_POLICY])
