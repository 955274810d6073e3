"""Attacks. Each keeps its output inside the ε-ball and [0, 1], runs the model in an explicitly chosen BN mode,
restores the model's train/eval state and leaves no gradients on parameters (see :func:`attack_mode`)."""
from __future__ import annotations

from typing import Callable

from ..registry import Registry
from .autoattack import AutoAttack
from .core import Attack, attack_mode, margin_loss, predict, project, random_start, signed_step
from .gama import GAMAPGD
from .pgd import FGSM, PGD, ifgsm

ATTACKS: Registry[Callable[..., Attack]] = Registry("attack")
ATTACKS.register("fgsm", FGSM)
ATTACKS.register("pgd", PGD)
ATTACKS.register("ifgsm", ifgsm)
ATTACKS.register("gama_pgd", GAMAPGD)
ATTACKS.register("autoattack", AutoAttack)


def build_attack(name: str, **kwargs) -> Attack:
    """Build a registered attack by name (``ATTACKS.names()``); keyword arguments go to its constructor."""
    return ATTACKS.build(name, **kwargs)


__all__ = ["ATTACKS", "build_attack", "Attack", "attack_mode", "predict", "project", "random_start",
           "signed_step", "margin_loss", "PGD", "FGSM", "ifgsm", "GAMAPGD", "AutoAttack"]
