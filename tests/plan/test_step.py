"""The step and memory model on hand-made rates: memory adds up to the model's bytes, communication appears
with several processes, the recommended placement fits."""

from __future__ import annotations

from typing import Any

import pytest

from shoal.config import RunConfig
from shoal.plan.cluster import ClusterSpec, parse_cluster
from shoal.plan.cost import model_cost
from shoal.plan.inputs import input_shape
from shoal.plan.planner import make_plan
from shoal.plan.rates import CPU_BASE_BYTES, CUDA_CONTEXT_BYTES, rates_for
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


HOST_ITEMS = {"baseline (process)", "cached rows", "passing (first pass)"}  # in host RAM beside a GPU


def _gpu_cluster(device: str, count: int, memory_gib: float) -> ClusterSpec:
    return parse_cluster({"name": device, "node": {"cpu": {**CPU, "memory_gib": memory_gib},
                                                   "gpu": {"device": device, "count": count},
                                                   "intra": {"bandwidth_gbs": 300, "latency_us": 5}}})


def _cached(gib: float, **model: Any) -> tuple[RunConfig, int]:
    """A config that caches ``gib`` GiB of encoded rows, and its training rows."""
    cfg = run_config({"name": "dlrm", "embedding_dim": 16, **model}, sparse=4, buckets=100_000, batch=1024,
                     cache_mb=200_000)
    return cfg, int(gib * 2**30 / input_shape(cfg, 1024, read_data=False).encoded_bytes_per_row)


def test_gpu_memory_holds_no_host_items() -> None:
    """On an A100 the cached rows (numpy batches), the first pass and the Python process are in host RAM: 20 GiB of
    cached rows are in the host figure, not in the HBM figure (they were counted against the GPU's 80 GB)."""
    cfg, rows = _cached(20)
    for nproc in (1, 2):
        p = make_plan(cfg, _gpu_cluster("A100", 8, 1024), nproc=nproc, rows=rows, read_data=False)
        for step in p.options.values():
            assert not HOST_ITEMS & set(step.memory) and set(step.host_memory) == HOST_ITEMS
            assert step.memory["CUDA context"] == CUDA_CONTEXT_BYTES
            assert step.host_memory["baseline (process)"] == CPU_BASE_BYTES
            assert step.host_memory["cached rows"] == pytest.approx(20 * 2**30, rel=1e-3)
            assert step.peak_bytes == pytest.approx(sum(step.memory.values())) and step.peak_bytes < 2**30
            assert step.host_bytes == pytest.approx(sum(step.host_memory.values())) and step.host_bytes > 20 * 2**30
        assert p.device_memory == 80 * 2**30 and p.host_memory == 1024 * 2**30 / nproc
        out = p.to_dict()
        assert out["step"]["peak_bytes"] == p.step.peak_bytes and out["step"]["host_peak_bytes"] == p.step.host_bytes
        assert "cached rows" in out["step"]["host_memory_bytes"] and "cached rows" not in out["step"]["memory_bytes"]
        assert out["host_memory_bytes"] == p.host_memory and all(o["fits"] for o in out["options"].values())


def test_host_memory_does_not_fill_a_gpu_with_room() -> None:
    """An L4 (24 GB) with 26 GiB of cached rows and 64 GiB of RAM fits (it was DOES NOT FIT: 26 GiB counted in
    the GPU's memory); with 40 GiB of RAM the host's RAM is short, and the plan says so, not the GPU."""
    cfg, rows = _cached(26)
    roomy = make_plan(cfg, _gpu_cluster("L4", 1, 64), rows=rows, read_data=False)
    assert roomy.step.peak_bytes < roomy.device_memory < roomy.step.host_bytes < roomy.host_memory  # type: ignore[operator]
    assert not any(n.startswith("DOES NOT FIT") for n in roomy.notes)
    assert roomy.reason == "one process: nothing to shard"
    short = make_plan(cfg, _gpu_cluster("L4", 1, 20), rows=rows, read_data=False)
    assert short.notes[0].startswith("DOES NOT FIT") and "of host RAM a process against 20.0 GiB" in short.notes[0]
    assert "host RAM" in short.reason and "train.cache_mb" in short.reason
    several = make_plan(cfg, _gpu_cluster("A100", 4, 80), rows=rows, read_data=False)  # 20 GiB of RAM a process
    assert several.notes[0].startswith("DOES NOT FIT") and "host RAM" in several.reason
    assert not any(o["fits"] for o in several.to_dict()["options"].values())


def test_cpu_memory_is_one_figure() -> None:
    """A CPU's process holds everything in one RAM: the cached rows are in its peak, the host figure is empty."""
    cfg, rows = _cached(1)
    p = make_plan(cfg, CLUSTER, rows=rows, read_data=False)
    assert p.step.host_memory == {} and p.step.host_bytes == 0 and p.host_memory is None
    assert {"baseline (process)", "cached rows", "passing (first pass)"} <= set(p.step.memory)
    assert p.step.peak_bytes == pytest.approx(sum(p.step.memory.values())) and p.step.peak_bytes > 2**30
    assert p.step.memory["baseline (process)"] == CPU_BASE_BYTES
