"""What every attack shares: an explicit BN mode, frozen parameters, projection onto the threat model.

:func:`attack_mode` is the one place that decides how a model is run while an attack computes input gradients:

* BatchNorm layers run in the mode the caller names (``"eval"``: running statistics; ``"train"``: batch statistics,
  with the running statistics restored afterwards so an attack never changes the model);
* parameters have ``requires_grad`` switched off, so only input gradients are computed and no ``.grad`` is left on
  parameters;
* on exit every module's train/eval flag and every parameter's ``requires_grad`` is put back as it was.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules.batchnorm import _BatchNorm

from ..errors import ConfigError
from ..registry import Registry

ATTACKS: Registry = Registry("attack")


def register_attack(name: str):
    """Decorator: register an attack constructor under ``name`` (see ``ATTACKS.names()``)."""
    return ATTACKS.register(name)


BN_MODES = ("eval", "train")
NORMS = ("linf", "l2")


@contextlib.contextmanager
def attack_mode(model: nn.Module, bn_mode: str = "eval", keep_stats: bool = False) -> Iterator[nn.Module]:
    """Run ``model`` for an attack (see module docstring); restores the model's state on exit.

    ``keep_stats=True`` (train mode only) keeps what the attack's forwards did to the BatchNorm running statistics,
    as the reference training scripts' plain train-mode attacks do."""
    if bn_mode not in BN_MODES:
        raise ConfigError(f"unknown BN mode {bn_mode!r}; valid: {', '.join(BN_MODES)}")
    modes = [(m, m.training) for m in model.modules()]
    params = [(p, p.requires_grad) for p in model.parameters()]
    saved = []
    if bn_mode == "train" and not keep_stats:
        saved = [(b, b.detach().clone()) for m in model.modules() if isinstance(m, _BatchNorm) for b in m.buffers()]
    model.train(bn_mode == "train")
    for p, _ in params:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for m, t in modes:
            m.training = t
        for p, r in params:
            p.requires_grad_(r)
        with torch.no_grad():
            for b, v in saved:
                b.copy_(v)


def check_norm(norm: str) -> str:
    if norm not in NORMS:
        raise ConfigError(f"unknown norm {norm!r}; valid norms: {', '.join(NORMS)}")
    return norm


def _per_sample_norm(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).norm(dim=1).view(-1, *([1] * (t.ndim - 1)))


def project(x_adv: torch.Tensor, x: torch.Tensor, eps: float | torch.Tensor, norm: str = "linf") -> torch.Tensor:
    """Project ``x_adv`` onto {‖x_adv − x‖ ≤ eps} ∩ [0, 1]^d (ℓ∞ or ℓ2)."""
    if norm == "linf":
        eps_t = torch.as_tensor(eps, dtype=x.dtype, device=x.device)
        if eps_t.ndim:
            eps_t = eps_t.view(-1, *([1] * (x.ndim - 1)))
        x_adv = torch.minimum(torch.maximum(x_adv, x - eps_t), x + eps_t)
    else:
        delta = x_adv - x
        n = _per_sample_norm(delta)
        eps_t = torch.as_tensor(eps, dtype=x.dtype, device=x.device)
        if eps_t.ndim:
            eps_t = eps_t.view(-1, *([1] * (x.ndim - 1)))
        x_adv = x + delta * torch.clamp(eps_t / n.clamp_min(1e-12), max=1.0)
    return x_adv.clamp(0.0, 1.0)


def signed_step(x_adv: torch.Tensor, grad: torch.Tensor, alpha: float | torch.Tensor, norm: str) -> torch.Tensor:
    """One steepest-ascent step: α·sign(g) in ℓ∞, α·g/‖g‖₂ in ℓ2."""
    if norm == "linf":
        return x_adv + alpha * grad.sign()
    return x_adv + alpha * grad / _per_sample_norm(grad).clamp_min(1e-12)


