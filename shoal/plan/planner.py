"""The plan of a config on a cluster: the model's cost, the step of every table placement, the recommended one,
an epoch, its price, and serving.

    plan = make_plan(load_config("configs/synthetic.yaml"), load_cluster("configs/clusters/8xa100.yaml"))
    plan.step.rows_per_s, plan.step.peak_bytes, plan.step.host_bytes, plan.recommended, plan.reason

A step fits when its device's bytes fit ``device_memory`` (a GPU's HBM, else the process's share of the node's
RAM) and, beside a GPU, its host bytes fit ``host_memory`` (the process's share of the node's RAM).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shoal.config import RunConfig
from shoal.plan.calibrate import TRAINING_OMP_WAIT_POLICY
from shoal.plan.cluster import ClusterSpec
from shoal.plan.cost import ModelCost, model_cost
from shoal.plan.inputs import InputShape, input_shape
from shoal.plan.measured import time_parts
from shoal.plan.rates import Rates, rates_for
from shoal.plan.serving import ServingPlan, measure_serving, predict_serving
from shoal.plan.sharding import PLACEMENTS, placement
from shoal.plan.sparse_step import time_sparse_steps
from shoal.plan.step import StepPlan, checkpoint_in_epoch, epoch_seconds, plan_step, walked_bytes

__all__ = ["Plan", "fits", "make_plan"]

LARGE_CHECKPOINT = 256 * 2**20  # bytes: a checkpoint whose write speed the calibration's probe may not tell


@dataclass
class Plan:
    config: str
    model: str
    cluster: str
    processes_per_node: int
    shape: InputShape
    cost: ModelCost
    step: StepPlan  # with the sharding in use (the config's, or the recommended one)
    sharding: str
    options: dict[str, StepPlan]
    recommended: str
    reason: str
    rates: Rates
    device_memory: float
    price_per_hour: float | None
    serving: ServingPlan | None = None
    notes: list[str] = field(default_factory=list)
    host_memory: float | None = None  # beside GPUs: a process's share of the node's RAM (None: device_memory is it)

    @property
    def epoch_s(self) -> float | None:
        return self.step.epoch_s

    @property
    def epoch_cost(self) -> float | None:
        if self.epoch_s is None or self.price_per_hour is None:
            return None
        return self.epoch_s / 3600 * self.price_per_hour

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config, "model": self.model, "cluster": self.cluster,
            "processes_per_node": self.processes_per_node, "world": self.step.world, "nodes": self.step.nodes,
            "dense_params": self.cost.dense_params, "table_params": self.cost.table_params,
            "fwd_flops_per_row": self.cost.fwd_flops, "bwd_flops_per_row": self.cost.bwd_flops,
            "ops_per_step": self.cost.ops,
            "tables": [t.__dict__ for t in self.cost.tables],
            "inputs": {"dense_dim": self.shape.dense_dim, "ids_per_row": self.shape.ids_per_row,
                       "unique_fraction": self.shape.unique_fraction, "rows": self.shape.rows,
                       "measured": self.shape.measured},
            "sharding": self.sharding, "step": self.step.to_dict(),
            "options": {k: {"step_s": v.step_s, "rows_per_s": v.rows_per_s, "peak_bytes": v.peak_bytes,
                            "host_peak_bytes": v.host_bytes, "comm_bytes": v.comm_bytes,
                            "fits": fits(v, self.rates)}
                        for k, v in self.options.items()},
            "recommended": self.recommended, "reason": self.reason, "device_memory_bytes": self.device_memory,
            "host_memory_bytes": self.host_memory,
            "epoch_s": self.epoch_s, "price_per_hour": self.price_per_hour, "epoch_cost": self.epoch_cost,
            "serving": None if self.serving is None else self.serving.to_dict(), "notes": self.notes,
        }


def fits(step: StepPlan, rates: Rates) -> bool:
    """Whether ``step``'s device bytes fit the device and, beside a GPU, its host bytes the host's RAM."""
    return step.peak_bytes <= rates.device_memory and (rates.host_memory is None
                                                       or step.host_bytes <= rates.host_memory)


def _shortfall(step: StepPlan, rates: Rates) -> tuple[str, str]:
    """(what of ``step`` does not fit, against what; the fix): the device's bytes, else the host's beside a GPU."""
    if step.peak_bytes > rates.device_memory or rates.host_memory is None:
        return (f"{step.peak_bytes / 2**30:.2f} of {rates.device_memory / 2**30:.1f} GiB",
                "add processes (--nproc) or devices")
    return (f"host RAM {step.host_bytes / 2**30:.2f} of {rates.host_memory / 2**30:.1f} GiB",
            "lower train.cache_mb, run fewer processes a node (--nproc) or use nodes with more RAM")


def _recommend(options: dict[str, StepPlan], rates: Rates) -> tuple[str, str]:
    memory = rates.device_memory
    fitting = {k: v for k, v in options.items() if fits(v, rates)}
    if len(options) == 1:
        (only,) = options.values()
        if not fitting:
            short, fix = _shortfall(only, rates)
            return "data_parallel", f"one process: nothing to shard, and it does not fit ({short}): {fix}"
        return "data_parallel", "one process: nothing to shard"
    if not fitting:
        best = min(options, key=lambda k: options[k].peak_bytes)
        if options[best].peak_bytes <= memory:  # the device has room: the host's RAM is short (for every placement)
            short, fix = _shortfall(options[best], rates)
            return best, f"nothing fits per process ({short}, whatever the placement): {fix}"
        return best, (f"nothing fits {memory / 2**30:.1f} GiB per process; {best} needs the least "
                      f"({options[best].peak_bytes / 2**30:.1f} GiB): add processes or devices")
    best = min(fitting, key=lambda k: fitting[k].step_s)
    others = ", ".join(f"{k} {v.step_s * 1e3:.2f} ms" for k, v in options.items() if k != best)
    left_out = [k for k in options if k not in fitting]
    traffic = fitting[best].comm_bytes["all_to_all"] + fitting[best].comm_bytes["sparse_all_gather"]
    why = (f"fastest step that fits ({fitting[best].step_s * 1e3:.2f} ms, {fitting[best].peak_bytes / 2**30:.2f} of "
           f"{memory / 2**30:.1f} GiB per process, {traffic / 1e6:.2f} MB of table traffic per step); "
           f"others: {others}")
    if left_out:
        why += f"; {', '.join(left_out)} do not fit"
    return best, why


def make_plan(config: RunConfig, cluster: ClusterSpec, *, profile: dict[str, Any] | None = None,
              nproc: int | None = None, rows: int | None = None, qps: float | None = None,
              run_bundle: Path | None = None, read_data: bool = True, shape: InputShape | None = None,
              time_embeddings: bool = True) -> Plan:
    """Plan ``config`` on ``cluster`` (``profile``: the calibration of this machine, for ``--cluster local``;
    ``time_embeddings``: with a profile, time the model's own embedding step here, :mod:`shoal.plan.sparse_step`)."""
    if nproc is not None and nproc < 1:
        raise ValueError(f"--nproc must be at least 1 process a node, not {nproc}")
    gpu = cluster.node.gpu
    if nproc is not None and gpu is not None and nproc > gpu.count:
        raise ValueError(f"--nproc {nproc} on nodes of {gpu.count} {gpu.device} GPU(s): training runs one process a "
                         f"GPU (the plan would give each process a whole GPU); give --nproc {gpu.count} or less")
    if rows is not None and rows < 1:
        raise ValueError(f"--rows must be at least 1 training row, not {rows}")
    if qps is not None and not (math.isfinite(qps) and qps > 0):
        raise ValueError(f"--qps must be a positive number of queries a second, not {qps}")
    per_node = cluster.processes_per_node(nproc)
    world = per_node * cluster.nodes
    batch = config.train.batch_size
    if batch % world:
        raise ValueError(f"train.batch_size {batch} must be a multiple of the {world} processes")
    shape = shape or input_shape(config, batch // world, rows, read_data)
    cost = model_cost(config, shape)
    rates = rates_for(cluster, per_node, profile)
    train_rows = rows if rows is not None else shape.rows
    cache_rows = (train_rows or 0)
    cache = cache_rows * shape.encoded_bytes_per_row
    cache = cache if cache <= config.train.cache_mb * 2**20 else 0.0
    sparse = parts = None
    if profile is not None and time_embeddings:  # this machine, calibrated: time the model's own step parts
        threads = max(1, int(profile["cores"]) // per_node)
        llc = float(profile["llc_bytes"])
        walked = walked_bytes(cost, batch // world, fused=world == 1)
        sparse = time_sparse_steps(cost, shape, batch // world, fused=world == 1, threads=threads, llc_bytes=llc,
                                   world=world if cluster.nodes == 1 else 1,
                                   evict_bytes=walked["activations"] + walked["dense"])
        parts = time_parts(cost, shape, batch // world, config.train, threads, llc_bytes=llc, walked=walked)
    options = {name: plan_step(cost, shape, rates, world=world, nodes=cluster.nodes, batch=batch,
                               sharding=placement(name, cost, world), cache_bytes=cache,
                               chunk_rows=config.data.chunk_rows, sparse=sparse, parts=parts)
               for name in (PLACEMENTS if world > 1 else PLACEMENTS[:1])}
    emb = config.train.embeddings
    in_use = (emb.sharding if emb.backend == "torchrec" else "data_parallel") if world > 1 else "data_parallel"
    torchrec_note = None
    if in_use != "data_parallel" and sparse is not None and cluster.nodes == 1:  # timed here: TorchRec's own step
        from shoal.models.torchrec_backend import unavailable

        why = unavailable()
        if why is None:
            timed = time_sparse_steps(cost, shape, batch // world, fused=False, threads=threads, llc_bytes=llc,
                                      world=world, evict_bytes=walked["activations"] + walked["dense"],
                                      placement=in_use)
            options[in_use] = plan_step(cost, shape, rates, world=world, nodes=cluster.nodes, batch=batch,
                                        sharding=placement(in_use, cost, world), cache_bytes=cache,
                                        chunk_rows=config.data.chunk_rows, sparse=timed, parts=parts)
        else:
            torchrec_note = (f"TorchRec's {in_use} step is priced from per-id rates and link formulas, not timed "
                             f"here: {why}")
    recommended, reason = _recommend(options, rates)
    step = options[in_use]
    checkpoint = cost.table_params * 4 + 4 * sum(t.rows for t in cost.tables) + 12 * cost.dense_params
    notes = list(shape.notes) + ([torchrec_note] if torchrec_note else [])
    if not fits(step, rates):  # said first: the figures below are of a job that cannot run so
        if step.peak_bytes > rates.device_memory:
            short = (f"{step.peak_bytes / 2**30:.2f} GiB a process against {rates.device_memory / 2**30:.1f} GiB"
                     + (" of GPU memory" if rates.gpu else ""))
        else:  # beside a GPU with room, the host's RAM is short
            short = (f"{step.host_bytes / 2**30:.2f} GiB of host RAM a process against "
                     f"{(rates.host_memory or 0.0) / 2**30:.1f} GiB")
        notes.insert(0, f"DOES NOT FIT: {short}; the step's figures assume it did")
    if train_rows:
        step.epoch_s = epoch_seconds(step, train_rows, checkpoint, rates)
        if checkpoint > LARGE_CHECKPOINT and checkpoint_in_epoch(step, train_rows):
            notes.append(f"the epoch-end checkpoint ({checkpoint / 2**30:.2f} GiB) is priced at "
                         f"{rates.disk_bw / 1e9:.2f} GB/s, a small write's speed; a disk (or a VM's) may write "
                         "gigabytes far slower (here 1.7 GB took ~10 s at times)")
    policy = None if profile is None else str(profile.get("omp_wait_policy", "")).upper()
    if policy is not None and policy != TRAINING_OMP_WAIT_POLICY:
        notes.append(f"calibrated with OMP_WAIT_POLICY={policy or 'unset'} (spinning threads), training sleeps them "
                     f"({TRAINING_OMP_WAIT_POLICY}): multi-threaded steps are predicted too fast; calibrate again with "
                     "shoal plan --calibrate")
    if profile is None and not cluster.gpus:
        notes.append("CPU rates from the cluster file's peaks x efficiency, not measured: calibrate for --cluster "
                     "local")
    if emb.backend == "native" and world > 1 and recommended != "data_parallel":
        notes.append(f"the config uses native (replicated) tables; {recommended} needs "
                     f"train.embeddings: {{backend: torchrec, sharding: {recommended}}}")
    if run_bundle is not None:
        serving = measure_serving(run_bundle, cluster.node.cpu.cores, qps)
    elif cluster.node.gpu is not None:  # a server of the node's GPUs, each at one GPU's rates (not one per core)
        serving = predict_serving(cost, rates_for(cluster, cluster.node.gpu.count), cluster.node.gpu.count, qps,
                                  unit="GPU")
    else:
        serving = predict_serving(cost, rates_for(cluster, cluster.node.cpu.cores, profile), cluster.node.cpu.cores,
                                  qps)
    return Plan(config=config.name, model=config.model.name, cluster=cluster.name, processes_per_node=per_node,
                shape=shape, cost=cost, step=step, sharding=in_use, options=options, recommended=recommended,
                reason=reason, rates=rates, device_memory=rates.device_memory, price_per_hour=cluster.price_per_hour,
                serving=serving, notes=notes, host_memory=rates.host_memory)
