"""The comparison's analysis of its report rows: the Pareto front, the seed spread, the checklist tables, the
budget and main tables, and the papers' own numbers. Every function reads report rows (``report.rows``: one dict
per (table, method), as :meth:`robustlib.report.Report.add_row` writes them and :func:`robustlib.experiment.gather`
copies them), so it works the same in a part notebook, in the chapter notebook and on a results file."""
from __future__ import annotations

import json
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from ... import audit, reported
from ...claims import flags_from_rows, table as claims_table
from ...methods import METHODS as REGISTERED
from ...report import Report
from ...stats import accuracy_ci, newcombe_difference
from .. import nuat
from .tables import CLAIMS, FD, METHODS, METRICS, ROWS, TABLE


def first_seed(rows: Iterable[dict]) -> dict[str, dict]:
    """{method: row} of the main table (first seed), in :data:`METHODS` order."""
    by = {r["method"]: r for r in rows if r["table"] == TABLE and r.get("metrics")
          and any(v is not None for v in r["metrics"].values())}
    return {m: by[m] for m in METHODS if m in by}


def second_seeds(rows: Iterable[dict]) -> dict[str, dict]:
    """{method: row} of the second-seed table (``resnet18_seed<k>``)."""
    return {r["method"]: r for r in rows if r["table"].startswith(TABLE + "_seed")}


def images_of(row: dict, metric: str) -> int:
    """How many test images are behind ``metric`` of a report row: ``aa_n`` for AutoAttack (the cpu profile runs it
    on a prefix of the test images), else the row's ``n``."""
    return int(row.get("aa_n") or row["n"]) if metric == "aa" else int(row["n"])


def records_of(df: pd.DataFrame) -> list[dict]:
    """A DataFrame (index included) as JSON-ready records, with NaN as null (for ``report.extra``)."""
    return json.loads(df.reset_index().to_json(orient="records"))


# ------------------------------------------------------------------------------------------------ Pareto front


COSTS = {"cost_passes": "training cost (N per sample per epoch)",
         "total_passes": "total passes per sample (N × epochs)",
         "gpu_s": "training time (device-seconds)"}


def pareto_mask(cost: Sequence[float], value: Sequence[float]) -> list[bool]:
    """Non-dominated points of (cost: lower is better, value: higher is better): a point is dominated when another
    costs no more and gives no less, and is strictly better in one of the two. Points with a missing coordinate are
    never on the front."""
    c, v = np.asarray(cost, float), np.asarray(value, float)
    ok = ~(np.isnan(c) | np.isnan(v))
    out = []
    for i in range(len(c)):
        if not ok[i]:
            out.append(False)
            continue
        dom = ok & (c <= c[i]) & (v >= v[i]) & ((c < c[i]) | (v > v[i]))
        out.append(not bool(dom.any()))
    return out


def pareto_points(rows: Iterable[dict], metric: str = "aa") -> pd.DataFrame:
    """One point per first-seed row: clean and ``metric`` accuracy, the three costs, and whether it is on the front
    of each."""
    pts = [{"method": m, "clean": r["metrics"]["clean"], metric: r["metrics"][metric], "cost_passes": r["cost_passes"],
            "total_passes": r["total_passes"], "gpu_s": r["gpu_s"], "epochs": r["epochs"]}
           for m, r in first_seed(rows).items()]
    df = pd.DataFrame(pts, columns=["method", "clean", metric, *COSTS, "epochs"])
    for c in COSTS:
        df[f"front_{c}"] = pareto_mask(df[c], df[metric]) if len(df) else []
    return df


def pareto_table(points: pd.DataFrame, metric: str = "aa") -> pd.DataFrame:
    """The Pareto front on each cost measure: its members in order of cost, with (cost, accuracy)."""
    out = []
    for c, label in COSTS.items():
        f = points[points[f"front_{c}"]].sort_values(c)
        out.append({"cost measure": label, "front (cheapest first)": " → ".join(f.method),
                    "points (cost, AA %)": "; ".join(f"{m}: ({x:.3g}, {y:.1f})" for m, x, y in
                                                     zip(f.method, f[c], f[metric]))})
    return pd.DataFrame(out).set_index("cost measure")


