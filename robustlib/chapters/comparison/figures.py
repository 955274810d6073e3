"""The comparison's figures: robustness against training cost with the Pareto front, accuracy against ε for every
defence (the checklist's first check), and the second seed against the first."""
from __future__ import annotations

from typing import Iterable

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.colors import Normalize

from .analysis import COSTS, eps_frame
from .tables import METRICS


def _label_points(ax, xs, ys, names, fontsize=7, gap_px=9.0):
    """Name every point, moving a label down a line when it would overlap a label already placed near it."""
    ax.figure.canvas.draw()  # fixes the axis limits and scales, so display coordinates are final
    placed: list[tuple[float, float]] = []
    order = sorted(range(len(xs)), key=lambda i: (-ys[i], xs[i]))
    for i in order:
        px, py = ax.transData.transform((xs[i], ys[i]))
        dy = 3.0
        while any(abs(px - qx) < 60 and abs(py + dy - qy) < gap_px for qx, qy in placed):
            dy -= gap_px
        placed.append((px, py + dy))
        ax.annotate(names[i], (xs[i], ys[i]), fontsize=fontsize, xytext=(4, dy), textcoords="offset points")


def plot_pareto(points: pd.DataFrame, reported_df: pd.DataFrame | None = None, metric: str = "aa"):
    """AutoAttack accuracy against three training costs; colour = clean accuracy; the front as a step line; the
    papers' points overlaid (× AutoAttack, ▽ the ABNN slides' PGD)."""
    fig, axes = plt.subplots(1, len(COSTS), figsize=(5.6 * len(COSTS), 4.4), squeeze=False)
    d0 = points.dropna(subset=["clean"])
    norm = Normalize(vmin=float(d0.clean.min()) if len(d0) else 0, vmax=float(d0.clean.max()) if len(d0) else 100)
    sc = None
    for ax, (c, label) in zip(axes[0], COSTS.items()):
        d = points.dropna(subset=[c, metric])
        if len(d):
            sc = ax.scatter(d[c], d[metric], c=d.clean, cmap="viridis", norm=norm, s=70, edgecolor="k", zorder=3)
            f = d[d[f"front_{c}"]].sort_values(c)
            if len(f):
                ax.step(f[c], f[metric], where="post", color="tab:red", lw=1.2, alpha=0.7, zorder=2)
                ax.scatter(f[c], f[metric], s=170, facecolor="none", edgecolor="tab:red", lw=1.5, zorder=4,
                           label="Pareto front (ours)")
        xs = list(d[c]) if len(d) else []
        if reported_df is not None and c in ("cost_passes", "total_passes"):
            rp = reported_df[reported_df.plotted].dropna(subset=[c, "accuracy"])
            xs += list(rp[c])
            aa = rp[rp.metric == "aa"]
            if len(aa):
                ax.scatter(aa[c], aa.accuracy, marker="x", color="tab:gray", s=45, zorder=2,
                           label="paper: AutoAttack (NuAT table 1)")
            pg = rp[rp.metric == "pgd"]
            if len(pg):
                ax.scatter(pg[c], pg.accuracy, marker="v", facecolor="none", edgecolor="tab:gray", s=55, zorder=2,
                           label="paper: ABNN slides' PGD (not AA)")
        if xs and max(xs) / max(min(xs), 1e-9) > 20:
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(plt.NullFormatter())
        if len(d):
            _label_points(ax, list(d[c]), list(d[metric]), list(d["method"]))
        ax.set_xlabel(label)
        ax.set_ylabel("AutoAttack accuracy (%)" if metric == "aa" else f"{metric} accuracy (%)")
        ax.legend(fontsize=7, loc="best")
    if sc is not None:
        fig.colorbar(sc, ax=list(axes[0]), label="clean accuracy (%)", shrink=0.85)
    fig.suptitle("Robustness against training cost (colour: clean accuracy)", fontsize=11)
    return fig


def plot_eps(rows: Iterable[dict], steps: int):
    """Accuracy against ε for every defence (bands: 95 % intervals): it must reach (near) zero."""
    df = eps_frame(rows)
    fig, ax = plt.subplots(figsize=(7.5, 4.0))
    if df.empty:
        return fig
    pal = dict(zip(dict.fromkeys(df.defence), sns.color_palette("tab10", n_colors=len(set(df.defence)))))
    for i, (m, g) in enumerate(df.groupby("defence", sort=False)):
        g = g.sort_values("eps_255")
        ax.plot(g.eps_255, g.accuracy, marker="os^vD<>ph*"[i % 10], ms=4, color=pal[m], label=m)
        ax.fill_between(g.eps_255, g.ci_low, g.ci_high, color=pal[m], alpha=0.12)
    ax.set_xscale("symlog", linthresh=8)
    ticks = sorted(set(df.eps_255))
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.set_xlabel("ε (×1/255; 0 = clean)")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(-2, 102)
    ax.set_title(f"PGD-{steps} accuracy against the ℓ∞ budget (it must reach zero)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def plot_spread(sp: pd.DataFrame):
    """Second seed against first seed for every metric (diagonal: equal), with the 95 % interval width of one
    measurement as a band around the diagonal."""
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    d = sp[sp.metric.isin(METRICS)]
    if d.empty:
        return fig
    half = d.ci_width.mean() / 2
    lim = (-2, 102)
    xs = np.linspace(*lim, 50)
    ax.fill_between(xs, xs - half, xs + half, color="tab:gray", alpha=0.2,
                    label=f"± half the mean 95 % interval ({half:.1f} points)")
    ax.plot(lim, lim, color="k", lw=0.8)
    for i, (k, g) in enumerate(d.groupby("metric", sort=False)):
        ax.scatter(g.value_a, g.value_b, marker="osD^v"[i % 5], s=30, label=k, zorder=3)
    ax.set_xlim(*lim), ax.set_ylim(*lim)
    a, b = int(d.seed_a.iloc[0]), int(d.seed_b.iloc[0])
    ax.set_xlabel(f"seed {a}: accuracy (%)")
    ax.set_ylabel(f"seed {b}: accuracy (%)")
    ax.set_title("Run-to-run spread: the same rows, two seeds")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig
