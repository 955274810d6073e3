"""The ABNN chapter's figures: the gradient-masking checks, the training cost, and ROA examples."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ...attacks import predict
from .audit import LINF_KEYS, _roa
from .recipes import Config


def plot_sanity(sweep: pd.DataFrame, sanity: pd.DataFrame, bsweep: pd.DataFrame, cfg: Config):
    """Three panels: accuracy against ε; accuracy under each ℓ∞ attack; accuracy against the evaluation batch size."""
    import matplotlib.pyplot as plt
    import seaborn as sns
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), gridspec_kw={"width_ratios": [1, 1.5, 1]})
    pal = dict(zip(dict.fromkeys(list(sweep.model) + list(sanity.model)), sns.color_palette("colorblind")))
    ax = axes[0]
    for m, g in sweep.groupby("model", sort=False):
        g = g.sort_values("eps_255")
        ax.plot(g.eps_255, g.accuracy, marker="o", ms=4, label=m, color=pal[m])
        ax.fill_between(g.eps_255, g.ci_low, g.ci_high, alpha=0.2, color=pal[m])
    ax.set_xscale("symlog", linthresh=2)
    ax.set_xlabel("ε (×1/255)"), ax.set_ylabel("accuracy (%)"), ax.set_ylim(-2, 102)
    ax.set_title(f"PGD-{cfg.mid_steps} against ε")
    ax.legend(fontsize=8)
    ax = axes[1]
    sub = sanity[sanity.key.isin(LINF_KEYS + ("worst",))]
    order = list(dict.fromkeys(sub.attack))
    models = list(dict.fromkeys(sub.model))
    w = 0.8 / len(models)
    for i, m in enumerate(models):
        g = sub[sub.model == m].set_index("attack").reindex(order)
        ys = np.arange(len(order)) + (i - (len(models) - 1) / 2) * w
        err = np.clip(np.nan_to_num(np.stack([g.accuracy - g.ci_low, g.ci_high - g.accuracy])), 0, None)
        ax.barh(ys, g.accuracy, height=w, color=pal[m], label=m, xerr=err, error_kw={"lw": 0.8})
    ax.set_yticks(np.arange(len(order)), order, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("accuracy at ε = 8/255 (%)")
    ax.set_title("every ℓ∞ attack at ε = 8/255")
    ax.legend(fontsize=8, loc="lower right")
    ax = axes[2]
    for (m, metric), g in bsweep.groupby(["model", "metric"], sort=False):
        g = g.sort_values("batch_size")
        ax.plot(g.batch_size, g.accuracy, marker="o", ms=4, color=pal.get(m), ls="-" if metric == "clean" else "--",
                label=f"{m}: {metric}")
    ax.set_xscale("log")
    ax.set_xlabel("evaluation batch size"), ax.set_ylabel("accuracy (%)"), ax.set_ylim(-2, 102)
    ax.set_title("batch dependence")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_costs(costs: pd.DataFrame):
    """Measured passes per training sample beside the slides' numbers, and seconds per epoch."""
    import matplotlib.pyplot as plt
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    xs = np.arange(len(costs))
    a.bar(xs - 0.2, costs["measured N/sample"], width=0.4, label="measured (cost meter)")
    a.bar(xs + 0.2, costs["slides N"], width=0.4, alpha=0.6, label="slides")
    a.set_xticks(xs, costs.index)
    a.set_ylabel("network passes per training sample (N)")
    a.set_title("Training cost in passes")
    a.legend(fontsize=8)
    b.bar(xs, costs["s/epoch"], color="tab:gray")
    b.set_xticks(xs, costs.index)
    b.set_ylabel("seconds per epoch")
    b.set_title("Training time on this hardware")
    fig.tight_layout()
    return fig


def roa_examples(cfg: Config, models: dict, test, n: int = 6):
    """The first test images, then ROA (searched location) against each model, titled with the prediction."""
    import matplotlib.pyplot as plt
    x, y = test.images(cfg.s.device)[:n], test.y[:n].to(cfg.s.device)
    rows = [("clean", None, x)]
    for name, m in models.items():
        # the location search and the patch use this small batch; batch-global μ/σ come from these n images
        rows.append((f"ROA vs {name}", m, _roa(cfg, "search").perturb(m, x, y)))
    fig, axes = plt.subplots(len(rows), n, figsize=(1.6 * n, 1.8 * len(rows)), squeeze=False)
    for i, (label, m, imgs) in enumerate(rows):
        preds = {k: predict(mm, imgs) for k, mm in models.items()} if m is None else {label: predict(m, imgs)}
        for j in range(n):
            ax = axes[i, j]
            ax.imshow(imgs[j].detach().cpu().permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            p = next(iter(preds.values()))[j] if m is not None else preds[list(models)[-1]][j]
            ax.set_title(test.classes[int(p)], fontsize=8, color="tab:green" if int(p) == int(y[j]) else "tab:red")
        axes[i, 0].set_ylabel(label, fontsize=8)
    fig.suptitle(f"ROA: a 10 % grey patch at the worst place, then {cfg.roa['steps']} signed steps inside it "
                 f"(titles: prediction; clean row: {list(models)[-1]})", fontsize=9)
    fig.tight_layout()
    return fig