def nuat_paper_recipe(label: str) -> tuple[float, int, int | None]:
    """(derived N per sample, epochs, attack steps) of the NuAT chapter's paper recipe for ResNet-18 table row
    ``label``: the registered method's own statement (``derived_passes``) at the recipe's hyperparameters."""
    for key, r in nuat.RECIPES.items():
        if key.startswith("cifar10/") and label in r.get("rows", {key.split("/", 1)[1]: "model"}):
            m = REGISTERED.build(r["method"], **r["hp"])
            return float(m.derived_passes()), int(r["epochs"]), m.hyperparameters().get("attack_steps")
    raise KeyError(f"no CIFAR-10 recipe of the NuAT chapter gives the row {label!r}")


def reported_points() -> pd.DataFrame:
    """The papers' own (cost, robust accuracy) points for the figure: NuAT table 1's AutoAttack at the derived pass
    count of each recipe; the ABNN slides' PGD (not AutoAttack) at its 3N; AdvProp and gradreg have no AutoAttack
    number and are listed as omitted."""
    out = []
    for m, r in ROWS.items():
        if r["chapter"] != "nuat":
            continue
        n, e, steps = nuat_paper_recipe(r["label"])
        out.append({"method": m, "source": "NuAT table 1", "metric": "aa",
                    "accuracy": reported.lookup("nuat", "cifar10_resnet18", m).get("aa"), "cost_passes": n,
                    "epochs": e, "total_passes": n * e, "plotted": True,
                    "note": "AutoAttack (v1) on the full test set; N derived for the paper's recipe"
                            + (f" (t = {steps})" if steps and steps > 1 else "")})
    ab = reported.table("abnn", "cifar10")
    out.append({"method": "ABNN", "source": "ABNN slides, Table 1", "metric": "pgd",
                "accuracy": float(ab.loc["ABNN", "pgd"]), "cost_passes": float(ab.loc["ABNN", "cost_passes"]),
                "epochs": None, "total_passes": None, "plotted": True,
                "note": "PGD with unstated settings, NOT AutoAttack: drawn with a different marker; no epochs given"})
    out.append({"method": "AdvProp", "source": "Xie et al.", "metric": None, "accuracy": None, "cost_passes": None,
                "epochs": None, "total_passes": None, "plotted": False,
                "note": "omitted: no AutoAttack number (the paper reports ImageNet clean accuracy of EfficientNets)"})
    out.append({"method": FD, "source": "Finlay & Oberman", "metric": None, "accuracy": None, "cost_passes": None,
                "epochs": None, "total_passes": None, "plotted": False,
                "note": "omitted: no AutoAttack number (the paper reports error rates under its own minimum-distance "
                        "attack suite, on ResNeXt34-2x32)"})
    return pd.DataFrame(out).set_index("method")


def paper_numbers(method: str) -> tuple[dict[str, float | None], str]:
    """The row's own paper's number for each metric of :data:`METRICS` (None where the paper has none), and where it
    comes from."""
    out: dict[str, float | None] = {k: None for k in METRICS}
    chapter = ROWS[method]["chapter"]
    if chapter == "nuat":
        ref = reported.lookup("nuat", "cifar10_resnet18", method)
        out.update({k: ref.get(k) for k in METRICS if ref.get(k) is not None})
        return out, "NuAT table 1 (ResNet-18, full test set, AA v1)"
    if chapter == "abnn":
        out["clean"] = reported.lookup("abnn", "cifar10", "ABNN").get("clean")
        return out, "ABNN slides, Table 1 (architecture unstated; its PGD column is not PGD-20)"
    if method == FD:
        ref = reported.lookup("gradreg", "poster_linf", "squared l1 lambda=1")
        out["clean"] = None if ref.get("err_clean") is None else round(100 - ref["err_clean"], 2)
        return out, "Finlay & Oberman, clean = 100 − clean error (ResNeXt34-2x32)"
    return out, "AdvProp reports ImageNet EfficientNets only"


def reported_sources() -> pd.DataFrame:
    return pd.DataFrame([{"method": m, "paper numbers from": paper_numbers(m)[1]} for m in METHODS]).set_index("method")


