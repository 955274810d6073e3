"""The ABNN chapter's evaluation: one attack suite per model (cached beside each run's checkpoint by the experiment
layer), Table 1, the gradient-masking checks and their verdicts, the variants table and the cost table.

Every function takes the runs as ``{row label: experiment.Trained}``. A batch-global ABNN is batch-dependent
(:func:`robustlib.evaluation.batch_dependent`): :func:`robustlib.evaluation.evaluate` scores each attack in the
evaluation batch it was crafted in, adds the ``@b1`` columns (the same adversarial images classified one at a time),
and AutoAttack attacks and scores ABNN's batch-size-1 function.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ... import experiment as ex
from ... import reported
from ...attacks import PGD, Attack, AutoAttack
from ...attacks.roa import ROA
from ...evaluation import B1, EvalResult
from ...methods.abnn import ABNNNet, ABNNView
from ...report import Report
from ...stats import wilson_interval
from .recipes import ALPHA, EPS, PAPER, Config
from .runs import row_note


class TransferAttack(Attack):
    """A black-box transfer attack: ``attack`` crafted on the model of run ``source`` (e.g. the undefended model),
    scored on the evaluated model. Its ``repr`` names the source run, so cached flags follow the source's weights."""

    def __init__(self, source: ex.Trained, attack: Attack, name: str = "transfer"):
        super().__init__(attack.eps, attack.norm, attack.bn_mode)
        self._source, self._attack, self.name = source.model(), attack, name
        self._key = [source.fingerprint, source.selected_epoch(), source.result.epochs]

    def perturb(self, model, x, y):
        return self._attack.perturb(self._source, x, y)

    def __repr__(self):
        return f"TransferAttack(source={self._key!r}, attack={self._attack!r}, name={self.name!r})"


class ViewAttack(Attack):
    """``attack`` crafted on ``view`` (the same weights run differently, e.g. :class:`ABNNView` with μ/σ as constants
    or per-sample statistics), scored on the evaluated model with its ordinary forward."""

    def __init__(self, view, attack: Attack, name: str):
        super().__init__(attack.eps, attack.norm, attack.bn_mode)
        self._view, self._attack, self.name = view, attack, name

    def perturb(self, model, x, y):
        return self._attack.perturb(self._view, x, y)

    def __repr__(self):
        opts = getattr(self._view, "opts", type(self._view).__name__)
        return f"ViewAttack(view={opts!r}, attack={self._attack!r}, name={self.name!r})"


def evaluate(cfg: Config, t: ex.Trained, attacks: dict, data, *, view: dict | None = None,
             batch_size: int | None = None, progress: bool = False, desc: str | None = None,
             n: int | None = None) -> EvalResult:
    """``attacks`` on run ``t``'s model (or on :class:`ABNNView` of it with the ``view`` options) on the first ``n``
    images of ``data`` (all when None), seeded with the run's seed and cached beside its checkpoint
    (:func:`robustlib.experiment.evaluate_cached`)."""
    kw = dict(batch_size=batch_size or cfg.eval_batch, seed=cfg.s.seed, device=cfg.s.device, progress=progress,
              desc=desc, n=n)
    if view is None:
        return ex.evaluate_cached(t, attacks, data, **kw)
    key = [t.fingerprint, "model", t.selected_epoch(), t.result.epochs, {"view": view}]
    return ex.evaluate_cached(None, attacks, data, model=ABNNView(t.model(), **view), cache_dir=t.folder,
                              model_key=key, **kw)


def _roa(cfg: Config, location: str = "search", **kw) -> ROA:
    return ROA(cfg.roa["area"], steps=cfg.roa["steps"], alpha=cfg.roa["alpha"], stride=cfg.roa["stride"],
               location=location, seed=cfg.s.seed, **kw)


def _aa(cfg: Config) -> AutoAttack | None:
    if not cfg.aa_version:
        return None
    return AutoAttack(EPS, version=cfg.aa_version, attacks=cfg.aa_attacks, seed=cfg.s.seed, batch_size=cfg.eval_batch,
                      apgd_budget=cfg.aa_budget, targets=cfg.profile.get("aa_targets"))


def _first(data, n: int | None):
    """The first ``n`` images of ``data`` (all of them when ``n`` is None or not smaller)."""
    return data if n is None or n >= len(data) else data.head(n)


