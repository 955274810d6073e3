"""Adversarial training with an input-space attack: PGD-AT (Madry et al., 2018) and the single-step family.

min_θ E[ max_{‖δ‖∞ ≤ ε} CE(f_θ(x + δ), y) ], the inner maximum approximated by an attack. Cost per sample
2N(t + 1) for t attack steps (t forward/backward pairs, then one for the update).

* :class:`PGDAT` — Madry: ``steps`` PGD steps of ``alpha`` from a uniform start (10 × 2/255 in NuAT's table; 7 in
  Madry's CIFAR model and Finlay & Oberman's baseline; t_max = 5 ⇒ 12N in the ABNN slides).
* :func:`fbf` — "Fast is better than free" (Wong et al., 2020): one step of 1.25ε from a uniform start (FGSM-RS).
* :func:`fgsm_at` — FGSM-AT (Goodfellow et al., 2015): one step of ε, no random start (catastrophic overfitting).
* :func:`rfgsm_at` — R-FGSM-AT (Tramèr et al., 2018): a random ±α·sign start, then one step of ε − α.
"""
from __future__ import annotations

import torch.nn.functional as F

from ..attacks import PGD
from .base import Method, accuracy_log, register_method


@register_method("pgd_at")
class PGDAT(Method):
    name = "PGD-AT"

    def __init__(self, eps: float = 8 / 255, alpha: float = 2 / 255, steps: int = 10, start: str | None = "uniform",
                 start_scale: float | None = None, bn_mode: str = "eval", clean_weight: float = 0.0,
                 name: str | None = None):
        self.eps, self.alpha, self.steps, self.start, self.bn_mode = eps, alpha, steps, start, bn_mode
        self.start_scale = start_scale
        self.clean_weight = clean_weight
        self.attack_steps = steps
        if name:
            self.name = name
        self._attack = PGD(eps, alpha, steps, start=start, start_scale=start_scale, bn_mode=bn_mode)

    def loss(self, model, x, y, step):
        x_adv = self._attack.perturb(model, x, y)
        logits = model(x_adv)
        loss = F.cross_entropy(logits, y)
        if self.clean_weight:
            loss = (1 - self.clean_weight) * loss + self.clean_weight * F.cross_entropy(model(x), y)
        return loss, {"adv_acc": accuracy_log(logits, y)}


@register_method("fbf")
def fbf(eps: float = 8 / 255, alpha: float | None = None, **kw) -> PGDAT:
    """FGSM with a uniform random start and step 1.25ε (Wong et al., ICLR 2020)."""
    return PGDAT(eps, 1.25 * eps if alpha is None else alpha, 1, start="uniform", name=kw.pop("name", "FBF"), **kw)


@register_method("fgsm_at")
def fgsm_at(eps: float = 8 / 255, **kw) -> PGDAT:
    """FGSM-AT: x + ε·sign(∇CE), no random start (Goodfellow et al., ICLR 2015)."""
    return PGDAT(eps, eps, 1, start=None, name=kw.pop("name", "FGSM-AT"), **kw)


@register_method("rfgsm_at")
def rfgsm_at(eps: float = 8 / 255, alpha: float | None = None, **kw) -> PGDAT:
    """R-FGSM-AT (Tramèr et al., ICLR 2018): x' = x + α·sign(N(0, I)), then a step of ε − α (α = ε/2)."""
    a = eps / 2 if alpha is None else alpha
    return PGDAT(eps, eps - a, 1, start="bernoulli", start_scale=a, name=kw.pop("name", "RFGSM-AT"), **kw)
