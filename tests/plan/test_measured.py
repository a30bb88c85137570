"""The input and Adam parts of a step, timed on this machine, replace their byte prices in a calibrated plan."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from shoal.plan.cluster import load_cluster
from shoal.plan.cost import model_cost
from shoal.plan.inputs import input_shape
from shoal.plan.measured import MeasuredParts, time_parts
from shoal.plan.rates import rates_for
from shoal.plan.sharding import placement
from shoal.plan.step import plan_step
from tests.plan.conftest import run_config

CPU = Path(__file__).resolve().parents[2] / "configs" / "clusters" / "local-2core.yaml"


def test_timed_parts_take_the_place_of_the_byte_prices() -> None:
    cfg = run_config({"name": "mlp", "embedding_dim": 4, "hidden": [32, 16]}, sparse=3, buckets=200, batch=64)
    shape = input_shape(cfg, 64)
    cost = model_cost(cfg, shape)
    timed = time_parts(cost, shape, 64, cfg.train, threads=1, seconds=0.01)
    # Adam: about a dozen ops a tensor (6 tensors: 3 weights, 3 biases), each timed, not priced by its bytes
    assert timed.adam_ops >= 6 * len(cost.dense_tensors) and timed.adam_s > 0 and timed.input_s > 0
    rates = replace(rates_for(load_cluster(CPU), 1), op_s=1e-6, step_s=0.0)
    parts = MeasuredParts(input_s=0.002, adam_s=0.003, adam_ops=timed.adam_ops)
    step = plan_step(cost, shape, rates, world=1, nodes=1, batch=64, sharding=placement("data_parallel", cost, 1),
                     cache_bytes=0, chunk_rows=64, parts=parts)
    phases = {p.name: p.seconds for p in step.phases}
    assert phases["input"] == 0.002 and phases["Adam (dense)"] == 0.003
    ops = cost.ops["fused"] - timed.adam_ops  # Adam's ops are in its timed seconds, not in the overhead
    assert phases[f"overhead ({ops} ops)"] == pytest.approx(1e-6 * ops)
    priced = plan_step(cost, shape, rates, world=1, nodes=1, batch=64, sharding=placement("data_parallel", cost, 1),
                       cache_bytes=0, chunk_rows=64)
    assert {p.name: p.seconds for p in priced.phases}["Adam (dense)"] == pytest.approx(
        rates.memory_s(28 * cost.dense_params))


def test_a_timed_interaction_takes_the_place_of_its_flops() -> None:
    cfg = run_config({"name": "dlrm", "embedding_dim": 8, "bottom_mlp": [16], "top_mlp": [16]}, sparse=3,
                     buckets=200, batch=64)
    shape = input_shape(cfg, 64)
    cost = model_cost(cfg, shape)
    (name, (vectors, dim)), = cost.interactions.items()
    assert (vectors, dim) == (4, 8)  # 3 tables and the bottom MLP's vector, of the embedding dimension
    timed = time_parts(cost, shape, 64, cfg.train, threads=1, seconds=0.01)
    assert timed.layer_s[name] > 0 and timed.layer_ops > 0
    rates = replace(rates_for(load_cluster(CPU), 1), op_s=1e-6, step_s=0.0)
    parts = MeasuredParts(input_s=0.0, adam_s=0.0, adam_ops=0, layer_s={name: 0.009}, layer_ops=timed.layer_ops)
    step = plan_step(cost, shape, rates, world=1, nodes=1, batch=64, sharding=placement("data_parallel", cost, 1),
                     cache_bytes=0, chunk_rows=64, parts=parts)
    seconds = {n: s for n, _, s in step.layer_seconds}
    assert seconds[name] == pytest.approx(0.009)  # forward 1/3 and backward 2/3 of the timed call
    phases = {p.name: p.seconds for p in step.phases}
    assert phases[f"overhead ({cost.ops['fused'] - timed.layer_ops} ops)"] == pytest.approx(
        1e-6 * (cost.ops["fused"] - timed.layer_ops))
