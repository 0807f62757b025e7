"""AutoAttack (Croce & Hein 2020, "Reliable evaluation of adversarial robustness with an ensemble
of diverse parameter-free attacks"), standard version: APGD-CE, APGD-T, FAB-T and Square, each
run only on the examples still robust, l-inf. Beyond the paper (it predates AutoAttack); the
check reviewers of robustness claims now expect.

Through ``torchattacks.AutoAttack`` (version 3.3.0, an optional dependency imported only here):
``AutoAttack(model, norm='Linf', eps=eps, version='standard', n_classes=K, seed=seed)``.

    >>> result = AutoAttackLinf(eps=0.3)(model, images, labels)
"""

from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import dataclass
from typing import ClassVar

import torch

from ..errors import PPCoreError
from .base import Attack, Report, check_eps

log = logging.getLogger(__name__)

INSTALL_HINT = "AutoAttack needs torchattacks==3.3.0 (and scipy): pip install -r requirements-dev.txt"
VERSIONS = ("standard", "plus", "rand")


def _torchattacks():
    try:
        import torchattacks
    except ImportError as exc:  # torchattacks itself, or scipy which it imports
        raise PPCoreError(f"{INSTALL_HINT} ({exc})") from None
    return torchattacks


@dataclass(frozen=True, kw_only=True)
class AutoAttackLinf(Attack):
    name: ClassVar[str] = "autoattack"
    title: ClassVar[str] = "AutoAttack"
    norm: ClassVar[str] = "linf"
    linf_bounded: ClassVar[bool] = True

    eps: float = 0.3
    #: torchattacks' versions: standard (APGD-CE, APGD-T, FAB-T, Square), plus, rand
    version: str = "standard"
    seed: int = 0

    def __post_init__(self) -> None:
        check_eps(self.eps)
        if self.version not in VERSIONS:
            raise PPCoreError(f"unknown AutoAttack version '{self.version}': choose one of "
                              f"{', '.join(VERSIONS)}")

    def run(self, model, x: torch.Tensor, y: torch.Tensor,
            report: Report | None = None) -> torch.Tensor:
        ta = _torchattacks()
        with torch.no_grad():
            n_classes = int(model(x[:1]).shape[1])
        attack = ta.AutoAttack(model, norm="Linf", eps=self.eps, version=self.version,
                               n_classes=n_classes, seed=self.seed)
        # torchattacks prints from library code; keep our stdout clean (the CLI's report)
        out = io.StringIO()
        # torchattacks seeds torch's global generator: keep the caller's random state as it was
        devices = [x.device] if x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), contextlib.redirect_stdout(out):
            x_adv = attack(x, y)
        if out.getvalue().strip():
            log.debug("torchattacks: %s", out.getvalue().strip())
        if report is not None:
            report(1, x_adv)
        return x_adv
