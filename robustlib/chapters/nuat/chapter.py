"""The NuAT chapter notebook's steps: the recipe, profile and cost tables, the plan (the one time model with this
chapter's planning rule), the gather of the part notebooks, the cross-dataset and ImageNet-100 columns, and the
WRN-34-10 table (cost per sample in smoke/quick, trained in the paper profile).
"""
from __future__ import annotations

import dataclasses
import inspect

import pandas as pd

from ... import experiment as ex
from ...claims import Claim, flags_from_rows, table as claims_table
from ...report import Report
from .core import (PAPER, PARTS, SHOW, T1, T2, T3, Config, _config, evaluate_rows, load_data, recipe_method,
                   train)
from .recipes import (CPU_EVAL_SECONDS, CPU_SECONDS_PER_PASS, DATASETS, EVAL_SECONDS, PROFILES, RECIPES,
                      SECONDS_PER_PASS, UNDEFENDED)


def recipe_table(part: str | None = None) -> pd.DataFrame:
    """RECIPES as the paper's hyperparameter table (one part's rows, or all)."""
    cols = ("method", "hp", "model", "epochs", "batch", "schedule", "weight_decay", "ema", "select", "source")
    return ex.recipe_frame({k: {c: r.get(c) for c in cols} for k, r in RECIPES.items()
                            if part is None or r["part"] == part})


def profile_table() -> pd.DataFrame:
    """PROFILES side by side: what smoke and quick change against the paper profile."""
    return pd.DataFrame({p: {k: str(v) for k, v in prof.items()} for p, prof in PROFILES.items()})


def cost_table() -> pd.DataFrame:
    """Each method's own statement of its cost (``derived_passes`` and its docstring) at the paper's hyperparameters."""
    rows = {}
    for key in list(RECIPES)[:12] + ["wrn/NuAT2", "wrn/NuAT2-WA", "wrn/NuAT-H"]:
        m = recipe_method(key)
        rows[key.split("/", 1)[1]] = {"method": RECIPES[key]["method"], "derived N per sample per epoch":
                                      m.derived_passes(), "how": inspect.getdoc(type(m).derived_passes)}
    return pd.DataFrame(rows).T


# --------------------------------------------------------------------------------------------- time model


def planning(spec: ex.RunSpec, basis: str = "quick") -> tuple[int, float, float]:
    """(training images, seconds per pass, evaluation seconds) of a run under the planning rule of ``basis``: "quick"
    (one H200, ``SECONDS_PER_PASS``/``EVAL_SECONDS``) or "cpu" (two cores, ``CPU_SECONDS_PER_PASS``/
    ``CPU_EVAL_SECONDS``), see :mod:`.recipes`."""
    per_pass, evals = (CPU_SECONDS_PER_PASS, CPU_EVAL_SECONDS) if basis == "cpu" else (SECONDS_PER_PASS, EVAL_SECONDS)
    ds = spec.extra["dataset"]
    n = DATASETS[ds]["n_full"]
    if ds == "mnist" and basis == "cpu":
        n = PROFILES["cpu"]["n_train"]["mnist"] - 10 * PROFILES["cpu"]["holdout"]["mnist"]
    spp = per_pass[(spec.model, spec.config.batch_size)]
    if spec.extra["key"].startswith("ablation/"):
        return n, spp, evals["ablation"]
    per = evals[f"{ds}/undefended"] if f"{ds}/undefended" in evals else evals[ds]
    ev = sum(per if lab in UNDEFENDED else evals[ds] for lab in spec.rows)
    return n, spp, ev


def _basis(cfg: Config) -> tuple[str, Config]:
    """The profile a plan estimates (cpu for the cpu profile, else quick) and its configuration."""
    basis = "cpu" if cfg.profile == "cpu" else "quick"
    return basis, cfg if cfg.profile == basis else _config(dataclasses.replace(cfg.s, profile=basis))


