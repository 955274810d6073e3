"""The threat models of the book, one constant each: every chapter, attack suite and recipe reads ε from here.

A threat model is the set of allowed perturbations of an image x ∈ [0, 1]^d: {x' : ‖x' − x‖ ≤ ε} ∩ [0, 1]^d, with
the PGD step size the papers use with it.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ThreatModel:
    norm: str            # "linf" | "l2"
    eps: float           # budget in pixel units ([0, 1] images)
    pgd_step: float      # the papers' PGD step size for evaluation
    label: str

    def __str__(self) -> str:
        return self.label


CIFAR10 = ThreatModel("linf", 8 / 255, 2 / 255, "ℓ∞, ε = 8/255 (CIFAR-10)")
MNIST = ThreatModel("linf", 0.3, 0.01, "ℓ∞, ε = 0.3 (MNIST)")
