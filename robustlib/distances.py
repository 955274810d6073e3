"""Per-image minimum adversarial distance, and the statistics Finlay & Oberman derive from it.

The paper measures robustness per image as the *smallest* perturbation (in ℓ∞ or ℓ2) that any attack of a suite
finds, then reports the percentage of images whose distance is at most ε (clean errors count at distance 0), the
mean distance, and an improvement ratio. Its suite (Carlini–Wagner, Boundary, LogBarrier, PGD; budgets unstated) is
replaced here by two attacks with stated budgets:

* :func:`pgd_min_distance` — PGD turned into a minimum-distance attack by a **per-image bisection on ε**, batched:
  each image keeps its own bracket [lo, hi]. Probes at fixed ``anchors`` (e.g. 2/255 and 8/255, so the error at
  those budgets is at least PGD's error there) and at ``eps_max`` come first; images still unbroken at ``eps_max`` are
  probed at doubling budgets up to ``eps_cap``; then ``bisect_steps`` halvings of [lo, hi]. Each probe is a PGD of
  ``steps`` steps of 2.5·ε/steps (sign steps in ℓ∞, normalised steps in ℓ2) from the clean image, on the
  Carlini–Wagner margin of the logits (``loss="cw"``, which steers toward the nearest wrong class; ``"ce"`` is the
  cross-entropy). Every iterate of every probe that is misclassified is a candidate, and an image's distance is the
  norm of its *smallest* misclassified iterate — an upper bound on its true minimum distance.
* :func:`fab_min_distance` — FAB (Croce & Hein, 2020), a minimum-norm attack, through pyautoattack's
  ``FABAttack_PT`` (untargeted, ``n_iter`` iterations; the first run starts at the clean image, any further
  ``restarts`` start at a random point at distance ``eps_restart``/2, FAB's convention; the smallest success counts).
* :func:`min_distances` — both, per image, and their minimum (``best``); 0 for images misclassified when clean;
  ``inf`` where no attack succeeded within its budget.

Statistics: :func:`error_at` (% of images with distance ≤ ε, up to float32 rounding: :func:`float32_tolerance`),
:func:`error_curve`, :func:`mean_distance` (unbroken images counted at ``cap``, the largest budget tried, and
reported), :func:`improvement_ratio` (arXiv v1: R_μ/R_e with R_e = (e_λ − e₀)/e₀ on clean error and
R_μ = (μ_λ − μ₀)/μ₀ on mean distance, relative to the undefended model) and :func:`bootstrap_ci` for the mean
distance.

Everything runs the model in eval mode with frozen parameters (:func:`~robustlib.attacks.attack_mode`) and keeps
every candidate inside [0, 1].
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F

from .attacks.core import attack_mode, check_norm, margin_loss, predict
from .errors import ConfigError


def perturbation_norm(delta: torch.Tensor, norm: str) -> torch.Tensor:
    """Per-sample ℓ∞ or ℓ2 norm of a batch of perturbations."""
    flat = delta.flatten(1)
    return flat.abs().amax(1) if norm == "linf" else flat.norm(dim=1)


def _col(t: torch.Tensor, ndim: int) -> torch.Tensor:
    return t.view(-1, *([1] * (ndim - 1)))


def _pgd_probe(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: torch.Tensor, norm: str, steps: int,
               loss: str = "cw", step_factor: float = 2.5) -> torch.Tensor:
    """PGD at per-image budgets ``eps`` from the clean images; returns the norm of the smallest misclassified iterate
    per image (inf where none). The model must already be in attack mode."""
    best = torch.full((len(x),), math.inf, device=x.device)
    e = _col(eps.to(x.dtype), x.ndim)
    alpha = step_factor * e / max(steps, 1)
    x_adv = x.clone()
    for t in range(steps + 1):
        x_adv.requires_grad_(True)
        logits = model(x_adv)
        wrong = logits.detach().argmax(1) != y
        if wrong.any():
            d = perturbation_norm(x_adv.detach() - x, norm)
            best = torch.where(wrong, torch.minimum(best, d), best)
        if t == steps:
            break
        obj = (margin_loss(logits.float(), y) if loss == "cw"
               else F.cross_entropy(logits.float(), y, reduction="none")).sum()
        g, = torch.autograd.grad(obj, x_adv)
        x_adv = x_adv.detach()
        if norm == "linf":
            x_adv = x_adv + alpha * g.sign()
            x_adv = torch.minimum(torch.maximum(x_adv, x - e), x + e)
        else:
            gn = _col(g.flatten(1).norm(dim=1).clamp_min(1e-12), x.ndim)
            x_adv = x_adv + alpha * g / gn
            delta = x_adv - x
            dn = _col(delta.flatten(1).norm(dim=1).clamp_min(1e-12), x.ndim)
            x_adv = x + delta * torch.clamp(e / dn, max=1.0)
        x_adv = x_adv.clamp(0, 1)
    return best


def _bucket(n: int) -> int:
    """The next power of two up to 64, then the next multiple of 64."""
    return 1 << (n - 1).bit_length() if n <= 64 else -(-n // 64) * 64


def pgd_min_distance(model: nn.Module, x: torch.Tensor, y: torch.Tensor, norm: str = "linf", *,
                     eps_max: float = 32 / 255, eps_cap: float | None = None, steps: int = 20,
                     bisect_steps: int = 10, anchors: Sequence[float] = (), loss: str = "cw",
                     batch_size: int | None = None) -> torch.Tensor:
    """Per-image minimum adversarial distance found by PGD with per-image bisection on ε (see module docstring).

    Returns a float tensor (on ``x``'s device): 0 for clean errors, the smallest misclassified iterate's norm
    otherwise, ``inf`` if no probe up to ``eps_cap`` (default: 1 in ℓ∞, √N in ℓ2) succeeded.
    """
    check_norm(norm)
    if loss not in ("cw", "ce"):
        raise ConfigError(f"unknown PGD loss {loss!r}; valid: cw, ce")
    if batch_size and len(x) > batch_size:
        return torch.cat([pgd_min_distance(model, x[i:i + batch_size], y[i:i + batch_size], norm, eps_max=eps_max,
                                           eps_cap=eps_cap, steps=steps, bisect_steps=bisect_steps, anchors=anchors,
                                           loss=loss)
                          for i in range(0, len(x), batch_size)])
    if eps_cap is None:
        eps_cap = 1.0 if norm == "linf" else math.sqrt(x[0].numel())
    x, dev = x.detach(), x.device
    best = torch.full((len(x),), math.inf, device=dev)
    lo = torch.zeros(len(x), device=dev)
    with attack_mode(model, "eval"), torch.enable_grad():
        with torch.no_grad():
            clean_ok = model(x).argmax(1) == y
        best[~clean_ok] = 0.0

        def probe(mask: torch.Tensor, eps: torch.Tensor) -> None:
            idx = torch.nonzero(mask).squeeze(1)
            k = len(idx)
            if k == 0:
                return
            # pad the subset to a bucketed size (repeating its first image) so that few distinct batch shapes
            # reach cuDNN's autotuner / oneDNN's primitive cache
            padded = torch.cat([idx, idx[:1].expand(_bucket(k) - k)])
            d = _pgd_probe(model, x[padded], y[padded], eps[padded], norm, steps, loss)[:k]
            ok = torch.isfinite(d)
            best[idx] = torch.minimum(best[idx], d)
            lo[idx] = torch.where(ok, lo[idx], torch.maximum(lo[idx], eps[idx]))

        for a in sorted(set(float(v) for v in anchors if 0 < v < eps_max)) + [float(eps_max)]:
            eps = torch.full_like(lo, a)
            probe(clean_ok & (best > a), eps)
        e = float(eps_max)
        while e < eps_cap and bool((clean_ok & torch.isinf(best)).any()):
            e = min(2 * e, eps_cap)
            probe(clean_ok & torch.isinf(best), torch.full_like(lo, e))
        for _ in range(bisect_steps):
            open_ = clean_ok & torch.isfinite(best) & (best - lo > 1e-6)
            if not bool(open_.any()):
                break
            probe(open_, (lo + best) / 2)
    return best.detach()


def fab_min_distance(model: nn.Module, x: torch.Tensor, y: torch.Tensor, norm: str = "linf", *,
                     n_iter: int = 100, restarts: int = 1, eps_restart: float | None = None, seed: int = 0,
                     batch_size: int | None = None) -> torch.Tensor:
    """Per-image distance of FAB's adversarial example (untargeted FAB, pyautoattack's ``FABAttack_PT``).

    Returns 0 for clean errors, ‖x_FAB − x‖ where FAB's output is misclassified, ``inf`` otherwise. The first run
    starts at the clean image; ``restarts − 1`` further runs start at random points of radius ``eps_restart``/2
    (FAB's convention) and the smallest successful distance is kept.
    """
    check_norm(norm)
    from pyautoattack.fab_pt import FABAttack_PT
    if batch_size and len(x) > batch_size:
        return torch.cat([fab_min_distance(model, x[i:i + batch_size], y[i:i + batch_size], norm, n_iter=n_iter,
                                           restarts=restarts, eps_restart=eps_restart, seed=seed)
                          for i in range(0, len(x), batch_size)])
    x = x.detach()
    dev = x.device
    fab_norm = {"linf": "Linf", "l2": "L2"}[norm]
    eps_restart = eps_restart if eps_restart is not None else (8 / 255 if norm == "linf" else 0.5)
    best = torch.full((len(x),), math.inf, device=dev)
    with attack_mode(model, "eval"):
        clean_ok = predict(model, x) == y
        best[~clean_ok] = 0.0
        idx = torch.nonzero(clean_ok).squeeze(1)
        if len(idx):
            xs, ys = x[idx], y[idx]
            for r in range(restarts):
                fab = FABAttack_PT(model, norm=fab_norm, n_restarts=1, n_iter=n_iter, eps=eps_restart,
                                   seed=seed + r, device=dev)
                torch.manual_seed(seed + r)
                with torch.enable_grad():
                    adv = fab.attack_single_run(xs, ys, use_rand_start=r > 0)
                with torch.no_grad():
                    adv = adv.clamp(0, 1)
                    wrong = model(adv).argmax(1) != ys
                d = torch.where(wrong, perturbation_norm(adv - xs, norm), torch.full_like(best[idx], math.inf))
                best[idx] = torch.minimum(best[idx], d)
    return best.detach()


@dataclass
class AttackBudget:
    """What a minimum-distance evaluation spends, per norm."""

    norm: str = "linf"
    attacks: tuple[str, ...] = ("pgd", "fab")
    eps_max: float = 32 / 255
    eps_cap: float | None = None
    pgd_steps: int = 20
    bisect_steps: int = 10
    anchors: tuple[float, ...] = ()
    pgd_loss: str = "cw"
    fab_iter: int = 100
    fab_restarts: int = 1
    batch_size: int = 1000

    def __post_init__(self):
        check_norm(self.norm)
        bad = set(self.attacks) - {"pgd", "fab"}
        if bad:
            raise ConfigError(f"unknown minimum-distance attacks {sorted(bad)}; valid: pgd, fab")

    def describe(self) -> str:
        unit = (lambda v: f"{v * 255:.3g}/255") if self.norm == "linf" else (lambda v: f"{v:.3g}")
        parts = []
        if "pgd" in self.attacks:
            a = f", anchors {', '.join(unit(v) for v in self.anchors)}" if self.anchors else ""
            parts.append(f"PGD-{self.pgd_steps} (step 2.5ε/{self.pgd_steps}, {self.pgd_loss.upper()} loss, "
                         f"no random start) with per-image "
                         f"bisection on ε: probe at {unit(self.eps_max)}{a}, doubling up to "
                         f"{unit(self.eps_cap) if self.eps_cap else ('1' if self.norm == 'linf' else '√N')} for "
                         f"unbroken images, then {self.bisect_steps} halvings")
        if "fab" in self.attacks:
            parts.append(f"FAB (untargeted, {self.fab_iter} iterations, {self.fab_restarts} run"
                         f"{'s' if self.fab_restarts > 1 else ''})")
        return "; ".join(parts)


def min_distances(model: nn.Module, x: torch.Tensor, y: torch.Tensor, budget: AttackBudget,
                  seed: int = 0) -> pd.DataFrame:
    """Per-image distances of each attack and their minimum ``best`` (a DataFrame, one row per image)."""
    out: dict[str, np.ndarray] = {}
    if "pgd" in budget.attacks:
        torch.manual_seed(seed)
        out["pgd"] = pgd_min_distance(model, x, y, budget.norm, eps_max=budget.eps_max, eps_cap=budget.eps_cap,
                                      steps=budget.pgd_steps, bisect_steps=budget.bisect_steps,
                                      anchors=budget.anchors, loss=budget.pgd_loss,
                                      batch_size=budget.batch_size).cpu().numpy()
    if "fab" in budget.attacks:
        out["fab"] = fab_min_distance(model, x, y, budget.norm, n_iter=budget.fab_iter,
                                      restarts=budget.fab_restarts, seed=seed,
                                      batch_size=budget.batch_size).cpu().numpy()
    df = pd.DataFrame(out)
    df["best"] = df.min(axis=1)
    df["clean_correct"] = (predict(model, x, budget.batch_size) == y).cpu().numpy()
    return df


# ------------------------------------------------------------------------------------------------- statistics


#: Absolute part of :func:`float32_tolerance`: 8 half-spacings of float32 just below 1 (2⁻²⁵ each).
FLOAT32_ABS_TOL = 2.0 ** -22
#: Relative part of :func:`float32_tolerance` (≈ 7.6·10⁻⁶), for the float32 sum over the coordinates of an ℓ2 norm.
FLOAT32_REL_TOL = 2.0 ** -17


def float32_tolerance(eps: float) -> float:
    """How far above ε a float32 perturbation that lies on the ε-ball can measure: 2⁻²² + 2⁻¹⁷·ε.

    The distances are norms of ``x_adv − x`` computed in float32 on images in [0, 1]. Projecting onto the ε-ball
    (:func:`robustlib.attacks.project`, or the PGD probes here) writes ``x ± ε`` into a float32 pixel, which rounds to
    the float32 spacing *at the pixel's value*, not at ε: just below 1 the spacing is 2⁻²⁴, so a saturated ℓ∞
    perturbation measures up to ε + 2⁻²⁵ ≈ ε + 3·10⁻⁸ whatever ε is (8/255 measures 8/255 + 2.8·10⁻⁸). The error is
    therefore absolute, and a tolerance of a few float32 ulps *of ε* would be too tight at small budgets (0.5/255 is
    off by 1.5·10⁻⁵ relative). 2⁻²² leaves a factor 8 over that rounding (it also absorbs rounding ε itself to
    float32 and the subtraction). The relative 2⁻¹⁷·ε covers the float32 summation of an ℓ2 norm over N coordinates
    (measured ≤ 1.4·10⁻⁶ relative for 3×224×224 images). Both stay well under budgets that differ in earnest: an
    ℓ∞ perturbation of ε·(1 + 10⁻⁴) still counts as *above* ε for every ε ≥ 2.5·10⁻³ (≈ 0.65/255).
    """
    return FLOAT32_ABS_TOL + FLOAT32_REL_TOL * abs(float(eps))


def error_at(dist, eps: float, tol: float | None = None) -> float:
    """% of images whose minimum adversarial distance is ≤ ε (clean errors have distance 0).

    Distances are float32 norms, so "≤ ε" allows ``tol`` above ε (default :func:`float32_tolerance`): an image broken
    by a perturbation projected onto the ε-ball counts as broken at ε, not as robust there.
    """
    d = np.asarray(dist, dtype=float)
    tol = float32_tolerance(eps) if tol is None else float(tol)
    return 100.0 * float(np.mean(d <= eps + tol)) if len(d) else float("nan")


def error_curve(dist, grid: Sequence[float]) -> np.ndarray:
    """% misclassified at each distance of ``grid`` (the empirical CDF of the distances, in percent)."""
    d = np.asarray(dist, dtype=float)
    return np.array([error_at(d, g) for g in grid])


def mean_distance(dist, cap: float | None = None) -> float:
    """Mean distance over all images (clean errors at 0); unbroken images (inf) count at ``cap`` (a lower bound on
    their distance), or make the mean inf when ``cap`` is None."""
    d = np.asarray(dist, dtype=float)
    if cap is not None:
        d = np.where(np.isinf(d), cap, d)
    return float(np.mean(d)) if len(d) else float("nan")


def bootstrap_ci(values, stat=np.mean, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of ``stat`` over images."""
    v = np.asarray(values, dtype=float)
    if len(v) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(v), size=(n_boot, len(v)))
    s = np.array([stat(v[i]) for i in idx])
    a = (1 - level) / 2
    return float(np.quantile(s, a)), float(np.quantile(s, 1 - a))


def improvement_ratio(err0: float, mu0: float, err: float, mu: float) -> float:
    """arXiv v1's improvement ratio R_μ/R_e: R_e = (e − e₀)/e₀ (clean error), R_μ = (μ − μ₀)/μ₀ (mean distance),
    both relative to the undefended model (e₀, μ₀)."""
    r_e = (err - err0) / err0
    r_mu = (mu - mu0) / mu0
    return r_mu / r_e if r_e != 0 else float("nan")