# ------------------------------------------------------------------------------------------------ seed spread


def spread(rows: Iterable[dict]) -> pd.DataFrame:
    """Per row with two seeds and per metric: both values, |difference|, the width of one measurement's 95 % Wilson
    interval, their ratio, and Newcombe's 95 % interval of the difference (as if the two evaluations were independent
    samples; they share the test images, so it is conservative). Training seconds: relative difference in %."""
    rows = list(rows)
    first, second = first_seed(rows), second_seeds(rows)
    out = []
    for m in METHODS:
        if m not in first or m not in second:
            continue
        a, b = first[m], second[m]
        for k in METRICS:
            n = min(images_of(a, k), images_of(b, k))
            va, vb = a["metrics"][k], b["metrics"][k]
            lo_a, hi_a = accuracy_ci(va, n)
            lo_b, hi_b = accuracy_ci(vb, n)
            width = ((hi_a - lo_a) + (hi_b - lo_b)) / 2
            diff, dlo, dhi = newcombe_difference(vb, n, va, n)
            out.append({"method": m, "metric": k, "seed_a": a["seed"], "seed_b": b["seed"], "value_a": va,
                        "value_b": vb, "diff": vb - va, "abs_diff": abs(vb - va), "ci_width": width,
                        "ratio": abs(vb - va) / width if width > 0 else float("nan"), "diff_lo": dlo,
                        "diff_hi": dhi, "beyond_sampling": bool(dlo > 0 or dhi < 0)})
        ta, tb = a["train_s"], b["train_s"]
        rel = 100 * abs(tb - ta) / ta if ta else float("nan")
        out.append({"method": m, "metric": "train_s", "seed_a": a["seed"], "seed_b": b["seed"], "value_a": ta,
                    "value_b": tb, "diff": tb - ta, "abs_diff": rel, "ci_width": float("nan"), "ratio": float("nan"),
                    "diff_lo": float("nan"), "diff_hi": float("nan"), "beyond_sampling": False})
    return pd.DataFrame(out)


def spread_summary(sp: pd.DataFrame) -> pd.DataFrame:
    """Per metric over the rows with two seeds: largest and median |seed difference|, the mean width of one
    measurement's 95 % interval, the largest ratio, and how many differences exceed the sampling interval."""
    if sp.empty:
        return pd.DataFrame()
    out = []
    for k, g in sp.groupby("metric", sort=False):
        if k == "train_s":
            out.append({"metric": "training seconds (relative, %)", "rows": len(g), "max |Δ|": g.abs_diff.max(),
                        "median |Δ|": g.abs_diff.median(), "mean 95% CI width": None, "max |Δ| / CI width": None,
                        "beyond sampling noise": None})
            continue
        out.append({"metric": k, "rows": len(g), "max |Δ|": g.abs_diff.max(), "median |Δ|": g.abs_diff.median(),
                    "mean 95% CI width": g.ci_width.mean(), "max |Δ| / CI width": g.ratio.max(),
                    "beyond sampling noise": f"{int(g.beyond_sampling.sum())} of {len(g)}"})
    return pd.DataFrame(out).set_index("metric")


def spread_wide(sp: pd.DataFrame) -> pd.DataFrame:
    """|seed difference| per row (rows) and metric (columns), in percentage points (training seconds: %)."""
    if sp.empty:
        return pd.DataFrame()
    w = sp.pivot(index="method", columns="metric", values="abs_diff")
    return w.reindex([m for m in METHODS if m in w.index])[[c for c in (*METRICS, "train_s") if c in w.columns]]


# ------------------------------------------------------------------------------------------------------ claims


def claims(rep: Report) -> pd.DataFrame:
    """:data:`CLAIMS` checked on the first-seed rows of ``rep`` (gathered from the part notebooks: per-image flags and
    measured passes per sample per epoch travel with each row, :func:`robustlib.claims.flags_from_rows`): a paired
    95 % interval over the same test images, a Wilson interval against a threshold, or a ratio of measured passes;
    a claim whose rows did not run says "not measured"."""
    rows = [r for r in rep.rows if r["table"] == TABLE]
    cost = {r["method"]: r.get("cost_passes") for r in rows}.get
    return claims_table(CLAIMS, flags_from_rows(rows, TABLE), cost)


