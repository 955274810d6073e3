"""The NuAT chapter's runs: the configuration (one :class:`robustlib.experiment.RunSpec` per RECIPES row and
ablation variant, with the profile and the notebook's overrides applied), training with hold-out selection, the
cached evaluation with the paper's attack suite, the rows of the report, and the public :func:`trained`.
"""
from __future__ import annotations

import dataclasses
import inspect
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ... import experiment as ex
from ...attacks import FGSM, GAMAPGD, PGD, AutoAttack, ifgsm
from ...data import ArrayDataset, Augment, holdout_split, load_dataset
from ...errors import ConfigError, UnknownNameError
from ...methods import METHODS
from ...report import Report
from ...schedules import Compressed, build_schedule
from ...stats import wilson_interval
from ...training import Selector, TrainConfig, TrainResult
from ..common import ProfileValues, RunSettings, settings
from .recipes import ABLATIONS, DATASETS, NOTES, PROFILES, RECIPES

PAPER = "nuat"
T1 = "cifar10_resnet18"
T2 = "cifar10_wrn34_10"
T3 = {"cifar10": "datasets_cifar10", "imagenet100": "datasets_imagenet100", "mnist": "datasets_mnist"}
ABLATION = "ablation_mnist"
TABLE = {"cifar10": T1, "wrn": T2, "mnist": T3["mnist"], "imagenet100": T3["imagenet100"]}
METRICS = ("clean", "fgsm", "pgd20", "pgd100", "pgd500", "gama100", "aa")
SHOW = {T1: ["clean", "pgd20", "pgd500", "gama100", "aa"], T2: ["clean", "pgd100", "gama100", "aa"],
        **{t: ["clean", "pgd500", "gama100", "aa"] for t in T3.values()},
        ABLATION: ["clean", "pgd20", "pgd100", "gama100"]}
PARTS = {"nuat": "11_nuat__nuat", "single": "12_nuat__single", "guided": "13_nuat__guided",
         "pgd_awp": "14_nuat__pgd_awp", "trades_free": "15_nuat__trades_free", "mnist": "16_nuat__mnist"}
# Hold-out attacks of checkpoint selection: NuAT's (and GAT_cifar10.py's) I-FGSM-7; GAT-MNIST.py's I-FGSM-40
# (40 steps of ε/40, no random start); GAT-ImageNet100.py's PGD-20 (steps of 2.5ε/20 from a uniform start that is
# not clipped before the first forward).
SELECT_ATTACKS = {
    "ifgsm7": lambda eps: ifgsm(eps, 7),
    "ifgsm40": lambda eps: ifgsm(eps, 40),
    "pgd20": lambda eps: PGD(eps, 2.5 * eps / 20, 20, start="uniform", clip_start=False, name="pgd20"),
}


# ----------------------------------------------------------------------------------------------- the config


@dataclass
class Config(ProfileValues):
    s: RunSettings
    prof: dict                              # PROFILES[s.profile]
    specs: dict[str, ex.RunSpec]            # one per RECIPES row and ABLATIONS variant, with profile and overrides
    imagenet100: Path | None = None
    notes: list[str] = field(default_factory=list)

    _profile_field = "prof"

    @property
    def profile(self) -> str:
        return self.s.profile

    def table(self) -> pd.DataFrame:
        aa_version, aa_attacks, budget = self.aa
        rows = {
            "profile": self.profile, "device": str(self.s.device), "seed": self.s.seed,
            "CIFAR-10": f"{self.n_train['cifar10'] or 'all 50 000'} training images minus a hold-out of "
                        f"{self.holdout['cifar10']} per class; first {self.n_test['cifar10']} test images",
            "MNIST": f"{self.n_train['mnist'] or 'all 60 000'} training images minus {self.holdout['mnist']} per "
                     f"class; first {self.n_test['mnist']} test images",
            "ResNet-18": f"NuAT's block (extra ReLU before the residual add) {self.models['cifar10'] or ''}".strip(),
            "MNIST CNN": f"{self.models['mnist'] or 'conv 32-32-64-64, fc 512'}",
            "WRN-34-10": f"{self.models['wrn'] or 'depth 34, widen 10'}; "
                         + ("cost per sample measured on a few batches" if self.wrn_mode == "cost" else "trained"),
            "PGD": ", ".join(f"{k} = PGD-{v}" for k, v in self.pgd_record.items())
                   + " (snapshots of one run, step 2/255 on CIFAR-10 and 0.01 on MNIST, one uniform start)",
            "GAMA-PGD": f"{self.gama_steps} steps, one restart",
            "AutoAttack": aa_version + (f" ({'+'.join(aa_attacks)})" if aa_attacks else "")
                          + (f", APGD {budget[0]} iterations × {budget[1]} restart" if budget else "")
                          + (f", {self.aa_targets} target classes" if self.aa_targets else "")
                          + (f", on the first {self.aa_n} test images" if self.aa_n else ""),
            "selection": "I-FGSM-7 accuracy on the hold-out split, every epoch (Normal: clean accuracy; GAT on "
                         "MNIST: I-FGSM-40, GAT-MNIST.py's rule)",
        }
        return pd.DataFrame({"setting": list(rows), "value": [str(v) for v in rows.values()]}).set_index("setting")