def plan(cfg: Config, part: str | None = None) -> pd.DataFrame:
    """Every run of this profile (or of one part): epochs against the recipe's, derived N, and the estimated minutes
    of the quick profile (the cpu profile's, when that is the profile) (:func:`robustlib.experiment.estimate_seconds`
    with :func:`planning`)."""
    basis, ref = _basis(cfg)
    rows = []
    for key, sp in cfg.specs.items():
        if sp.extra["part"] == "chapter" or key.startswith("ablation/") or (part and sp.extra["part"] != part):
            continue
        q = ref.specs[key]
        n, spp, ev = planning(q, basis)
        rows.append({"part": sp.extra["part"], "run": key, "rows": ", ".join(sp.rows), "epochs": sp.config.epochs,
                     "recipe epochs": sp.extra["paper_epochs"], "batch": sp.config.batch_size,
                     "N/sample (derived)": sp.make_method().derived_passes(), f"{basis} epochs": q.config.epochs,
                     f"est. {basis} train min": ex.estimate_seconds(q, n, spp) / 60,
                     f"est. {basis} eval min": ev / 60, "recipe": sp.source})
    return pd.DataFrame(rows).set_index("run")


def part_minutes(cfg: Config) -> pd.DataFrame:
    """Estimated minutes per notebook of the quick (or cpu) profile (30 s of start-up each; the MNIST part includes
    the ablation)."""
    basis, ref = _basis(cfg)
    df = plan(cfg)
    cols = [f"est. {basis} train min", f"est. {basis} eval min"]
    tot = df.groupby("part")[cols].sum()
    tot["est. total min"] = tot.sum(axis=1) + 0.5
    abl = 0.0
    for name in ref.ablation:
        sp = ref.specs[f"ablation/{name}"]
        if name != "NuAT (code form)":
            n, spp, ev = planning(sp, basis)
            abl += (ex.estimate_seconds(sp, n, spp) + ev) / 60
    tot.loc["mnist", "est. total min"] += abl
    # confusion matrices, WRN cost, figures (cpu: and the λ_max = 2 run of §10, one NuAT row's training + evaluation)
    extra = 0.5 + 0.5 + 1.5
    if basis == "cpu":
        n, spp, ev = planning(ref.specs["cifar10/NuAT"], basis)
        extra += (ex.estimate_seconds(ref.specs["cifar10/NuAT"], n, spp) + ev) / 60 + 8.0
    tot.loc["chapter"] = [0.0, 0.0, extra]
    tot["notebook"] = [PARTS.get(p, "10_nuat") + ".ipynb" for p in tot.index]
    return tot


def derived_costs(cfg: Config, rep: Report, table: str = T1) -> pd.DataFrame:
    """Each row's method's own statement of its cost (derived N) beside what the cost meter measured."""
    rows = []
    for r in rep.rows:
        if r["table"] != table or r.get("cost_passes") is None:
            continue
        sp = cfg.specs.get(r.get("run", ""))
        how = inspect.getdoc(type(sp.make_method()).derived_passes) if sp else ""
        rows.append({"method": r["method"], "derived N": r.get("derived_passes"), "measured N": r["cost_passes"],
                     "how": how, "epochs": r.get("epochs"), "total N (× epochs)": r["cost_passes"] *
                     (r.get("epochs") or 0), "train s": r.get("train_s")})
    return pd.DataFrame(rows).set_index("method") if rows else pd.DataFrame()


# ---------------------------------------------------------------------------------------- the chapter steps


def gather(cfg: Config, rep: Report) -> pd.DataFrame:
    """Copy the rows of every part's results file (same profile) into the chapter's report; list what was found."""
    from ...reported import methods
    found = ex.gather(rep, PARTS, cfg.s.out_dir)
    for table, metrics in ((T1, SHOW[T1] + ["fgsm", "pgd100"]), (T3["mnist"], SHOW[T3["mnist"]])):
        rep.add_missing(table, methods(PAPER, table), f"not measured in this run: run the part notebooks "
                        f"({', '.join(PARTS.values())}) before 10_nuat with profile {cfg.profile!r}", metrics)
    return found


# ------------------------------------------------------------------------------------------------ the claims

