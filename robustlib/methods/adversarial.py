"""Adversarial training with an input-space attack: PGD-AT (Madry et al., 2018) and the single-step family.

min_θ E[ max_{‖δ‖∞ ≤ ε} CE(f_θ(x + δ), y) ], the inner maximum approximated by an attack. Cost per sample
2N(t + 1) for t attack steps (t forward/backward pairs, then one for the update).

* :class:`PGDAT` — Madry: ``steps`` PGD steps of ``alpha`` from a uniform start (10 × 2/255 in NuAT's table; 7 in
  Madry's CIFAR model and Finlay & Oberman's baseline; t_max = 5 ⇒ 12N in the ABNN slides).
* :func:`fbf` — "Fast is better than free" (Wong et al., 2020): one step of 1.25ε from a uniform start (FGSM-RS).
* :func:`fgsm_at` — FGSM-AT (Goodfellow et al., 2015): one step of ε, no random start (catastrophic overfitting).
* :func:`rfgsm_at` — R-FGSM-AT (Tramèr et al., 2018): a random ±α·sign start, then one step of ε − α.

**BatchNorm during the training attack.** The code these recipes cite — Wong et al.'s ``train_fgsm.py`` (FBF; also
the recipe this project uses for FGSM-AT and RFGSM-AT) and Rice et al.'s ``train_cifar.py`` (PGD-AT) — calls
``model.train()`` once per epoch and crafts the adversary with that model, so every attack forward uses BN *batch*
statistics and, being an ordinary train-mode forward in PyTorch, also updates the BN running statistics (t updates
per minibatch from the attack's iterates, then one from the training forward). The defaults follow that code:
``bn_mode="train"`` and ``bn_stats="update"``. ``bn_stats="restore"`` keeps batch statistics but puts the running
statistics back after the attack (:func:`robustlib.attacks.core.attack_mode`), so that only the training forward
moves them; ``bn_mode="eval"`` attacks with the running statistics (what TRADES, AWP, NuAT and GAT do in their own
scripts, and what this class did before). Parameters are frozen during the attack in every mode, and the model's
train/eval flags are restored afterwards. The chapters that build PGD-AT from this class (NuAT's tables, ABNN's and
AdvProp's PGD-AT baselines, the comparison chapter, Finlay & Oberman's 7-step AT) all cite Madry/Rice-style code.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..attacks import PGD
from ..attacks.core import attack_mode, project
from ..errors import ConfigError
from .base import Method, accuracy_log, register_method

BN_STATS = ("update", "restore")


class TrainingPGD(PGD):
    """PGD as a training method's inner maximisation. With ``bn_mode="train"`` and ``bn_stats="update"`` the attack's
    forwards are plain train-mode forwards (they update the BN running statistics, like the reference code); any
    other combination runs through :func:`~robustlib.attacks.core.attack_mode` (``"train"`` there restores the
    running statistics afterwards)."""

    def __init__(self, *args, bn_stats: str = "update", **kw):
        super().__init__(*args, **kw)
        if bn_stats not in BN_STATS:
            raise ConfigError(f"unknown bn_stats {bn_stats!r}; valid: {', '.join(BN_STATS)} (what the training "
                              "attack does to BatchNorm running statistics in train mode)")
        self.bn_stats = bn_stats

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.bn_mode == "eval" or self.bn_stats == "restore":
            return super().perturb(model, x, y)
        with attack_mode(model, "train", keep_stats=True), torch.enable_grad():
            x_adv = self._perturb(model, x.detach(), y)
        return project(x_adv.detach(), x, self.eps, self.norm)


@register_method("pgd_at")
class PGDAT(Method):
    """Train on the adversary of ``steps`` signed steps of ``alpha``; BatchNorm during the attack per ``bn_mode``
    (``"train"``: batch statistics, the cited scripts' behaviour; ``"eval"``: running statistics) and, in train mode,
    ``bn_stats`` (``"update"``: the attack's forwards update the running statistics as in the scripts;
    ``"restore"``: they are put back after the attack). See the module docstring."""

    name = "PGD-AT"

    def __init__(self, eps: float = 8 / 255, alpha: float = 2 / 255, steps: int = 10, start: str | None = "uniform",
                 start_scale: float | None = None, bn_mode: str = "train", bn_stats: str = "update",
                 clean_weight: float = 0.0, name: str | None = None):
        self.eps, self.alpha, self.steps, self.start, self.bn_mode = eps, alpha, steps, start, bn_mode
        self.bn_stats = bn_stats
        self.start_scale = start_scale
        self.clean_weight = clean_weight
        self.attack_steps = steps
        if name:
            self.name = name
        self._attack = TrainingPGD(eps, alpha, steps, start=start, start_scale=start_scale, bn_mode=bn_mode,
                                   bn_stats=bn_stats)

    def derived_passes(self) -> float:
        """t attack steps × (forward + input backward) 2t + the training forward/backward 2 = 2(t + 1) N (22 at
        t = 10, 4 for the single-step family); a clean term (``clean_weight``) adds its forward/backward, 2N."""
        return 2.0 * (self.steps + 1) + (2.0 if self.clean_weight else 0.0)

    def loss(self, model, x, y, step):
        x_adv = self._attack.perturb(model, x, y)
        logits = model(x_adv)
        loss = F.cross_entropy(logits, y)
        if self.clean_weight:
            loss = (1 - self.clean_weight) * loss + self.clean_weight * F.cross_entropy(model(x), y)
        return loss, {"adv_acc": accuracy_log(logits, y)}


@register_method("fbf")
def fbf(eps: float = 8 / 255, alpha: float | None = None, **kw) -> PGDAT:
    """FGSM with a uniform random start and step 1.25ε (Wong et al., ICLR 2020); train-mode BN in the attack, as in
    ``train_fgsm.py``."""
    return PGDAT(eps, 1.25 * eps if alpha is None else alpha, 1, start="uniform", name=kw.pop("name", "FBF"), **kw)


@register_method("fgsm_at")
def fgsm_at(eps: float = 8 / 255, **kw) -> PGDAT:
    """FGSM-AT: x + ε·sign(∇CE), no random start (Goodfellow et al., ICLR 2015); attack BN as in FBF's script."""
    return PGDAT(eps, eps, 1, start=None, name=kw.pop("name", "FGSM-AT"), **kw)


@register_method("rfgsm_at")
def rfgsm_at(eps: float = 8 / 255, alpha: float | None = None, **kw) -> PGDAT:
    """R-FGSM-AT (Tramèr et al., ICLR 2018): x' = x + α·sign(N(0, I)), then a step of ε − α (α = ε/2); attack BN as
    in FBF's script."""
    a = eps / 2 if alpha is None else alpha
    return PGDAT(eps, eps - a, 1, start="bernoulli", start_scale=a, name=kw.pop("name", "RFGSM-AT"), **kw)
