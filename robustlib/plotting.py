"""Figures shared by the chapters (matplotlib + seaborn), in one consistent style."""
from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch


def style() -> None:
    """The book's plotting style."""
    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind",
                  rc={"figure.dpi": 110, "savefig.dpi": 150, "axes.titleweight": "bold", "figure.autolayout": False})


def _img(t: torch.Tensor) -> np.ndarray:
    a = t.detach().float().cpu().clamp(0, 1).numpy()
    return a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)


def example_grid(x: torch.Tensor, y: torch.Tensor, adversarial: Mapping[str, torch.Tensor],
                 predictions: Mapping[str, torch.Tensor], classes: Sequence[str], eps: float,
                 magnify: float | None = None):
    """Clean images, each attack's perturbation (magnified to fill the colour range) and adversarial image, with the
    predicted label above each (green when correct, red when wrong)."""
    n = len(x)
    names = list(adversarial)
    rows = 1 + 2 * len(names)
    fig, axes = plt.subplots(rows, n, figsize=(1.55 * n, 1.75 * rows), squeeze=False)
    mag = magnify or 0.5 / eps

    def show(ax, img, title, ok=None, cmap=None):
        ax.imshow(img, cmap=cmap, interpolation="nearest")
        ax.set_xticks([]), ax.set_yticks([])
        ax.set_title(title, fontsize=8, color={True: "tab:green", False: "tab:red", None: "black"}[ok])

    for j in range(n):
        pc = int(predictions["clean"][j])
        show(axes[0, j], _img(x[j]), f"{classes[pc]}", pc == int(y[j]), "gray" if x.shape[1] == 1 else None)
        for i, name in enumerate(names):
            delta = adversarial[name][j] - x[j]
            show(axes[1 + 2 * i, j], _img(0.5 + mag * delta), f"δ×{mag:.0f}", None, "gray" if x.shape[1] == 1 else None)
            p = int(predictions[name][j])
            show(axes[2 + 2 * i, j], _img(adversarial[name][j]), f"{classes[p]}", p == int(y[j]),
                 "gray" if x.shape[1] == 1 else None)
    axes[0, 0].set_ylabel("clean", fontsize=9)
    for i, name in enumerate(names):
        axes[1 + 2 * i, 0].set_ylabel(f"{name} δ", fontsize=9)
        axes[2 + 2 * i, 0].set_ylabel(name, fontsize=9)
    fig.suptitle(f"Adversarial examples at ε = {eps * 255:.0f}/255 (titles: predicted class; green = correct)",
                 fontsize=10)
    fig.tight_layout()
    return fig


def accuracy_vs_eps(df: pd.DataFrame, *, x: str = "eps_255", hue: str = "attack", col: str | None = "model",
                    title: str = "Robust accuracy against ε", xlabel: str = "ε (×1/255)"):
    """Lines of accuracy against ε with 95 % interval bands. ``df`` columns: x, hue, [col], accuracy, ci_low,
    ci_high."""
    cols = list(dict.fromkeys(df[col])) if col else [None]
    fig, axes = plt.subplots(1, len(cols), figsize=(4.6 * len(cols), 3.6), sharey=True, squeeze=False)
    palette = dict(zip(dict.fromkeys(df[hue]), sns.color_palette("colorblind")))
    for ax, c in zip(axes[0], cols):
        sub = df if c is None else df[df[col] == c]
        for h, g in sub.groupby(hue, sort=False):
            g = g.sort_values(x)
            ax.plot(g[x], g["accuracy"], marker="o", ms=4, label=h, color=palette[h])
            ax.fill_between(g[x], g["ci_low"], g["ci_high"], alpha=0.2, color=palette[h])
        ax.set_title(str(c) if c is not None else title)
        ax.set_xlabel(xlabel)
        ax.set_ylim(-2, 102)
    axes[0, 0].set_ylabel("accuracy (%)")
    axes[0, -1].legend(frameon=True, fontsize=8)
    if col:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def efficiency(df: pd.DataFrame, metric: str, *, cost_cols: Sequence[str] = ("cost_passes", "train_s"),
               labels: Mapping[str, str] | None = None, color: str | None = None, title: str | None = None,
               reported: pd.DataFrame | None = None):
    """Robust accuracy against training cost, one panel per cost column (N per sample, seconds)."""
    labels = {"cost_passes": "training cost (N per sample per epoch)", "train_s": "training time (s)",
              "total_passes": "total passes per sample (N × epochs)", **(labels or {})}
    fig, axes = plt.subplots(1, len(cost_cols), figsize=(5.2 * len(cost_cols), 4.0), squeeze=False)
    for ax, c in zip(axes[0], cost_cols):
        d = df.dropna(subset=[c, metric])
        if color and color in d:
            sc = ax.scatter(d[c], d[metric], c=d[color], cmap="viridis", s=60, edgecolor="k", zorder=3)
            fig.colorbar(sc, ax=ax, label=color)
        else:
            ax.scatter(d[c], d[metric], s=60, edgecolor="k", zorder=3)
        for _, r in d.iterrows():
            ax.annotate(r["method"], (r[c], r[metric]), fontsize=8, xytext=(4, 3), textcoords="offset points")
        if reported is not None and c in reported and metric in reported:
            rp = reported.dropna(subset=[c, metric])
            ax.scatter(rp[c], rp[metric], marker="x", color="tab:gray", s=50, label="paper", zorder=2)
            ax.legend(fontsize=8)
        ax.set_xlabel(labels.get(c, c))
        ax.set_ylabel(f"{metric} accuracy (%)")
        if c == "train_s" and len(d) and d[c].max() / max(d[c].min(), 1e-9) > 20:
            ax.set_xscale("log")
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def training_curves(history: pd.DataFrame, panels: Mapping[str, Sequence[str]], title: str | None = None):
    """One panel per entry of ``panels`` ({title: [history columns]}), against epoch."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.3), squeeze=False)
    for ax, (name, cols) in zip(axes[0], panels.items()):
        for c in cols:
            if c in history:
                ax.plot(history["epoch"], history[c], marker=".", label=c)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        if len(cols) > 1:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def confusion_matrices(matrices: Mapping[str, np.ndarray], classes: Sequence[str], title: str | None = None):
    """Row-normalised (true × predicted) confusion matrices side by side."""
    fig, axes = plt.subplots(1, len(matrices), figsize=(5.0 * len(matrices), 4.4), squeeze=False)
    for ax, (name, m) in zip(axes[0], matrices.items()):
        m = np.asarray(m, dtype=float)
        norm = m / np.clip(m.sum(1, keepdims=True), 1, None)
        sns.heatmap(100 * norm, ax=ax, vmin=0, vmax=100, cmap="rocket_r", square=True, cbar=True,
                    xticklabels=classes, yticklabels=classes, annot=len(classes) <= 10, fmt=".0f",
                    annot_kws={"fontsize": 7})
        ax.set_title(name)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig
