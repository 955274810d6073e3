"""The AdvProp chapter's figures: the paper's ImageNet figure beside the CIFAR-10 analogue, the corruption suite,
the attack-strength ablation, the two BN sets' statistics, and training curves."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from ... import corruptions as corr
from ... import reported
from . import LABELS, METHODS, PAPER, Config
from .tables import _headline, _mean_sd, corruption_frame, frame, paired_difference, strength_frame


def _plt():
    import matplotlib.pyplot as plt
    return plt


def fig_reference(records: Sequence[dict], cfg: Config):
    """Figure 1: the paper's ImageNet figure (B0–B8, vanilla vs AdvProp) beside the CIFAR-10 analogue (clean
    accuracy against width, mean ± sd over seeds) and the gains of both."""
    plt = _plt()
    ref = reported.table(PAPER, "imagenet_efficientnet")
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.9))
    a, b, c = axes
    xs = np.arange(len(ref))
    names = [i.replace("EfficientNet-", "") for i in ref.index]
    a.plot(xs, ref["vanilla"], marker="o", label="Vanilla (AutoAugment)")
    a.plot(xs, ref["advprop"], marker="s", label="AdvProp + AutoAugment")
    a.set_xticks(xs, names)
    a.set_xlabel("EfficientNet")
    a.set_ylabel("ImageNet top-1 (%)")
    a.set_title("Paper: ImageNet (release table)")
    a.legend(fontsize=8)
    df = frame(records)
    df.attrs["n_eval"] = cfg.n_test
    widths = sorted(set(df.width))
    for k, m in enumerate(("vanilla", "mixed", "advprop", "pgdat")):
        pts = [(w, *_mean_sd(_headline(df, cfg, m, w).clean)[:2]) for w in widths]
        pts = [p for p in pts if p[1] is not None]
        if pts:
            b.errorbar([p[0] * (1 + 0.03 * (k - 1.5)) for p in pts], [p[1] for p in pts],
                       yerr=[p[2] or 0 for p in pts], marker="os^D"[k], capsize=3, label=LABELS[m])
    b.set_xscale("log", base=2)
    b.set_xticks(widths, [str(w) for w in widths])
    b.set_xlabel("ResNet-18 width (first-stage channels)")
    b.set_ylabel("CIFAR-10 clean accuracy (%)")
    b.set_title(f"This project: CIFAR-10 ({cfg.s.profile})")
    b.legend(fontsize=8)
    gains = (ref["advprop"] - ref["vanilla"]).dropna()
    c.bar(np.arange(len(gains)), gains, color="tab:gray", alpha=0.6, label="ImageNet: AdvProp − Vanilla (paper)")
    off = len(gains) + 1
    for k, w in enumerate(widths):
        for j, (m, col) in enumerate((("advprop", "tab:green"), ("mixed", "tab:orange"))):
            pdiff = paired_difference(df, _headline(df, cfg, m, w), _headline(df, cfg, "vanilla", w))
            if pdiff["diff"] is None:
                continue
            x = off + 2.2 * k + 0.8 * j
            c.errorbar([x], [pdiff["diff"]], yerr=[[pdiff["diff"] - pdiff["lo"]], [pdiff["hi"] - pdiff["diff"]]],
                       marker="o", color=col, capsize=3,
                       label=f"CIFAR: {LABELS[m]} − Vanilla" if k == 0 else None)
    c.axhline(0, color="k", lw=0.8)
    c.set_xticks(list(range(len(gains))) + [off + 2.2 * k + 0.4 for k in range(len(widths))],
                 [i.replace("EfficientNet-", "") for i in gains.index] + [f"w{w}" for w in widths], fontsize=8)
    c.set_ylabel("clean accuracy gain (pp)")
    c.set_title("Gain over vanilla (95 % intervals)")
    c.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig


def fig_corruption_examples(test, cfg: Config, index: int = 0):
    """One test image under every corruption of the suite at severities 1–5."""
    plt = _plt()
    names = cfg.corruptions
    sev = corr.SEVERITIES
    fig, axes = plt.subplots(len(sev) + 1, len(names), figsize=(1.05 * len(names), 1.1 * (len(sev) + 1)),
                             squeeze=False)
    x = test.x[index:index + 1]
    for j, n in enumerate(names):
        axes[0, j].imshow(x[0].permute(1, 2, 0).numpy(), interpolation="nearest")
        axes[0, j].set_title(n.replace("_", "\n"), fontsize=7)
        for i, s in enumerate(sev, 1):
            axes[i, j].imshow(corr.corrupt(test.x[:index + 1], n, s, cfg.corruption_seed)[index]
                              .permute(1, 2, 0).numpy(), interpolation="nearest")
    for i, s in enumerate(("clean",) + tuple(f"severity {v}" for v in sev)):
        axes[i, 0].set_ylabel(s, fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([]), ax.set_yticks([])
    fig.tight_layout(h_pad=0.2, w_pad=0.2)
    return fig


def fig_corruptions(records: Sequence[dict], cfg: Config, width: int | None = None):
    """Figure 2: accuracy against severity (0 = clean) per corruption, one line per method (mean over seeds, bars =
    sd), plus the family means."""
    plt = _plt()
    width = width or cfg.large
    cf = corruption_frame(records)
    names = list(dict.fromkeys(cf.corruption))
    fams = list(dict.fromkeys(cf.family))
    ncol = 5
    nrow = math.ceil((len(names) + len(fams)) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.0 * ncol, 2.5 * nrow), sharey=True, squeeze=False)
    panels = [("corruption", n) for n in names] + [("family", f) for f in fams]
    colors = dict(zip(METHODS, ("tab:blue", "tab:orange", "tab:green", "tab:red")))
    for ax, (kind, name) in zip(axes.flat, panels):
        for m in METHODS:
            sub = cf[(cf.method == m) & (cf.width == width) & (cf.eps == cfg.headline_eps(m)) & (cf[kind] == name)]
            if not len(sub):
                continue
            per_seed = sub.groupby(["seed", "severity"]).accuracy.mean().unstack("severity")
            clean = sub.groupby("seed").clean.first()
            per_seed.insert(0, 0, clean)
            mean, sd = per_seed.mean(), per_seed.std(ddof=1) if len(per_seed) > 1 else per_seed.mean() * 0
            ax.errorbar(mean.index, mean.values, yerr=sd.values, marker=".", capsize=2, color=colors[m],
                        label=LABELS[m])
        ax.set_title(name.replace("_", " ") + (" (family mean)" if kind == "family" else ""), fontsize=9)
        ax.set_xticks([0] + list(cfg.severities))
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel("accuracy (%)")
    for ax in axes[-1]:
        ax.set_xlabel("severity (0 = clean)")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(f"CIFAR-10-C-style corruptions, ResNet-18 width {width}: mean over seeds (bars: sd)", fontsize=11)
    fig.tight_layout()
    return fig


def fig_strength(records: Sequence[dict], cfg: Config):
    """Figure 3: clean-accuracy gain over Vanilla against the attacker's ε, per width (the paper's ablation: bigger
    models profit from stronger attackers), and the auxiliary branch's clean and robust accuracy."""
    plt = _plt()
    st = strength_frame(records, cfg)
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.9))
    for k, w in enumerate(sorted(set(st.width))):
        col = plt.cm.viridis(k / max(1, len(set(st.width)) - 1) * 0.85)
        for m, mk, ls in (("AdvProp", "o", "-"), ("Mixed (shared BN)", "x", ":")):
            sub = st[(st.width == w) & (st.method == m)].dropna(subset=["gain"]).sort_values("eps_255")
            if not len(sub):
                continue
            x = sub.eps_255 * (1 + 0.04 * (k - 0.5))
            a.errorbar(x, sub.gain, yerr=[sub.gain - sub.gain_lo, sub.gain_hi - sub.gain], marker=mk, ls=ls,
                       color=col, capsize=3, label=f"{m}, width {w}")
            if m == "AdvProp":
                sd = sub.vanilla_sd.iloc[0] or 0
                a.axhspan(-sd, sd, color=col, alpha=0.08)
                b.plot(sub.eps_255, sub.clean_aux, marker="o", color=col, label=f"aux BN clean, width {w}")
                b.plot(sub.eps_255, sub.pgd20_aux, marker="s", ls="--", color=col,
                       label=f"aux BN PGD ε=8/255, width {w}")
    a.axhline(0, color="k", lw=0.8)
    for ax in (a, b):
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(set(st.eps_255)), [f"{e}/255" for e in sorted(set(st.eps_255))])
        ax.set_xlabel("attacker ε (PGD iterations = ε·255 + 1, 1 at ε = 1/255)")
    a.set_ylabel("clean acc. − Vanilla (pp, main BN)")
    a.set_title("Clean gain vs attacker (bands: ±1 sd of Vanilla)")
    a.legend(fontsize=7)
    b.set_ylabel("accuracy (%)")
    b.set_title("Auxiliary BN branch")
    b.legend(fontsize=7)
    fig.tight_layout()
    return fig


