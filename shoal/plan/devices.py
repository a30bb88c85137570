"""Known accelerators: peak FLOP/s by dtype, memory size and bandwidth, from the vendors' public datasheets.

The figures are the *dense* peaks (the datasheets also print "with sparsity" numbers, twice as large, which
only 2:4 structured-sparse weights reach). A cluster file names a device (``gpu: {device: A100}``); the planner
multiplies these peaks by an achievable fraction (:class:`shoal.plan.cluster.Efficiency`).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEVICES", "Device", "device"]

TERA = 1e12
GIGA = 1e9


@dataclass(frozen=True)
class Device:
    """One accelerator: ``flops`` peak FLOP/s per dtype, ``memory_gib`` on-device memory, ``memory_bw`` bytes/s,
    ``link_bw`` bytes/s per direction to its peers in a node (NVLink, or PCIe where there is none)."""

    name: str
    flops: dict[str, float]
    memory_gib: float
    memory_bw: float
    link_bw: float
    source: str


DEVICES: dict[str, Device] = {
    # NVIDIA H100 Tensor Core GPU datasheet (SXM5 80 GB): FP32 67 TFLOPS, TF32 989 / BF16 1,979 / FP8 3,958 TFLOPS
    # "with sparsity" (half that dense), HBM3 80 GB at 3.35 TB/s, NVLink 900 GB/s (both directions: 450 each).
    "H100": Device("H100", {"fp32": 67 * TERA, "tf32": 494.5 * TERA, "bf16": 989.5 * TERA, "fp16": 989.5 * TERA,
                            "fp8": 1979 * TERA}, 80, 3.35 * TERA, 450 * GIGA,
                   "NVIDIA H100 Tensor Core GPU datasheet, SXM5"),
    # NVIDIA H200 Tensor Core GPU datasheet (SXM 141 GB): the H100's compute, HBM3e 141 GB at 4.8 TB/s, NVLink 900 GB/s.
    "H200": Device("H200", {"fp32": 67 * TERA, "tf32": 494.5 * TERA, "bf16": 989.5 * TERA, "fp16": 989.5 * TERA,
                            "fp8": 1979 * TERA}, 141, 4.8 * TERA, 450 * GIGA,
                   "NVIDIA H200 Tensor Core GPU datasheet, SXM"),
    # NVIDIA A100 Tensor Core GPU datasheet (80 GB SXM): FP32 19.5 TFLOPS, TF32 156, BF16/FP16 312 (dense),
    # HBM2e 80 GB at 2,039 GB/s, NVLink 600 GB/s (300 each way).
    "A100": Device("A100", {"fp32": 19.5 * TERA, "tf32": 156 * TERA, "bf16": 312 * TERA, "fp16": 312 * TERA},
                   80, 2.039 * TERA, 300 * GIGA, "NVIDIA A100 Tensor Core GPU datasheet, 80GB SXM"),
    # NVIDIA L4 Tensor Core GPU datasheet: FP32 30.3 TFLOPS, TF32 120 / BF16 242 / FP8 485 with sparsity (half
    # dense), 24 GB GDDR6 at 300 GB/s, PCIe Gen4 x16 (64 GB/s both directions: 32 each).
    "L4": Device("L4", {"fp32": 30.3 * TERA, "tf32": 60 * TERA, "bf16": 121 * TERA, "fp16": 121 * TERA,
                        "fp8": 242.5 * TERA}, 24, 300 * GIGA, 32 * GIGA, "NVIDIA L4 Tensor Core GPU datasheet"),
}


def device(name: str) -> Device:
    """The device called ``name`` (case-insensitive)."""
    found = DEVICES.get(name.upper())
    if found is None:
        raise KeyError(f"unknown device {name!r}; known devices: {', '.join(sorted(DEVICES))}")
    return found
