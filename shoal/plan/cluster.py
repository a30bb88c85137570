"""Cluster descriptions: the machines a plan runs on, loaded from YAML and validated.

A cluster is ``nodes`` identical nodes; each node has CPU cores (and their peak FLOP/s and memory bandwidth)
and optionally GPUs from the table of known devices (:mod:`shoal.plan.devices`); processes talk over the
``intra`` link inside a node and the ``inter`` link between nodes. ``configs/clusters/`` holds examples::

    name: 8xa100
    nodes: 1
    price_per_hour: 32.77            # USD for the whole cluster (optional: no cost without it)
    node:
      cpu: {cores: 96, gflops_per_core: 80, memory_bw_gbs: 400, memory_gib: 1024}
      gpu: {device: A100, count: 8}
      intra: {bandwidth_gbs: 300, latency_us: 3}    # NVLink, per direction
    inter: {bandwidth_gbs: 25, latency_us: 10}      # only needed with nodes > 1

``--cluster local`` is this machine as ``shoal plan --calibrate`` measured it (:mod:`shoal.plan.calibrate`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shoal.config import ConfigError, read_yaml
from shoal.errors import ShoalError
from shoal.plan.devices import DEVICES, Device

__all__ = ["CPUSpec", "ClusterError", "ClusterSpec", "Efficiency", "GPUSpec", "Link", "NodeSpec", "Overheads",
           "load_cluster", "parse_cluster"]


class ClusterError(ShoalError, ValueError):
    """A cluster file that cannot be used; the message names the file, the field, the value and the fix."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CPUSpec(_Strict):
    """The CPUs of one node: cores, the peak FP32 FLOP/s of one core, memory bandwidth and size."""

    cores: int = Field(ge=1, le=4096)
    gflops_per_core: float = Field(gt=0)  # peak FP32, e.g. 2 AVX-512 FMA units x 16 lanes x 2 x 3 GHz = 192
    memory_bw_gbs: float = Field(gt=0)  # the node's memory bandwidth, GB/s
    memory_gib: float = Field(gt=0)


class GPUSpec(_Strict):
    """The GPUs of one node: a known device and how many."""

    device: str
    count: int = Field(1, ge=1, le=64)

    @field_validator("device")
    @classmethod
    def _known(cls, value: str) -> str:
        if value.upper() not in DEVICES:
            raise ValueError(f"unknown device {value!r}; known devices: {', '.join(sorted(DEVICES))}")
        return value.upper()

    @property
    def spec(self) -> Device:
        return DEVICES[self.device]


class Link(_Strict):
    """A link between two processes: bandwidth per direction (GB/s) and one message's latency (microseconds)."""

    bandwidth_gbs: float = Field(gt=0)
    latency_us: float = Field(ge=0)

    @property
    def bandwidth(self) -> float:
        return self.bandwidth_gbs * 1e9

    @property
    def latency(self) -> float:
        return self.latency_us * 1e-6


class NodeSpec(_Strict):
    cpu: CPUSpec
    gpu: GPUSpec | None = None
    intra: Link


class Efficiency(_Strict):
    """The achievable fraction of each peak: dense matmuls, memory bandwidth (embedding rows), network; and how
    much of the gradient all-reduce hides behind the backward (``overlap``: 1 all of it, 0 none)."""

    matmul: float = Field(0.5, gt=0, le=1)
    memory: float = Field(0.6, gt=0, le=1)
    network: float = Field(0.8, gt=0, le=1)
    overlap: float = Field(0.8, ge=0, le=1)


class Overheads(_Strict):
    """Fixed costs that FLOPs and bytes do not see: each step's Python loop and optimizer calls (``step_us``),
    each layer's kernel launches forward and backward (``layer_us``), each embedding feature (``feature_us``)."""

    step_us: float = Field(400, ge=0)
    layer_us: float = Field(30, ge=0)
    feature_us: float = Field(20, ge=0)


class ClusterSpec(_Strict):
    """A whole cluster (see the module docstring)."""

    name: str = "cluster"
    nodes: int = Field(1, ge=1, le=100_000)
    node: NodeSpec
    inter: Link | None = None
    price_per_hour: float | None = Field(None, ge=0)  # USD, the whole cluster
    dtype: Literal["fp32", "tf32", "bf16", "fp16"] = "fp32"  # the dense layers' compute type on GPUs
    efficiency: Efficiency = Field(default_factory=Efficiency)
    overheads: Overheads = Field(default_factory=Overheads)

    @model_validator(mode="after")
    def _inter_for_several_nodes(self) -> ClusterSpec:
        if self.nodes > 1 and self.inter is None:
            raise ValueError(f"inter: required with {self.nodes} nodes (the link between them: bandwidth_gbs, "
                             "latency_us)")
        return self

    @property
    def gpus(self) -> bool:
        return self.node.gpu is not None

    def processes_per_node(self, nproc: int | None = None) -> int:
        """Training processes per node: ``nproc`` when given, else one per GPU, else one."""
        if nproc is not None:
            return nproc
        return self.node.gpu.count if self.node.gpu is not None else 1


def _describe(error: Any) -> str:
    where = ".".join(str(p) for p in error["loc"])
    if not where:  # a check across fields: its message names the field
        return str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        return f"{where}: unknown key {error['loc'][-1]!r}"
    if error["type"] == "missing":
        return f"{where}: required field is missing"
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["loc"] and error["type"] != "value_error":
        return f"{where}: {message} (got {error.get('input')!r})"
    return f"{where}: {message}"


def parse_cluster(data: Any, source: str = "<cluster>") -> ClusterSpec:
    """Validate plain data as a :class:`ClusterSpec`; errors name the source, the field and the value."""
    if data is None:
        raise ClusterError(f"{source}: the cluster file is empty; describe nodes, node.cpu (and node.gpu), links")
    if not isinstance(data, dict):
        raise ClusterError(f"{source}: a cluster must be a mapping of keys to values, not {type(data).__name__}")
    try:
        return ClusterSpec.model_validate(data)
    except ValidationError as err:
        n = err.error_count()
        lines = [f"{source}: invalid cluster ({n} problem{'s' if n > 1 else ''})"]
        lines += [f"  - {_describe(e)}" for e in err.errors()]
        raise ClusterError("\n".join(lines)) from None


def load_cluster(path: str | Path) -> ClusterSpec:
    """Read and validate a cluster YAML file."""
    path = Path(path)
    if not path.is_file():
        raise ClusterError(f"cluster file {str(path)!r} does not exist; see configs/clusters/ for examples, "
                           "or use --cluster local after shoal plan --calibrate")
    try:
        data = read_yaml(path.read_text(encoding="utf-8"), str(path))  # no alias bombs
    except yaml.YAMLError as err:
        raise ClusterError(f"{path}: not valid YAML: {err}") from None
    except ConfigError as err:  # an alias bomb
        raise ClusterError(str(err)) from None
    return parse_cluster(data, str(path))
