"""Accelerators by name, with their datasheet figures, for ``bench plan``.

Peaks are dense (no structured sparsity), per chip. ``float32`` is the rate a float32 matrix
product runs at under JAX's default precision: TF32 on NVIDIA GPUs since Ampere, and one
bfloat16 pass on TPUs (so the same as ``bfloat16``); ask for ``precision="highest"`` and a GPU
runs float32 at a fraction of it. Memory is the chip's HBM in bytes (GB = 1e9); what a process
may use is less: JAX preallocates 75% of a GPU's memory unless ``XLA_PYTHON_CLIENT_MEM_FRACTION``
says otherwise, and the runtime keeps some of a TPU's (``USABLE_FRACTION``).
"""

from __future__ import annotations

from dataclasses import dataclass

from levi_core.errors import ConfigError

# The share of a chip's memory a plan lets one program use: a GPU run with
# XLA_PYTHON_CLIENT_MEM_FRACTION=0.9 (the README's advice), or a TPU's HBM less the runtime's.
USABLE_FRACTION = 0.9


@dataclass(frozen=True)
class Device:
    name: str
    kind: str  # "gpu" or "tpu"
    bf16_flops: float  # dense peak, FLOP/s
    f32_flops: float  # float32 matmuls under JAX's default precision (see the module docstring)
    memory: int  # bytes of HBM per chip
    bandwidth: float  # HBM bytes/s
    label: str

    def peak(self, dtype: str) -> float:
        return self.bf16_flops if dtype == "bfloat16" else self.f32_flops

    @property
    def usable_memory(self) -> int:
        return int(self.memory * USABLE_FRACTION)


DEVICES: dict[str, Device] = {d.name: d for d in [
    Device("h100-80gb", "gpu", 989e12, 494e12, 80 * 10**9, 3.35e12, "NVIDIA H100 SXM 80 GB"),
    Device("h200-141gb", "gpu", 989e12, 494e12, 141 * 10**9, 4.8e12, "NVIDIA H200 SXM 141 GB"),
    Device("a100-40gb", "gpu", 312e12, 156e12, 40 * 10**9, 1.555e12, "NVIDIA A100 SXM 40 GB"),
    Device("a100-80gb", "gpu", 312e12, 156e12, 80 * 10**9, 2.039e12, "NVIDIA A100 SXM 80 GB"),
    Device("l4", "gpu", 121e12, 60e12, 24 * 10**9, 0.3e12, "NVIDIA L4 24 GB"),
    Device("tpu-v4", "tpu", 275e12, 275e12, 32 * 2**30, 1.2e12, "Google TPU v4 (per chip, 32 GiB)"),
    Device("tpu-v5e", "tpu", 197e12, 197e12, 16 * 2**30, 0.819e12, "Google TPU v5e (per chip, 16 GiB)"),
]}


def get_device(name: str) -> Device:
    if name not in DEVICES:
        raise ConfigError(f"unknown device {name!r}; known devices: {', '.join(DEVICES)}")
    return DEVICES[name]
