"""Matrix norms of a batch's logit differences, and the attacks that maximise them (NuAT chapter).

NuAT (Sriramanan et al., NeurIPS 2021) regularises with the **nuclear norm** of the B×K matrix D = f(X̃) − f(X)
whose rows are the logit differences of a minibatch: ‖D‖_* = Σ_i σ_i(D) (the sum of singular values). Because the
singular values belong to the whole matrix, the norm couples the images of the batch ("joint batch statistics"). It
upper-bounds the Frobenius norm: ‖D‖_*² = (Σσ_i)² ≥ Σσ_i² = ‖D‖_F².

* :func:`nuclear_norm` / :func:`frobenius_norm` compute the norms in fp32 (or fp64) even inside bf16 autocast: the
  SVD behind the nuclear norm is not reliable in bf16, and PyTorch's SVD has no bf16 kernel. The gradient of ‖D‖_*
  is UVᵀ of the SVD D = UΣVᵀ (well defined when D has full rank). On CUDA the SVD synchronises with the host
  (performance.md §8.4); we accept that sync (option (a) there).
* :class:`MatrixNormAttack` maximises ‖f(X + Δ) − f(X)‖ (nuclear or Frobenius) over groups of ``group`` images (64
  by default, NuAT's batch size: the nuclear norm depends on which images share a matrix), from the Bernoulli
  ±α start of NuAT, optionally plus cross-entropy. Registered as ``nuclear`` and ``frobenius``; used for the
  chapter's confusion-matrix figure ("Diversity of the nuclear-norm attack"). The settings of the paper's figure are
  unpublished (nuat.md §2.9); the chapter states the ones it uses.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import ConfigError
from .core import Attack, project, random_start, register_attack

NORMS = ("nuc", "fro")


def _full_precision(a: torch.Tensor) -> torch.Tensor:
    return a if a.dtype in (torch.float32, torch.float64) else a.float()


def nuclear_norm(a: torch.Tensor) -> torch.Tensor:
    """‖a‖_* = Σ singular values of the matrix ``a`` (B×K), in fp32 (fp64 stays fp64) even under autocast."""
    with torch.autocast(a.device.type, enabled=False):
        return torch.linalg.matrix_norm(_full_precision(a), ord="nuc")


def frobenius_norm(a: torch.Tensor) -> torch.Tensor:
    """‖a‖_F = √(Σ a_ij²) = √(Σ σ_i²), in fp32 (fp64 stays fp64) even under autocast."""
    with torch.autocast(a.device.type, enabled=False):
        return torch.linalg.matrix_norm(_full_precision(a), ord="fro")


def matrix_norm(a: torch.Tensor, kind: str = "nuc") -> torch.Tensor:
    """The nuclear (``"nuc"``) or Frobenius (``"fro"``) norm of ``a``."""
    if kind == "nuc":
        return nuclear_norm(a)
    if kind == "fro":
        return frobenius_norm(a)
    raise ConfigError(f"unknown matrix norm {kind!r}; valid: {', '.join(NORMS)}")


class MatrixNormAttack(Attack):
    """ℓ∞ attack maximising ‖f(X + Δ) − f(X)‖ (``norm_type`` "nuc" or "fro") of each group of ``group`` images.

    Objective per group G of B images: ‖f(X_G + Δ_G) − f(X_G)‖ / B + ``ce_weight``·CE(f(X_G + Δ_G), y_G). The start is
    a Bernoulli ±``start_scale`` vertex (NuAT's α = 4/255), then ``steps`` signed steps of ``alpha`` (default: one step
    of ε, as in NuAT's single-step attack), each followed by projection onto the ε-ball and [0, 1]. The clean logits
    f(X) come from the same (eval-mode) model and are constants.
    """

    name = "matrix_norm"

    def __init__(self, eps: float, norm_type: str = "nuc", steps: int = 1, alpha: float | None = None, *,
                 start: str | None = "bernoulli", start_scale: float | None = 4 / 255, group: int = 64,
                 ce_weight: float = 0.0, bn_mode: str = "eval", name: str | None = None):
        super().__init__(eps, "linf", bn_mode)
        if norm_type not in NORMS:
            raise ConfigError(f"unknown matrix norm {norm_type!r}; valid: {', '.join(NORMS)}")
        if steps < 1 or group < 2:
            raise ConfigError(f"steps must be ≥ 1 and group ≥ 2, got steps={steps}, group={group}")
        self.norm_type, self.steps, self.group, self.ce_weight, self.start = norm_type, steps, group, ce_weight, start
        self.alpha = float(eps if alpha is None else alpha)
        self.start_scale = float(eps if start_scale is None else start_scale)
        self.name = name or f"{norm_type}{steps}"

    def _group(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            ref = model(x).float()
        x_adv = (x + random_start(x, self.start, self.start_scale, "linf")).clamp(0, 1)
        for _ in range(self.steps):
            x_adv.requires_grad_(True)
            logits = model(x_adv).float()
            loss = matrix_norm(logits - ref, self.norm_type) / len(x)
            if self.ce_weight:
                loss = loss + self.ce_weight * F.cross_entropy(logits, y)
            g, = torch.autograd.grad(loss, x_adv)
            x_adv = project(x_adv.detach() + self.alpha * g.sign(), x, self.eps, "linf")
        return x_adv.detach()

    def _perturb(self, model, x, y):
        return torch.cat([self._group(model, x[i:i + self.group], y[i:i + self.group])
                          for i in range(0, len(x), self.group)])


@register_attack("nuclear")
def nuclear_attack(eps: float, steps: int = 1, **kw) -> MatrixNormAttack:
    """Maximise the nuclear norm of the batch logit-difference matrix (NuAT's regulariser alone)."""
    return MatrixNormAttack(eps, "nuc", steps, **kw)


@register_attack("frobenius")
def frobenius_attack(eps: float, steps: int = 1, **kw) -> MatrixNormAttack:
    """Maximise the Frobenius norm of the batch logit-difference matrix (the per-image ℓ2 counterpart)."""
    return MatrixNormAttack(eps, "fro", steps, **kw)
