"""The gradreg chapter's result rows and tables: per-row statistics from the per-image evaluations (error at ε,
mean distance, bounds, constants, improvement ratio), the ImageNet-1k rows kept with the paper's numbers, and the
paper-vs-ours tables."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ... import reported
from ...distances import bootstrap_ci, error_at, float32_tolerance, improvement_ratio, mean_distance
from ...report import Report
from .recipes import EPS_2, EPS_8

if TYPE_CHECKING:  # pragma: no cover
    from ...experiment import RunSpec, Trained
    from . import Config, Evaluation

PAPER = "gradreg"
# rows of the chapter's tables (ours) and the reported table each is compared with
MAIN_ROWS = ("Undefended", "7-step AT", "squared l1 lambda=0.1", "squared l1 lambda=1", "squared l2 lambda=0.1",
             "squared l2 lambda=1")
L2_ROWS = ("Undefended", "Undefended (smooth)", "7-step AT", "squared l2 lambda=0.1",
           "squared l2 lambda=0.1 (smooth)", "squared l2 lambda=1")
TABLES = {"cifar10_linf": "poster_linf", "cifar10_l2": "arxiv_l2", "constants": "arxiv_constants",
          "h_ablation": "journal_h_ablation", "cost": "journal_hours"}
PERCENT_METRICS = {"err_clean", "err_2", "err_8"}


def describe(spec: RunSpec) -> str:
    """The row's training in words (it ends every row's note)."""
    hp = spec.hp
    if spec.method == "standard":
        return "cross-entropy"
    if spec.method == "pgd_at":
        step = "0.43/√3072" if hp["alpha"] == 0.43 / math.sqrt(3072) else f"{hp['alpha']:.4g}"
        return f"{hp['steps']}-step ℓ∞ PGD-AT (no random start, step {step}, ε = {hp['eps']:g})"
    pen = {"l1": "squared ℓ1", "l2": "squared ℓ2"}[hp["norm"]]
    if spec.method == "fd_gradreg":
        return f"FD {pen}, λ = {hp['lam']:g}, h = {hp['h']:g}"
    return f"double backprop {pen}, λ = {hp['lam']:g}"


# -------------------------------------------------------------------------------------------------- statistics


def linf_metrics(ev: Evaluation) -> dict[str, float]:
    d = ev.dist("linf")
    return {"err_clean": 100 * (1 - ev.clean_correct.mean()), "err_2": error_at(d, EPS_2),
            "err_8": error_at(d, EPS_8), "mean_dist": mean_distance(d, cap=1.0)}


def l2_metrics(ev: Evaluation) -> dict[str, float | None]:
    return {"err_clean": 100 * (1 - ev.clean_correct.mean()), "lbound": float(np.mean(ev.arrays["b_lbound"])),
            "cbound": float(np.mean(ev.arrays["b_cbound"])) if ev.has("b_cbound") else None,
            "mean_dist": mean_distance(ev.dist("l2"), cap=math.sqrt(3072))}


def constants_metrics(ev: Evaluation) -> dict[str, float | None]:
    """Mean and max ℓ2 gradient norm of the CW loss (SoftCW for smooth models, as the authors) and of the largest
    Hessian eigenvalue (smooth models)."""
    g = ev.arrays["b_soft_grad_norm"] if ev.has("b_soft_grad_norm") else ev.arrays["b_grad_norm"]
    lam = ev.arrays.get("b_lam_max")
    return {"grad_mean": float(g.mean()), "grad_max": float(g.max()),
            "curv_mean": float(lam.mean()) if lam is not None else None,
            "curv_max": float(lam.max()) if lam is not None else None}


def bound_violations(ev: Evaluation) -> dict[str, float]:
    """% of images whose bound exceeds the distance the attacks found (L and C are estimated, so the bounds are not
    certificates). ``cbound_paper`` is the C-bound with the authors' SoftCW threshold 0."""
    d = ev.dist("l2")
    return {k: 100 * float(np.mean(ev.arrays[f"b_{k}"] > d + 1e-9)) for k in ("lbound", "cbound", "cbound_paper")
            if ev.has(f"b_{k}")}


def linf_flags(ev: Evaluation) -> dict[str, np.ndarray]:
    """Per-image correct flags behind the ℓ∞ metrics (for the paired claims): ``clean`` (correctly classified),
    ``rob_2`` / ``rob_8`` (not broken within 2/255 / 8/255: the complement of :func:`error_at`'s count)."""
    d = ev.dist("linf")
    return {"clean": ev.clean_correct, "rob_2": d > EPS_2 + float32_tolerance(EPS_2),
            "rob_8": d > EPS_8 + float32_tolerance(EPS_8)}


