"""Projected gradient descent (Madry et al., 2018) and its one-step special cases FGSM / FGSM-RS / R-FGSM.

PGD here covers every variant the chapters need:

* ℓ∞ (signed steps) or ℓ2 (normalised steps);
* random start: ``uniform`` in the ball (Madry, FBF), ``bernoulli`` ±α per pixel (NuAT, GAT, R-FGSM-like), or none
  (FGSM, I-FGSM);
* ``restarts``: an image counts as robust only if it survives every restart (per-sample worst case, each restart
  judged by an eval-mode forward whatever BN mode crafts it, so more restarts never add a robust image);
* ``step_schedule``: {step: multiplier} to decay the step size (e.g. GAMA-style ÷10 drops);
* ``record``: {metric key: step} to read accuracy at several step counts from one run — NuAT reports PGD-20/100/500
  as snapshots of a single 500-step run;
* losses: cross-entropy (``ce``), the CW margin (``cw``), or targeted cross-entropy toward a random wrong label
  (``targeted``; AdvProp's attacker).
"""
from __future__ import annotations

from typing import Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import ConfigError
from .core import Attack, attack_mode, margin_loss, predict, project, random_start, signed_step

LOSSES = ("ce", "cw", "targeted")


class PGD(Attack):
    name = "pgd"

    def __init__(self, eps: float, alpha: float | None = None, steps: int = 10, *, norm: str = "linf",
                 start: str | None = "uniform", start_scale: float | None = None, clip_start: bool = True,
                 restarts: int = 1, loss: str = "ce", step_schedule: Mapping[int, float] | None = None,
                 record: Mapping[str, int] | None = None, bn_mode: str = "eval", name: str | None = None):
        super().__init__(eps, norm, bn_mode)
        if record:
            bad = {k: s for k, s in record.items() if not 0 <= s}
            if bad:
                raise ConfigError(f"record steps must be ≥ 0, got {bad}")
            steps = max(steps, max(record.values()))
        if steps < 0 or restarts < 1:
            raise ConfigError(f"steps must be ≥ 0 and restarts ≥ 1, got steps={steps}, restarts={restarts}")
        if loss not in LOSSES:
            raise ConfigError(f"unknown PGD loss {loss!r}; valid: {', '.join(LOSSES)}")
        self.alpha = float(alpha) if alpha is not None else (2.5 * eps / max(steps, 1))
        self.steps, self.restarts, self.loss = steps, restarts, loss
        self.start, self.clip_start = start, clip_start
        self.start_scale = float(start_scale) if start_scale is not None else self.eps
        self.step_schedule = dict(step_schedule or {})
        self.record = dict(record or {})
        if name is not None:
            self.name = name

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(self.record) if self.record else (self.name,)

    def step_size(self, t: int) -> float:
        """Step size of step ``t`` (1-based) after the schedule's multipliers."""
        mult = 1.0
        for s, m in sorted(self.step_schedule.items()):
            if t > s:
                mult = m
        return self.alpha * mult

    def _objective(self, logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        if self.loss == "ce":
            return F.cross_entropy(logits.float(), y, reduction="sum")
        if self.loss == "cw":
            return margin_loss(logits.float(), y).sum()
        return -F.cross_entropy(logits.float(), target, reduction="sum")

    def _start(self, x: torch.Tensor) -> torch.Tensor:
        """A random starting perturbation δ₀ (one draw of the global RNG per restart)."""
        return random_start(x, self.start, self.start_scale, self.norm)

    def _run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, record_steps: set[int] | None = None,
             start: torch.Tensor | None = None, target: torch.Tensor | None = None):
        """One restart from ``start`` (drawn when None). Returns the final iterate, {step: correct-flags} for
        ``record_steps`` (eval BN only) and the targeted attack's target labels (drawn when None)."""
        x_adv = x + (self._start(x) if start is None else start)
        if self.clip_start:
            x_adv = x_adv.clamp(0, 1)
        flags: dict[int, torch.Tensor] = {}
        for t in range(1, self.steps + 1):
            x_adv.requires_grad_(True)
            logits = model(x_adv)
            if self.loss == "targeted" and target is None:
                # a random wrong label per image (AdvProp's targeted attacker), drawn once the class count is known
                k = logits.shape[1]
                target = (y + torch.randint(1, k, y.shape, device=y.device)) % k
            if record_steps and (t - 1) in record_steps:
                flags[t - 1] = logits.detach().argmax(1) == y  # logits of the iterate after t−1 steps
            g, = torch.autograd.grad(self._objective(logits, y, target), x_adv)
            x_adv = project(signed_step(x_adv.detach(), g, self.step_size(t), self.norm), x, self.eps, self.norm)
        if record_steps and self.steps in record_steps:
            with torch.no_grad():
                flags[self.steps] = model(x_adv).argmax(1) == y
        return x_adv.detach(), flags, target

    def _perturb(self, model, x, y):
        """All restarts inside the caller's mode context (for callers that manage the model's mode themselves, such
        as a training attack whose forwards update BN statistics); the worst case is judged by the model as it is
        set. :meth:`perturb` judges each restart in eval mode instead (see ``Attack._worst_case``)."""
        best = None
        for r in range(self.restarts):
            x_adv = self._run(model, x, y)[0]
            if best is None:
                best = x_adv
            else:  # keep the first restart that fools the model
                with torch.no_grad():
                    fooled = model(best).argmax(1) != y
                best = torch.where(fooled.view(-1, *([1] * (x.ndim - 1))), best, x_adv)
        return best

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The per-image worst case over ``restarts`` runs (the first restart whose output the model misclassifies
        in eval mode), inside the ε-ball and [0, 1]."""
        return self._worst_case(model, x, y, lambda m, x_, y_: self._run(m, x_, y_)[0], self.restarts)

    def robust_flags(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per recorded step (or for the final iterate), True where the clean image and every restart's iterate are
        classified correctly. The iterate scored at step k is the one after k updates of a single run per restart.
        With eval BN its flags come from the attack's own forward passes. With batch-statistics BN (``bn_mode=
        "train"``) each recorded iterate is recomputed by a run truncated at that step *from the same start* (and the
        same target labels), and scored by an eval-mode forward with the model's own running statistics — the
        attack's train-mode forwards would otherwise have moved them."""
        if not self.record:
            return super().robust_flags(model, x, y)
        x = x.detach()
        clean = predict(model, x) == y
        steps = sorted(set(self.record.values()))
        out = {k: clean.clone() for k in self.record}
        for _ in range(self.restarts):
            if self.bn_mode == "eval":
                with attack_mode(model, "eval"), torch.enable_grad():
                    _, flags, _ = self._run(model, x, y, set(steps))
            else:
                start, target, flags = self._start(x), None, {}
                for s in steps:
                    with attack_mode(model, self.bn_mode), torch.enable_grad():
                        x_s, _, target = self._truncated(s)._run(model, x, y, start=start, target=target)
                    flags[s] = predict(model, project(x_s, x, self.eps, self.norm)) == y
            for k, s in self.record.items():
                out[k] &= flags[s]
        return out

    def _truncated(self, steps: int) -> "PGD":
        clone = PGD.__new__(PGD)
        clone.__dict__.update(self.__dict__, steps=steps)
        return clone


class FGSM(PGD):
    """Fast gradient sign method: one step of size ``alpha`` (default ε).

    ``start="uniform"`` with ``alpha=1.25·ε`` is FGSM-RS (Wong et al.'s FBF); ``start="bernoulli"`` with
    ``start_scale=α`` and ``alpha=ε`` is the R-FGSM-like step of NuAT's/GAT's even iterations.
    """

    name = "fgsm"

    def __init__(self, eps: float, alpha: float | None = None, *, start: str | None = None, **kw):
        super().__init__(eps, alpha if alpha is not None else eps, 1, start=start, **kw)


def ifgsm(eps: float, steps: int = 7, **kw) -> PGD:
    """I-FGSM (Kurakin et al.): ``steps`` steps of ε/steps, no random start (NuAT's checkpoint-selection attack)."""
    return PGD(eps, eps / steps, steps, start=None, name=kw.pop("name", f"ifgsm{steps}"), **kw)
