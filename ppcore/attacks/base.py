"""The one interface every attack sits behind.

A subclass implements only ``run(model, x, y, report)`` and returns candidate adversarial images.
``Attack.__call__`` does the bookkeeping no attack may get wrong: it checks the inputs, puts the
model in eval mode (and restores its mode), clips the perturbation to the attack's l-inf budget
(where it has one) and the image to [0, 1], computes success per example and the perturbation's
l2 / l-inf norms.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import torch
from torch import nn

from ..errors import PPCoreError
from ..modes import eval_mode, full_fp32

#: ``report(step, x_adv)`` is called by iterative attacks after each step (e.g. to animate PGD)
Report = Callable[[int, torch.Tensor], None]


@dataclass
class AttackResult:
    x_adv: torch.Tensor          # [N, C, H, W] in [0, 1]
    success: torch.Tensor        # [N] bool: the model's prediction on x_adv differs from y
    l2: torch.Tensor             # [N] l2 norm of x_adv - x
    linf: torch.Tensor           # [N] l-inf norm of x_adv - x
    logits_adv: torch.Tensor     # [N, classes] the model's logits on x_adv
    #: attack-specific per-example details, e.g. the spatial attack's chosen (angle, tx, ty)
    extra: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def accuracy(self) -> float:
        """Fraction of examples still classified correctly (robust accuracy on this batch)."""
        return float((~self.success).float().mean())


class Attack:
    """Base of every attack. Subclasses are frozen keyword-only dataclasses whose fields are the
    typed hyper-parameters (``dataclasses.fields(cls)`` lists them, with defaults, for a UI).

    ``run`` may return the adversarial images alone or ``(x_adv, extra)`` where ``extra`` maps
    names to per-example tensors; ``extra`` ends up in ``AttackResult.extra``.
    """

    #: registry name, e.g. "pgd"
    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    #: the threat model: "linf", "l2", "spatial" or "transfer"
    norm: ClassVar[str] = ""
    #: True for attacks whose perturbation is bounded in l-inf by ``self.eps``
    linf_bounded: ClassVar[bool] = False

    eps: float | None = None

    def run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
            report: Report | None = None) -> torch.Tensor | tuple[torch.Tensor, dict]:
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        """The hyper-parameters as plain JSON-able values (models are left out)."""
        if not dataclasses.is_dataclass(self):
            return {"eps": self.eps} if self.eps is not None else {}
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if v is None or isinstance(v, (bool, int, float, str)):
                out[f.name] = v
        return out

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 report: Report | None = None) -> AttackResult:
        if x.ndim != 4:
            raise PPCoreError(f"images must be a batch [N, C, H, W], got shape {tuple(x.shape)}")
        if y.ndim != 1 or y.shape[0] != x.shape[0]:
            raise PPCoreError(f"labels must have shape [{x.shape[0]}], got {tuple(y.shape)}")
        if x.numel() and (x.min() < 0 or x.max() > 1):
            raise PPCoreError("images must be in [0, 1]")
        check_image_shape(model, x)
        with eval_mode(model), full_fp32():
            x = x.detach()
            out = self.run(model, x, y, report)
            extra: dict = {}
            if isinstance(out, tuple):
                out, extra = out
            x_adv = out.detach()
            if self.linf_bounded and self.eps is not None:
                x_adv = torch.min(torch.max(x_adv, x - self.eps), x + self.eps)
            x_adv = x_adv.clamp(0.0, 1.0)
            with torch.no_grad():
                logits = model(x_adv)
        delta = (x_adv - x).flatten(1)
        return AttackResult(x_adv, logits.argmax(1) != y, delta.norm(dim=1),
                            delta.abs().amax(dim=1), logits, extra)


def check_image_shape(model: nn.Module, x: torch.Tensor) -> None:
    """For a model loaded from a checkpoint, the images must have its data set's shape."""
    record = getattr(model, "ppcore_record", None)
    if not isinstance(record, dict):
        return
    from ..data import DATASETS

    info = DATASETS.get(record.get("config", {}).get("dataset"))
    if info is not None and tuple(x.shape[1:]) != (info.channels, info.size, info.size):
        raise PPCoreError(f"images of shape {tuple(x.shape[1:])} do not fit a model trained on "
                          f"{info.title}, which takes {(info.channels, info.size, info.size)}")


def check_eps(eps: float, what: str = "epsilon") -> float:
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not 0 <= eps <= 1:
        raise PPCoreError(f"{what} must be in [0, 1], got {eps}")
    return float(eps)


def check_steps(steps: int, what: str = "steps", *, key: str | None = None) -> int:
    """A whole number >= 1 and at most the limit of parameter ``key`` (default ``what``) in
    ``ppcore.params``: the same limit the lab's widgets and links have."""
    from ..params import most

    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise PPCoreError(f"{what} must be a whole number of at least 1, got {steps}")
    top = most(key or what)
    if top is not None and steps > top:
        raise PPCoreError(f"{what} must be at most {top:g}, got {steps}")
    return steps


def check_positive(value: float, what: str, *, allow_zero: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise PPCoreError(f"{what} must be a finite number {bound}, got {value}")
    return float(value)
