"""FGSM: one signed-gradient step of size eps (Goodfellow et al. 2015, "Explaining and harnessing
adversarial examples"). l-inf; the paper's appendix Eq. (3): ``x* = x + eps * sign(grad_x J)``.

    >>> attack = FGSM(eps=0.3)
    >>> result = attack(model, images, labels)     # AttackResult; result.accuracy, result.x_adv
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from .base import Attack, Report, check_eps
from .functional import fgsm


@dataclass(frozen=True, kw_only=True)
class FGSM(Attack):
    name: ClassVar[str] = "fgsm"
    title: ClassVar[str] = "FGSM"
    norm: ClassVar[str] = "linf"
    linf_bounded: ClassVar[bool] = True

    #: l-inf budget in [0, 1] pixel units (paper: 0.3 MNIST, 0.1 Fashion-MNIST, 8/255 CIFAR-10)
    eps: float = 0.3

    def __post_init__(self) -> None:
        check_eps(self.eps)

    def run(self, model, x: torch.Tensor, y: torch.Tensor,
            report: Report | None = None) -> torch.Tensor:
        x_adv = fgsm(model, x, y, self.eps)
        if report is not None:
            report(1, x_adv)
        return x_adv
