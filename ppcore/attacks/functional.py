"""Low-level batched l-inf gradient attacks shared by the attack classes and the training methods.

No mode switching and no bookkeeping here: callers decide train/eval mode. Everything stays in
[0, 1] pixel space and within the l-inf ball of radius ``eps`` around ``x``.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from . import graphs

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
             callback: Callable[[int, torch.Tensor], None] | None = None,
             early_stop: bool = False) -> torch.Tensor:
    """Projected gradient ascent on ``loss_fn`` in the l-inf ball (Madry et al. 2018).

    With ``random_start=False`` and ``alpha = eps / steps`` this is I-FGSM (Kurakin et al.).
    ``callback(step, x_adv)`` is called after every step.

    ``early_stop=True`` stops attacking an example as soon as an iterate is misclassified
    (``argmax != y``, read off the forward pass the step needs anyway) and keeps that iterate:
    a per-example worst case over iterates, never weaker than the last iterate alone, and much
    cheaper where most examples fall early. One forward/backward per step on the examples still
    standing; no per-example Python loops.
    """
    if random_start:
        u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        x_adv = (x + (2 * u - 1) * eps).clamp_(0.0, 1.0)
    else:
        x_adv = x.clone()
    if early_stop:
        return _pgd_linf_early_stop(model, x, y, x_adv, eps, alpha, steps, loss_fn, callback)
    if callback is None:  # a captured CUDA graph where one applies (graphs.use_cuda_graphs)
        replayed = graphs.pgd(model, x, x_adv, y, eps, alpha, steps, loss_fn)
        if replayed is not None:
            return replayed
    for step in range(steps):
        grad, _ = input_grad(model, x_adv, y, loss_fn)
        x_adv = project_linf(x_adv + alpha * grad.sign(), x, eps).detach()
        if callback is not None:
            callback(step + 1, x_adv)
    return x_adv


def _pgd_linf_early_stop(model, x, y, x_adv, eps, alpha, steps, loss_fn, callback):
    active = torch.arange(x.shape[0], device=x.device)
    # the box [max(x - eps, 0), min(x + eps, 1)] once, so that each projection is one clamp_
    lo, hi = (x - eps).clamp_(min=0.0), (x + eps).clamp_(max=1.0)
    xa, ya = x_adv, y                   # the examples still standing
    for step in range(steps):
        if active.numel():
            grad, logits = input_grad(model, xa, ya, loss_fn)
            fooled = logits.argmax(1) != ya
            if bool(fooled.any()):      # a sync point, and the only one per step
                x_adv[active[fooled]] = xa[fooled]
                keep = ~fooled
                active, xa, ya, grad = active[keep], xa[keep], ya[keep], grad[keep]
                lo, hi = lo[keep], hi[keep]
            if active.numel():
                with torch.no_grad():
                    xa = xa.add_(grad.sign_(), alpha=alpha).clamp_(lo, hi)
        if callback is not None:
            if xa is not x_adv:         # until an example falls, xa *is* x_adv (updated in place)
                x_adv[active] = xa
            callback(step + 1, x_adv)
    if xa is not x_adv:
        x_adv[active] = xa
    return x_adv
