"""I-FGSM: the iterative FGSM of Kurakin et al. (2016) as the paper's appendix Eq. (4) states it:
``x_0 = x; x_{n+1} = clip(x_n + (eps / steps) * sign(grad J(x_n)))``, no random start. l-inf.

The paper's tables use steps = 40 (MNIST, Fashion-MNIST) and 7 (CIFAR-10).

    >>> result = IFGSM(eps=0.3, steps=40)(model, images, labels)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from .base import Attack, Report, check_eps, check_steps
from .functional import pgd_linf


@dataclass(frozen=True, kw_only=True)
class IFGSM(Attack):
    name: ClassVar[str] = "ifgsm"
    title: ClassVar[str] = "I-FGSM"
    norm: ClassVar[str] = "linf"
    linf_bounded: ClassVar[bool] = True

    #: l-inf budget in [0, 1] pixel units; each step is eps / steps
    eps: float = 0.3
    steps: int = 40
    #: stop attacking an example once an iterate fools the model (keeps that iterate: a
    #: per-example worst case over iterates; False returns the last iterate, as Kurakin et al.)
    early_stop: bool = True

    def __post_init__(self) -> None:
        check_eps(self.eps)
        check_steps(self.steps)

    def run(self, model, x: torch.Tensor, y: torch.Tensor,
            report: Report | None = None) -> torch.Tensor:
        return pgd_linf(model, x, y, self.eps, self.eps / self.steps, self.steps,
                        random_start=False, callback=report, early_stop=self.early_stop)