def random_start(x: torch.Tensor, kind: str | None, scale: float, norm: str,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """A random starting perturbation δ: ``uniform`` in the ball of radius ``scale``, ``bernoulli`` ±scale per pixel
    (NuAT, GAT, GAMA), or zero (``None``/``"none"``)."""
    if kind in (None, "none"):
        return torch.zeros_like(x)
    if kind == "uniform":
        if norm == "linf":
            return (torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) * 2 - 1) * scale
        d = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        d = d / _per_sample_norm(d).clamp_min(1e-12)
        r = torch.rand(x.shape[0], generator=generator, device=x.device, dtype=x.dtype) ** (1.0 / x[0].numel())
        return d * r.view(-1, *([1] * (x.ndim - 1))) * scale
    if kind == "bernoulli":
        if norm != "linf":
            raise ConfigError("a Bernoulli (±scale per pixel) start is an ℓ∞ start; use 'uniform' for ℓ2")
        s = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) < 0.5
        return torch.where(s, scale, -scale).to(x.dtype)
    raise ConfigError(f"unknown random start {kind!r}; valid: 'uniform', 'bernoulli', None")


def margin_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample Carlini–Wagner margin max_{j≠y} z_j − z_y (positive ⇔ misclassified)."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), float("-inf")).amax(1)
    return other - true


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
    """Predicted labels of ``model`` in eval mode (the model's mode is restored)."""
    with attack_mode(model, "eval"):
        if batch_size is None or len(x) <= batch_size:
            return model(x).argmax(1)
        return torch.cat([model(x[i:i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])


class Attack:
    """Base class. Subclasses implement ``_perturb(model, x, y)``; callers use :meth:`perturb` or
    :meth:`robust_flags`.

    ``robust_flags`` returns, per metric key, a boolean per image: True when the model classifies both the clean image
    and the attack's output correctly (the usual per-sample convention, also AutoAttack's).
    """

    name = "attack"

    def __init__(self, eps: float, norm: str = "linf", bn_mode: str = "eval"):
        if not eps >= 0:
            raise ConfigError(f"eps must be ≥ 0, got {eps}")
        self.eps = float(eps)
        self.norm = check_norm(norm)
        if bn_mode not in BN_MODES:
            raise ConfigError(f"unknown BN mode {bn_mode!r}; valid: {', '.join(BN_MODES)}")
        self.bn_mode = bn_mode

    @property
    def keys(self) -> tuple[str, ...]:
        """The metric keys :meth:`robust_flags` returns."""
        return (self.name,)

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The adversarial images (detached, inside the ε-ball and [0, 1])."""
        with attack_mode(model, self.bn_mode), torch.enable_grad():
            x_adv = self._perturb(model, x.detach(), y)
        return project(x_adv.detach(), x, self.eps, self.norm)

    def _perturb(self, model, x, y) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _worst_case(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, once, restarts: int) -> torch.Tensor:
        """Per-image worst case over ``restarts`` runs of ``once(model, x, y)``, each run inside
        :func:`attack_mode` with the attack's BN mode. An image keeps the first run's output that fools the model,
        judged the way :meth:`robust_flags` scores it: an eval-mode forward with the model's own running statistics
        (``attack_mode`` has put them back by then). Hence the images robust after r + 1 restarts are a subset of
        those robust after the first r, also for a batch-statistics (``bn_mode="train"``) attack, whose own
        train-mode forwards would judge differently."""
        x = x.detach()
        best = fooled = None
        for r in range(restarts):
            with attack_mode(model, self.bn_mode), torch.enable_grad():
                x_adv = once(model, x, y)
            x_adv = project(x_adv.detach(), x, self.eps, self.norm)
            best = x_adv if best is None else torch.where(fooled.view(-1, *([1] * (x.ndim - 1))), best, x_adv)
            if r + 1 < restarts:
                fooled = predict(model, best) != y
        return best

    def robust_flags(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        clean = predict(model, x) == y
        adv = predict(model, self.perturb(model, x, y)) == y
        return {self.name: clean & adv}

    def __repr__(self):
        # what the attack *is* (its settings), not what it has seen: AutoAttack's accumulated warnings stay out, so
        # an evaluation cache key is the same before and after the attack ran; settings added later that are unset
        # (``_omit_if_none``) stay out too, so the keys of evaluations cached before they existed still match
        omit = getattr(self, "_omit_if_none", ())
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items()
                         if not k.startswith("_") and k != "warnings" and not (k in omit and v is None))
        return f"{type(self).__name__}({args})"
