"""Input-gradient regularisation (Finlay & Oberman, 2019): finite differences instead of double backpropagation.

Objective (paper eq. 8, the poster and the released code, with the ½):

    min_θ E_(x,y) [ ℓ(x) + (λ/2)·‖∇ₓℓ(x)‖²_* ],   ℓ = cross-entropy,

with ‖·‖_* the dual of the attack norm: the squared ℓ2 norm against ℓ2 attacks, the squared ℓ1 norm against ℓ∞
attacks. (The appendix's Algorithm 1 writes L + λR without the ½; we follow the code, which trained the released
models.)

**Finite differences** (:class:`FiniteDifferenceGR`, registered as ``fd_gradreg``), per batch:

1. ℓ(x) per sample in one forward pass; g = ∇ₓ mean ℓ in one backward pass to the input. g is the gradient of the
   *batch-mean* loss (scaled by 1/B), but only its direction is used.
2. A unit direction, **detached** (no graph through it): d = g/‖g‖₂ (0 where g = 0) for the squared ℓ2 penalty;
   d = sign(g)/√N (N = input dimension) for the squared ℓ1 penalty. ⟨g, d⟩ is then ‖g‖₂, or ‖g‖₁/√N, so the ℓ1
   penalty estimates ‖g‖₁²/N (λ absorbs the 1/N). d always has unit ℓ2 length, so h is an ℓ2 step.
3. D = (ℓ(x + h·d) − ℓ(x))/h per sample (forward difference; the code's unused central difference is ``order=2``).
4. loss = mean ℓ + (λ/2)·mean D², backpropagated through *both* forward passes (one parameter backward).

h = 0.01 by default (pixel units in [0, 1]); the journal's best ℓ∞ model (squared ℓ1, λ = 1) used h = 0.1.
Cost: forward, input backward, forward at x + hd, and a backward reaching both outputs: **5N** per sample (the cost
meter's hooks see all five passes). The FD error is O(h·curvature), so the penalty also shrinks curvature — the
paper's argument for why FD beats the exact penalty.

**Numerics.** ℓ(x + hd) − ℓ(x) is a difference of two nearly equal numbers divided by h. bf16 autocast (which the
Trainer uses on GPUs) has 8 mantissa bits and TF32 (PyTorch's default for cuDNN convolutions) 10, so either can swamp
the difference — in the forward passes *and* in the backward pass, where the two branches' weight gradients,
each of size λD/h, nearly cancel. Both methods therefore run their forward passes inside
:func:`~robustlib.utils.fp32_strict` (autocast off, TF32 off) and, on CUDA, switch TF32 off in :meth:`setup` for the
Trainer's backward passes too (the chapter trains inside ``fp32_strict()``, which restores the flags afterwards).

**Exact penalty** (:class:`DoubleBackpropGR`, ``dbp_gradreg``): the same objective with the exact per-sample gradient
g_i = ∇_{x_i} Σ_j ℓ_j computed with ``create_graph=True`` (forgetting it silently disables the penalty), penalty
‖g_i‖₂² or ‖g_i‖₁²/N. Cost accounting: the hooks see the forward (1N), the backward to the input (1N) and the
final backward reaching the logits (1N). The final backward also differentiates the first backward pass itself
(the "second-order pass", a pass through the network's backward graph that produces weight gradients); it never
passes the network's output, so no hook sees it, and :meth:`DoubleBackpropGR.loss` charges it explicitly as one
backward pass per sample with ``step.trainer.meter.add``: **4N** in total. N under-weights this pass (in FLOPs it
costs about a full backward, ≈ 2F, and it runs the slow double-backward kernels of BatchNorm), which is why the
measured wall-clock time of double backprop exceeds the FD's although its N is lower; the chapter reports both.
"""
from __future__ import annotations

import contextlib
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import ConfigError
from ..utils import fp32_strict
from .base import Method, accuracy_log, register_method

NORMS = ("l2", "l1")


def check_norm(norm: str) -> str:
    if norm not in NORMS:
        raise ConfigError(f"unknown penalty norm {norm!r}; valid: {', '.join(NORMS)} "
                          "(squared ℓ2 against ℓ2 attacks, squared ℓ1 against ℓ∞ attacks)")
    return norm


def fd_direction(g: torch.Tensor, norm: str) -> torch.Tensor:
    """The detached unit-ℓ2 finite-difference direction: g/‖g‖₂ (0 where g = 0) or sign(g)/√N."""
    check_norm(norm)
    g = g.detach()
    flat = g.flatten(1)
    if norm == "l2":
        n = flat.norm(dim=1, keepdim=True)
        d = torch.where(n > 0, flat / n.clamp_min(torch.finfo(flat.dtype).tiny), torch.zeros_like(flat))
    else:
        d = flat.sign() / math.sqrt(flat.shape[1])
    return d.view_as(g)


def dual_norm_sq(g: torch.Tensor, norm: str) -> torch.Tensor:
    """The exact penalty per sample: ‖g‖₂² (``l2``) or ‖g‖₁²/N (``l1``, the quantity the ℓ1 FD estimates)."""
    check_norm(norm)
    flat = g.flatten(1)
    if norm == "l2":
        return flat.pow(2).sum(1)
    return flat.abs().sum(1).pow(2) / flat.shape[1]


def _precision(strict: bool):
    """fp32 without TF32 or autocast when ``strict`` (see :func:`robustlib.utils.fp32_strict`), else as is."""
    return fp32_strict() if strict else contextlib.nullcontext()


def _ce_at(model: nn.Module, x: torch.Tensor, y: torch.Tensor):
    """(x as a leaf that requires grad, the logits there, the per-sample cross-entropy) — both penalties start here."""
    xi = x.detach().requires_grad_(True)
    logits = model(xi)
    return xi, logits, F.cross_entropy(logits, y, reduction="none")


def fd_penalty(model: nn.Module, x: torch.Tensor, y: torch.Tensor, h: float, norm: str = "l2", order: int = 1,
               strict: bool = True):
    """Cross-entropy and the finite-difference estimate of the squared dual gradient norm.

    Returns ``(ce, D, logits)``: ``ce`` the per-sample cross-entropy at x (with graph), ``D`` the per-sample
    directional derivative (ℓ(x + hd) − ℓ(x))/h (order 1) or (ℓ(x + hd) − ℓ(x − hd))/(2h) (order 2), with graph
    through both forward passes, and the logits at x. The penalty is mean(D²)/2. ``strict`` runs the forward passes
    in fp32 without TF32 and without autocast (inputs keep their dtype, so float64 stays float64).
    """
    check_norm(norm)
    if not h > 0:
        raise ConfigError(f"the finite-difference step h must be > 0, got {h}")
    if order not in (1, 2):
        raise ConfigError(f"finite-difference order must be 1 or 2, got {order}")
    with _precision(strict):
        xi, logits, ce = _ce_at(model, x, y)
        g, = torch.autograd.grad(ce.mean(), xi, retain_graph=True)
        d = fd_direction(g, norm)
        xd = x.detach()
        lf = F.cross_entropy(model(xd + h * d), y, reduction="none")
        if order == 1:
            D = (lf - ce) / h
        else:
            lb = F.cross_entropy(model(xd - h * d), y, reduction="none")
            D = (lf - lb) / (2 * h)
    return ce, D, logits


def exact_penalty(model: nn.Module, x: torch.Tensor, y: torch.Tensor, norm: str = "l2", strict: bool = True):
    """Cross-entropy and the exact squared dual gradient norm by double backpropagation.

    Returns ``(ce, pen, logits)`` with ``pen`` = ‖g_i‖₂² or ‖g_i‖₁²/N per sample, g_i = ∇_{x_i} Σ_j ℓ_j computed with
    ``create_graph=True`` so that the penalty is differentiable with respect to the parameters.
    """
    check_norm(norm)
    with _precision(strict):
        xi, logits, ce = _ce_at(model, x, y)
        g, = torch.autograd.grad(ce.sum(), xi, create_graph=True)
        pen = dual_norm_sq(g, norm)
    return ce, pen, logits


class _StrictFP32(Method):
    """Shared by both penalties: TF32 off for the Trainer's backward passes on CUDA (see module docstring)."""

    strict = True

    def setup(self, trainer) -> None:
        if self.strict and trainer.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False


@register_method("fd_gradreg")
class FiniteDifferenceGR(_StrictFP32):
    """CE + (λ/2)·mean(((ℓ(x + h·d) − ℓ(x))/h)²), d detached (Finlay & Oberman's finite-difference regulariser)."""

    name = "FD gradient regularisation"

    def __init__(self, lam: float = 0.1, h: float = 0.01, norm: str = "l2", order: int = 1, strict: bool = True,
                 name: str | None = None):
        self.lam, self.h, self.norm, self.order, self.strict = float(lam), float(h), check_norm(norm), order, strict
        if not self.h > 0:
            raise ConfigError(f"the finite-difference step h must be > 0, got {h}")
        if order not in (1, 2):
            raise ConfigError(f"finite-difference order must be 1 or 2, got {order}")
        if name:
            self.name = name

    def derived_passes(self) -> float:
        """Forward at x 1 + input backward 1 + forward at x + h·d 1 + a backward reaching both outputs 2 = 5N; the
        central difference (``order=2``) adds the forward at x − h·d and its share of the backward: 7N."""
        return 5.0 if self.order == 1 else 7.0

    def loss(self, model, x, y, step):
        ce, D, logits = fd_penalty(model, x, y, self.h, self.norm, self.order, self.strict)
        penalty = D.pow(2).mean() / 2
        ce_mean = ce.mean()
        loss = ce_mean + self.lam * penalty
        return loss, {"acc": accuracy_log(logits, y), "ce": ce_mean.detach(), "penalty": penalty.detach()}


@register_method("dbp_gradreg")
class DoubleBackpropGR(_StrictFP32):
    """CE + (λ/2)·mean ‖∇ₓℓ‖²_* with the exact gradient (double backpropagation), the reference FD replaces."""

    name = "Double-backprop gradient regularisation"

    def __init__(self, lam: float = 0.1, norm: str = "l2", strict: bool = True, name: str | None = None):
        self.lam, self.norm, self.strict = float(lam), check_norm(norm), strict
        if name:
            self.name = name

    def derived_passes(self) -> float:
        """Forward 1 + input backward with a graph 1 + the final backward through the logits 1 + the second-order
        pass (charged explicitly, no hook sees it) 1 = 4N."""
        return 4.0

    def loss(self, model, x, y, step):
        ce, pen, logits = exact_penalty(model, x, y, self.norm, self.strict)
        penalty = pen.mean() / 2
        ce_mean = ce.mean()
        # the second-order pass of the coming backward never reaches the network's output: charge it here
        step.trainer.meter.add("model", backward=len(x))
        loss = ce_mean + self.lam * penalty
        return loss, {"acc": accuracy_log(logits, y), "ce": ce_mean.detach(), "penalty": penalty.detach()}