AA_PART = "aa_part"   # EvalResult.meta key: AutoAttack's own result when it ran on fewer images (the profile's aa_n)


def accuracies(res: EvalResult) -> dict[str, float]:
    """Accuracy per metric, AutoAttack's from its own (smaller) evaluation when it ran on the first ``aa_n`` images."""
    part = res.meta.get(AA_PART)
    return {**res.accuracies(), **({k: v for k, v in part.accuracies().items() if not k.startswith("clean")}
                                   if part is not None else {})}


def all_flags(res: EvalResult) -> dict[str, list[bool]]:
    """Per-image flags per metric (AutoAttack's cover only the first ``aa_n`` images when it ran on fewer)."""
    out = {k: res.flags[k].tolist() for k in res.flags.columns}
    part = res.meta.get(AA_PART)
    if part is not None:
        out.update({k: part.flags[k].tolist() for k in part.flags.columns if not k.startswith("clean")})
    return out


def _n_of(res: EvalResult, key: str) -> int:
    part = res.meta.get(AA_PART)
    return part.n if part is not None and key in part.flags and not key.startswith("clean") else res.n


ATTACK_LABELS = {
    "pgd": "PGD-{t} (headline)", "pgd_a": "PGD-{a}", "pgd_b": "PGD-{b}", "pgd_c": "PGD-{c}",
    "restarts": "PGD-{c} × {r} restarts", "transfer": "transfer: PGD-{b} on No Defense",
    "const_stats": "PGD-{b}, μ/σ as constants", "no_sub_grad": "PGD-{b}, no gradient into the substitute",
    "bs1_attack": "PGD-{b} crafted at batch size 1", "aa": "AutoAttack (batch-global ABNN: at batch size 1)",
    "roa": "ROA (searched location)",
    "roa_random": "ROA (random location)", "worst": "worst case over all ℓ∞ attacks",
}
LINF_KEYS = ("pgd", "pgd_a", "pgd_b", "pgd_c", "restarts", "transfer", "const_stats", "no_sub_grad", "bs1_attack", "aa")


def suite(cfg: Config, model, *, source: ex.Trained | None = None, abnn: bool = False) -> dict[str, Attack]:
    """Every attack of the chapter at ε = 8/255 (plus ROA) for one model, as {metric key: attack}."""
    a, b, c = cfg.steps_grid
    atk: dict[str, Attack] = {
        "pgd": PGD(EPS, ALPHA, cfg.pgd_steps, name="pgd"),
        "snapshots": PGD(EPS, ALPHA, c, record={"pgd_a": a, "pgd_b": b, "pgd_c": c}),
    }
    if abnn or cfg.profile.get("restarts_on") != "abnn":   # cpu profile: restarts only where the audit needs them
        atk["restarts"] = PGD(EPS, ALPHA, c, restarts=cfg.restarts, name="restarts")
    if source is not None:
        atk["transfer"] = TransferAttack(source, PGD(EPS, ALPHA, b))
    if abnn:
        atk["const_stats"] = ViewAttack(ABNNView(model, detach_stats=True), PGD(EPS, ALPHA, b), "const_stats")
        atk["no_sub_grad"] = ViewAttack(ABNNView(model, detach_substitute=True), PGD(EPS, ALPHA, b), "no_sub_grad")
        atk["bs1_attack"] = ViewAttack(ABNNView(model, stats="per_sample"), PGD(EPS, ALPHA, b), "bs1_attack")
    aa = _aa(cfg)
    if aa is not None:
        atk["aa"] = aa
    atk["roa"] = _roa(cfg, "search", name="roa")
    if abnn:  # Lo & Patel's random-location ROA, as a check that the searched location is the stronger choice
        atk["roa_random"] = _roa(cfg, "random", name="roa_random")
    return atk


