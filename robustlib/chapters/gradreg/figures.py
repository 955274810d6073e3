"""The gradreg chapter's figures: the smooth ReLU, training curves, minimum-distance curves, the lower-bound figure,
the h-ablation and the cost. Runs and evaluations are passed in keyed by their RECIPES row label."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

from ... import reported
from ...distances import error_curve

PAPER = "gradreg"
# the paper's figure "ℓ∞ norm adversarial attacks on CIFAR-10" (left) and its ℓ2 analogue (right)
DISTANCE_PANELS = {"linf": ("Undefended", "squared l1 lambda=0.1", "squared l1 lambda=1", "7-step AT"),
                   "l2": ("Undefended", "squared l2 lambda=0.1", "squared l2 lambda=1", "7-step AT")}
# the bound figure's models: (row, colour, role)
BOUND_PAIRS = (("Undefended (smooth)", "tab:red", "undefended"),
               ("squared l2 lambda=0.1 (smooth)", "tab:blue", "defended"))


def plot_smooth_relu():
    """ReLU beside the C² smooth ReLU of the curvature bound (they differ only on |x| < ½, shaded)."""
    import matplotlib.pyplot as plt
    from ...models.resnext import smooth_relu
    t = torch.linspace(-1.5, 1.5, 301)
    fig, ax = plt.subplots(figsize=(4.5, 3))
    ax.plot(t, torch.relu(t), label="ReLU")
    ax.plot(t, smooth_relu(t), label="smooth ReLU")
    ax.axvspan(-0.5, 0.5, color="gray", alpha=0.15)
    ax.legend()
    ax.set_title("The C² smooth ReLU of the curvature bound")
    return fig


def plot_training(runs: dict):
    """Training loss and penalty per epoch of each run ({row: experiment.Trained})."""
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    for label, t in runs.items():
        h = t.result.history
        if not len(h):
            continue
        axes[0].plot(h["epoch"], h["train_loss"], marker=".", label=label)
        if "penalty" in h:
            axes[1].plot(h["epoch"], h["penalty"], marker=".", label=label)
    axes[0].set_title("training loss (CE + penalty)")
    axes[1].set_title("penalty mean(D²)/2")
    axes[1].set_yscale("log")
    for a in axes:
        a.set_xlabel("epoch")
        a.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _colour(label: str) -> str:
    if label == "Undefended":
        return "tab:red"
    if label == "7-step AT":
        return "tab:gray"
    return "tab:blue" if "lambda=0.1" in label else "tab:green"


def plot_distance_curves(cfg, evals: dict):
    """Percent misclassified against ℓ∞ (squared-ℓ1 models) and ℓ2 distance (squared-ℓ2 models), one curve per
    model, with the paper's ℓ∞ errors at 2/255 and 8/255 as crosses."""
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, (norm, labels) in zip(axes, DISTANCE_PANELS.items()):
        grid = np.linspace(0, 32 / 255 if norm == "linf" else 2.0, 300)
        for label in labels:
            if label not in evals or not evals[label].has(f"{norm}_best"):
                continue
            c = _colour(label)
            ax.plot(grid * (255 if norm == "linf" else 1), error_curve(evals[label].dist(norm), grid), color=c,
                    label=label)
            if norm == "linf":
                p = reported.lookup(PAPER, "poster_linf", label)
                if p.get("err_2") is not None:
                    ax.scatter([2, 8], [p["err_2"], p["err_8"]], marker="x", color=c, s=40, zorder=3)
        if norm == "linf":
            for e in (2, 8):
                ax.axvline(e, color="k", lw=0.6, ls=":")
            ax.set_xlabel("ℓ∞ adversarial distance (×1/255)")
            ax.set_title("ℓ∞ attacks (squared-ℓ1 models; × = paper)")
        else:
            ax.set_xlabel("ℓ2 adversarial distance")
            ax.set_title("ℓ2 attacks (squared-ℓ2 models)")
        ax.set_ylim(-2, 102)
        ax.set_ylabel("percent misclassified")
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle(f"Minimum adversarial distance per image, CIFAR-10 ({cfg.s.profile} profile, "
                 f"{cfg.n_test} test images)", fontsize=11)
    fig.tight_layout()
    return fig


