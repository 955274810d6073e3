"""The AdvProp chapter's aggregation: records (one per trained model) → report rows (mean ± sd over seeds) and the
notebook's tables. Seed-paired differences use :mod:`robustlib.stats`."""
from __future__ import annotations

import math
from typing import Iterable, Sequence

import pandas as pd

from ... import reported
from ...methods.advprop import attacker
from ...report import Report
from ...stats import mean_sd, newcombe_difference, t95
from . import HEADLINE_METRICS, LABELS, METHODS, PAPER, Config, model_params, pgd_key, row_hp


def frame(records: Sequence[dict]) -> pd.DataFrame:
    """One row per trained model: run fields plus every metric."""
    rows = []
    for r in records:
        row = {k: r[k] for k in ("key", "method", "label", "width", "eps", "seed", "attack_steps", "params_plain",
                                 "cost_passes", "formula_passes", "train_s", "epochs")}
        row.update(r["metrics"])
        rows.append(row)
    return pd.DataFrame(rows)


def _select(df: pd.DataFrame, method: str, width: int, eps: int | None = None) -> pd.DataFrame:
    sub = df[(df.method == method) & (df.width == width)]
    return sub if eps is None else sub[sub.eps == eps]


def _headline(df: pd.DataFrame, cfg: Config, method: str, width: int) -> pd.DataFrame:
    return _select(df, method, width, cfg.headline_eps(method))


def _mean_sd(values) -> tuple[float | None, float | None, int]:
    v = [float(x) for x in values if x is not None and not (isinstance(x, float) and math.isnan(x))]
    if not v:
        return None, None, 0
    return mean_sd(v)


def _note(cfg: Config, n: int, seeds: Iterable[int]) -> str:
    tc = cfg.train
    base = (f"{cfg.s.profile} profile: {tc.epochs} epochs at batch {tc.batch_size}; mean over {n} seed(s) "
            f"({', '.join(map(str, seeds))}), sd in 'sd'")
    if cfg.eval_pgd_steps != 20:
        base += f"; 'pgd20' keys hold PGD-{cfg.eval_pgd_steps}"
    if cfg.s.profile == "smoke":
        base += "; smoke numbers mean nothing"
    return base


def _first_seed(sub: pd.DataFrame, cfg: Config) -> int:
    """The seed whose run carries the row's per-image flags: the configuration's seed (seed 0 by default), else the
    smallest seed of the group."""
    seeds = sorted(int(s) for s in sub.seed)
    return cfg.s.seed if cfg.s.seed in seeds else seeds[0]


def _add_group(rep: Report, cfg: Config, table: str, name: str, sub: pd.DataFrame, metrics: Sequence[str],
               paper: dict | None = None, extra_note: str = "", by_key: dict | None = None) -> None:
    """One report row: the mean over the group's seeds (sd and per-seed values in extra keys); with ``by_key``
    (records by run alias) also the per-image flags of the first seed's run (``flags_seed``), for paired claims."""
    vals, sds = {}, {}
    for k in metrics:
        m, sd, _ = _mean_sd(sub[k]) if k in sub else (None, None, 0)
        vals[k], sds[k] = m, sd
    seeds = sorted(int(s) for s in sub.seed)
    per_seed = {k: {str(int(s)): (None if pd.isna(v) else float(v)) for s, v in zip(sub.seed, sub[k])}
                for k in metrics if k in sub}
    note = _note(cfg, len(sub), seeds) + (f"; {extra_note}" if extra_note else "")
    extra = {}
    if by_key is not None:
        s0 = _first_seed(sub, cfg)
        rec = by_key[sub[sub.seed == s0].key.iloc[0]]
        if rec.get("flags"):
            extra = {"flags": {k: rec["flags"][k] for k in metrics if k in rec["flags"]}, "flags_seed": s0,
                     "precision": rec.get("precision")}
            note += f"; per-image flags: seed {s0}"
    rep.add_row(table, name, vals, paper=paper, cost_passes=float(sub.cost_passes.mean()),
                train_s=float(sub.train_s.mean()), epochs=int(sub.epochs.max()), note=note, sd=sds,
                n_seeds=len(sub), seeds=seeds, per_seed=per_seed,
                formula_passes=int(sub.formula_passes.iloc[0]), **extra)


def strength_label(method: str, eps: int) -> str:
    return f"{LABELS[method]} ε={eps}/255 (PGD-{attacker(eps)[0]})"