def evaluate_models(cfg: Config, runs: dict[str, ex.Trained], test, source: ex.Trained | None = None
                    ) -> dict[str, EvalResult]:
    """Run :func:`suite` on every run's model (ABNN-specific attacks on ABNN models; transfer from ``source``), with
    the per-image worst case over the ℓ∞ attacks in the ``worst`` column (and ``worst@b1`` over their ``@b1``
    twins for a batch-dependent model). When the profile runs AutoAttack on the first ``aa_n`` images only, its
    result is kept apart (``res.meta["aa_part"]``, see :func:`accuracies`, :func:`all_flags`) and the worst case
    covers the other attacks. Every evaluation is cached beside its checkpoint: a part notebook that ran it first
    (same models, same source) leaves nothing to compute here."""
    out = {}
    for name, t in runs.items():
        model = t.model()
        src = source if (source is not None and source.folder != t.folder) else None
        atk = suite(cfg, model, source=src, abnn=isinstance(model, ABNNNet))
        split = "aa" in atk and cfg.aa_n is not None and cfg.aa_n < len(test)
        res = evaluate(cfg, t, {k: a for k, a in atk.items() if not (split and k == "aa")}, test, progress=True,
                       desc=f"evaluate {name}")
        if split:
            res.meta[AA_PART] = evaluate(cfg, t, {"aa": atk["aa"]}, test, n=cfg.aa_n, progress=True,
                                         desc=f"evaluate {name}: AutoAttack on {cfg.aa_n} images")
        linf = [k for k in LINF_KEYS if k in res.flags]
        res.flags["worst"] = res.flags[["clean", *linf]].all(axis=1)
        if "clean" + B1 in res.flags:
            linf1 = [k + B1 for k in linf if k + B1 in res.flags]
            res.flags["worst" + B1] = res.flags[["clean" + B1, *linf1]].all(axis=1)
        out[name] = res
    return out


def scoring_note(cfg: Config, res: EvalResult) -> str:
    """How a batch-dependent model's numbers were scored (empty for a batch-independent model)."""
    if not res.meta.get("batch_dependent"):
        return ""
    acc = accuracies(res)
    alone = ", ".join(f"{k} {acc[k + B1]:.1f} %" for k in ("clean", "pgd", "roa") if k + B1 in acc)
    return (f"batch-global μ/σ: PGD and ROA crafted and scored in batches of {cfg.eval_batch}"
            + ("; AutoAttack attacks and scores the batch-size-1 function (per-sample μ/σ), because it attacks "
               "shrinking sub-batches" if "aa" in acc else "")
            + (f"; the same adversarial images scored one at a time: {alone}" if alone else ""))


def headline(cfg: Config, evals: dict[str, EvalResult], runs: dict[str, ex.Trained], rep: Report,
             table: str = "cifar10"):
    """Rows No Defense / PGD-AT / ABNN (and any variant) of the CIFAR-10 table: clean, PGD, ROA, AutoAttack, with
    every attack's per-image flags (``flags``, for the claims) and the training precision."""
    for name, res in evals.items():
        acc = accuracies(res)
        t = runs[name]
        note = row_note(cfg, name)
        if "aa" not in acc:
            note += ("; " if note else "") + "AutoAttack not run in this profile"
        elif AA_PART in res.meta:
            note += ("; " if note else "") + (f"AutoAttack on the first {res.meta[AA_PART].n} test images (its own "
                                               "interval); the worst case leaves it out")
        scored = scoring_note(cfg, res)
        if scored:
            note += ("; " if note else "") + scored
        b1 = {k: acc[k + B1] for k in ("clean", "pgd", "roa", "aa", "worst") if k + B1 in acc}
        part = res.meta.get(AA_PART)
        ci = {"aa": list(wilson_interval(int(part.flags["aa"].sum()), part.n))} if part is not None else None
        rep.add_row(table, name, {"clean": acc["clean"], "pgd": acc["pgd"], "roa": acc["roa"], "aa": acc.get("aa")},
                    flags=all_flags(res), ci=ci, precision=t.result.hyperparameters.get("resolved"),
                    cost_passes=t.cost_passes, train_s=t.result.train_seconds, epochs=t.result.epochs, note=note,
                    n=res.n, worst_linf=acc["worst"], eval_batch=cfg.eval_batch,
                    batch_dependent=bool(res.meta.get("batch_dependent")), scored_alone=b1 or None)
    return rep.compare(table)


