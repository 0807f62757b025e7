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
