"""The one interface every attack sits behind.

A subclass implements only ``run(model, x, y, report)`` and returns candidate adversarial images.
``Attack.__call__`` does the bookkeeping no attack may get wrong: it checks the inputs, puts the
model in eval mode (and restores its mode), clips the perturbation to the attack's l-inf budget
(where it has one) and the image to [0, 1], computes success per example and the perturbation's
l2 / l-inf norms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar

import torch
from torch import nn

from ..errors import PPCoreError

#: ``report(step, x_adv)`` is called by iterative attacks after each step (e.g. to animate PGD)
Report = Callable[[int, torch.Tensor], None]


@dataclass
class AttackResult:
    x_adv: torch.Tensor          # [N, C, H, W] in [0, 1]
    success: torch.Tensor        # [N] bool: the model's prediction on x_adv differs from y
    l2: torch.Tensor             # [N] l2 norm of x_adv - x
    linf: torch.Tensor           # [N] l-inf norm of x_adv - x
    logits_adv: torch.Tensor     # [N, classes] the model's logits on x_adv

    @property
    def accuracy(self) -> float:
        """Fraction of examples still classified correctly (robust accuracy on this batch)."""
        return float((~self.success).float().mean())


class Attack:
    #: registry name, e.g. "pgd"
    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    #: True for attacks whose perturbation is bounded in l-inf by ``self.eps``
    linf_bounded: ClassVar[bool] = False

    eps: float | None = None

    def run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
            report: Report | None = None) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 report: Report | None = None) -> AttackResult:
        if x.ndim != 4:
            raise PPCoreError(f"images must be a batch [N, C, H, W], got shape {tuple(x.shape)}")
        if y.ndim != 1 or y.shape[0] != x.shape[0]:
            raise PPCoreError(f"labels must have shape [{x.shape[0]}], got {tuple(y.shape)}")
        if x.numel() and (x.min() < 0 or x.max() > 1):
            raise PPCoreError("images must be in [0, 1]")
        was_training = model.training
        model.eval()
        try:
            x = x.detach()
            x_adv = self.run(model, x, y, report).detach()
            if self.linf_bounded and self.eps is not None:
                x_adv = torch.min(torch.max(x_adv, x - self.eps), x + self.eps)
            x_adv = x_adv.clamp(0.0, 1.0)
            with torch.no_grad():
                logits = model(x_adv)
        finally:
            model.train(was_training)
        delta = (x_adv - x).flatten(1)
        return AttackResult(x_adv, logits.argmax(1) != y, delta.norm(dim=1),
                            delta.abs().amax(dim=1), logits)


def check_eps(eps: float, what: str = "epsilon") -> float:
    if not isinstance(eps, (int, float)) or not 0 <= eps <= 1:
        raise PPCoreError(f"{what} must be in [0, 1], got {eps}")
    return float(eps)


def check_steps(steps: int, what: str = "steps") -> int:
    if not isinstance(steps, int) or steps < 1:
        raise PPCoreError(f"{what} must be a whole number of at least 1, got {steps}")
    return steps