def scaled_tau(tau: float, paper_iters: float, run_iters: float) -> float:
    """A weight-average decay whose horizon 1/(1 − τ) is the same fraction of the run as in the paper."""
    horizon = (1.0 / (1.0 - tau)) * run_iters / paper_iters
    return round(1.0 - 1.0 / max(horizon, 2.0), 6)


def schedule_of(key: str):
    """The learning-rate schedule of a RECIPES row as written (not compressed)."""
    return build_schedule(dict(RECIPES[key]["schedule"]))


def recipe_method(key: str):
    """The method of a RECIPES row with the paper's hyperparameters (epoch_scale 1)."""
    return METHODS.build(RECIPES[key]["method"], **RECIPES[key]["hp"])


def make_spec(key: str, prof: dict, seed: int, overrides: dict | None = None) -> ex.RunSpec:
    """The RunSpec of RECIPES row (or ``"ablation/<variant>"``) ``key`` under profile ``prof``, with the compression
    rule applied and ``overrides`` ({key: {hyperparameter: value}}) merged into the method's hyperparameters."""
    base_key, variant = ("mnist/NuAT", key.split("/", 1)[1]) if key.startswith("ablation/") else (key, None)
    r = RECIPES[base_key]
    method, hp = (r["method"], r["hp"]) if variant is None else ABLATIONS[variant]
    ds = base_key.split("/")[0]
    d = DATASETS[ds]
    P = r["epochs"]
    E = prof["epochs"].get(base_key, prof["epochs"].get(ds, P))
    hp = {**hp, **prof["hp"].get(base_key, {}), **(overrides or {}).get(key, {})}
    if "epoch_scale" in inspect.signature(METHODS.get(method)).parameters:
        hp["epoch_scale"] = P / E
    factor = r.get("schedule_epochs", P) / E
    sched = schedule_of(base_key)
    sched = sched if factor == 1 else Compressed(sched, factor)
    n_run = (prof["n_train"].get(ds) or d["n_full"] + 1000) - 10 * prof["holdout"].get(ds, 100)
    paper_iters = P * max(d["n_full"] // r["batch"], 1)
    run_iters = E * min(max(n_run // r["batch"], 1), prof["max_batches"] or 10 ** 9)
    shortened = P != E or prof["max_batches"]
    taus = tuple(scaled_tau(t, paper_iters, run_iters) if shortened else t for t in r["ema"])
    rows = {k: (f"ema{taus[int(v[3:])]:g}" if v.startswith("ema") else v)
            for k, v in r.get("rows", {base_key.split("/", 1)[1]: "model"}).items()}
    label = base_key.split("/", 1)[1]
    if variant is not None:
        rows, label = {variant: "model"}, "NuAT"
    tc = TrainConfig(epochs=E, batch_size=r["batch"], schedule=sched, momentum=0.9, weight_decay=r["weight_decay"],
                     ema=taus, augment=Augment(**d["augment"]) if d["augment"] else None, seed=seed,
                     max_batches=prof["max_batches"])
    alias = "nuat-" + ex.slug(key if variant is None else f"mnist/ablation-{variant}")
    return ex.RunSpec(alias=alias, label=label, method=method, hp=hp, model=r["model"],
                      model_kw={**r["model_kw"], **prof["models"].get(ds, {})}, config=tc, rows=rows,
                      selector="clean" if r["select"] == "clean" else "robust", source=r["source"],
                      note=r.get("note", "") if variant is None else "",
                      extra={"key": key, "dataset": ds, "part": r["part"], "table": TABLE[ds], "paper_epochs": P,
                             "select": r["select"]})


def config(profile: str = "smoke", seed: int = 0, device: str = "auto", data_dir: str | None = None,
           out_dir: str | None = None, overrides: dict | None = None) -> Config:
    """The chapter's configuration for a notebook's parameters; ``overrides`` ({row key: {hyperparameter: value}},
    e.g. ``{"cifar10/NuAT": {"lam_max": 2.0}}``) change recipes without editing robustlib."""
    return _config(settings(profile, seed, device, data_dir, out_dir), overrides)


def _config(s: RunSettings, overrides: dict | None = None) -> Config:
    prof = PROFILES[s.profile]
    keys = list(RECIPES) + [f"ablation/{v}" for v in ABLATIONS if ABLATIONS[v] is not None]
    bad = set(overrides or {}) - set(keys)
    if bad:
        raise ConfigError(f"overrides name unknown rows {sorted(bad)}; valid: {', '.join(keys)}")
    specs = {k: make_spec(k, prof, s.seed, overrides) for k in keys}
    specs["ablation/NuAT (code form)"] = specs["mnist/NuAT"].replace(rows={"NuAT (code form)": "model"}, label="NuAT")
    in100 = os.environ.get("ROBUSTLIB_IMAGENET100")
    in100 = Path(in100) if in100 else (s.data_dir / "imagenet100")
    cfg = Config(s, prof, specs, in100 if (in100 / "train-0.npz").exists() or (in100 / "train.npz").exists()
                 else None)
    cfg.notes += ([NOTES[s.profile]] if s.profile in NOTES else []) + NOTES["all"]
    if overrides:
        cfg.notes.append(f"hyperparameters overridden by the notebook: {overrides}")
    return cfg


def report(cfg: Config, part: str | None = None) -> Report:
    dataset = "mnist" if part == "mnist" else "cifar10"
    return Report(PAPER, cfg.profile, cfg.s.out_dir, dataset, cfg.n_test[dataset], cfg.s.seed, str(cfg.s.device),
                  part=part)


# ---------------------------------------------------------------------------------------------------- data


_DATA_CACHE: dict = {}


def load_data(cfg: Config, dataset: str = "cifar10") -> tuple[ArrayDataset, ArrayDataset, ArrayDataset]:
    """(train, hold-out, test): the hold-out is the first ``holdout`` images per class of the training split."""
    dataset = DATASETS[dataset]["data"]
    key = (dataset, str(cfg.s.data_dir), cfg.n_train.get(dataset), cfg.n_test.get(dataset), cfg.holdout.get(dataset))
    if key not in _DATA_CACHE:
        if dataset == "imagenet100":
            train = load_dataset("npz", "train", folder=cfg.imagenet100)
            try:
                val = load_dataset("npz", "val", folder=cfg.imagenet100)
            except Exception:
                train, val = holdout_split(train, 50)
            test = load_dataset("npz", "test", folder=cfg.imagenet100)
        else:
            full = load_dataset(dataset, "train", cfg.s.data_dir, limit=cfg.n_train[dataset])
            train, val = holdout_split(full, cfg.holdout[dataset])
            test = load_dataset(dataset, "test", cfg.s.data_dir).head(cfg.n_test[dataset])
        _DATA_CACHE[key] = (train, val, test)
    return _DATA_CACHE[key]


# --------------------------------------------------------------------------------------- training, evaluation


def selector(spec: ex.RunSpec, val: ArrayDataset) -> Selector:
    """The hold-out selection of a run: clean accuracy, or robust accuracy under its recipe's selection attack."""
    if spec.selector == "clean":
        return Selector(val, None, "clean")
    name = spec.extra.get("select", "ifgsm7")
    if name not in SELECT_ATTACKS:
        raise UnknownNameError("selection attack", name, SELECT_ATTACKS)
    return Selector(val, SELECT_ATTACKS[name](DATASETS[spec.extra["dataset"]]["eps"]), "robust")


def train(cfg: Config, key: str, progress: bool = True, spec: ex.RunSpec | None = None) -> ex.Trained:
    """Train ``cfg.specs[key]`` (or ``spec``) with hold-out selection — or reopen the finished run."""
    if spec is None and key not in cfg.specs:
        raise UnknownNameError("NuAT run", key, cfg.specs)
    spec = spec or cfg.specs[key]
    data, val, _ = load_data(cfg, spec.extra["dataset"])
    return ex.train(spec, data, cfg.s.checkpoint_dir, selector=selector(spec, val), device=cfg.s.device,
                    progress=progress)


def suite(cfg: Config, dataset: str, record: dict[str, int] | None = None) -> dict:
    """The paper's attack suite: FGSM, PGD-20/100/500 (snapshots of one run, one uniform start not clipped before
    the first forward), GAMA-PGD-100 (one restart) and AutoAttack."""
    eps, step = DATASETS[dataset]["eps"], DATASETS[dataset]["pgd_step"]
    record = record or cfg.pgd_record
    g = cfg.gama_steps
    gama = GAMAPGD(eps, g) if g >= 100 else GAMAPGD(eps, g, relax_steps=max(1, g // 4),
                                                    drops=(int(0.6 * g), int(0.85 * g)))
    version, attacks, budget = cfg.aa
    return {"fgsm": FGSM(eps),
            "pgd": PGD(eps, step, max(record.values()), start="uniform", clip_start=False, record=record),
            "gama100": gama,
            "aa": AutoAttack(eps, version=version, attacks=attacks, seed=cfg.s.seed, batch_size=cfg.eval_batch,
                             apgd_budget=budget, targets=cfg.aa_targets)}


@dataclass
class Scores:
    """One model's evaluation: accuracies (%), per-image correct flags and, for a metric measured on fewer images
    than the others (AutoAttack with the profile's ``aa_n``), its own 95 % interval."""
    acc: dict
    flags: dict
    ci: dict


def evaluate(cfg: Config, t: ex.Trained, which: str, attacks: dict, desc: str = "", model=None,
             tag=None) -> Scores:
    """Model ``which`` of run ``t`` (or ``model``, the same weights another way: ``tag``) on its dataset's test
    images, cached beside the checkpoint; AutoAttack on the first ``aa_n`` images when the profile says so."""
    _, _, test = load_data(cfg, t.spec.extra["dataset"])
    aa_n = cfg.aa_n if "aa" in attacks and cfg.aa_n and cfg.aa_n < len(test) else None
    kw = dict(which=which, batch_size=cfg.eval_batch, seed=cfg.s.seed, device=cfg.s.device, model=model, tag=tag)
    if model is not None:
        kw.update(cache_dir=t.folder, model_key=[t.fingerprint, which, t.result.epochs])
    parts = [ex.evaluate_cached(None if model is not None else t, {k: a for k, a in attacks.items()
                                                                   if not (aa_n and k == "aa")}, test,
                                desc=desc or t.spec.label, **kw)]
    if aa_n:
        parts.append(ex.evaluate_cached(None if model is not None else t, {"aa": attacks["aa"]}, test, n=aa_n,
                                        desc=f"{desc or t.spec.label} AutoAttack", **kw))
    acc, flags, ci = {}, {}, {}
    for i, res in enumerate(parts):
        a = res.accuracies()
        for k in METRICS:
            if k in a and (i == 0 or k not in acc):
                acc[k], flags[k] = a[k], res.flags[k].tolist()
                if i > 0:
                    ci[k] = wilson_interval(int(sum(flags[k])), len(flags[k]))
    return Scores({k: acc[k] for k in METRICS if k in acc}, flags, ci)


def _history(res: TrainResult) -> list[dict]:
    keep = [c for c in res.history.columns if c in ("epoch", "lr", "momentum", "current_lam", "train_loss",
                                                       "train_seconds", "two_step", "adv_acc", "clean_acc")
            or "val_" in c]
    return [{k: (None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)) for k, v in rec.items()}
            for rec in res.history[keep].to_dict("records")]


def row_note(cfg: Config, spec: ex.RunSpec) -> str:
    """What a row's run changed against its recipe in this profile, plus the recipe's own note."""
    parts = []
    E, P = spec.config.epochs, spec.extra["paper_epochs"]
    if cfg.profile != "paper" and E != P:
        parts.append(f"{cfg.profile}: {E} of the recipe's {P} epochs, schedule compressed {P / E:g}×")
    if spec.config.ema:
        parts.append("EMA τ = " + ", ".join(f"{t:g}" for t in spec.config.ema))
    if cfg.s.smoke:
        r, (_, _, budget) = cfg.pgd_record, cfg.aa
        steps = cfg.hp.get(spec.extra["key"], {}).get("steps")
        parts.append(f"smoke: pgd20/pgd100/pgd500 hold PGD-{r['pgd20']}/{r['pgd100']}/{r['pgd500']}, gama100 "
                     f"GAMA-{cfg.gama_steps}, aa APGD-CE-{budget[0]} only" + (f"; {steps} attack steps" if steps
                                                                              else ""))
    if spec.note:
        parts.append(spec.note)
    return "; ".join(parts)


def evaluate_rows(cfg: Config, t: ex.Trained, rep: Report, note: str | None = None, **row) -> dict[str, dict]:
    """Evaluate the model of each table row of run ``t`` (its hold-out-selected epoch) with the full suite and add
    the rows to ``rep`` (``note`` replaces the row note; ``row`` adds keys to each row)."""
    sp = t.spec
    attacks = suite(cfg, sp.extra["dataset"], cfg.pgd_record_wrn if sp.extra["dataset"] == "wrn" else None)
    out = {}
    for label, which in sp.rows.items():
        sc = evaluate(cfg, t, which, attacks, desc=f"{label} ({sp.extra['dataset']})")
        m, flags = sc.acc, dict(sc.flags)
        table = sp.extra["table"]
        if table in (T2, T3["imagenet100"]):
            m = {k: m.get(k) for k in SHOW[table]}
        if sp.extra["key"] in LAST_EPOCH_CHECK:
            flags["pgd20_last"] = last_epoch_pgd20(cfg, t, which, sc)
        extra = {}
        if "two_step" in t.result.history:
            rate = float(t.result.history["two_step"].mean())
            extra = {"two_step_rate": rate, "plus_k_epochs": rate * sp.config.epochs}
        if "pgd20_last" in flags:
            extra["pgd20_last"] = 100.0 * sum(flags["pgd20_last"]) / len(flags["pgd20_last"])
        rep.add_row(table, label, m, cost_passes=t.cost_passes, train_s=t.result.train_seconds,
                    epochs=t.result.epochs, note=row_note(cfg, sp) if note is None else note, flags=flags, ci=sc.ci,
                    precision=t.result.hyperparameters.get("resolved"),
                    history=_history(t.result),
                    selected_epoch=t.selected_epoch(which), model_used=which, run=sp.extra["key"], recipe=sp.source,
                    dataset=sp.extra["dataset"], derived_passes=sp.make_method().derived_passes(),
                    paper_epochs=sp.extra["paper_epochs"], part=sp.extra["part"], **extra, **row)
        out[label] = m
    return out


# Single-step rows whose final-epoch model is attacked too (PGD-20): catastrophic overfitting shows there, while the
# hold-out selection may keep an epoch from before it.
LAST_EPOCH_CHECK = ("cifar10/FGSM-AT", "cifar10/RFGSM-AT", "cifar10/FBF")


def last_epoch_pgd20(cfg: Config, t: ex.Trained, which: str, sc: Scores) -> list[bool]:
    """Per-image PGD-20 flags of the run's final-epoch model ``which`` (the selected model's, when it is the last)."""
    if t.selected_epoch(which) in (None, t.result.epochs):
        return list(sc.flags["pgd20"])
    eps, step = DATASETS[t.spec.extra["dataset"]]["eps"], DATASETS[t.spec.extra["dataset"]]["pgd_step"]
    pgd = {"pgd20": PGD(eps, step, 20, start="uniform", clip_start=False, record={"pgd20": 20})}
    final = t.result.models()[which].eval()
    return evaluate(cfg, t, which, pgd, desc=f"{t.spec.label} final epoch", model=final, tag="final epoch").flags[
        "pgd20"]


def part_keys(part: str) -> list[str]:
    """The RECIPES rows a part notebook trains (``"chapter"``: the WRN-34-10 and ImageNet-100 rows)."""
    if part not in PARTS and part != "chapter":
        raise UnknownNameError("NuAT part", part, [*PARTS, "chapter"])
    return [k for k, r in RECIPES.items() if r["part"] == part]


def run_part(cfg: Config, part: str, rep: Report, progress: bool = True) -> dict[str, ex.Trained]:
    """Train (or reopen) and evaluate every run of a part notebook; the MNIST part also runs the ablation."""
    out = {}
    for key in part_keys(part):
        out[key] = train(cfg, key, progress)
        evaluate_rows(cfg, out[key], rep)
    if part == "mnist":
        ablation(cfg, rep)
    return out


def trained(s: RunSettings, label: str, *, seed: int | None = None, progress: bool = True,
            overrides: dict | None = None) -> ex.Trained:
    """The run that gives row ``label`` of the CIFAR-10 ResNet-18 table under profile ``s.profile`` (trained, or
    reopened when it is finished); ``t.model(t.spec.rows[label])`` is the row's model. ``seed`` trains the same recipe
    with another seed; ``overrides`` as in :func:`config`. For other chapters (the comparison)."""
    cfg = _config(s if seed is None else dataclasses.replace(s, seed=int(seed)), overrides)
    keys = {lab: k for k, sp in cfg.specs.items() if sp.extra["table"] == T1 for lab in sp.rows}
    if label not in keys:
        raise UnknownNameError("CIFAR-10 ResNet-18 row", label, keys)
    return train(cfg, keys[label], progress)


def normal_model(cfg: Config):
    """The normally trained ResNet-18 of the ResNet-18 table (reused from the 'single' part when it ran)."""
    return train(cfg, "cifar10/Normal").model("model")


# ------------------------------------------------------------------------------------------- MNIST ablation


def ablation(cfg: Config, rep: Report) -> pd.DataFrame:
    """What each detail of the authors' code buys: NuAT on MNIST with one detail switched off at a time (same
    budget as the NuAT MNIST row, which is the "code form" reference), evaluated by PGD and GAMA-PGD (no AA)."""
    rec = {k: v for k, v in cfg.pgd_record.items() if k in ("pgd20", "pgd100")}
    attacks = {k: v for k, v in suite(cfg, "mnist", rec).items() if k in ("pgd", "gama100")}
    out = []
    for name in cfg.ablation:
        t = train(cfg, f"ablation/{name}")
        m = evaluate(cfg, t, "model", attacks, desc=f"ablation {name}").acc
        extra = {}
        if "two_step" in t.result.history:
            extra["two_step_rate"] = float(t.result.history["two_step"].mean())
        rep.add_row(ABLATION, name, m, paper={}, cost_passes=t.result.cost["total"], train_s=t.result.train_seconds,
                    epochs=t.result.epochs, note=row_note(cfg, t.spec) + ("; two-step fraction "
                    f"{extra['two_step_rate']:.2f}" if extra else ""), history=_history(t.result), **extra)
        out.append({"variant": name, **m, "N/sample": t.result.cost["total"], **extra})
    return pd.DataFrame(out).set_index("variant")