def fig_bn_stats(records: Sequence[dict], cfg: Config, width: int | None = None):
    """Figure 4: main vs auxiliary BN running statistics per layer for the AdvProp models of one width (seed of the
    sweep), one line per attacker ε; and the first BN layer channel by channel."""
    plt = _plt()
    width = width or cfg.large
    seed = cfg.strength_seeds[0]
    recs = sorted((r for r in records if r["method"] == "advprop" and r["width"] == width and r["seed"] == seed
                   and "bn_stats" in r), key=lambda r: r["eps"])
    fig, axes = plt.subplots(1, 4, figsize=(17, 3.8))
    if not recs:
        return fig
    a, b, c, d = axes
    for k, r in enumerate(recs):
        col = plt.cm.plasma(k / max(1, len(recs) - 1) * 0.8)
        st = pd.DataFrame(r["bn_stats"])
        lab = f"ε = {r['eps']}/255"
        if k in (0, len(recs) - 1):
            a.plot(st.layer, st.var_main, color=col, marker=".", label=f"main, {lab}")
            a.plot(st.layer, st.var_aux, color=col, marker="x", ls="--", label=f"aux, {lab}")
        b.plot(st.layer, st.smd, color=col, marker=".", label=lab)
        c.plot(st.layer, st.log_var_ratio, color=col, marker=".", label=lab)
    a.set_yscale("log")
    a.set_title("mean running variance per layer")
    b.set_title("|μ_main − μ_aux| / pooled σ (channel mean)")
    c.set_title("|log σ²_aux / σ²_main| (channel mean)")
    for ax in (a, b, c):
        ax.set_xlabel("BN layer (input → output)")
        ax.legend(fontsize=7)
    r = recs[-1]
    ch = r["bn_channels_first"]
    d.scatter(ch["var_main"], ch["var_aux"], s=12, label="running variance")
    d.scatter(np.abs(ch["mean_main"]), np.abs(ch["mean_aux"]), s=12, marker="x", label="|running mean|")
    lim = max(max(ch["var_main"] + ch["var_aux"]), max(np.abs(ch["mean_main"] + ch["mean_aux"]))) * 1.1
    d.plot([1e-4, lim], [1e-4, lim], color="gray", lw=0.8)
    d.set_xscale("log"), d.set_yscale("log")
    d.set_xlabel("main BN")
    d.set_ylabel("auxiliary BN")
    d.set_title(f"first BN layer per channel (ε = {r['eps']}/255)")
    d.legend(fontsize=7)
    fig.suptitle(f"AdvProp, ResNet-18 width {width}, seed {seed}: the two distributions the dual BN separates",
                 fontsize=11)
    fig.tight_layout()
    return fig


