"""AdvProp: adversarial examples as extra training data, through auxiliary BatchNorms (Xie et al., CVPR 2020).

Objective (equal weights; ``reduction="mean"`` halves it, which only rescales the learning rate)::

    min_θ  E_(x,y) [ L(θ_main, x, y) + max_{‖δ‖∞ ≤ ε} L(θ_aux, x + δ, y) ]

θ_main and θ_aux share every convolution and fully connected weight; they differ only in their BatchNorms. Every
BN becomes a :class:`DualBatchNorm2d` with a *main* BN (clean images; the only one used at test time) and an
*auxiliary* BN (adversarial images), each with its own running statistics and its own affine γ, β
("Disentangled learning via an auxiliary BN", the paper's §4.2, as described by timm's ``SplitBatchNorm2d`` and the
Fast AdvProp paper).

One training step (Algorithm 1 as restated by Fast AdvProp [paper] and the authors-guided PyTorch port
[third-party]):

1. a clean batch x (size B);
2. x_adv = targeted PGD towards a random wrong label, uniform random start in the ε-ball, **through the auxiliary
   BNs with their running statistics** (eval mode: "AdvProp also uses the running statistics during the generation
   of the adversarial images", Fast AdvProp §3.2.2);
3. one forward pass of the batch [x; x_adv] (2B images) in train mode, the first B images through the main BNs and
   the last B through the auxiliary BNs (each BN set normalises with its own half's batch statistics and updates its
   own running statistics), loss (L_clean + L_adv)/2;
4. one SGD step on the shared and both BN sets' parameters.

Attacker [paper rule, recollection; advprop.md §3]: ε ∈ {1, 2, 3, 4}/255 growing with model size, n = ε·255 + 1
PGD iterations (n = 1 at ε = 1/255), step α = 1/255 (the port forces α ≥ ε/n). :func:`attacker` implements the rule.

Cost per training sample in passes N (one forward or one backward of one sample = 1 N): the attack's t steps cost
t forward and t (input-only) backward passes = 2t N; the training forward of 2B images for B samples is 2 N, its
backward another 2 N. Total **(2t + 4) N** — 6 N at t = 1 (3× vanilla's 2 N), 14 N at t = 5, which is Fast
AdvProp's "(K + 2) forward–backward pairs = 7× vanilla" in these units.

Baseline :class:`MixedAT` is the same step *without* the auxiliary BNs: the same adversarial examples (through the
one BN, eval mode), then [x; x_adv] through one shared BN whose batch statistics mix both distributions — the
"vanilla adversarial training" that the paper reports to *lower* clean accuracy. Same cost (2t + 4) N.
"""
from __future__ import annotations

import contextlib
import copy
from typing import Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..attacks import PGD
from ..errors import ConfigError
from ..models.norm import replace_batchnorm
from .base import Method, accuracy_log, register_method

ROUTES = ("main", "aux", "split")