def add_rows(rep: Report, records: Sequence[dict], cfg: Config, complete: bool = True) -> None:
    """Aggregate the records into the report's tables (mean over seeds, sd and per-seed values in extra keys):

    * ``cifar10_w<width>``: Vanilla, Mixed (shared BN), AdvProp, PGD-AT (headline attacker), each with the
      per-image flags of its first seed's run (``flags``, ``flags_seed``) for the paired claims (:mod:`.chapter`);
    * ``strength_w<width>``: Vanilla and AdvProp / Mixed at every attacker ε;
    * ``cost``: measured N per sample per method and attack steps, beside the method's own statement
      (``derived_passes``) and Fast AdvProp's numbers.

    With ``complete``, rows the configuration plans but the records lack are kept with a note."""
    df = frame(records)
    if df.empty:
        return
    extra_metrics = sorted(c for c in df.columns if c.startswith("corruption_") and c != "corruption_mean")
    metrics = list(HEADLINE_METRICS) + extra_metrics
    by_key = {r["key"]: r for r in records}
    for w in cfg.widths:
        table = f"cifar10_w{w}"
        for m in METHODS:
            sub = _headline(df, cfg, m, w)
            if len(sub):
                _add_group(rep, cfg, table, LABELS[m], sub, metrics, by_key=by_key)
            elif complete:
                rep.add_missing(table, [LABELS[m]], f"not trained in this profile ({cfg.s.profile}) at width {w}",
                                metrics)
    sandwich = {r["method"]: r for r in reported.spec(PAPER, "sandwich_bn_cifar10")["rows"]}
    for w in cfg.widths:
        table = f"strength_w{w}"
        sub = _headline(df, cfg, "vanilla", w)
        if len(sub):
            _add_group(rep, cfg, table, "Vanilla", sub, metrics)
        for m in ("advprop", "mixed"):
            for e in sorted(set(df[(df.method == m) & (df.width == w)].eps)):
                sub = _select(df, m, w, e)
                paper = None
                note = ""
                if e == 8 and w == 64:
                    ref = sandwich["AuxBN (AdvProp-style)" if m == "advprop" else "Single-BN hybrid (mixed)"]
                    paper = {k: ref.get(k) for k in metrics}
                    note = ("'paper' column: Sandwich BN's CIFAR-10 ResNet-18 (third-party; 200 epochs, PGD-7 ε = "
                            "8/255 training, attack in train mode)")
                _add_group(rep, cfg, table, strength_label(m, e), sub, metrics, paper=paper, extra_note=note)
    costs = reported.table(PAPER, "cost")["cost_passes"].to_dict()
    for (m, t), sub in df.groupby(["method", "attack_steps"], sort=False):
        name = "Vanilla" if m == "vanilla" else f"{LABELS[m]} (PGD-{t})"
        rep.add_row("cost", name, {}, cost_passes=float(sub.cost_passes.mean()), train_s=float(sub.train_s.mean()),
                    epochs=int(sub.epochs.max()),
                    note=f"measured by the cost meter over {len(sub)} run(s); formula "
                         f"{int(sub.formula_passes.iloc[0])}N",
                    formula_passes=int(sub.formula_passes.iloc[0]), paper_cost_passes=costs.get(name))


# ------------------------------------------------------------------------------------------------ tables


def config_table(cfg: Config) -> pd.DataFrame:
    """The configuration as a two-column table for the notebook."""
    tc, sched = cfg.train, cfg.train.schedule.describe()
    steps, alpha = attacker(cfg.eps)
    pgd = row_hp("PGD-AT", cfg.profile, cfg.overrides)
    rows = {
        "profile": cfg.s.profile, "device": str(cfg.s.device), "seeds": ", ".join(map(str, cfg.seeds)),
        "training images": cfg.n_train or "all 50 000", "test images": cfg.n_test,
        "model": f"ResNet-18 (blocks {cfg.blocks}) at widths {', '.join(map(str, cfg.widths))} ("
                 + ", ".join(f"{model_params(cfg, w) / 1e6:.2f} M" for w in cfg.widths) + " parameters)",
        "training": f"{tc.epochs} epochs, batch {tc.batch_size}, SGD momentum {tc.momentum}, weight decay "
                    f"{tc.weight_decay}, {'triangular' if sched['name'] == 'cyclic' else sched['name']} "
                    f"learning rate (peak {sched.get('max_lr', sched.get('lr'))}), random crop + flip",
        "AdvProp / Mixed attacker": f"targeted PGD-{steps}, ε = {cfg.eps}/255, step {alpha * 255:g}/255",
        "attack-strength sweep": "AdvProp at ε = " + ", ".join(f"{e}/255 (PGD-{attacker(e)[0]})" for e in
                                                                (cfg.eps,) + tuple(cfg.strength_eps))
                                 + f"; widths {', '.join(map(str, cfg.strength_widths))}",
        "PGD-AT": f"ε = {round(pgd['eps'] * 255)}/255, {pgd['steps']} steps, widths "
                  + ", ".join(map(str, cfg.pgdat_widths)),
        "evaluation": f"clean and PGD-{cfg.eval_pgd_steps} at ε = "
                      + ", ".join(f"{e}/255" for e in cfg.eval_eps) + ", main and aux BNs",
        "corruptions": f"{len(cfg.corruptions)} corruptions × severities {cfg.severities}",
        "parts": "; ".join(f"{p}: {len(v)} runs" for p, v in cfg.parts.items()),
    }
    return pd.DataFrame({"setting": list(rows), "value": [str(v) for v in rows.values()]}).set_index("setting")


def _pm(m, sd, n=2, digits=2) -> str:
    """"mean ± sd" (just the value for a single seed)."""
    if m is None:
        return ""
    return f"{m:.{digits}f} ± {sd:.{digits}f}" if n > 1 and sd is not None else f"{m:.{digits}f}"


def _fmt(v, d):
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{d}f}"


def summary_table(records: Sequence[dict], cfg: Config, metrics: Sequence[str] = HEADLINE_METRICS) -> pd.DataFrame:
    """Mean ± sd over seeds per (width, method) for the headline runs (blank: not applicable, e.g. no aux BN)."""
    df = frame(records)
    rows = []
    for w in sorted(set(df.width)):
        for m in METHODS:
            sub = _headline(df, cfg, m, w)
            if not len(sub):
                continue
            row = {"width": w, "method": LABELS[m], "seeds": len(sub)}
            for k in metrics:
                row[k] = _pm(*_mean_sd(sub[k])) if k in sub else ""
            rows.append(row)
    return pd.DataFrame(rows).set_index(["width", "method"]) if rows else pd.DataFrame()


def paired_difference(df: pd.DataFrame, a: pd.DataFrame, b: pd.DataFrame, metric: str = "clean") -> dict:
    """a − b over the seeds both have (same seed = same initial weights and batch order): mean and a 95 % t
    interval (for one seed: Newcombe's interval of two single evaluations, :mod:`robustlib.stats`)."""
    va = {int(s): v for s, v in zip(a.seed, a[metric]) if v is not None and not pd.isna(v)}
    vb = {int(s): v for s, v in zip(b.seed, b[metric]) if v is not None and not pd.isna(v)}
    common = sorted(set(va) & set(vb))
    if not common:
        return {"diff": None, "lo": None, "hi": None, "n": 0, "kind": ""}
    d = [va[s] - vb[s] for s in common]
    if len(d) == 1:
        n_img = int(df.attrs.get("n_eval", 1000))
        diff, lo, hi = newcombe_difference(va[common[0]], n_img, vb[common[0]], n_img)
        return {"diff": diff, "lo": lo, "hi": hi, "n": 1, "kind": "Newcombe (one seed)"}
    m, sd, n = mean_sd(d)
    h = t95(n - 1) * sd / math.sqrt(n)
    return {"diff": m, "lo": m - h, "hi": m + h, "n": n, "kind": f"paired t ({n} seeds)"}


def reference_table(records: Sequence[dict], cfg: Config) -> pd.DataFrame:
    """Table 1: the paper's ImageNet EfficientNet B0–B8 (vanilla vs AdvProp) above this project's CIFAR-10
    analogue (ResNet-18 widths; mean ± sd over seeds; Δ = AdvProp − vanilla, paired over seeds, with its 95 %
    interval)."""
    ref = reported.table(PAPER, "imagenet_efficientnet")
    rows = []
    for model, r in ref.iterrows():
        d = None if pd.isna(r["vanilla"]) else r["advprop"] - r["vanilla"]
        rows.append({"setting": "ImageNet (paper: release table)", "model": model,
                     "Vanilla": _fmt(r["vanilla"], 1), "Mixed (shared BN)": "", "AdvProp": _fmt(r["advprop"], 1),
                     "Δ AdvProp − Vanilla": "" if d is None else f"{d:+.1f}", "Δ 95% CI": ""})
    df = frame(records)
    df.attrs["n_eval"] = cfg.n_test
    for w in sorted(set(df.width)):
        v, mx, a = (_headline(df, cfg, m, w) for m in ("vanilla", "mixed", "advprop"))
        pdiff = paired_difference(df, a, v)
        rows.append({"setting": f"CIFAR-10 (this project, {cfg.s.profile})",
                     "model": f"ResNet-18 width {w} ({model_params(cfg, w) / 1e6:.2f} M)",
                     "Vanilla": _pm(*_mean_sd(v.clean)), "Mixed (shared BN)": _pm(*_mean_sd(mx.clean)),
                     "AdvProp": _pm(*_mean_sd(a.clean)),
                     "Δ AdvProp − Vanilla": "" if pdiff["diff"] is None else f"{pdiff['diff']:+.2f}",
                     "Δ 95% CI": "" if pdiff["diff"] is None else
                     f"[{pdiff['lo']:+.2f}, {pdiff['hi']:+.2f}] {pdiff['kind']}"})
    return pd.DataFrame(rows).set_index(["setting", "model"])