def plot_bounds(cfg, evals: dict):
    """The lower-bound figure: for the smooth undefended and smooth defended (squared ℓ2, λ = 0.1) models, the
    empirical CDF of the best attack's ℓ2 distance and of the L- and C-bounds (log distance axis)."""
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    lo, hi = math.inf, 0.0
    for label, _, _ in BOUND_PAIRS:
        if label in evals:
            ev = evals[label]
            for a in (ev.dist("l2"), ev.arrays["b_lbound"], ev.arrays.get("b_cbound", np.array([]))):
                pos = a[(a > 0) & np.isfinite(a)]
                if len(pos):
                    lo, hi = min(lo, pos.min()), max(hi, pos.max())
    if not math.isfinite(lo):
        lo, hi = 1e-4, 1.0
    grid = np.geomspace(lo / 1.5, hi * 1.5, 400)
    for label, c, name in BOUND_PAIRS:
        if label not in evals:
            continue
        ev = evals[label]
        ax.plot(grid, error_curve(ev.dist("l2"), grid), color=c, label=f"{name}: best attack")
        ax.plot(grid, error_curve(ev.arrays["b_lbound"], grid), color=c, ls="--", label=f"{name}: L-bound")
        if ev.has("b_cbound"):
            ax.plot(grid, error_curve(ev.arrays["b_cbound"], grid), color=c, ls=":", label=f"{name}: C-bound")
    ax.set_xscale("log")
    ax.set_xlabel("Euclidean (ℓ2) distance")
    ax.set_ylabel("percent misclassified")
    ax.set_ylim(-2, 102)
    ax.set_title("Lower bounds vs attacks, smooth-ReLU ResNeXt (defended: squared ℓ2, λ = 0.1)", fontsize=10)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_h_ablation(rep):
    """Error (clean, at 2/255, at 8/255) against h for the squared-ℓ1, λ = 1 models: ours (solid, with the exact
    penalty as a horizontal line) and the journal's Table B.4 (dashed)."""
    import matplotlib.pyplot as plt
    rows = [r for r in rep.rows if r["table"] == "h_ablation"]
    paper = reported.table(PAPER, "journal_h_ablation")
    fig, ax = plt.subplots(figsize=(6.2, 3.8))
    colors = {"err_clean": "tab:green", "err_2": "tab:blue", "err_8": "tab:red"}
    names = {"err_clean": "clean", "err_2": "ε = 2/255", "err_8": "ε = 8/255"}
    fd = sorted([r for r in rows if r.get("h")], key=lambda r: r["h"])
    dbp = [r for r in rows if not r.get("h")]
    for m, c in colors.items():
        if fd:
            ax.plot([r["h"] for r in fd], [r["metrics"][m] for r in fd], marker="o", color=c, label=f"ours, {names[m]}")
        if dbp and dbp[0]["metrics"].get(m) is not None:
            ax.axhline(dbp[0]["metrics"][m], color=c, lw=0.8, ls="-.")
        pf = paper.dropna(subset=["h"])
        ax.plot(pf["h"], pf[m], marker="x", ls="--", color=c, alpha=0.6, label=f"journal, {names[m]}")
    ax.set_xscale("log")
    ax.set_xlabel("finite-difference step h")
    ax.set_ylabel("error (%)")
    ax.set_ylim(-2, 102)
    ax.set_title("h-ablation, squared ℓ1, λ = 1 (dash-dot: our exact-penalty model)", fontsize=10)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def plot_costs(costs: pd.DataFrame):
    """Measured passes per sample (beside each method's own statement) and time relative to standard training (ours
    and the paper's hours)."""
    import matplotlib.pyplot as plt
    fig, (a, b) = plt.subplots(1, 2, figsize=(10.5, 3.6))
    xs = np.arange(len(costs))
    labels = [s.replace(" squared l1 lambda=1", "\nsq-ℓ1 λ=1").replace(" (undefended)", "") for s in costs.index]
    a.bar(xs - 0.2, costs["measured_N"], width=0.4, color="tab:blue", label="measured (cost meter)")
    a.bar(xs + 0.2, costs["derived_N"], width=0.4, alpha=0.6, label="derived (the method's statement)")
    a.set_xticks(xs, labels, fontsize=8)
    a.set_ylabel("network passes per sample (N)")
    a.set_title("Cost in passes")
    a.legend(fontsize=8)
    b.bar(xs - 0.2, costs["time_vs_standard"], width=0.4, label="ours (seconds per batch)")
    b.bar(xs + 0.2, costs["paper_time_vs_standard"], width=0.4, alpha=0.6, label="paper (GTX 1080 Ti hours)")
    b.set_xticks(xs, labels, fontsize=8)
    b.set_ylabel("time relative to standard training")
    b.set_title("Cost in time")
    b.legend(fontsize=8)
    fig.tight_layout()
    return fig
