"""Small context managers for a module's mode, shared by attacks, evaluation and training.

    >>> with eval_mode(model):
    ...     logits = model(x)          # eval mode here; the caller's mode is back afterwards
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

from torch import nn


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode for the block and restore its own mode afterwards, also when
    the block raises (a model left in eval mode would silently train without dropout)."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


_FP32_LOCK = threading.Lock()
_FP32_STATE = {"depth": 0, "saved": None}


@contextmanager
def full_fp32() -> Iterator[None]:
    """No TF32 in the block: convolutions and matrix products on a GPU in true fp32.

    PyTorch lets cuDNN convolutions use TF32 (a 10-bit mantissa) by default on GPUs that have
    it, so an "fp32" attack there is not fp32. Attacks and evaluations run inside this block;
    training keeps the defaults. The switch is process-wide, so nested and concurrent blocks
    (threads of the app) share it, and the flags come back when the last one ends. A no-op on
    a CPU, where the flags mean nothing."""
    import torch

    with _FP32_LOCK:
        if _FP32_STATE["depth"] == 0:
            _FP32_STATE["saved"] = (torch.backends.cudnn.allow_tf32,
                                    torch.backends.cuda.matmul.allow_tf32)
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
        _FP32_STATE["depth"] += 1
    try:
        yield
    finally:
        with _FP32_LOCK:
            _FP32_STATE["depth"] -= 1
            if _FP32_STATE["depth"] == 0:
                (torch.backends.cudnn.allow_tf32,
                 torch.backends.cuda.matmul.allow_tf32) = _FP32_STATE["saved"]
