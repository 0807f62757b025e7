"""DeepFool (Moosavi-Dezfooli et al. 2016, "DeepFool: a simple and accurate method to fool deep
neural networks"): the minimal l2 perturbation by repeated linearisation of the classifier.

As the authors' reference code: at each step the closest linearised decision boundary
``argmin_k |f_k - f_y| / ||w_k - w_y||`` is crossed with the step ``(pert + 1e-4) w / ||w||``,
steps accumulate in ``r_tot`` and the candidate is ``x + (1 + overshoot) r_tot``, clipped to
[0, 1] at every step (as Foolbox does; the reference code does not clip). Defaults: 100 steps,
overshoot 0.02 (the paper's Table 7 / 8 use steps = 100).

The reference class is the true label ``y``: an example stops as soon as the model no longer
predicts ``y`` (an example misclassified from the start keeps a zero perturbation).

Batched over examples: every step is one forward pass and one backward pass per class on the
examples still correctly classified (all classes at once through ``is_grads_batched`` where the
model allows it).

    >>> result = DeepFool(steps=100, overshoot=0.02)(model, images, labels)
    >>> result.l2[result.success].mean()
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import ClassVar

import torch

from .base import Attack, Report, check_positive, check_steps

log = logging.getLogger(__name__)


def class_jacobian(model, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits [N, K], d logits / d x [K, N, ...])``: one backward per class, batched."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(x)
        k = logits.shape[1]
        eye = torch.eye(k, device=x.device, dtype=logits.dtype)
        seeds = eye[:, None, :].expand(k, *logits.shape)
        try:
            (jac,) = torch.autograd.grad(logits, x, seeds, is_grads_batched=True)
        except RuntimeError as exc:  # an op without a batching rule: one backward per class
            log.debug("batched jacobian unavailable (%s); looping over classes", exc)
            jac = torch.stack([torch.autograd.grad(logits, x, seeds[i], retain_graph=i < k - 1)[0]
                               for i in range(k)])
    return logits.detach(), jac


@dataclass(frozen=True, kw_only=True)
class DeepFool(Attack):
    name: ClassVar[str] = "deepfool"
    title: ClassVar[str] = "DeepFool"
    norm: ClassVar[str] = "l2"

    steps: int = 100
    #: the final perturbation is (1 + overshoot) times the accumulated one
    overshoot: float = 0.02

    def __post_init__(self) -> None:
        check_steps(self.steps)
        check_positive(self.overshoot, "overshoot", allow_zero=True)

    def run(self, model, x: torch.Tensor, y: torch.Tensor,
            report: Report | None = None) -> torch.Tensor:
        x_adv = x.clone()
        r_tot = torch.zeros_like(x)
        active = torch.arange(x.shape[0], device=x.device)
        for step in range(self.steps):
            logits, jac = class_jacobian(model, x_adv[active])
            ya = y[active]
            still = logits.argmax(1) == ya
            active, logits, jac, ya = active[still], logits[still], jac[:, still], ya[still]
            if active.numel() == 0:
                break
            n = active.numel()
            rows = torch.arange(n, device=x.device)
            with torch.no_grad():
                f = logits - logits[rows, ya][:, None]                        # [n, K]
                w = (jac - jac[ya, rows][None]).transpose(0, 1).flatten(2)    # [n, K, D]
                wnorm = w.norm(dim=2)                                         # [n, K]
                pert = f.abs() / wnorm.clamp_min(1e-12)
                pert[rows, ya] = float("inf")
                best = pert.argmin(1)
                w_best = w[rows, best]                                        # [n, D]
                p_best = pert[rows, best]
                r_i = (p_best + 1e-4)[:, None] * w_best / wnorm[rows, best].clamp_min(1e-12)[:, None]
                r_tot[active] += r_i.view_as(x_adv[active])
                x_adv[active] = (x[active] + (1 + self.overshoot) * r_tot[active]).clamp_(0, 1)
            if report is not None:
                report(step + 1, x_adv)
        return x_adv