def table1(rep: Report) -> pd.DataFrame:
    """Table 1 laid out as on the slides: Clean / PGD / training cost, the slides' value beside ours."""
    paper = reported.table(PAPER, "cifar10")
    rows = []
    for r in rep.rows:
        if r["table"] != "cifar10":
            continue
        m = r["method"]
        ref = paper.loc[m] if m in paper.index else None
        rows.append({"method": m,
                     "clean (slides)": None if ref is None else ref["clean"], "clean (ours)": r["metrics"].get("clean"),
                     "PGD (slides)": None if ref is None else ref["pgd"], "PGD (ours)": r["metrics"].get("pgd"),
                     "cost (slides)": None if ref is None else f"{ref['cost_passes']:.0f}N",
                     "cost (ours)": None if r["cost_passes"] is None else f"{r['cost_passes']:.2f}N"})
    return pd.DataFrame(rows).set_index("method")


def sanity_table(cfg: Config, evals: dict[str, EvalResult]) -> pd.DataFrame:
    """Long table: model, attack (readable label), where it was scored, accuracy with its 95 % interval. A
    batch-dependent model also gets each metric scored one image at a time (keys ``<key>@b1``)."""
    a, b, c = cfg.steps_grid
    fmt = dict(t=cfg.pgd_steps, a=a, b=b, c=c, r=cfg.restarts)
    rows = []
    for model, res in evals.items():
        dependent = bool(res.meta.get("batch_dependent"))
        flags = all_flags(res)
        for base in ("clean", *LINF_KEYS, "worst", "roa", "roa_random"):
            for key in (base, base + B1):
                if key not in flags:
                    continue
                k, n = int(sum(flags[key])), _n_of(res, key)
                lo, hi = wilson_interval(k, n)
                alone = key.endswith(B1) or (dependent and base == "aa")
                label = ATTACK_LABELS.get(base, base).format(**fmt) + (", each image scored alone"
                                                                       if key.endswith(B1) else "")
                scored = ("batch size 1" if alone else f"its batch of {cfg.eval_batch}") if dependent else "any batch"
                rows.append({"model": model, "key": key, "attack": label, "scored at": scored,
                             "accuracy": 100 * k / n, "ci_low": lo, "ci_high": hi, "n": n,
                             "seconds": res.seconds.get(key)})
    return pd.DataFrame(rows)


def _row(model: str, cnt: int, n: int, **kw) -> dict:
    lo, hi = wilson_interval(cnt, n)
    return {"model": model, **kw, "accuracy": 100 * cnt / n, "ci_low": lo, "ci_high": hi, "n": n}


def eps_sweep(cfg: Config, runs: dict[str, ex.Trained], test) -> pd.DataFrame:
    """PGD-k (α = ε/4, k the middle step count) accuracy against ε: it must reach 0 as ε grows (on the first
    ``sweep_n`` test images when the profile says so)."""
    rows = []
    k = cfg.mid_steps
    for name, t in runs.items():
        for e in cfg.eps_grid:
            atk = {} if e == 0 else {"pgd": PGD(e / 255, e / 255 / 4, k)}
            res = evaluate(cfg, t, atk, test, n=cfg.sweep_n)
            rows.append(_row(name, int(res.flags["clean" if e == 0 else "pgd"].sum()), res.n, attack=f"PGD-{k}",
                             eps_255=e))
    return pd.DataFrame(rows)


def batch_size_sweep(cfg: Config, runs: dict[str, ex.Trained], test) -> pd.DataFrame:
    """Clean and PGD-k accuracy against the evaluation batch size (the attack runs on, and predictions are made
    for, batches of that size). Batch size 1 is evaluated exactly and fast through per-sample statistics (for a
    batch-global ABNN, μ/σ over a batch of one image are that image's own)."""
    rows = []
    k = cfg.mid_steps
    for name, t in runs.items():
        for bs in cfg.batch_sizes:
            view, b = None, bs
            if bs == 1:   # per-sample μ/σ for an ABNN; no batch dependence otherwise: any batch size is the same
                view, b = ({"stats": "per_sample"} if isinstance(t.model(), ABNNNet) else None), cfg.eval_batch
            res = evaluate(cfg, t, {"pgd": PGD(EPS, ALPHA, k)}, test, view=view, batch_size=b, n=cfg.sweep_n)
            for key, label in (("clean", "clean"), ("pgd", f"PGD-{k}")):
                rows.append(_row(name, int(res.flags[key].sum()), res.n, metric=label, batch_size=bs))
    return pd.DataFrame(rows)