def l2_flags(ev: Evaluation) -> dict[str, np.ndarray]:
    """Per-image flags of the ℓ2 rows: ``clean``, and ``lbound_ok`` / ``cbound_ok`` — the bound does not exceed the
    best attack's ℓ2 distance (the complement of :func:`bound_violations`)."""
    d = ev.dist("l2")
    out = {"clean": ev.clean_correct}
    for k in ("lbound", "cbound"):
        if ev.has(f"b_{k}"):
            out[f"{k}_ok"] = ~(ev.arrays[f"b_{k}"] > d + 1e-9)
    return out


def _bootstrap(values, seed) -> list[float]:
    return list(bootstrap_ci(values, seed=seed))


def add_rows(cfg: Config, rep: Report, runs: dict[str, Trained], evals: dict[str, Evaluation]) -> None:
    """Rows of every table for the given runs; ratios only when the undefended run is among them."""
    base = _row_note(cfg)
    und = evals.get("Undefended")
    for label, ev in evals.items():
        t = runs[label]
        common = dict(cost_passes=t.cost_passes, train_s=t.result.train_seconds, epochs=t.result.epochs,
                      precision=(getattr(t.result, "hyperparameters", None) or {}).get("resolved"))
        note = f"{base} {describe(t.spec)}.".strip()
        ablation = t.spec.extra["ablation"]
        if label in MAIN_ROWS:
            m = linf_metrics(ev)
            paper = reported.lookup(PAPER, "poster_linf", label)
            paper["ratio"] = reported.lookup(PAPER, "arxiv_linf", label).get("ratio")
            m["ratio"] = _ratio(und, ev, "linf") if label != "Undefended" else None
            rep.add_row("cifar10_linf", label, m, paper=paper, note=note, n=cfg.n_test, percent=PERCENT_METRICS,
                        ci={"mean_dist": _bootstrap(np.minimum(ev.dist("linf"), 1.0), cfg.s.seed)},
                        flags=linf_flags(ev), **common)
        if label in L2_ROWS and "l2" in t.spec.extra["evals"]:
            m = l2_metrics(ev)
            m["ratio"] = _ratio(und, ev, "l2") if label != "Undefended" else None
            ci = {"lbound": _bootstrap(ev.arrays["b_lbound"], cfg.s.seed),
                  "mean_dist": _bootstrap(np.minimum(ev.dist("l2"), math.sqrt(3072)), cfg.s.seed)}
            if ev.has("b_cbound"):
                ci["cbound"] = _bootstrap(ev.arrays["b_cbound"], cfg.s.seed)
            rep.add_row("cifar10_l2", label, m, reported_table="arxiv_l2", note=note, n=cfg.n_test,
                        percent=PERCENT_METRICS, ci=ci, bound_violations=bound_violations(ev), flags=l2_flags(ev),
                        **common)
            g = ev.arrays["b_soft_grad_norm"] if ev.has("b_soft_grad_norm") else ev.arrays["b_grad_norm"]
            ci = {"grad_mean": _bootstrap(g, cfg.s.seed)}
            if ev.has("b_lam_max"):
                ci["curv_mean"] = _bootstrap(ev.arrays["b_lam_max"], cfg.s.seed)
            rep.add_row("constants", label, constants_metrics(ev), reported_table="arxiv_constants", note=note,
                        n=cfg.n_test, percent=PERCENT_METRICS, ci=ci,
                        loss=("SoftCW" if t.spec.extra["smooth"] else "CW") + " on probabilities", **common)
        if ablation:
            rep.add_row("h_ablation", ablation, linf_metrics(ev), reported_table="journal_h_ablation", note=note,
                        n=cfg.n_test, percent=PERCENT_METRICS, h=t.spec.hp.get("h"),
                        ci={"mean_dist": _bootstrap(np.minimum(ev.dist("linf"), 1.0), cfg.s.seed)},
                        flags=linf_flags(ev), **common)


def _ratio(und: Evaluation | None, ev: Evaluation, norm: str) -> float | None:
    if und is None:
        return None
    e0, e = 100 * (1 - und.clean_correct.mean()), 100 * (1 - ev.clean_correct.mean())
    cap = 1.0 if norm == "linf" else math.sqrt(3072)
    mu0, mu = mean_distance(und.dist(norm), cap), mean_distance(ev.dist(norm), cap)
    if e0 == 0 or mu0 == 0 or e == e0:
        return None
    return improvement_ratio(e0, mu0, e, mu)


