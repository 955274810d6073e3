"""Finite differences against double backpropagation: how well the FD penalty D² estimates the exact ‖∇ₓℓ‖² as h
shrinks, in float64, fp32 with TF32 off, TF32 (CUDA only) and bf16 autocast."""
from __future__ import annotations

import contextlib
import copy

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from ...attacks import attack_mode
from ...methods.gradreg import dual_norm_sq, fd_penalty
from ...utils import fp32_strict

PRECISIONS = ("float64", "fp32 (TF32 off)", "TF32", "bf16 autocast")


def fd_vs_exact(cfg, models: dict[str, nn.Module], test, norm: str = "l2") -> pd.DataFrame:
    """Relative error of the FD penalty D² against the exact ‖∇ℓ‖² (float64 double backprop) per image, for each h
    of ``cfg.fd_check_h`` and arithmetic, on the first ``cfg.fd_check_n`` test images. Eval mode, so that the images
    do not interact through BatchNorm and the exact per-image gradient is well defined."""
    dev = cfg.s.device
    x, y = test.images(dev)[:cfg.fd_check_n], test.y[:cfg.fd_check_n].to(dev)
    rows = []
    for name, model in models.items():
        m64 = copy.deepcopy(model).double().to(dev)
        with attack_mode(m64, "eval"), torch.enable_grad(), fp32_strict():
            xi = x.double().requires_grad_(True)
            ce = torch.nn.functional.cross_entropy(m64(xi), y, reduction="sum")
            g, = torch.autograd.grad(ce, xi)
        exact = dual_norm_sq(g, norm).detach()
        keep = exact > 0
        for prec in PRECISIONS:
            if prec == "TF32" and dev.type != "cuda":
                continue
            mdl = m64 if prec == "float64" else model
            xx = x.double() if prec == "float64" else x
            for h in cfg.fd_check_h:
                with attack_mode(mdl, "eval"), torch.enable_grad(), _precision(prec, dev):
                    _, D, _ = fd_penalty(mdl, xx, y, h, norm, strict=prec in ("float64", "fp32 (TF32 off)"))
                est = D.detach().double().pow(2)
                rel = ((est - exact).abs() / exact)[keep].cpu().numpy()
                rows.append({"model": name, "precision": prec, "h": h, "median_rel_err": float(np.median(rel)),
                             "q90_rel_err": float(np.quantile(rel, 0.9)), "n": int(keep.sum())})
    return pd.DataFrame(rows)


@contextlib.contextmanager
def _precision(prec: str, dev: torch.device):
    if prec == "bf16 autocast":
        with torch.autocast(dev.type, dtype=torch.bfloat16):
            yield
    elif prec == "TF32":
        old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        try:
            yield
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old
    else:
        yield


def plot_fd_vs_exact(df: pd.DataFrame):
    import matplotlib.pyplot as plt
    models = list(dict.fromkeys(df["model"]))
    fig, axes = plt.subplots(1, len(models), figsize=(5.2 * len(models), 3.8), squeeze=False, sharey=True)
    for ax, m in zip(axes[0], models):
        for prec, g in df[df.model == m].groupby("precision", sort=False):
            g = g.sort_values("h")
            ax.plot(g["h"], g["median_rel_err"].clip(lower=1e-17), marker="o", ms=4, label=prec)
        for h in (0.01, 0.1):
            ax.axvline(h, color="k", lw=0.5, ls=":")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("finite-difference step h")
        ax.set_title(m)
    axes[0, 0].set_ylabel("median |D² − ‖∇ℓ‖²| / ‖∇ℓ‖²")
    axes[0, -1].legend(fontsize=8)
    fig.suptitle("Finite-difference penalty vs the exact squared gradient norm", fontsize=11)
    fig.tight_layout()
    return fig
