"""The NuAT chapter's figures and small demonstrations: confusion matrices under nuclear- and Frobenius-norm attacks,
robust accuracy against training cost, training curves, the hold-out selection metric of every row, the nuclear norm
against NumPy, and the ResNet-18 recipes' schedules at sample epochs."""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from ... import plotting
from ...attacks import predict
from ...attacks.nuclear import MatrixNormAttack, nuclear_norm
from ...data import ArrayDataset
from ...report import Report
from ...schedules import build_schedule
from .recipes import EPS, RECIPES

T1 = "cifar10_resnet18"


# ------------------------------------------------------------------------------------- confusion matrices


def confusion(cfg, model: nn.Module, test: ArrayDataset) -> tuple[dict, pd.DataFrame]:
    """Predictions of ``model`` under attacks that maximise only the nuclear or only the Frobenius norm of the batch
    logit-difference matrix (groups of 64 test images in order, Bernoulli ±4/255 start; one step of ε as in NuAT, and
    ten steps of 2/255). Returns {attack: 10×10 counts} and a table of accuracy and prediction diversity."""
    x = test.images(cfg.s.device)[:cfg.confusion_n]
    y = test.y[:cfg.confusion_n].to(cfg.s.device)
    k = test.num_classes
    eps = EPS
    mats, rows = {}, []
    for steps in cfg.confusion_steps:
        for kind, title in (("nuc", "nuclear"), ("fro", "Frobenius")):
            atk = MatrixNormAttack(eps, kind, steps, eps if steps == 1 else 2 / 255)
            torch.manual_seed(cfg.s.seed)
            pred = torch.cat([predict(model, atk.perturb(model, x[i:i + 500], y[i:i + 500]))
                              for i in range(0, len(x), 500)])
            m = torch.zeros(k, k, dtype=torch.long)
            m.index_put_((y.cpu(), pred.cpu()), torch.ones(len(y), dtype=torch.long), accumulate=True)
            name = f"{title} norm, {steps} step{'s' if steps > 1 else ''}"
            mats[name] = m.numpy()
            rows.append({"attack": name, **_diversity(m.numpy())})
    return mats, pd.DataFrame(rows).set_index("attack")


def _diversity(m: np.ndarray) -> dict:
    """Accuracy, the entropy (bits) of all predictions, the mean entropy of the wrong predictions per true class,
    and the mean number of distinct wrong classes per true class."""
    total = m.sum()
    acc = 100 * np.trace(m) / max(total, 1)
    pred = m.sum(0) / max(total, 1)
    h_pred = abs(float((pred[pred > 0] * np.log2(pred[pred > 0])).sum()))
    hs, distinct = [], []
    for i in range(len(m)):
        wrong = np.delete(m[i], i).astype(float)
        if wrong.sum() == 0:
            continue
        p = wrong / wrong.sum()
        hs.append(abs(float((p[p > 0] * np.log2(p[p > 0])).sum())))
        distinct.append(int((wrong > 0).sum()))
    return {"accuracy %": acc, "entropy of predictions (bits)": h_pred,
            "entropy of wrong predictions (bits)": float(np.mean(hs)) if hs else 0.0,
            "distinct wrong classes": float(np.mean(distinct)) if distinct else 0.0}


def plot_confusion(mats: dict, classes, steps: int):
    sel = {k: v for k, v in mats.items() if (f"{steps} step" in k)}
    return plotting.confusion_matrices(sel, classes, title=f"Normally trained ResNet-18 under attacks that maximise "
                                                         f"one matrix norm ({steps} step{'s' if steps > 1 else ''})")


# ------------------------------------------------------------------------------------------------- figures