def _row_note(cfg: Config) -> str:
    p = cfg.s.profile
    if p == "smoke":
        return "smoke profile (tiny model, 64 images, 1 epoch): numbers meaningless."
    if p == "quick":
        return f"quick profile: {cfg.epochs} of 200 epochs; last epoch; PGD-bisection + FAB distances."
    if p == "cpu":
        short = ", ".join(f"{k} {v}" for k, v in (cfg.profile.get("row_epochs") or {}).items())
        return (f"cpu profile (2 CPU cores): width-8 ResNeXt with 3-3-3 blocks, {cfg.epochs} of 200 epochs"
                f"{f' ({short})' if short else ''}; last epoch; PGD-5-bisection + FAB-5 distances; compare rows, "
                "not absolute numbers.")
    return "paper protocol (200 epochs); last epoch; PGD-bisection + FAB distances."


def add_missing_rows(rep: Report) -> None:
    """The paper rows this chapter cannot reproduce — every ImageNet-1k row — keep their place, with the paper's
    numbers and a note."""
    note = ("not reproduced: ImageNet-1k is not available in this project (section 8 gives the command for readers "
            "who have it); the paper's number is shown for reference.")
    for table, ref in [("cifar10_linf", "poster_linf"), ("cifar10_linf", "arxiv_linf"), ("cifar10_l2", "arxiv_l2"),
                       ("constants", "arxiv_constants")]:
        for m in reported.methods(PAPER, ref):
            if not m.startswith("ImageNet") or any(r["table"] == table and r["method"] == m for r in rep.rows):
                continue
            vals = reported.lookup(PAPER, ref, m)
            if table == "cifar10_linf":
                vals["ratio"] = reported.lookup(PAPER, "arxiv_linf", m).get("ratio")
            rep.rows.append({"table": table, "method": m, "metrics": {k: None for k in vals}, "paper": vals,
                             "ci": {}, "n": rep.n_eval, "cost_passes": None, "train_s": None, "epochs": None,
                             "note": note, "paper_version": reported.spec(PAPER, ref).get("version", "")})


# ----------------------------------------------------------------------------------------------------- tables


def compare(rep: Report, table: str) -> pd.DataFrame:
    """Ours beside the paper per (row, metric): ours with its 95 % interval (Wilson for error rates, bootstrap over
    images for mean distances and bounds), the paper's number and version, the difference and its interval."""
    src = TABLES.get(table)
    version = reported.spec(PAPER, src).get("version", "") if src else ""
    out = []
    for r in [r for r in rep.rows if r["table"] == table]:
        for m, ours in r["metrics"].items():
            ref = (r.get("paper") or {}).get(m)
            if ours is None and ref is None:
                continue
            ci = r.get("ci", {}).get(m)
            ver = "arXiv v1" if (table == "cifar10_linf" and m == "ratio") else r.get("paper_version", version)
            out.append({"row": r["method"], "metric": m, "ours": ours, "ours 95% CI": _fmt_ci(ci), "paper": ref,
                        "paper version": ver if ref is not None else "",
                        "diff": None if ours is None or ref is None else ours - ref,
                        "diff 95% CI": _fmt_ci([ci[0] - ref, ci[1] - ref]) if ci and ref is not None else ""})
    cols = ["row", "metric", "ours", "ours 95% CI", "paper", "paper version", "diff", "diff 95% CI"]
    return pd.DataFrame(out, columns=cols).set_index(["row", "metric"])


def wide(rep: Report, table: str) -> pd.DataFrame:
    """One line per row: ours and the paper's number side by side for each metric."""
    rows = []
    for r in [r for r in rep.rows if r["table"] == table]:
        rec = {"row": r["method"]}
        for m, v in r["metrics"].items():
            rec[m], rec[f"{m} (paper)"] = v, (r.get("paper") or {}).get(m)
        rec["N"], rec["train s"] = r.get("cost_passes"), r.get("train_s")
        rows.append(rec)
    return pd.DataFrame(rows).set_index("row")


def _fmt_ci(ci) -> str:
    return f"[{_g(ci[0])}, {_g(ci[1])}]" if ci else ""


def _g(v) -> str:
    return "" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.3g}"


def style(df: pd.DataFrame):
    """Three significant digits for every number, blanks for missing values."""
    def fmt(v):
        if v is None or isinstance(v, bool):
            return "" if v is None else str(v)
        return _g(float(v)) if isinstance(v, (int, float, np.integer, np.floating)) else str(v)
    return df.style.format(fmt, na_rep="")


def part_tables(rep: Report) -> list[str]:
    """The chapter tables that hold at least one row of this report."""
    return [t for t in TABLES if any(r["table"] == t for r in rep.rows)]
