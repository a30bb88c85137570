"""``shoal plan``: what a training or serving job will cost before it runs.

From a config's real shapes and a cluster description, the planner predicts a training step (per-layer compute,
embedding lookups and updates, DDP all-reduce, the tables' traffic, their overlap), the memory of each process,
rows/s, epoch time and cost; advises a placement for the embedding tables; and sizes serving. It is validated
against real runs on this machine by ``benchmarks/plan.py`` (docs/plan.md).

    cost.py      FLOPs, bytes and parameters per layer        comm.py      ring all-reduce, all-gather, all-to-all
    inputs.py    the inputs' shape (config, first chunk)      sharding.py  data/table/row/column-wise placements
    devices.py   known GPUs (datasheets)                      step.py      the step and memory model
    cluster.py   cluster YAML (validated)                     planner.py   it all, for a config and a cluster
    calibrate.py this machine's measured rates                serving.py   p50/p99, servers for a QPS
    rates.py     a process's rates (calibrated or datasheet)  timeline.py  the PNG of a step
"""

from shoal.plan.calibrate import calibrate, load_profile, profile_path
from shoal.plan.cluster import ClusterError, ClusterSpec, load_cluster, parse_cluster
from shoal.plan.planner import Plan, make_plan
from shoal.plan.rates import local_cluster
from shoal.plan.timeline import save_timeline

__all__ = ["ClusterError", "ClusterSpec", "Plan", "calibrate", "load_cluster", "load_profile", "local_cluster",
           "make_plan", "parse_cluster", "profile_path", "save_timeline"]