# The paper's headline claims on its CIFAR-10 ResNet-18 table (AA (v1) there; here the profile's AutoAttack), each a
# test on our rows of that table: a paired difference over the same test images, a final-epoch accuracy against a
# threshold, or a ratio of measured passes per sample per epoch.
CLAIMS = [
    Claim("nuat_beats_fbf", "Single-step NuAT is more robust than FBF under AutoAttack", "greater", "aa", "NuAT", "FBF",
          paper="NuAT 49.24 % vs FBF 43.12 % (AA v1)", source="NuAT table 1"),
    Claim("nuat_matches_pgdat", "NuAT matches PGD-AT under AutoAttack (within 2 points)", "within", "aa", "NuAT",
          "PGD-AT", margin=2.0, paper="NuAT 49.24 % vs PGD-AT 48.75 %", source="NuAT table 1"),
    Claim("nuat_third_cost", "…at about a third of PGD-AT's cost per epoch (measured passes, at most 0.4×)",
          "cost_ratio_at_most", "passes", "NuAT", "PGD-AT", value=0.4,
          paper="1 attack step vs 10: 7N vs 22N per sample per epoch", source="NuAT table 1 (# AT steps), §7"),
    Claim("wa_adds", "Weight averaging adds robustness: NuAT-WA beats NuAT under AutoAttack", "greater", "aa",
          "NuAT-WA", "NuAT", paper="50.75 % vs 49.24 % (+1.5)", source="NuAT table 1"),
    Claim("nuat_beats_rfgsm", "NuAT is more robust than RFGSM-AT under AutoAttack", "greater", "aa", "NuAT",
          "RFGSM-AT", paper="49.24 % vs 33.16 %", source="NuAT table 1"),
    Claim("fgsm_co", "FGSM-AT overfits catastrophically: its final model falls below 10 % under PGD-20", "below",
          "pgd20_last", "FGSM-AT", value=10.0, paper="FGSM-AT 0.00 % PGD-20 at 92.89 % clean",
          source="NuAT table 1; Wong et al. (2020)"),
    Claim("fbf_no_co", "FBF does not: its final model stays above 20 % under PGD-20", "above", "pgd20_last", "FBF",
          value=20.0, paper="FBF 46.41 % PGD-20", source="NuAT table 1; Wong et al. (2020)"),
]


def claims(rep: Report) -> pd.DataFrame:
    """CLAIMS checked on the ResNet-18 rows of ``rep`` (gathered from the part notebooks: per-image flags and
    measured passes travel with each row); a claim whose rows did not run says "not measured"."""
    rows = [r for r in rep.rows if r["table"] == T1]
    cost = {r["method"]: r.get("cost_passes") for r in rows}.get
    return claims_table(CLAIMS, flags_from_rows(rows, T1), cost)


def cross_dataset_cifar(cfg: Config, rep: Report) -> None:
    """The CIFAR-10 column of the cross-dataset table: the same models as the ResNet-18 table (FBF is compared with
    this table's AA 42.37, the ResNet-18 table's with 43.12)."""
    from ...reported import methods
    t1 = {r["method"]: r for r in rep.rows if r["table"] == T1}
    for m in methods(PAPER, T3["cifar10"]):
        r = t1.get(m)
        if r is None or all(v is None for v in r["metrics"].values()):
            rep.add_missing(T3["cifar10"], [m], r["note"] if r else "not measured", SHOW[T3["cifar10"]])
            continue
        rep.add_row(T3["cifar10"], m, {k: r["metrics"].get(k) for k in SHOW[T3["cifar10"]]},
                    cost_passes=r.get("cost_passes"), train_s=r.get("train_s"), epochs=r.get("epochs"),
                    note=("same models as the ResNet-18 table; " + (r.get("note") or "")).strip("; "), n=r.get("n"))


def imagenet100_command(cfg: Config) -> str:
    return ("# 1. ImageNet-100 = the 100 WordNet IDs of val-iisc/GAMA-GAT 'ImageNet -100/ImageNet100_classes.txt';\n"
            "#    <IMAGENET> holds train/<wnid>/*.JPEG (and val/ or test/ arranged by class)\n"
            "python -m robustlib.imagefolder <IMAGENET> --classes ImageNet100_classes.txt \\\n"
            f"    --out {cfg.s.data_dir}/imagenet100 --size 224 --resize 256\n"
            "# 2. the paper profile then trains and evaluates the ImageNet-100 column (ResNet-18, 120 epochs each)\n"
            f"ROBUSTLIB_IMAGENET100={cfg.s.data_dir}/imagenet100 python -m robustlib reproduce --profile paper "
            "--only nuat")


