"""Lower bounds on the minimum adversarial distance (Finlay & Oberman, arXiv v1 §3; tulip's ``test_statistics.py``).

The loss is a Carlini–Wagner-style margin on the softmax **probabilities**, ℓ(x) = max_{i≠c} p_i(x) − p_c(x), so an
image is misclassified exactly when ℓ ≥ ℓ₀ = 0 (:func:`cw_prob_loss`). For smooth networks the authors use a soft
maximum over the wrong classes ("SoftCW", :func:`soft_cw_prob_loss`: the wrong-class probabilities weighted by a
softmax of 10× themselves), which is twice differentiable. The soft maximum is below the hard one by up to ln(K)/τ,
so misclassification only guarantees SoftCW ≥ −ln(K)/τ (:func:`soft_cw_threshold`), not ≥ 0; the authors used 0,
which lets the bound exceed the true distance on low-confidence images. Here the L-bound uses the hard CW loss (for
every model) and the C-bound SoftCW with the guaranteed threshold; the authors' version is kept for comparison.

* **L-bound** (first order, any norm): if ℓ is L-Lipschitz in the dual norm, reaching ℓ₀ needs
  ‖v‖ ≥ max(ℓ₀ − ℓ(x), 0)/L. L is *estimated* as the largest ‖∇ₓℓ‖_* over the evaluated test images (ℓ2 for ℓ2
  attacks, ℓ1 for ℓ∞ attacks), so the bound is not a certificate (:func:`l_bound`).
* **C-bound** (second order, ℓ2, smooth models): with C the largest Hessian eigenvalue of ℓ (again the maximum over
  the test images), ℓ(x + v) ≤ ℓ(x) + ‖∇ℓ‖‖v‖ + C‖v‖²/2 gives
  ‖v‖ ≥ (−‖∇ℓ‖ + √(‖∇ℓ‖² + 2C·max(ℓ₀ − ℓ, 0)))/C (:func:`c_bound`).
* The largest eigenvalue of each image's input Hessian comes from **batched Lanczos** on Hessian–vector products by
  double backpropagation (:func:`lanczos`, :func:`hessian_extreme_eigs`; the authors: tolerance 10⁻³, at most 50
  iterations). Unlike the authors' three-term recurrence, every new Lanczos vector is re-orthogonalised against all
  previous ones (cheap at ≤ 50 vectors, and it keeps spurious copies of the top eigenvalue away); the Ritz values of
  the tridiagonal matrix are computed with ``torch.linalg.eigvalsh`` (``symeig`` no longer exists).

Everything runs in eval mode, in fp32 with TF32 off (:func:`~robustlib.utils.fp32_strict`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn as nn

from .attacks.core import attack_mode
from .utils import fp32_strict

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def cw_prob_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """max_{i≠c} p_i − p_c on the softmax probabilities, per sample (≥ 0 ⇔ misclassified, ties aside)."""
    p = logits.softmax(-1)
    pc = p.gather(1, y[:, None]).squeeze(1)
    other = p.scatter(1, y[:, None], 0.0).amax(1)
    return other - pc


def soft_cw_prob_loss(logits: torch.Tensor, y: torch.Tensor, temperature: float = 10.0) -> torch.Tensor:
    """Smooth version: Σ_i w_i p_i − p_c with w = softmax(10·p_wrong) (true class entry zeroed), per sample."""
    p = logits.softmax(-1)
    pc = p.gather(1, y[:, None]).squeeze(1)
    wrong = p.scatter(1, y[:, None], 0.0)
    return ((temperature * wrong).softmax(-1) * wrong).sum(1) - pc


LOSSES: dict[str, LossFn] = {"cw": cw_prob_loss, "soft_cw": soft_cw_prob_loss}


def loss_and_grad_norm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: LossFn = cw_prob_loss,
                       dual: str = "l2", batch_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image loss ℓ(x) and dual norm of ∇ₓℓ (``l2``, or ``l1`` for ℓ∞ attacks), eval mode, strict fp32."""
    if batch_size and len(x) > batch_size:
        parts = [loss_and_grad_norm(model, x[i:i + batch_size], y[i:i + batch_size], loss_fn, dual)
                 for i in range(0, len(x), batch_size)]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    with attack_mode(model, "eval"), torch.enable_grad(), fp32_strict():
        xi = x.detach().clone().requires_grad_(True)
        loss = loss_fn(model(xi), y)
        g, = torch.autograd.grad(loss.sum(), xi)
    flat = g.flatten(1)
    gn = flat.norm(dim=1) if dual == "l2" else flat.abs().sum(1)
    return loss.detach(), gn.detach()


