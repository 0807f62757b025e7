"""Small context managers for a module's mode, shared by attacks, evaluation and training.

    >>> with eval_mode(model):
    ...     logits = model(x)          # eval mode here; the caller's mode is back afterwards
"""

from __future__ import annotations

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