def imagenet100(cfg: Config, rep: Report) -> str:
    """The ImageNet-100 column: trained only in the paper profile and only when the converted data exist."""
    from ...reported import methods
    table = T3["imagenet100"]
    if cfg.imagenet100 is None or cfg.profile != "paper":
        why = ("ImageNet-100 is not available in this project" if cfg.imagenet100 is None else
               "ImageNet-100 is trained only in the paper profile (≈ 6–10 GPU-hours per row)")
        rep.add_missing(table, methods(PAPER, table), why + "; see the command in the chapter", SHOW[table])
        return why
    n = len(load_data(cfg, "imagenet100")[2])
    for key in [k for k in RECIPES if k.startswith("imagenet100/")]:
        evaluate_rows(cfg, train(cfg, key), rep, note="augmentation: random crop (16 px padding) and flip of the "
                      "stored 224 px center crops, not RandomResizedCrop", n=n)
    return "trained"


def wrn(cfg: Config, rep: Report) -> pd.DataFrame:
    """The WRN-34-10 table. Smoke/quick: measured passes per sample and seconds per batch on a few batches of each
    recipe (the accuracy columns stay empty, with a note); paper: every row trained and evaluated."""
    train_set, _, _ = load_data(cfg, "cifar10")
    out = []
    for key in [k for k in RECIPES if k.startswith("wrn/")]:
        sp = cfg.specs[key]
        epochs, batch = sp.extra["paper_epochs"], sp.config.batch_size
        if cfg.wrn_mode != "cost":
            t = train(cfg, key)
            evaluate_rows(cfg, t, rep)
            out.append({"method": sp.label, "rows": ", ".join(sp.rows), "N/sample": t.result.cost["total"]})
            continue
        # the method as it runs after any warm-up (AWP's weight perturbation on from the first batch)
        cost_spec = sp.replace(hp={"warmup_epochs": 0} if sp.method == "awp" else {}, config=dataclasses.replace(
            sp.config, batch_size=cfg.wrn_cost_batch or batch, schedule={"name": "constant", "lr": 0.01}))
        m = ex.measure_cost(cost_spec, train_set, batches=cfg.wrn_cost_batches, device=cfg.s.device,
                            warmup=not cfg.s.smoke)   # one untimed batch first, so start-up work is not counted
        per_batch, passes = m["seconds_per_batch"], m["measured_N"]
        hours = per_batch * (49000 // batch) * epochs / 3600
        note = (f"{cfg.profile}: not trained (WRN-34-10 does not fit a 10-minute notebook); cost measured on "
                f"{cfg.wrn_cost_batches} batch(es) of {m['batch_size']}: {per_batch:.3f} s per batch on "
                f"{cfg.s.device} ⇒ ≈ {hours:.2f} h for the recipe's {epochs} epochs at batch {batch}")
        rate = sp.hp.get("target_rate") if sp.method in ("nuat_h", "nuat_wa_h") else None
        if rate:
            passes = passes + 3 * rate
            note += f"; N includes 3N × the target two-step rate {rate:g} of our switching rule"
        for row_label in sp.rows:
            rep.add_row(T2, row_label, {k: None for k in SHOW[T2]}, cost_passes=passes, train_s=None, epochs=None,
                        note=note, est_recipe_hours=hours, seconds_per_batch=per_batch)
        out.append({"method": sp.label, "rows": ", ".join(sp.rows), "N/sample": passes, "s/batch": per_batch,
                    "batch": m["batch_size"], "recipe epochs": epochs, f"est. h on {cfg.s.device}": hours})
    rep.add_missing(T2, ["NuAT-WA-H (80+32)"], "optional row (README image only, not in the seed table); not run",
                    SHOW[T2])
    return pd.DataFrame(out).set_index("method")
