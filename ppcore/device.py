"""Device choice, made once per run from ``auto|cpu|cuda``."""

from __future__ import annotations

import torch

from .errors import PPCoreError

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def pick_device(spec: str = "auto") -> torch.device:
    """Return the device named by ``spec``; ``auto`` prefers CUDA when it is there."""
    if spec not in DEVICE_CHOICES and not spec.startswith("cuda:"):
        raise PPCoreError(f"unknown device '{spec}': choose one of {', '.join(DEVICE_CHOICES)}")
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda") and not torch.cuda.is_available():
        raise PPCoreError("device 'cuda' was asked for but no CUDA GPU is available here")
    return torch.device(spec)


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (empty where there is none)."""
    info: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break
                key, _, value = line.partition(":")
                info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return info


def _cpu_flags() -> set[str]:
    return set(_cpuinfo().get("flags", "").split())


def bf16_native(device: torch.device) -> bool:
    """True where bf16 matrix arithmetic runs in hardware: GPUs that support bf16, and CPUs with
    AVX512-BF16 or AMX (elsewhere bf16 on a CPU is emulated and slower than fp32)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(_cpu_flags() & {"avx512_bf16", "amx_bf16"})
    return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` -> ``bf16`` where the device does bf16 natively, else ``fp32``. An explicit
    ``bf16`` is honoured (slow but correct on other CPUs)."""
    if precision not in ("auto", "fp32", "bf16"):
        raise PPCoreError(f"unknown precision '{precision}': choose auto, fp32 or bf16")
    if precision == "auto":
        return "bf16" if bf16_native(device) else "fp32"
    return precision


def autocast(precision: str, device: torch.device):
    """The autocast context of a resolved precision (a no-op context for fp32)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def machine_name(device: torch.device) -> str:
    """What a record says the run ran on: the GPU's name, or the CPU's model and threads. A
    virtual machine's model name is often generic ("AMD EPYC" for two generations twice apart in
    speed), so the x86 family and model numbers are added where the CPU gives them."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    info = _cpuinfo()
    import platform
    name = info.get("model name") or platform.processor() or "CPU"
    if info.get("cpu family") and info.get("model"):
        name += f" (family {info['cpu family']}, model {info['model']})"
    return f"{name}, {torch.get_num_threads()} threads"
