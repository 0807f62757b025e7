"""Black-box transfer (the paper's Tables 3, 4 and 10): adversarial examples are crafted on a
*source* model (FGSM by default, as the paper; I-FGSM or PGD on request) and the *target* model,
the one the attack is called with, is measured on them. The target's gradients are never used.

The paper's sources are normally trained Net-A and Net-B (MNIST, Fashion-MNIST) and VGG-11 /
VGG-19 (CIFAR-10), with the data set's eps.

    >>> source = load_model("checkpoints/mnist-net_a")
    >>> result = Transfer(source=source, eps=0.3)(target, images, labels)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from ..errors import PPCoreError
from .base import Attack, Report, check_eps, check_steps

BASES = ("fgsm", "ifgsm", "pgd")


def _dataset_of(model: nn.Module) -> str | None:
    record = getattr(model, "ppcore_record", None)
    return record.get("config", {}).get("dataset") if isinstance(record, dict) else None


def check_same_dataset(source: nn.Module, target: nn.Module) -> None:
    """Source and target checkpoints must come from the same data set."""
    s, t = _dataset_of(source), _dataset_of(target)
    if s is not None and t is not None and s != t:
        from ..data import dataset_info
        raise PPCoreError(f"the source model was trained on {dataset_info(s).title} but the "
                          f"target on {dataset_info(t).title}: a transfer attack needs one "
                          f"data set")


@dataclass(frozen=True, kw_only=True)
class Transfer(Attack):
    name: ClassVar[str] = "transfer"
    title: ClassVar[str] = "Black-box transfer"
    norm: ClassVar[str] = "linf"
    linf_bounded: ClassVar[bool] = True

    #: the model the adversarial examples are crafted on
    source: nn.Module = field(repr=False, compare=False)
    eps: float = 0.3
    #: the attack run on the source: fgsm (the paper), ifgsm or pgd
    base: str = "fgsm"
    #: steps of an ifgsm / pgd base
    steps: int = 40
    #: step size of a pgd base (default 2.5 eps / steps, Madry et al.'s rule)
    alpha: float | None = None
    seed: int | None = 0

    def __post_init__(self) -> None:
        if not isinstance(self.source, nn.Module):
            raise PPCoreError("the transfer attack needs a source model")
        check_eps(self.eps)
        check_steps(self.steps)
        if self.alpha is not None:
            check_eps(self.alpha, "step size")
        if self.base not in BASES:
            raise PPCoreError(f"unknown transfer base attack '{self.base}': choose one of "
                              f"{', '.join(BASES)}")

    def source_attack(self) -> Attack:
        from . import make_attack
        if self.base == "fgsm":
            return make_attack("fgsm", eps=self.eps)
        if self.base == "ifgsm":
            return make_attack("ifgsm", eps=self.eps, steps=self.steps, early_stop=False)
        alpha = self.alpha if self.alpha is not None else 2.5 * self.eps / self.steps
        return make_attack("pgd", eps=self.eps, alpha=min(alpha, 1.0), steps=self.steps,
                           early_stop=False, seed=self.seed)

    def run(self, model, x: torch.Tensor, y: torch.Tensor,
            report: Report | None = None) -> torch.Tensor:
        check_same_dataset(self.source, model)
        try:
            src_device = next(self.source.parameters()).device
        except StopIteration:
            src_device = x.device
        if src_device != x.device:
            raise PPCoreError(f"the source model is on {src_device} but the images on "
                              f"{x.device}")
        # early stopping is off: a stronger example on the source transfers better than one
        # that only just crosses the source's boundary
        res = self.source_attack()(self.source, x, y, report)
        return res.x_adv