def fig_training(records: Sequence[dict]):
    """Training loss (and, for the paired methods, clean vs adversarial training accuracy) per epoch of every run."""
    plt = _plt()
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.6))
    colors = dict(zip(METHODS, ("tab:blue", "tab:orange", "tab:green", "tab:red")))
    seen = set()
    for r in records:
        h = pd.DataFrame(r["history"])
        lab = f"{r['label']} w{r['width']}" + (f" ε={r['eps']}/255" if r["method"] in ("mixed", "advprop") else "")
        first = lab not in seen
        seen.add(lab)
        a.plot(h.epoch, h.train_loss, color=colors[r["method"]], alpha=0.7, marker=".",
               label=lab if first else None)
        if "adv_acc" in h:
            b.plot(h.epoch, 100 * h.adv_acc, color=colors[r["method"]], ls="--", alpha=0.7, marker=".",
                   label=f"{lab}: adversarial" if first else None)
        acc = h["clean_acc"] if "clean_acc" in h else h.get("acc")
        if acc is not None:
            b.plot(h.epoch, 100 * acc, color=colors[r["method"]], alpha=0.7, marker=".",
                   label=f"{lab}: clean" if first else None)
    a.set_title("training loss")
    b.set_title("training-batch accuracy (%)")
    for ax in (a, b):
        ax.set_xlabel("epoch")
    b.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.tight_layout()
    return fig