def l_bound(loss, grad_norm, L: float | None = None, loss0: float = 0.0):
    """First-order bound max(ℓ₀ − ℓ, 0)/L per image; L defaults to max ‖∇ℓ‖ over the given images.
    Returns ``(bound, L)``."""
    loss, gn = np.asarray(loss, dtype=float), np.asarray(grad_norm, dtype=float)
    L = float(gn.max()) if L is None else float(L)
    gap = np.clip(loss0 - loss, 0, None)
    return gap / L, L


def c_bound(loss, grad_norm, C: float, loss0: float = 0.0):
    """Second-order bound (−‖∇ℓ‖ + √(‖∇ℓ‖² + 2C·gap))/C per image (→ gap/‖∇ℓ‖ as C → 0)."""
    loss, g = np.asarray(loss, dtype=float), np.asarray(grad_norm, dtype=float)
    gap = np.clip(loss0 - loss, 0, None)
    if C <= 0:
        return np.where(gap > 0, gap / np.maximum(g, 1e-30), 0.0)
    # written as 2·gap/(g + √(g² + 2C·gap)) to avoid cancellation when C·gap ≪ g²
    return 2 * gap / (g + np.sqrt(g * g + 2 * C * gap) + 1e-300)


def lanczos(operator: Callable[[torch.Tensor], torch.Tensor], shape: tuple[int, ...], *, iters: int = 50,
            tol: float = 1e-3, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
            generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Extreme eigenvalues of a batch of symmetric operators (one per leading index) by Lanczos iteration.

    ``operator`` maps a (B, *dims) tensor of vectors to the batch of products. Stops when neither the smallest nor
    the largest Ritz value of any batch element moved by more than ``tol`` in one iteration, or after ``iters``
    (≤ the dimension) iterations. Returns ``(lambda_min, lambda_max, iterations)``.
    """
    b = shape[0]
    n = int(np.prod(shape[1:]))
    m = min(iters, n)
    q = torch.randn(b, n, device=device, dtype=dtype, generator=generator)
    q = q / q.norm(dim=1, keepdim=True)
    Q = [q]
    alphas, betas = [], []
    lmin = lmax = None
    it = 0
    for it in range(1, m + 1):
        w = operator(q.view(shape)).detach().reshape(b, n).to(dtype)
        a = (q * w).sum(1)
        Qs = torch.stack(Q, 1)                                     # (B, k, N)
        w = w - torch.einsum("bkn,bk->bn", Qs, torch.einsum("bkn,bn->bk", Qs, w))
        w = w - torch.einsum("bkn,bk->bn", Qs, torch.einsum("bkn,bn->bk", Qs, w))  # twice is enough
        beta = w.norm(dim=1)
        alphas.append(a)
        T = torch.diag_embed(torch.stack(alphas, 1))
        if betas:
            off = torch.stack(betas, 1)
            T = T + torch.diag_embed(off, 1) + torch.diag_embed(off, -1)
        ev = torch.linalg.eigvalsh(T.double())
        new_min, new_max = ev[:, 0], ev[:, -1]
        change = None if lmin is None else torch.maximum((new_min - lmin).abs(), (new_max - lmax).abs()).max().item()
        lmin, lmax = new_min, new_max
        if change is not None and change < tol:
            break
        if it == m:
            break
        # an exhausted Krylov space (β ≈ 0) restarts with a fresh vector orthogonal to the previous ones
        scale = torch.maximum(a.abs(), torch.ones_like(a))
        dead = beta <= 1e-10 * scale
        if bool(dead.any()):
            r = torch.randn(b, n, device=device, dtype=dtype, generator=generator)
            for _ in range(2):
                r = r - torch.einsum("bkn,bk->bn", Qs, torch.einsum("bkn,bn->bk", Qs, r))
            r = r / r.norm(dim=1, keepdim=True)
            w = torch.where(dead[:, None], r, w / beta.clamp_min(1e-300)[:, None])
            beta = torch.where(dead, torch.zeros_like(beta), beta)
            q = w
        else:
            q = w / beta[:, None]
        betas.append(beta)
        Q.append(q)
    return lmin.to(dtype), lmax.to(dtype), it


def hessian_extreme_eigs(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: LossFn = soft_cw_prob_loss,
                         *, iters: int = 50, tol: float = 1e-3, seed: int = 0,
                         batch_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Smallest and largest eigenvalue of each image's input Hessian ∇²ₓℓ (eval mode, strict fp32).

    In eval mode the images do not interact, so the Hessian of Σ_i ℓ(x_i) is block diagonal and one batched Lanczos
    run gives every image's eigenvalues. Hessian–vector products by double backpropagation (the network must be
    twice differentiable for the result to mean anything: use the smooth-ReLU model).
    """
    if batch_size and len(x) > batch_size:
        parts = [hessian_extreme_eigs(model, x[i:i + batch_size], y[i:i + batch_size], loss_fn, iters=iters,
                                      tol=tol, seed=seed + i) for i in range(0, len(x), batch_size)]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    gen = torch.Generator(device=x.device).manual_seed(seed)
    with attack_mode(model, "eval"), torch.enable_grad(), fp32_strict():
        xi = x.detach().clone().requires_grad_(True)
        f = loss_fn(model(xi), y).sum()
        g, = torch.autograd.grad(f, xi, create_graph=True)

        def hvp(v: torch.Tensor) -> torch.Tensor:
            hv, = torch.autograd.grad((g * v).sum(), xi, retain_graph=True)
            return hv

        lmin, lmax, _ = lanczos(hvp, tuple(x.shape), iters=iters, tol=tol, device=x.device, dtype=x.dtype,
                                generator=gen)
    return lmin.detach(), lmax.detach()


def soft_cw_threshold(num_classes: int, temperature: float = 10.0) -> float:
    """The SoftCW value every misclassified image is guaranteed to reach: −ln(K)/τ.

    The softmax-weighted mean of the wrong-class probabilities is at least their maximum minus ln(K)/τ (it equals
    (LSE(τq) − H(w))/τ with entropy H ≤ ln K), so hard CW ≥ 0 implies SoftCW ≥ −ln(K)/τ (−0.23 for CIFAR-10).
    """
    return -np.log(num_classes) / temperature


@dataclass
class BoundStats:
    """Per-image losses, gradient norms, curvature and ℓ2 bounds of one model, with the estimated constants.

    ``loss``/``grad_norm`` are the hard CW loss and its gradient norm (the L-bound's; misclassified ⇔ ℓ ≥ 0 exactly).
    For smooth models ``soft_loss``/``soft_grad_norm``/``lam_max`` are SoftCW's, and ``cbound`` uses the threshold
    ``loss0`` = −ln(K)/τ that misclassification guarantees; ``cbound_paper`` uses the authors' threshold 0, which can
    exceed the true distance for low-confidence images.
    """

    loss: np.ndarray
    grad_norm: np.ndarray
    lbound: np.ndarray
    L: float
    soft_loss: np.ndarray | None = None
    soft_grad_norm: np.ndarray | None = None
    lam_max: np.ndarray | None = None
    cbound: np.ndarray | None = None
    cbound_paper: np.ndarray | None = None
    C: float | None = None
    loss0: float | None = None

    def to_arrays(self) -> dict[str, np.ndarray]:
        out = {"b_loss": self.loss, "b_grad_norm": self.grad_norm, "b_lbound": self.lbound,
               "b_L": np.array([self.L])}
        if self.lam_max is not None:
            out.update(b_soft_loss=self.soft_loss, b_soft_grad_norm=self.soft_grad_norm, b_lam_max=self.lam_max,
                       b_cbound=self.cbound, b_cbound_paper=self.cbound_paper, b_C=np.array([self.C]),
                       b_loss0=np.array([self.loss0]))
        return out


def bound_stats(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, curvature: bool = False,
                iters: int = 50, tol: float = 1e-3, seed: int = 0, batch_size: int = 500,
                temperature: float = 10.0) -> BoundStats:
    """ℓ2 L-bound from the hard CW loss for any model; with ``curvature`` (smooth models) also SoftCW's largest
    Hessian eigenvalue per image (Lanczos) and the C-bound."""
    loss, gn = loss_and_grad_norm(model, x, y, cw_prob_loss, "l2", batch_size)
    loss, gn = loss.cpu().numpy().astype(float), gn.cpu().numpy().astype(float)
    lb, L = l_bound(loss, gn)
    out = BoundStats(loss, gn, lb, L)
    if curvature:
        def fn(z, t):
            return soft_cw_prob_loss(z, t, temperature)
        sl, sg = loss_and_grad_norm(model, x, y, fn, "l2", batch_size)
        sl, sg = sl.cpu().numpy().astype(float), sg.cpu().numpy().astype(float)
        _, lmax = hessian_extreme_eigs(model, x, y, fn, iters=iters, tol=tol, seed=seed, batch_size=batch_size)
        lam = lmax.cpu().numpy().astype(float)
        C = float(max(lam.max(), 0.0))
        with torch.no_grad():
            k = model(x[:1]).shape[1]
        loss0 = soft_cw_threshold(k, temperature)
        out.soft_loss, out.soft_grad_norm, out.lam_max, out.C, out.loss0 = sl, sg, lam, C, loss0
        out.cbound = c_bound(sl, sg, C, loss0)
        out.cbound_paper = c_bound(sl, sg, C, 0.0)
    return out
