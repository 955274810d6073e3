"""Attacks. Each keeps its output inside its threat model and [0, 1], runs the model in an explicitly chosen BN mode,
restores the model's train/eval state and leaves no gradients on parameters (see :func:`attack_mode`)."""
from __future__ import annotations

from .autoattack import AutoAttack
from .core import (ATTACKS, Attack, attack_mode, margin_loss, predict, project, random_start, register_attack,
                   signed_step)
from .gama import GAMAPGD
from .pgd import FGSM, PGD, ifgsm
from . import nuclear, roa  # noqa: E402,F401  (register their attacks)

ATTACKS.register("fgsm", FGSM)
ATTACKS.register("pgd", PGD)
ATTACKS.register("ifgsm", ifgsm)
ATTACKS.register("gama_pgd", GAMAPGD)
ATTACKS.register("autoattack", AutoAttack)


def build_attack(name: str, **kwargs) -> Attack:
    """Build a registered attack by name (``ATTACKS.names()``); keyword arguments go to its constructor."""
    return ATTACKS.build(name, **kwargs)


__all__ = ["ATTACKS", "build_attack", "register_attack", "Attack", "attack_mode", "predict", "project",
           "random_start", "signed_step", "margin_loss", "PGD", "FGSM", "ifgsm", "GAMAPGD", "AutoAttack"]