# --------------------------------------------------------------------------------------------------- checklist


def checks_of(rows: Iterable[dict]) -> list[audit.Check]:
    out = []
    for r in first_seed(rows).values():
        out += [audit.from_row(c) for c in (r.get("checks") or [])]
    return out


def checklist_tables(rows: Iterable[dict]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(pass/fail table in :data:`METHODS` order, the numbers behind every check, the verdict per defence)."""
    checks = checks_of(rows)
    if not checks:
        empty = pd.DataFrame()
        return empty, empty, empty
    order = [m for m in METHODS if any(c.defence == m for c in checks)]
    tab = audit.table(checks).reindex(order)
    tab = tab[[c for c in audit.MEANING if c in tab.columns]]
    tab.columns.name = None
    return tab, audit.details(checks), audit.verdicts(checks).reindex(order)


def flagged(rows: Iterable[dict]) -> list[str]:
    """Defences that fail at least one check."""
    return [m for m, r in first_seed(rows).items() if any(c["passed"] is False for c in (r.get("checks") or []))]


def eps_frame(rows: Iterable[dict]) -> pd.DataFrame:
    """PGD accuracy against ε (with the clean accuracy at ε = 0) of every audited defence, with Wilson intervals."""
    out = []
    for m, r in first_seed(rows).items():
        if not r.get("eps_curve"):
            continue
        pts = [(0, r["metrics"]["clean"])] + [(int(p["eps_255"]), float(p["accuracy"])) for p in r["eps_curve"]]
        for e, a in pts:
            lo, hi = accuracy_ci(a, r["n"])
            out.append({"defence": m, "eps_255": e, "accuracy": a, "ci_low": lo, "ci_high": hi, "attack": m})
    return pd.DataFrame(out)


# ------------------------------------------------------------------------------------------------------ tables


def main_table(rep: Report) -> pd.DataFrame:
    """Ours with the 95 % interval per metric, one line per row (the paper's numbers are in :meth:`Report.compare`)."""
    out = []
    for r in rep.rows:
        if r["table"] != TABLE:
            continue
        d = {"method": r["method"], "family": r.get("family", "")}
        for k in METRICS:
            v = r["metrics"].get(k)
            ci = (r.get("ci") or {}).get(k)
            d[k] = "" if v is None else (f"{v:.1f} [{ci[0]:.1f}, {ci[1]:.1f}]" if ci else f"{v:.1f}")
        out.append(d)
    return pd.DataFrame(out).set_index("method")


def budget_table(rows: Iterable[dict]) -> pd.DataFrame:
    """Every row's training budget, from its run: epochs (and the recipe's), measured N per sample per epoch, total
    passes, training seconds, device-seconds, hardware, how the checkpoint was chosen, and the source."""
    out = [{"method": m, "epochs": r["epochs"], "recipe epochs": r.get("recipe_epochs"),
            "N/sample/epoch": r["cost_passes"], "total N/sample": r["total_passes"], "train s": r["train_s"],
            "device s": r["gpu_s"], "hardware": r["hardware"], "checkpoint": r["selection"],
            "model": ROWS[m]["model"], "source": r["source"]} for m, r in first_seed(rows).items()]
    return pd.DataFrame(out).set_index("method") if out else pd.DataFrame()


def part_summary(records: Sequence[dict]) -> pd.DataFrame:
    """One line per evaluation of a part (records of :func:`~robustlib.chapters.comparison.run_part`): metrics,
    training budget, and the seconds the evaluation took (0 when it came from the cache)."""
    out = []
    for r in records:
        t = r["train"]
        out.append({"row": r["label"], "seed": r["seed"], **r["metrics"], "N/sample": t["cost_passes"],
                    "epochs": t["epochs"], "train s": t["train_s"], "suite s": r["suite_s"],
                    "checklist s": r.get("checklist_s"), "checks failed": None if not r.get("checks") else
                    sum(c["passed"] is False for c in r["checks"])})
    return pd.DataFrame(out).set_index(["row", "seed"])