def verdicts(cfg: Config, sanity: pd.DataFrame, sweep: pd.DataFrame, bsweep: pd.DataFrame,
             model: str = "ABNN", tol: float = 1.0) -> pd.DataFrame:
    """The gradient-masking checks for ``model``, each with what a sound evaluation should show, what this run
    shows, and whether it passes (``tol`` percentage points of slack for sampling noise)."""
    acc = sanity[sanity.model == model].set_index("key")["accuracy"]
    a, b, c = cfg.steps_grid
    out = []

    def add(check, expect, observed, ok):
        out.append({"check": check, "a sound evaluation shows": expect, "observed": observed,
                    "passed": bool(ok) if ok is not None else None})

    sw = sweep[(sweep.model == model) & (sweep.eps_255 > 0)].sort_values("eps_255")
    if len(sw):
        top = sw.iloc[-1]
        add("accuracy → 0 as ε grows", f"PGD-{cfg.mid_steps} accuracy ≈ 0 at ε = {int(top.eps_255)}/255",
            f"{top.accuracy:.1f} % at ε = {int(top.eps_255)}/255", top.accuracy <= tol)
    seq = [acc.get(k) for k in ("pgd_a", "pgd_b", "pgd_c", "restarts")]
    labels = [f"PGD-{a}", f"PGD-{b}", f"PGD-{c}", f"PGD-{c}×{cfg.restarts}"]
    ok = all(y <= x + tol for x, y in zip(seq, seq[1:]) if x is not None and y is not None)
    add("more steps and restarts never raise accuracy", " ≥ ".join(labels),
        " → ".join(f"{v:.1f}" for v in seq if v is not None), ok)
    if "transfer" in acc:
        add("a transfer attack is weaker than white-box", f"transfer ≥ PGD-{b}",
            f"{acc['transfer']:.1f} vs {acc['pgd_b']:.1f}", acc["transfer"] >= acc["pgd_b"] - tol)
    for key, what in (("const_stats", "with μ/σ as constants"), ("bs1_attack", "crafted at batch size 1"),
                      ("no_sub_grad", "without gradients into the substitute")):
        if key in acc:
            add(f"PGD-{b} {what} is not stronger than plain PGD-{b}", f"≥ {acc['pgd_b']:.1f}",
                f"{acc[key]:.1f}", acc[key] >= acc["pgd_b"] - tol)
    bs = bsweep[(bsweep.model == model) & (bsweep.metric != "clean")]
    if len(bs):
        add("robust accuracy does not depend on the evaluation batch size", "a flat line within sampling noise",
            f"{bs.accuracy.min():.1f}–{bs.accuracy.max():.1f} % over batch sizes "
            f"{', '.join(map(str, bs.batch_size))}", bs.accuracy.max() - bs.accuracy.min() <= 2 * tol + 2)
    if "worst" in acc:
        add("the headline PGD is close to the worst case over all attacks", f"worst ≈ PGD-{cfg.pgd_steps}",
            f"{acc['worst']:.1f} vs {acc['pgd']:.1f}", acc["pgd"] - acc["worst"] <= 2 * tol + 2)
    return pd.DataFrame(out).set_index("check")


def variant_scores(cfg: Config, runs: dict[str, ex.Trained], test, evals: dict[str, EvalResult] | None = None
                   ) -> dict[str, tuple[dict, dict]]:
    """Per run: (accuracies under PGD-t, PGD-c with restarts, the constant-μ/σ attack and ROA; clean and PGD-t at
    batch size 1), on the first ``variant_n`` test images when the profile says so. Runs already evaluated by
    :func:`evaluate_models` (``evals``) on all test images are not attacked again. Cached beside each checkpoint, so
    the variants' part notebook can run it first and the chapter notebook finds it done."""
    a, b, c = cfg.steps_grid
    n = cfg.variant_n
    out = {}
    for name, t in runs.items():
        model = t.model()
        if evals is not None and name in evals and n is None:
            acc = accuracies(evals[name])
        else:
            atk = {"pgd": PGD(EPS, ALPHA, cfg.pgd_steps, name="pgd"),
                   "restarts": PGD(EPS, ALPHA, c, restarts=cfg.restarts, name="restarts"),
                   "const_stats": ViewAttack(ABNNView(model, detach_stats=True), PGD(EPS, ALPHA, b), "const_stats"),
                   "roa": _roa(cfg, "search", name="roa")}
            acc = evaluate(cfg, t, atk, test, progress=True, desc=f"evaluate {name}", n=n).accuracies()
        if model.stats == "per_sample":   # already batch independent: batch size 1 changes nothing
            bs1 = {"clean": acc["clean"], "pgd": acc["pgd"]}
        else:
            bs1 = evaluate(cfg, t, {"pgd": PGD(EPS, ALPHA, cfg.pgd_steps)}, test, view={"stats": "per_sample"},
                           n=n).accuracies()
        out[name] = (acc, bs1)
    return out