class DualBatchNorm2d(nn.Module):
    """A main and an auxiliary ``BatchNorm2d`` of the same size; :attr:`route` picks which one runs.

    * ``"main"`` — every image through the main BN (clean images; test time);
    * ``"aux"`` — every image through the auxiliary BN (adversarial images, and the attack that makes them);
    * ``"split"`` — the first :attr:`n_main` images of the batch through the main BN, the rest through the auxiliary
      BN (the [clean; adversarial] batch of one AdvProp step: one forward pass, two sets of batch statistics).

    Each BN has its own running mean/variance and its own γ, β. Switch routes for a whole model with
    :func:`bn_route`.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                 track_running_stats: bool = True):
        super().__init__()
        self.main = nn.BatchNorm2d(num_features, eps, momentum, affine, track_running_stats)
        self.aux = nn.BatchNorm2d(num_features, eps, momentum, affine, track_running_stats)
        self.route = "main"
        self.n_main: int | None = None

    @classmethod
    def from_batchnorm(cls, bn: nn.BatchNorm2d) -> "DualBatchNorm2d":
        """Both BNs start as copies of ``bn`` (its size, flags, affine weights and running statistics)."""
        dual = cls(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
        dual.main = copy.deepcopy(bn)
        dual.aux = copy.deepcopy(bn)
        return dual

    @property
    def num_features(self) -> int:
        return self.main.num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.route == "main":
            return self.main(x)
        if self.route == "aux":
            return self.aux(x)
        if self.route == "split":
            n = len(x) // 2 if self.n_main is None else self.n_main
            if not 0 < n < len(x):
                raise ConfigError(f"split route: n_main = {n} must leave images for both BNs (batch of {len(x)})")
            return torch.cat([self.main(x[:n]), self.aux(x[n:])])
        raise ConfigError(f"unknown BN route {self.route!r}; valid: {', '.join(ROUTES)}")

    def extra_repr(self) -> str:
        return f"{self.num_features}"


def dual_batchnorms(model: nn.Module) -> list[DualBatchNorm2d]:
    return [m for m in model.modules() if isinstance(m, DualBatchNorm2d)]


def is_dual(model: nn.Module) -> bool:
    """Whether ``model`` has auxiliary BNs (was passed through :func:`dualize`)."""
    return any(isinstance(m, DualBatchNorm2d) for m in model.modules())


def dualize(model: nn.Module) -> nn.Module:
    """Replace every ``BatchNorm2d`` of ``model`` (in place) by a :class:`DualBatchNorm2d` started from it; returns
    the model. Every other parameter stays as it is, and so is shared by both routes."""
    if is_dual(model):
        raise ConfigError("the model already has dual BatchNorms")
    n = replace_batchnorm(model, DualBatchNorm2d.from_batchnorm, lambda name, bn: isinstance(bn, nn.BatchNorm2d))
    if n == 0:
        raise ConfigError(f"{type(model).__name__} has no BatchNorm2d to dualize")
    return model


@contextlib.contextmanager
def bn_route(model: nn.Module, route: str, n_main: int | None = None) -> Iterator[nn.Module]:
    """Run every :class:`DualBatchNorm2d` of ``model`` on ``route`` inside the block (restored on exit).

    ``n_main`` is the number of leading images that take the main BN on the ``"split"`` route (default: half)."""
    if route not in ROUTES:
        raise ConfigError(f"unknown BN route {route!r}; valid: {', '.join(ROUTES)}")
    duals = dual_batchnorms(model)
    if not duals:
        raise ConfigError("the model has no auxiliary BatchNorms; build it with dualize(model)")
    saved = [(m.route, m.n_main) for m in duals]
    for m in duals:
        m.route, m.n_main = route, n_main
    try:
        yield model
    finally:
        for m, (r, n) in zip(duals, saved):
            m.route, m.n_main = r, n


def attacker(eps_255: int) -> tuple[int, float]:
    """The paper's attacker rule transposed to [0, 1] pixels: ``eps_255``/255 with n = eps_255 + 1 PGD iterations
    (n = 1 when eps_255 = 1) of step max(1/255, ε/n). Returns (steps, step size)."""
    if eps_255 < 1 or int(eps_255) != eps_255:
        raise ConfigError(f"the attacker rule needs ε as a whole number of grey levels ≥ 1, got {eps_255}")
    steps = 1 if eps_255 == 1 else int(eps_255) + 1
    return steps, max(1.0, eps_255 / steps) / 255


class _PairedAdversarial(Method):
    """Shared by AdvProp and Mixed AT: targeted PGD, then one forward pass of [x; x_adv]."""

    def __init__(self, eps: float = 1 / 255, steps: int | None = None, alpha: float | None = None,
                 bn_mode: str = "eval", reduction: str = "mean", name: str | None = None):
        if steps is None or alpha is None:
            rule_steps, rule_alpha = attacker(round(eps * 255))
            steps = rule_steps if steps is None else steps
            alpha = rule_alpha if alpha is None else alpha
        if reduction not in ("mean", "sum"):
            raise ConfigError(f"reduction must be 'mean' ((L_c + L_a)/2) or 'sum' (L_c + L_a), got {reduction!r}")
        self.eps, self.steps, self.alpha, self.bn_mode, self.reduction = float(eps), int(steps), float(alpha), \
            bn_mode, reduction
        self.attack_steps = self.steps
        if name:
            self.name = name
        self._attack = PGD(self.eps, self.alpha, self.steps, start="uniform", loss="targeted", bn_mode=bn_mode)

    def derived_passes(self) -> float:
        """t attack steps × (forward + input backward) = 2t, then the forward and backward of 2B images for B samples
        = 4: (2t + 4) N."""
        return 2.0 * self.steps + 4.0

    def _combine(self, logits: torch.Tensor, y: torch.Tensor):
        b = len(y)
        lc = F.cross_entropy(logits[:b], y)
        la = F.cross_entropy(logits[b:], y)
        loss = (lc + la) / 2 if self.reduction == "mean" else lc + la
        return loss, {"clean_acc": accuracy_log(logits[:b], y), "adv_acc": accuracy_log(logits[b:], y),
                      "loss_clean": lc.detach(), "loss_adv": la.detach()}


@register_method("advprop")
class AdvProp(_PairedAdversarial):
    """AdvProp: the attack through the auxiliary BNs, then [clean; adversarial] through main | auxiliary BNs."""

    name = "AdvProp"

    def setup(self, trainer) -> None:
        if not is_dual(trainer.model):
            raise ConfigError("AdvProp needs a model with auxiliary BNs: build it with dualize(model)")

    def loss(self, model, x, y, step):
        with bn_route(model, "aux"):
            x_adv = self._attack.perturb(model, x, y)
        with bn_route(model, "split", n_main=len(x)):
            logits = model(torch.cat([x, x_adv]))
        return self._combine(logits, y)


@register_method("mixed_at")
class MixedAT(_PairedAdversarial):
    """"Vanilla" adversarial training on clean + adversarial images through one shared BN (the paper's baseline)."""

    name = "Mixed (shared BN)"

    def setup(self, trainer) -> None:
        if is_dual(trainer.model):
            raise ConfigError("Mixed AT shares one BN between clean and adversarial images: use a plain model")

    def loss(self, model, x, y, step):
        x_adv = self._attack.perturb(model, x, y)
        logits = model(torch.cat([x, x_adv]))
        return self._combine(logits, y)


__all__ = ["ROUTES", "DualBatchNorm2d", "dual_batchnorms", "is_dual", "dualize", "bn_route", "attacker", "AdvProp",
           "MixedAT"]
