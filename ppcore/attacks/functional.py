"""Low-level batched l-inf gradient attacks shared by the attack classes and the training methods.

No mode switching and no bookkeeping here: callers decide train/eval mode. Everything stays in
[0, 1] pixel space and within the l-inf ball of radius ``eps`` around ``x``.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _ce_sum(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # a sum, not a mean: each example's input gradient is then independent of the batch size
    return F.cross_entropy(logits, y, reduction="sum")


def input_grad(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
               loss_fn: LossFn = _ce_sum) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient of ``loss_fn(model(x), y)`` with respect to ``x`` (and the logits)."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(x)
        (grad,) = torch.autograd.grad(loss_fn(logits, y), x)
    return grad, logits.detach()


def project_linf(x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    return torch.min(torch.max(x_adv, x - eps), x + eps).clamp_(0.0, 1.0)


def fgsm(model, x, y, eps: float, loss_fn: LossFn = _ce_sum) -> torch.Tensor:
    grad, _ = input_grad(model, x, y, loss_fn)
    return (x + eps * grad.sign()).clamp_(0.0, 1.0).detach()


def pgd_linf(model, x, y, eps: float, alpha: float, steps: int, *, random_start: bool = True,
             loss_fn: LossFn = _ce_sum, generator: torch.Generator | None = None,
             callback: Callable[[int, torch.Tensor], None] | None = None) -> torch.Tensor:
    """Projected gradient ascent on ``loss_fn`` in the l-inf ball (Madry et al. 2018).

    With ``random_start=False`` and ``alpha = eps / steps`` this is I-FGSM (Kurakin et al.).
    ``callback(step, x_adv)`` is called after every step.
    """
    if random_start:
        u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        x_adv = (x + (2 * u - 1) * eps).clamp_(0.0, 1.0)
    else:
        x_adv = x.clone()
    for step in range(steps):
        grad, _ = input_grad(model, x_adv, y, loss_fn)
        x_adv = project_linf(x_adv + alpha * grad.sign(), x, eps).detach()
        if callback is not None:
            callback(step + 1, x_adv)
    return x_adv
