"""Every attack the paper uses (and AutoAttack) behind one interface, by name from a registry.

``ATTACKS`` maps a name to its class; every class is a frozen dataclass whose keyword-only fields
are its typed hyper-parameters (validated on construction, ``PPCoreError`` on a bad value).
Calling an attack, ``attack(model, x, y, report=None) -> AttackResult``, puts the model in eval
mode and restores it, clips to the budget and to [0, 1], and measures success and the l2 / l-inf
norms per example (see ``base.Attack``).

    >>> from ppcore.attacks import make_attack
    >>> pgd = make_attack("pgd", eps=0.3, alpha=0.01, steps=40)
    >>> result = pgd(model, images, labels, report=lambda step, x_adv: ...)
    >>> result.accuracy, result.success, result.l2, result.linf
"""

from __future__ import annotations

import dataclasses

from ..errors import PPCoreError
from .autoattack import AutoAttackLinf
from .base import Attack, AttackResult, Report, check_eps, check_steps
from .cw import CWL2, CWLinf
from .deepfool import DeepFool
from .fgsm import FGSM
from .ifgsm import IFGSM
from .pgd import PGD
from .spatial import SpatialGrid, SpatialRandom
from .transfer import Transfer

ATTACKS: dict[str, type[Attack]] = {cls.name: cls for cls in (
    FGSM, IFGSM, PGD, DeepFool, CWL2, CWLinf, SpatialGrid, SpatialRandom, Transfer,
    AutoAttackLinf)}


def make_attack(name: str, **params) -> Attack:
    """The attack ``name`` with hyper-parameters ``params`` (unset ones take their defaults)."""
    try:
        cls = ATTACKS[name]
    except KeyError:
        raise PPCoreError(f"unknown attack '{name}': choose one of {', '.join(ATTACKS)}") from None
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(params) - known)
    if unknown:
        raise PPCoreError(f"attack '{name}' takes no parameter(s) {', '.join(unknown)} "
                          f"(it takes {', '.join(sorted(known))})")
    try:
        return cls(**params)
    except TypeError as exc:  # e.g. the transfer attack without its source model
        raise PPCoreError(f"attack '{name}': {exc}") from None


def attack_fields(name: str) -> list[dataclasses.Field]:
    """The hyper-parameters of attack ``name`` (names, types, defaults), e.g. for a form."""
    return [f for f in dataclasses.fields(ATTACKS[name]) if f.name != "source"]


__all__ = ["ATTACKS", "Attack", "AttackResult", "Report", "make_attack", "attack_fields",
           "check_eps", "check_steps", "FGSM", "IFGSM", "PGD", "DeepFool", "CWL2", "CWLinf",
           "SpatialGrid", "SpatialRandom", "Transfer", "AutoAttackLinf"]
