"""PGD-L-inf: projected gradient descent from a uniformly random start in the eps-ball (Madry et
al. 2018, "Towards deep learning models resistant to adversarial attacks"), with restarts.

The paper's tables: MNIST eps 0.3, step 0.01, 40 and 100 steps; Fashion-MNIST eps 0.1, step 0.01;
CIFAR-10 eps 8/255, step 2/255, 7 and 20 steps; one start.

Speed: one forward and one backward per step for the whole batch, a summed cross-entropy (each
example's gradient independent of the batch), projection without autograd, and (``early_stop``)
examples that are already misclassified leave the batch. Restarts attack only the examples no
earlier restart fooled, so the result is the per-example worst case over restarts.

    >>> result = PGD(eps=0.3, alpha=0.01, steps=40, restarts=1)(model, images, labels)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from .base import Attack, Report, check_eps, check_steps
from .functional import pgd_linf


@dataclass(frozen=True, kw_only=True)
class PGD(Attack):
    name: ClassVar[str] = "pgd"
    title: ClassVar[str] = "PGD"
    norm: ClassVar[str] = "linf"
    linf_bounded: ClassVar[bool] = True

    #: l-inf budget in [0, 1] pixel units
    eps: float = 0.3
    #: step size (paper: 0.01 on MNIST and Fashion-MNIST, 2/255 on CIFAR-10)
    alpha: float = 0.01
    steps: int = 40
    #: independent random starts; an example counts as fooled if any start fools it
    restarts: int = 1
    #: False starts at the clean image (then PGD equals BIM with projection)
    random_start: bool = True
    #: stop attacking an example once an iterate fools the model (keeps that iterate: a
    #: per-example worst case over iterates); False returns the last iterate, as Madry et al.
    early_stop: bool = True
    #: seed of the random starts (None: torch's global generator)
    seed: int | None = 0

    def __post_init__(self) -> None:
        check_eps(self.eps)
        check_eps(self.alpha, "step size")
        check_steps(self.steps)
        check_steps(self.restarts, "restarts")

    def run(self, model, x: torch.Tensor, y: torch.Tensor,
            report: Report | None = None) -> torch.Tensor:
        gen = None
        if self.seed is not None:
            gen = torch.Generator(device=x.device).manual_seed(self.seed)
        best = None
        remaining = None        # None: every example (the first start needs no indexing)
        for r in range(self.restarts):
            xs, ys = (x, y) if remaining is None else (x[remaining], y[remaining])
            callback = None
            if report is not None:
                def progress(step: int, xr: torch.Tensor, _r=r, _idx=remaining) -> None:
                    full = xr if _idx is None else best.clone().index_copy_(0, _idx, xr)
                    report(_r * self.steps + step, full)
                callback = progress
            xr = pgd_linf(model, xs, ys, self.eps, self.alpha, self.steps,
                          random_start=self.random_start, generator=gen, callback=callback,
                          early_stop=self.early_stop)
            if remaining is None:
                best = xr
            else:
                best[remaining] = xr
            if r == self.restarts - 1:
                break
            with torch.no_grad():
                fooled = model(xr).argmax(1) != ys
            idx = torch.arange(x.shape[0], device=x.device) if remaining is None else remaining
            remaining = idx[~fooled]
            if remaining.numel() == 0:
                break
        return best
