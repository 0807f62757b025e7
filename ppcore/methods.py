"""Training methods: the paper's perceptual-prior regulariser, its ablations and the baselines.

Each method is a loss over one mini-batch, registered by name with the hyper-parameters it reads
and the paper's settings per data set. The training loop knows nothing of any one method.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .attacks.functional import fgsm, pgd_linf
from .attacks.graphs import KLToTarget
from .modes import eval_mode
from .paper import attack_settings
from .perturb import l2_noise, linf_sign_noise, random_spatial


@dataclass
class StepOutput:
    loss: torch.Tensor
    #: every term of the loss, as floats-to-be (detached tensors)
    terms: dict[str, torch.Tensor]
    #: logits on which training accuracy is reported (clean where the method has them)
    logits: torch.Tensor


@dataclass(frozen=True)
class Method:
    name: str
    title: str
    description: str
    loss: Callable[..., StepOutput]
    #: hyper-parameters this method reads from the config
    params: tuple[str, ...]
    #: the paper's (or the method's own paper's) settings, per data set
    presets: dict[str, dict] = field(default_factory=dict)
    #: the kind of "perceptually similar" pair, for the perceptual methods
    pair: str | None = None
    #: True where each step runs an iterative attack (expensive on a CPU)
    adversarial: bool = False


def _with_eval(model: nn.Module, fn):
    """Craft training-time attacks in eval mode (dropout off, BN statistics frozen)."""
    with eval_mode(model):
        return fn()


def make_pair(x: torch.Tensor, pair: str, cfg, gen: torch.Generator | None) -> torch.Tensor:
    """The perceptually similar copy of a batch: 'linf', 'l2', 'spatial' or 'linf+spatial'
    (half the batch noise, half spatial). Kinds joined by EACH are split by the loss."""
    if pair == "linf":
        return linf_sign_noise(x, cfg.xi, gen)
    if pair == "l2":
        return l2_noise(x, cfg.xi, gen)
    if pair == "spatial":
        return random_spatial(x, cfg.max_rot, cfg.max_trans, gen)[0]
    if pair == "linf+spatial":
        # half the batch gets noise, the other half a rotation/translation
        half = x.shape[0] // 2
        return torch.cat([linf_sign_noise(x[:half], cfg.xi, gen),
                          random_spatial(x[half:], cfg.max_rot, cfg.max_trans, gen)[0]])
    raise ValueError(f"unknown pair kind {pair!r}")


def pair_distance(a: torch.Tensor, b: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """sum_j ||a_j - b_j||^2 over the batch ("sum") or its batch mean ("mean"), in fp32 even
    under bf16 autocast (the logits' difference is small and bf16 keeps 8 bits of it)."""
    sq = (a.float() - b.float()).pow(2).sum(dim=1)
    return sq.sum() if reduction == "sum" else sq.mean()


#: joins pair kinds of which every clean image gets one copy each ('linf&spatial')
EACH = "&"


def _perceptual(pair: str):
    kinds = pair.split(EACH)

    def loss(model, x, y, cfg, gen) -> StepOutput:
        # Eq. (1): cross-entropy averaged over the clean and the noisy halves of the batch, plus
        # lambda times the squared l2 distance between their logits, summed over the batch or
        # its mean (cfg.reduction: the equation's two readings). With k pair kinds joined by
        # EACH, every clean image has k copies: the cross-entropy runs over all (k+1)m images
        # and the pairing term is the sum of the k terms, each as in Eq. (1).
        copies = [make_pair(x, kind, cfg, gen) for kind in kinds]
        logits = model(torch.cat([x, *copies])).float()
        clean, *noisy = logits.chunk(1 + len(copies))
        ce = F.cross_entropy(logits, y.repeat(1 + len(copies)))
        reg = sum(pair_distance(clean, other, cfg.reduction) for other in noisy)
        return StepOutput(ce + cfg.lam * reg, {"ce": ce.detach(), "reg": reg.detach()},
                          clean.detach())
    return loss


def _normal(model, x, y, cfg, gen) -> StepOutput:
    logits = model(x).float()
    ce = F.cross_entropy(logits, y)
    return StepOutput(ce, {"ce": ce.detach()}, logits.detach())


def _fgsm_at(model, x, y, cfg, gen) -> StepOutput:
    # Goodfellow et al. 2015: alpha = 0.5 between clean and FGSM cross-entropy.
    x_adv = _with_eval(model, lambda: fgsm(model, x, y, cfg.eps))
    logits = model(torch.cat([x, x_adv])).float()
    clean, adv = logits.chunk(2)
    ce_clean, ce_adv = F.cross_entropy(clean, y), F.cross_entropy(adv, y)
    return StepOutput(0.5 * ce_clean + 0.5 * ce_adv,
                      {"ce_clean": ce_clean.detach(), "ce_adv": ce_adv.detach()}, clean.detach())


def _pgd(model, x, y, cfg, gen):
    return _with_eval(model, lambda: pgd_linf(model, x, y, cfg.eps, cfg.alpha, cfg.steps,
                                              random_start=True, generator=gen))


def _pgd_at(model, x, y, cfg, gen) -> StepOutput:
    # Madry et al. 2018: train on the PGD examples alone.
    logits = model(_pgd(model, x, y, cfg, gen)).float()
    ce = F.cross_entropy(logits, y)
    return StepOutput(ce, {"ce_adv": ce.detach()}, logits.detach())


def _alp(model, x, y, cfg, gen) -> StepOutput:
    # Kannan et al. 2018: mixed clean/PGD cross-entropy plus lambda * ||f(x) - f(x_adv)||^2.
    x_adv = _pgd(model, x, y, cfg, gen)
    logits = model(torch.cat([x, x_adv])).float()
    clean, adv = logits.chunk(2)
    ce = F.cross_entropy(logits, torch.cat([y, y]))
    pair = pair_distance(clean, adv)
    return StepOutput(ce + cfg.lam * pair, {"ce": ce.detach(), "pair": pair.detach()},
                      clean.detach())


def _trades(model, x, y, cfg, gen) -> StepOutput:
    # Zhang et al. 2019: CE(f(x), y) + beta * KL(f(x) || f(x_adv)), x_adv maximising the KL.
    def craft():
        with torch.no_grad():
            p_clean = F.softmax(model(x), dim=1)
        start = (x + 0.001 * torch.randn(x.shape, generator=gen, device=x.device)).clamp(0, 1)
        return pgd_linf(model, start, y, cfg.eps, cfg.alpha, cfg.steps, random_start=False,
                        loss_fn=KLToTarget(p_clean)) if cfg.steps else start
    x_adv = _with_eval(model, craft)
    x_adv = torch.min(torch.max(x_adv, x - cfg.eps), x + cfg.eps)
    logits = model(torch.cat([x, x_adv])).float()
    clean, adv = logits.chunk(2)
    ce = F.cross_entropy(clean, y)
    kl = F.kl_div(F.log_softmax(adv, dim=1), F.softmax(clean, dim=1), reduction="batchmean")
    return StepOutput(ce + cfg.lam * kl, {"ce": ce.detach(), "kl": kl.detach()}, clean.detach())


def _fgsm_rs(model, x, y, cfg, gen) -> StepOutput:
    # Wong et al. 2020 ("fast is better than free"): FGSM from a uniform random start, step
    # alpha = 1.25 eps, projected back to the eps-ball.
    def craft():
        u = torch.rand(x.shape, generator=gen, device=x.device, dtype=x.dtype)
        start = (x + (2 * u - 1) * cfg.eps).clamp(0, 1)
        return pgd_linf(model, start, y, cfg.eps, cfg.alpha, 1, random_start=False)
    logits = model(_with_eval(model, craft)).float()
    ce = F.cross_entropy(logits, y)
    return StepOutput(ce, {"ce_adv": ce.detach()}, logits.detach())


_XI = {"mnist": 0.3, "fashion-mnist": 0.1, "cifar10": 8 / 255}
_LAM = {"mnist": 10.0, "fashion-mnist": 10.0, "cifar10": 50.0}
# l2 noise of the ablations: 4 on MNIST and 0.2 on CIFAR-10 (the paper); Fashion-MNIST is not in
# the paper's ablations, so its l2 size keeps MNIST's ratio to the l-inf size: 4 * 0.1 / 0.3.
_XI_L2 = {"mnist": 4.0, "fashion-mnist": 4.0 / 3.0, "cifar10": 0.2}
_DATASETS = tuple(_XI)
# eps, step and steps of the paper's (Madry et al.'s) PGD per data set, from the one place the
# paper's attack settings are kept; training uses the first (smallest) step count: 40 on MNIST
# and Fashion-MNIST, 7 on CIFAR-10
_ADV = {d: (lambda s: dict(eps=s["eps"], alpha=s["pgd_step"], steps=s["steps"][0]))(
    attack_settings(d)) for d in _DATASETS}


# The adversarial baselines train with their own papers' recipes.
# Madry et al. 2018 (MNIST, and so Fashion-MNIST here): Adam, lr 1e-4, batch 50, 100 000
# iterations (84 epochs of 60 000 images), no schedule. On CIFAR-10: SGD 0.1, momentum 0.9,
# weight decay 2e-4, x0.1 at 40k and 60k of 80k iterations (batch 128: 205 epochs).
_MADRY = {
    "mnist": dict(optimizer="adam", lr=1e-4, batch_size=50, epochs=84, lr_milestones=()),
    "fashion-mnist": dict(optimizer="adam", lr=1e-4, batch_size=50, epochs=84,
                          lr_milestones=()),
    "cifar10": dict(optimizer="sgd", lr=0.1, weight_decay=2e-4, batch_size=128, epochs=205,
                    lr_milestones=(0.5, 0.75)),
}
# Zhang et al. 2019 (TRADES, train_trades_mnist.py): SGD lr 0.01, momentum 0.9, batch 128,
# 100 epochs, x0.1 at epochs 55, 75 and 90; CIFAR-10: lr 0.1, weight decay 2e-4, 76 epochs,
# x0.1 at 75 and 90 of 100 in their code's schedule, here at the same fractions of 76.
_TRADES = {
    "mnist": dict(optimizer="sgd", lr=0.01, batch_size=128, epochs=100,
                  lr_milestones=(0.55, 0.75, 0.9)),
    "fashion-mnist": dict(optimizer="sgd", lr=0.01, batch_size=128, epochs=100,
                          lr_milestones=(0.55, 0.75, 0.9)),
    "cifar10": dict(optimizer="sgd", lr=0.1, weight_decay=2e-4, batch_size=128, epochs=76,
                    lr_milestones=(0.75 * 75 / 76, 0.9 * 75 / 76)),
}


def _perceptual_presets(lam: dict | float, xi: dict) -> dict[str, dict]:
    return {d: dict(lam=lam[d] if isinstance(lam, dict) else lam, xi=xi[d])
            for d in _DATASETS}


_SPATIAL = dict(max_rot=30.0, max_trans=3.0)

METHODS: dict[str, Method] = {m.name: m for m in [
    Method("normal", "Normal training", "cross-entropy on clean images", _normal, ()),
    Method("proposed", "Proposed (perceptual prior)",
           "Eq. (1): CE on clean + l-inf noisy copies, plus lambda * ||f(x) - f(x_noisy)||^2",
           _perceptual("linf"), ("lam", "xi"), _perceptual_presets(_LAM, _XI), pair="linf"),
    Method("ablation1", "Ablation 1 (l-inf noise, lambda = 0)",
           "clean + l-inf noisy copies, no regulariser", _perceptual("linf"), ("lam", "xi"),
           _perceptual_presets(0.0, _XI), pair="linf"),
    Method("ablation2", "Ablation 2 (l2 noise)",
           "the proposed loss with l2 noise of norm xi", _perceptual("l2"), ("lam", "xi"),
           _perceptual_presets(_LAM, _XI_L2), pair="l2"),
    Method("ablation3", "Ablation 3 (l2 noise, lambda = 0)",
           "clean + l2 noisy copies, no regulariser", _perceptual("l2"), ("lam", "xi"),
           _perceptual_presets(0.0, _XI_L2), pair="l2"),
    Method("proposed_spatial", "Proposed, spatial pairs (Table 5)",
           "the proposed loss with a random rotation (+-30 deg) / translation (+-3 px) as pair",
           _perceptual("spatial"), ("lam", "max_rot", "max_trans"),
           {d: dict(lam=_LAM[d], **_SPATIAL) for d in _DATASETS}, pair="spatial"),
    Method("proposed_noise_spatial", "Proposed, noise and spatial pairs (Table 5)",
           "the proposed loss; half the pairs l-inf noise, half rotation/translation",
           _perceptual("linf+spatial"), ("lam", "xi", "max_rot", "max_trans"),
           {d: dict(lam=_LAM[d], xi=_XI[d], **_SPATIAL) for d in _DATASETS},
           pair="linf+spatial"),
    Method("proposed_noise_and_spatial",
           "Proposed, a noise and a spatial copy of every image (Table 5, second reading)",
           "the proposed loss with two pairs per image, l-inf noise and rotation/translation; "
           "the two pairing terms add (one forward pass more than the proposed method)",
           _perceptual("linf" + EACH + "spatial"), ("lam", "xi", "max_rot", "max_trans"),
           {d: dict(lam=_LAM[d], xi=_XI[d], **_SPATIAL) for d in _DATASETS},
           pair="linf" + EACH + "spatial"),
    Method("fgsm_at", "FGSM adversarial training (Goodfellow et al. 2015)",
           "0.5 CE(clean) + 0.5 CE(FGSM)", _fgsm_at, ("eps",),
           {d: dict(eps=_ADV[d]["eps"]) for d in _DATASETS}),
    Method("pgd_at", "PGD adversarial training (Madry et al. 2018)",
           "CE on PGD examples with random start", _pgd_at, ("eps", "alpha", "steps"),
           {d: dict(_ADV[d], **_MADRY[d]) for d in _DATASETS}, adversarial=True),
    Method("alp", "Adversarial logit pairing (Kannan et al. 2018)",
           "mixed clean/PGD CE + lambda * ||f(x) - f(x_adv)||^2", _alp,
           ("lam", "eps", "alpha", "steps"),
           {d: dict(lam=0.5, **_ADV[d], **_MADRY[d]) for d in _DATASETS}, adversarial=True),
    Method("trades", "TRADES (Zhang et al. 2019)",
           "CE(clean) + lambda (beta) * KL(f(x) || f(x_adv)), x_adv from PGD on the KL", _trades,
           ("lam", "eps", "alpha", "steps"),
           {"mnist": dict(lam=1.0, **_ADV["mnist"], **_TRADES["mnist"]),
            "fashion-mnist": dict(lam=1.0, **_ADV["fashion-mnist"], **_TRADES["fashion-mnist"]),
            "cifar10": dict(lam=6.0, eps=8 / 255, alpha=2 / 255, steps=10,
                            **_TRADES["cifar10"])}, adversarial=True),
    Method("fgsm_rs", "Fast FGSM with random start (Wong et al. 2020)",
           "CE on FGSM examples from a uniform random start, step 1.25 eps", _fgsm_rs,
           ("eps", "alpha"),
           {d: dict(eps=_ADV[d]["eps"], alpha=1.25 * _ADV[d]["eps"]) for d in _DATASETS}),
]}


def preset(method: str, dataset: str) -> dict:
    """The paper's hyper-parameters of ``method`` on ``dataset`` (empty for ``normal``), with
    the optimiser and schedule of the method's own paper where it has one (PGD-AT, ALP,
    TRADES)."""
    return dict(METHODS[method].presets.get(dataset, {}))


#: the l-inf noise size with which d_per is measured during any training (the proposed preset)
METRIC_XI = _XI

#: every hyper-parameter name a method may read
METHOD_PARAMS = ("lam", "xi", "eps", "alpha", "steps", "max_rot", "max_trans")