def variants_table(cfg: Config, runs: dict[str, ex.Trained], test, rep: Report,
                   evals: dict[str, EvalResult] | None = None) -> pd.DataFrame:
    """ABNN variants (per-sample μ/σ, every BN) beside the headline ABNN: clean, PGD, PGD with restarts, the
    constant-μ/σ attack, ROA, and clean/PGD at batch size 1 (:func:`variant_scores`)."""
    a, b, c = cfg.steps_grid
    rows = []
    for name, (acc, bs1) in variant_scores(cfg, runs, test, evals).items():
        t = runs[name]
        metrics = {"clean": acc["clean"], "pgd": acc["pgd"], "pgd_restarts": acc["restarts"],
                   "pgd_const_stats": acc["const_stats"], "roa": acc["roa"], "clean_bs1": bs1["clean"],
                   "pgd_bs1": bs1["pgd"]}
        note = row_note(cfg, name) + (f"; on the first {cfg.variant_n} test images" if cfg.variant_n else "")
        rep.add_row("variants", name, metrics, cost_passes=t.cost_passes, train_s=t.result.train_seconds,
                    epochs=t.result.epochs, note=note, n=min(cfg.variant_n or len(test), len(test)))
        rows.append({"model": name, **metrics, "N/sample": t.cost_passes,
                     "style-map parameters": t.model().style_parameters()})
    labels = {"pgd": f"PGD-{cfg.pgd_steps}", "pgd_restarts": f"PGD-{c}×{cfg.restarts}",
              "pgd_const_stats": f"PGD-{b}, μ/σ const.", "clean_bs1": "clean @ bs 1",
              "pgd_bs1": f"PGD-{cfg.pgd_steps} @ bs 1"}
    return pd.DataFrame(rows).set_index("model").rename(columns=labels)


def cost_table(cfg: Config, runs: dict[str, ex.Trained], rep: Report | None = None) -> pd.DataFrame:
    """Measured passes per training sample (per network) beside each method's own statement
    (``Method.derived_passes``) and the slides' number, and seconds per epoch."""
    slides = reported.table(PAPER, "cost")["cost_passes"]
    rows = []
    for name, t in runs.items():
        r, c = t.result, t.result.cost
        formula = t.spec.make_method().derived_passes()
        per_epoch = r.train_seconds / max(r.epochs, 1)
        rows.append({"method": name, "measured N/sample": c["total"],
                     "target fwd": c.get("target.forward", c.get("model.forward")),
                     "target bwd": c.get("target.backward", c.get("model.backward")),
                     "substitute fwd": c.get("substitute.forward", 0.0),
                     "substitute bwd": c.get("substitute.backward", 0.0),
                     "formula N": formula, "slides N": slides.get(name), "s/epoch": per_epoch, "epochs": r.epochs})
        if rep is not None:
            rep.add_row("cost", name, {}, cost_passes=c["total"], train_s=r.train_seconds, epochs=r.epochs,
                        note=f"slides: {slides.get(name, float('nan')):.0f}N; measured by the cost meter over the "
                             "whole training run", formula_passes=formula,
                        paper_cost_passes=None if name not in slides else float(slides[name]),
                        seconds_per_epoch=per_epoch)
    df = pd.DataFrame(rows).set_index("method")
    base = df.loc["No Defense", "s/epoch"] if "No Defense" in df.index else np.nan
    df["time vs No Defense"] = df["s/epoch"] / base
    if {"PGD-AT", "ABNN"} <= set(df.index):
        df.attrs["ratio"] = {"slides: 0.67(t_max + 1)": 2 * (cfg.at_steps + 1) / 3,
                             "measured passes": (df.loc["PGD-AT", "measured N/sample"]
                                                 / df.loc["ABNN", "measured N/sample"]),
                             "measured time": df.loc["PGD-AT", "s/epoch"] / df.loc["ABNN", "s/epoch"]}
    return df
