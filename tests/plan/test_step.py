"""The step and memory model on hand-made rates: memory adds up to the model's bytes, communication appears
with several processes, the recommended placement fits."""

from __future__ import annotations

import pytest

from shoal.plan.cluster import parse_cluster
from shoal.plan.cost import model_cost
from shoal.plan.inputs import input_shape
from shoal.plan.planner import make_plan
from shoal.plan.rates import rates_for
from shoal.plan.sharding import placement, table_wise_bins
from shoal.plan.step import plan_step, walked_bytes
from tests.plan.conftest import run_config

CPU = {"cores": 8, "gflops_per_core": 50, "memory_bw_gbs": 40, "memory_gib": 64}
CLUSTER = parse_cluster({"name": "cpu", "node": {"cpu": CPU, "intra": {"bandwidth_gbs": 10, "latency_us": 5}}})


def test_memory_is_the_parameters_and_optimizer_state() -> None:
    cfg = run_config({"name": "mlp", "embedding_dim": 8, "hidden": [16]}, sparse=2, buckets=5000)
    shape = input_shape(cfg, 256)
    cost = model_cost(cfg, shape)
    rates = rates_for(CLUSTER, 1)
    step = plan_step(cost, shape, rates, world=1, nodes=1, batch=256, sharding=placement("data_parallel", cost, 1),
                     cache_bytes=0, chunk_rows=1000)
    m = step.memory
    assert m["tables"] == 2 * 5000 * 8 * 4  # float32 rows
    assert m["Adagrad accumulators"] == 2 * 5000 * 4  # one float32 a row
    assert m["fused step row slots"] == 2 * 5000 * 4  # one int32 a row (one process only)
    dense = (2 * 8 + 4) * 16 + 16 + 16 + 1  # Linear(20, 16) + Linear(16, 1)
    assert cost.dense_params == dense
    assert m["dense weights, grads, Adam"] == 16 * dense  # weight, grad, Adam m and v: 4 float32 each
    assert step.peak_bytes == pytest.approx(sum(m.values()))


def test_several_processes_communicate() -> None:
    cfg = run_config({"name": "dlrm", "embedding_dim": 16}, sparse=4, buckets=100_000, batch=1024)
    one = make_plan(cfg, CLUSTER, nproc=1, read_data=False)
    four = make_plan(cfg, CLUSTER, nproc=4, read_data=False)
    assert one.step.comm_bytes["all_reduce"] == 0 and one.recommended == "data_parallel"
    assert four.step.comm_bytes["all_reduce"] == pytest.approx(2 * 3 / 4 * 4 * four.cost.dense_params)
    assert any(p.name.startswith("all-gather") for p in four.step.phases)
    assert set(four.options) == {"data_parallel", "table_wise", "row_wise", "column_wise"}
    tables = {k: o.memory["tables"] for k, o in four.options.items()}
    assert tables["row_wise"] == pytest.approx(tables["data_parallel"] / 4)
    assert four.options[four.recommended].peak_bytes <= four.device_memory
    assert four.step.rows_per_s > 0 and four.reason


def test_table_wise_packs_largest_first() -> None:
    assert table_wise_bins([10, 1, 1, 8, 2], 2) == [[0, 1], [3, 4, 2]]  # loads 11 and 11


def test_gpu_cluster_uses_the_datasheet() -> None:
    gpu = parse_cluster({"name": "g", "price_per_hour": 10.0,
                         "node": {"cpu": CPU, "gpu": {"device": "A100", "count": 8},
                                  "intra": {"bandwidth_gbs": 300, "latency_us": 5}}})
    cfg = run_config({"name": "dlrm", "embedding_dim": 16}, sparse=4, buckets=100_000, batch=8192)
    p = make_plan(cfg, gpu, rows=1_000_000, read_data=False)
    assert p.step.world == 8 and p.device_memory == 80 * 2**30
    assert p.epoch_cost == pytest.approx(p.epoch_s / 3600 * 10.0)  # type: ignore[operator]


def test_a_large_epoch_end_checkpoint_is_said_to_be_a_guess() -> None:
    """With several processes every epoch ends with a checkpoint; one of gigabytes is priced at the disk rate of a
    small write, which a disk may not keep up: the plan says so; a small one is not mentioned."""
    big = run_config({"name": "mlp", "embedding_dim": 64, "hidden": [16]}, sparse=2, buckets=2_000_000, batch=1024)
    small = run_config({"name": "mlp", "embedding_dim": 8, "hidden": [16]}, sparse=2, buckets=1000, batch=1024)
    big_plan = make_plan(big, CLUSTER, nproc=2, rows=100_000, read_data=False)
    assert any("epoch-end checkpoint" in n for n in big_plan.notes)
    assert not any("epoch-end checkpoint" in n for n in make_plan(small, CLUSTER, nproc=2, rows=100_000,
                                                                   read_data=False).notes)


def test_walked_bytes_are_the_step_parts_memory() -> None:
    cfg = run_config({"name": "mlp", "embedding_dim": 8, "hidden": [16]}, sparse=2, buckets=5000)
    shape = input_shape(cfg, 256)
    cost = model_cost(cfg, shape)
    step = plan_step(cost, shape, rates_for(CLUSTER, 1), world=1, nodes=1, batch=256,
                     sharding=placement("data_parallel", cost, 1), cache_bytes=0, chunk_rows=1000)
    walked = walked_bytes(cost, 256, fused=True)
    assert walked["activations"] == step.memory["activations + grads"]  # what the backward keeps, walked again
    assert walked["dense"] == step.memory["dense weights, grads, Adam"]
    distinct = sum(tc.unique * 256 for tc in cost.tables)  # rows a batch touches: weight read and written, accumulator
    assert walked["rows"] == pytest.approx(distinct * (8 * 4 * 2 + 8)) and walked["rows"] > 0
    assert walked_bytes(cost, 256, fused=False)["activations"] == 2 * walked["activations"]