def efficiency_frame(rep: Report, table: str = T1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(ours, paper-at-our-cost) for the efficiency figure: robust accuracy against N per sample per epoch, total
    passes per sample (N × epochs) and training seconds."""
    rows, ref = [], []
    for r in rep.rows:
        if r["table"] != table or r.get("cost_passes") is None:
            continue
        d = {"method": r["method"], "cost_passes": r["cost_passes"], "train_s": r.get("train_s"),
             "total_passes": r["cost_passes"] * (r.get("epochs") or float("nan"))}
        d.update({k: v for k, v in r["metrics"].items()})
        rows.append(d)
        ref.append({"method": r["method"], "cost_passes": r["cost_passes"], **(r.get("paper") or {})})
    return pd.DataFrame(rows), pd.DataFrame(ref)


def plot_efficiency(rep: Report, metric: str = "aa"):
    df, ref = efficiency_frame(rep)
    if df.empty:
        return None
    if metric not in df or df[metric].isna().all():
        metric = "gama100"
    return plotting.efficiency(df, metric, cost_cols=("cost_passes", "total_passes", "train_s"), reported=ref,
                               title=f"Robust accuracy ({metric}) against training cost, CIFAR-10 ResNet-18 "
                                     "(× = the paper's number at our measured cost per epoch)")


def curves_frame(rep: Report, methods=("NuAT", "NuAT-WA"), table: str = T1) -> pd.DataFrame:
    """Per-epoch λ, learning rate, hold-out clean and I-FGSM-7 accuracy of the given rows (the model each row
    reports: the live model, or the weight average for a -WA row), side by side."""
    frames = []
    for r in rep.rows:
        if r["table"] != table or r["method"] not in methods or not r.get("history"):
            continue
        h = pd.DataFrame(r["history"])
        which = r.get("model_used", "model")
        pre = "" if which == "model" else f"{which}_"
        cols = {"epoch": "epoch", "current_lam": f"λ {r['method']}", "lr": f"lr {r['method']}",
                f"{pre}val_clean": f"clean {r['method']}", f"{pre}val_robust": f"I-FGSM-7 {r['method']}"}
        frames.append(h[[c for c in cols if c in h]].rename(columns=cols).set_index("epoch"))
    if not frames:
        return pd.DataFrame()
    return pd.concat(frames, axis=1).reset_index()


def plot_curves(rep: Report, methods=("NuAT", "NuAT-WA")):
    df = curves_frame(rep, methods)
    if df.empty:
        return None
    panels = {"λ (nuclear-norm weight)": [f"λ {m}" for m in methods],
              "learning rate": [f"lr {m}" for m in methods],
              "hold-out clean accuracy (%)": [f"clean {m}" for m in methods],
              "hold-out I-FGSM-7 accuracy (%)": [f"I-FGSM-7 {m}" for m in methods]}
    return plotting.training_curves(df, panels, title="NuAT and NuAT-WA training curves (end of each epoch)")


def plot_holdout_all(rep: Report, table: str = T1):
    """Hold-out I-FGSM-7 accuracy of every trained row against training progress (catastrophic overfitting shows
    as a collapse)."""
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7.5, 4.0))
    colours = plt.get_cmap("tab20").colors
    n = 0
    for r in rep.rows:
        if r["table"] != table or not r.get("history") or r["method"] == "Normal":
            continue
        h = pd.DataFrame(r["history"])
        which = r.get("model_used", "model")
        col = "val_robust" if which == "model" else f"{which}_val_robust"
        if col not in h or h[col].isna().all():
            continue
        ax.plot(h["epoch"] / h["epoch"].max(), h[col], marker="o.sv^<>"[n % 7], ms=4, color=colours[n % 20],
                ls="-" if n < 10 else "--", label=r["method"])
        n += 1
    if not n:
        plt.close(fig)
        return None
    ax.set_xlabel("fraction of the run's epochs")
    ax.set_ylabel("hold-out I-FGSM-7 accuracy (%)")
    ax.set_title("Checkpoint-selection metric during training")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------- small demos


def nuclear_demo(seed: int = 0) -> pd.DataFrame:
    """The nuclear norm of a random 64×10 logit-difference matrix against numpy's singular values, with the
    Frobenius norm and the bound ‖A‖_F ≤ ‖A‖_* ≤ √rank·‖A‖_F."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for name, a in {"random 64×10": torch.randn(64, 10, generator=g),
                    "rank one (all images pushed one way)": torch.randn(64, 1, generator=g) @ torch.randn(
                        1, 10, generator=g),
                    "scaled identity rows (diverse directions)": torch.eye(10).repeat(7, 1)[:64]}.items():
        s = np.linalg.svd(a.numpy(), compute_uv=False)
        rows.append({"matrix": name, "torch ‖A‖_*": float(nuclear_norm(a)), "Σσ (numpy)": float(s.sum()),
                     "‖A‖_F": float(torch.linalg.matrix_norm(a)), "rank": int((s > 1e-6 * s.max()).sum()),
                     "‖A‖_* / ‖A‖_F": float(s.sum() / np.sqrt((s ** 2).sum()))})
    return pd.DataFrame(rows).set_index("matrix")


def schedule_table() -> pd.DataFrame:
    """Learning rate, momentum and λ of the NuAT and NuAT-WA recipes (RECIPES) at sample epochs."""
    from ...methods.nuat import ramp_value
    nuat, wa = RECIPES["cifar10/NuAT"], RECIPES["cifar10/NuAT-WA"]
    s, s_wa = build_schedule(dict(nuat["schedule"])), build_schedule(dict(wa["schedule"]))
    rows = []
    for e in (0, 10, 20, 40, 60, 80, 85, 86, 90, 91, 99):
        (lr, mom), (lr_wa, mom_wa) = s(e), s_wa(e)
        rows.append({"epoch": e, "NuAT lr": lr, "NuAT momentum": mom,
                     "NuAT λ": ramp_value(e, nuat["hp"]["lam_max"], nuat["hp"]["ramp_epochs"]),
                     "NuAT-WA lr": lr_wa, "NuAT-WA momentum": mom_wa,
                     "NuAT-WA λ": ramp_value(e, wa["hp"]["lam_max"], wa["hp"]["epochs"])})
    return pd.DataFrame(rows).set_index("epoch")