def corruption_frame(records: Sequence[dict]) -> pd.DataFrame:
    """Long table: one row per (run, corruption, severity) with the accuracy."""
    return pd.DataFrame([{"key": r["key"], "method": r["method"], "width": r["width"], "eps": r["eps"],
                          "seed": r["seed"], "clean": r["metrics"]["clean"], **c}
                         for r in records for c in r["corruptions"]])


def corruption_table(records: Sequence[dict], cfg: Config, width: int | None = None) -> pd.DataFrame:
    """Table 2: mean accuracy per corruption family and severity (mean over seeds), per headline method."""
    width = width or cfg.large
    cf = corruption_frame(records)
    rows = []
    for m in METHODS:
        sub = cf[(cf.method == m) & (cf.width == width) & (cf.eps == cfg.headline_eps(m))]
        if not len(sub):
            continue
        per_seed = sub.groupby(["seed", "family", "severity"]).accuracy.mean().reset_index()
        tab = per_seed.groupby(["family", "severity"]).accuracy.mean().unstack("severity")
        tab["mean"] = per_seed.groupby(["seed", "family"]).accuracy.mean().groupby("family").mean()
        tab.insert(0, "method", LABELS[m])
        rows.append(tab.reset_index())
    out = pd.concat(rows) if rows else pd.DataFrame()
    return out.set_index(["family", "method"]).sort_index(level=0, sort_remaining=False) if len(out) else out


def robustness_table(records: Sequence[dict], cfg: Config) -> pd.DataFrame:
    """Clean and PGD accuracy of the main and the auxiliary BN branch (mean ± sd over seeds)."""
    keys = ["clean", "clean_aux"] + [k for e in cfg.eval_eps for k in (pgd_key(e), pgd_key(e) + "_aux")]
    return summary_table(records, cfg, keys)


def cost_table(rep: Report) -> pd.DataFrame:
    """Measured N per sample beside the methods' own statement and Fast AdvProp's numbers (the report's cost rows)."""
    rows = [{"method": r["method"], "measured (N/sample)": r["cost_passes"], "derived (N)": r.get("formula_passes"),
             "Fast AdvProp (N)": r.get("paper_cost_passes"), "train time (s)": r["train_s"], "epochs": r["epochs"]}
            for r in rep.rows if r["table"] == "cost"]
    return pd.DataFrame(rows).set_index("method")


def strength_frame(records: Sequence[dict], cfg: Config) -> pd.DataFrame:
    """Per width, method and attacker ε: clean gain over Vanilla (seed-paired) with its 95 % interval, and the aux
    branch's clean and PGD accuracy."""
    df = frame(records)
    df.attrs["n_eval"] = cfg.n_test
    rows = []
    for w in sorted(set(df.width)):
        v = _headline(df, cfg, "vanilla", w)
        for m in ("advprop", "mixed"):
            for e in sorted(set(df[(df.method == m) & (df.width == w)].eps)):
                sub = _select(df, m, w, e)
                pdiff = paired_difference(df, sub, v)
                rows.append({"width": w, "method": LABELS[m], "eps_255": e, "steps": attacker(e)[0],
                             "clean": _mean_sd(sub.clean)[0], "gain": pdiff["diff"], "gain_lo": pdiff["lo"],
                             "gain_hi": pdiff["hi"], "seeds": pdiff["n"], "interval": pdiff["kind"],
                             "clean_aux": _mean_sd(sub.clean_aux)[0] if "clean_aux" in sub else None,
                             "pgd20_aux": _mean_sd(sub.pgd20_aux)[0] if "pgd20_aux" in sub else None,
                             "vanilla_sd": _mean_sd(v.clean)[1]})
    return pd.DataFrame(rows)


def part_summary(records: Sequence[dict]) -> pd.DataFrame:
    """One line per trained model of a part: its accuracies, measured cost and time."""
    rows = []
    for r in records:
        m = r["metrics"]
        rows.append({"run": r["key"], "clean": m["clean"], "clean (aux BN)": m.get("clean_aux"),
                     "corruptions": m["corruption_mean"], "PGD ε=8/255": m.get("pgd20"),
                     "PGD ε=8/255 (aux BN)": m.get("pgd20_aux"), "PGD ε=1/255": m.get("pgd20_eps1"),
                     "PGD ε=1/255 (aux BN)": m.get("pgd20_eps1_aux"), "cost (N/sample)": r["cost_passes"],
                     "train (s)": r["train_s"], "eval (s)": r["eval_s"]})
    return pd.DataFrame(rows).set_index("run")
