"""The comparison chapter — four defences, one protocol, and an evaluation you can trust.

Ten CIFAR-10 ResNet-18 rows (:data:`ROWS`) under one attack suite at ε = 8/255 (:func:`suite`), the gradient-masking
checklist of :mod:`robustlib.audit` on every row (:func:`checklist`), AutoAttack accuracy against the measured
training cost (Pareto front) and the run-to-run spread of a second seed (:mod:`.analysis`; figures in
:mod:`.figures`).

Each row's model comes from its paper chapter's one public function, ``<chapter>.trained(settings, label,
seed=...)``, which reopens that chapter's finished run (or trains it); the FD row is trained here from
:data:`RECIPES` through :func:`robustlib.experiment.train`. Every evaluation is cached beside its checkpoint
(:func:`robustlib.experiment.evaluate_cached` for the suite, :func:`robustlib.experiment.cached` for AutoAttack's
warnings and the checklist); the part notebooks (:data:`PARTS`) write their rows and the chapter notebook gathers
them (:func:`collect`). The chapter's claims (:data:`CLAIMS`, :func:`claims`) are checked on the rows' per-image
flags. Planning (:func:`plan`, :func:`part_minutes`) uses one H200's estimates (:data:`PLAN`) or, in the cpu profile,
two CPU cores' (:data:`CPU_PLAN`).
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from ... import audit
from ... import experiment as ex
from ...attacks import GAMAPGD, PGD, AutoAttack
from ...data import ArrayDataset, Augment, load_dataset
from ...errors import ConfigError
from ...evaluation import B1
from ...methods.advprop import bn_route
from ...report import Report
from ...stats import wilson_interval
from ...threat import CIFAR10
from ...training import TrainConfig
from ...utils import derive_seed, fp32_strict, hardware_info, hardware_label
from .. import abnn, advprop, nuat
from ..common import ProfileValues, RunSettings, cifar10_splits, settings
from .analysis import (COSTS, budget_table, checklist_tables, checks_of, claims, eps_frame, first_seed, flagged,
                       main_table, paper_numbers, pareto_mask, pareto_points, pareto_table, part_summary,
                       records_of, reported_points, reported_sources, second_seeds, spread, spread_summary,
                       spread_wide)
from .figures import plot_eps, plot_pareto, plot_spread
from .tables import (AA_STANDARD, CHAPTER_TITLES, CLAIMS, CPU_PLAN, FD, METHODS, METRICS, NOT_ROBUST, NOTEBOOKS, NOTES,
                     PAPER, PART_LIMIT_MIN, PARTS, PLAN, PROFILES, RECIPES, ROWS, SPREAD_ROWS, TABLE)

EPS = CIFAR10.eps
CHAPTERS = {"nuat": nuat, "advprop": advprop, "abnn": abnn}   # each exposes trained(s, label, *, seed, progress)
KINDS = ("full", "suite")   # full: the suite and the checklist; suite: the attack suite only (second seeds)


# ------------------------------------------------------------------------------------------------ configuration


@dataclass
class Config(ProfileValues):
    s: RunSettings
    profile: dict                        # PROFILES[s.profile]
    specs: dict[str, ex.RunSpec]         # one per RECIPES row (first seed), with the profile and the overrides
    overrides: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    _rows: dict = field(default_factory=dict, repr=False)
    _data: dict = field(default_factory=dict, repr=False)


    def spec(self, label: str, offset: int = 0) -> ex.RunSpec:
        """The RunSpec of a RECIPES row for seed ``s.seed + offset``."""
        return make_spec(label, self.profile, self.s.seed + offset, self.overrides)

    def test(self) -> ArrayDataset:
        if "test" not in self._data:
            self._data["test"] = load_dataset("cifar10", "test", self.s.data_dir).head(self.n_test)
        return self._data["test"]

    def train_data(self) -> ArrayDataset:
        """The FD row's training images."""
        if "train" not in self._data:
            self._data["train"] = cifar10_splits(self.s, self.n_train, None)[0]
        return self._data["train"]

    def table(self) -> pd.DataFrame:
        """The evaluation protocol of this profile as a two-column table for the notebook."""
        aa = self.aa_version + (f" ({'+'.join(self.aa_attacks)})" if self.aa_attacks else "") \
            + (f", APGD {self.aa_apgd_budget[0]} iterations × {self.aa_apgd_budget[1]}" if self.aa_apgd_budget
               else "") + (f", Square {self.aa_square_queries} queries" if self.aa_square_queries else "")
        if aa_images(self) < self.n_test:
            aa += f", on the first {aa_images(self)} of the test images (its own 95 % interval)"
        fd = self.specs[FD]
        white = f"min(PGD-{self.pgd_record['pgd100']}, GAMA-PGD-{self.gama_steps})"
        rows = {
            "profile": self.s.profile, "device": str(self.s.device), "seed": self.s.seed,
            "second seed": f"{self.s.seed + 1} for {', '.join(SPREAD_ROWS)}",
            "test images": f"the first {self.n_test} CIFAR-10 test images, batches of {self.eval_batch} (ABNN: its "
                           "chapter's evaluation batch; its AutoAttack at batch size 1)"
                           + (f"; AutoAttack on the first {aa_images(self)}" if aa_images(self) < self.n_test else ""),
            "attack suite": f"ε = 8/255; PGD (step 2/255, one uniform start) snapshots "
                            + ", ".join(f"{k} = PGD-{v}" for k, v in self.pgd_record.items())
                            + f"; gama100 = GAMA-PGD-{self.gama_steps}; AutoAttack {aa}",
            "checklist: ε → 0": f"PGD-{self.eps_steps} (step ε/4) at ε = "
                                + ", ".join(f"{e}/255" for e in self.eps_grid) + "; pass if ≤ 2 % at the largest",
            "checklist: steps, restarts": f"PGD-{'/'.join(map(str, self.sr_steps))} (one run) and PGD-"
                                          f"{max(self.sr_steps)} × {self.restarts} restarts; tolerance {self.tol:g} "
                                          "points",
            "checklist: black box": f"transfer of PGD-{self.transfer_steps} from the Normal model (for Normal: from "
                                    f"PGD-AT), Square with {self.square_queries} queries, against {white}",
            "checklist: AutoAttack": "its own warnings (randomness, non-logit outputs, dynamic model, zero gradients, "
                                     "Square beating the gradient attacks)",
            FD: f"ResNet-18 {fd.model_kw or ''}, {fd.method} {fd.hp}; {fd.config.epochs} epochs, batch "
                f"{fd.config.batch_size}, lr 0.1 ÷5 at 30/60/80 %, strict fp32, last epoch",
        }
        return pd.DataFrame({"setting": list(rows), "value": [str(v) for v in rows.values()]}).set_index("setting")


def recipe_table() -> pd.DataFrame:
    """RECIPES as the hyperparameter table of the row trained here."""
    return pd.DataFrame([{"row": k, **r} for k, r in RECIPES.items()]).set_index("row")


def rows_table() -> pd.DataFrame:
    """ROWS: where each of the ten rows comes from."""
    return pd.DataFrame([{"row": k, "chapter": CHAPTER_TITLES[r["chapter"]], "its label": r["label"],
                          "family": r["family"], "model": r["model"]} for k, r in ROWS.items()]).set_index("row")


def make_spec(label: str, profile: dict, seed: int, overrides: dict | None = None) -> ex.RunSpec:
    """The RunSpec of one RECIPES row under a profile; ``overrides`` ({row: {hyperparameter: value}}) change the
    method's hyperparameters without editing this package."""
    r = RECIPES[label]
    epochs = profile["epochs"].get(label, r["epochs"])
    hp = {**r["hp"], **(overrides or {}).get(label, {})}
    tc = TrainConfig(epochs=epochs, batch_size=profile["batch"], lr=r["lr"],
                     schedule={**r["schedule"], "lr": r["lr"], "epochs": epochs}, momentum=r["momentum"],
                     weight_decay=r["weight_decay"], nesterov=r["nesterov"], augment=Augment(**r["augment"]),
                     seed=seed, amp=r["amp"], max_batches=profile["max_batches"])
    return ex.RunSpec(alias=f"{PAPER}-fd", label=label, method=r["method"], hp=hp, model=r["model"],
                      model_kw=dict(profile["model"]), config=tc, source=r["source"],
                      extra={"paper_epochs": r["epochs"]})


def config(profile: str = "smoke", seed: int = 0, device: str = "auto", data_dir: str | None = None,
           out_dir: str | None = None, overrides: dict | None = None) -> Config:
    s = settings(profile, seed, device, data_dir, out_dir)
    if s.profile not in PROFILES:
        raise ConfigError(f"this chapter has no {s.profile!r} profile yet; valid here: {', '.join(PROFILES)}")
    bad = set(overrides or {}) - set(RECIPES)
    if bad:
        raise ConfigError(f"overrides name rows not trained here {sorted(bad)}; valid: {', '.join(RECIPES)} (the other "
                          "rows are trained by their chapters: override them there)")
    prof = PROFILES[s.profile]
    cfg = Config(s=s, profile=prof, specs={k: make_spec(k, prof, seed, overrides) for k in RECIPES},
                 overrides=dict(overrides or {}))
    cfg.notes.append(NOTES[s.profile])
    if overrides:
        cfg.notes.append(f"hyperparameters overridden by the notebook: {overrides}")
    return cfg


def report(cfg: Config, part: str | None = None) -> Report:
    if part is not None and part not in PARTS:
        raise ConfigError(f"unknown part {part!r}; valid: {', '.join(PARTS)}")
    return Report(PAPER, cfg.s.profile, cfg.s.out_dir, "cifar10", cfg.n_test, cfg.s.seed, str(cfg.s.device),
                  part=part)


# ------------------------------------------------------------------------------------------------ the models


class BNRouted(nn.Module):
    """An AdvProp model whose dual BatchNorms all take ``route`` ("main" or "aux") in every forward pass."""

    def __init__(self, model: nn.Module, route: str):
        super().__init__()
        self.model, self.route = model, route

    def forward(self, x):
        with bn_route(self.model, self.route):
            return self.model(x)


@dataclass
class RowModel:
    """A table row's evaluated model: the run it comes from, which of its models, the key that identifies its
    weights in every cached evaluation, its evaluation batch and its training budget."""

    label: str
    offset: int
    trained: ex.Trained
    which: str
    model: nn.Module
    key: list
    eval_batch: int
    info: dict


def train_fd(cfg: Config, offset: int = 0, progress: bool = True) -> ex.Trained:
    """The FD row (RECIPES) for seed ``s.seed + offset``, trained here in strict fp32 (or reopened)."""
    with fp32_strict():
        return ex.train(cfg.spec(FD, offset), cfg.train_data(), cfg.s.checkpoint_dir, device=cfg.s.device,
                        progress=progress)


def trained_row(cfg: Config, label: str, offset: int = 0, progress: bool = True) -> ex.Trained:
    """The run that gives ``label`` for seed ``s.seed + offset``: its chapter's ``trained`` (or :func:`train_fd`)."""
    if label not in ROWS:
        raise ConfigError(f"unknown row {label!r}; valid: {', '.join(METHODS)}")
    r = ROWS[label]
    if offset >= r.get("seeds", 2):
        raise ConfigError(f"{label} is evaluated for {r.get('seeds', 2)} seed(s) only; no seed offset {offset}")
    if r["chapter"] == PAPER:
        return train_fd(cfg, offset, progress)
    o = cfg.chapter_overrides.get(label)
    return CHAPTERS[r["chapter"]].trained(cfg.s, r["label"], seed=cfg.s.seed + offset, progress=progress,
                                          **({"overrides": o} if o else {}))


def row(cfg: Config, label: str, offset: int = 0, progress: bool = True) -> RowModel:
    """The row's model on this run's device (trained by its chapter, or here), kept for the notebook's lifetime."""
    if (label, offset) not in cfg._rows:
        t = trained_row(cfg, label, offset, progress)
        r = ROWS[label]
        which = t.spec.rows[r["label"]]
        model = t.model(which)
        name = which
        if "bn" in r:
            model, name = BNRouted(model, r["bn"]), f"{which}@{r['bn']}-bn"
        key = [t.fingerprint, name, t.selected_epoch(which), t.result.epochs]
        batch = cfg.eval_batch
        if r.get("own_batch"):
            if "eval_batch" not in t.spec.extra:
                raise ConfigError(f"{label}: its chapter's run states no evaluation batch (spec.extra['eval_batch'])")
            batch = int(t.spec.extra["eval_batch"])
        cfg._rows[(label, offset)] = RowModel(label, offset, t, which, model.to(cfg.s.device).eval(), key, batch,
                                              budget(label, t, which))
    return cfg._rows[(label, offset)]


def budget(label: str, t: ex.Trained, which: str) -> dict:
    """Where the row comes from and what its training cost: epochs, measured N per sample per epoch, total passes,
    seconds, device-seconds, and how the checkpoint was chosen."""
    r, res = ROWS[label], t.result
    shards = int((res.hyperparameters.get("train") or {}).get("data_shards") or 1)
    cost = float(t.cost_passes)
    epoch = t.selected_epoch(which)
    if t.spec.selector and epoch is not None:
        selection = (f"hold-out {'clean' if t.spec.selector == 'clean' else 'robust'} accuracy, epoch {epoch}"
                     + (f" of the weight average ({which})" if which != "model" else ""))
    else:
        selection = r.get("selection", "last epoch (fixed schedule)")
    return {"source": r.get("source") or f"{CHAPTER_TITLES[r['chapter']]} chapter, run {t.folder.name}",
            "recipe_epochs": t.spec.extra.get("paper_epochs"), "model": r["model"], "epochs": int(res.epochs),
            "cost_passes": cost, "total_passes": cost * res.epochs, "train_s": float(res.train_seconds),
            "gpu_s": float(res.train_seconds) * shards, "processes": shards, "selection": selection}


# ------------------------------------------------------------------------------------------------ evaluation


def aa_images(cfg: Config) -> int:
    """How many of the test images AutoAttack runs on: the first ``aa_n`` (the cpu profile), else all ``n_test``."""
    return min(cfg.aa_n, cfg.n_test) if cfg.aa_n else cfg.n_test


def suite(cfg: Config, batch_size: int | None = None) -> dict:
    """The one attack suite: PGD-20/100 (snapshots of one run, step 2/255, one uniform start), GAMA-PGD-100 (one
    restart) and AutoAttack (``standard`` in cpu/quick/paper; in the cpu profile on the first ``aa_n`` test images
    only, see :func:`evaluate_row`), all at ε = 8/255. The cpu profile's pgd100 and gama100 hold 50 steps."""
    steps, g = max(cfg.pgd_record.values()), cfg.gama_steps
    gama = GAMAPGD(EPS, g) if g >= 100 else GAMAPGD(EPS, g, relax_steps=max(1, g // 4),
                                                    drops=(int(0.6 * g), int(0.85 * g)))
    return {"pgd": PGD(EPS, CIFAR10.pgd_step, steps, start="uniform", record=cfg.pgd_record),
            "gama100": gama,
            "aa": AutoAttack(EPS, version=cfg.aa_version, attacks=cfg.aa_attacks, seed=cfg.s.seed,
                             batch_size=batch_size or cfg.eval_batch, apgd_budget=cfg.aa_apgd_budget,
                             square_queries=cfg.aa_square_queries)}


def transfer_source(label: str) -> str:
    """The black-box transfer source: the Normal model, and for Normal itself the PGD-AT model."""
    return "PGD-AT" if label == "Normal" else "Normal"


def checklist(cfg: Config, rm: RowModel, metrics: dict, warnings: list, source: RowModel | None
              ) -> tuple[list[audit.Check], pd.DataFrame]:
    """The four checks of :mod:`robustlib.audit` for one model, at its evaluation batch size (a batch-dependent
    model's Square attack runs, and is compared with a white-box PGD, at batch size 1; see :func:`audit.black_box`)."""
    name, model, bs, dev, test = rm.label, rm.model, rm.eval_batch, cfg.s.device, cfg.test()
    torch.manual_seed(derive_seed(PAPER, "eps", cfg.s.seed, name))
    c1, curve = audit.eps_to_zero(name, model, test, eps_255=cfg.eps_grid, steps=cfg.eps_steps, device=dev,
                                  batch_size=bs)
    c2 = audit.steps_and_restarts(name, model, test, eps=EPS, steps=cfg.sr_steps, restarts=cfg.restarts, tol=cfg.tol,
                                  device=dev, batch_size=bs)
    white = min(metrics["pgd100"], metrics["gama100"])
    c3 = audit.black_box(name, model, test, white, source=None if source is None else source.model,
                         source_name=f"{transfer_source(name)} model", eps=EPS, square=True, tol=cfg.tol, device=dev,
                         batch_size=bs, seed=cfg.s.seed, square_queries=cfg.square_queries,
                         transfer_steps=cfg.transfer_steps, white_steps=max(cfg.pgd_record.values()))
    c4 = audit.autoattack_flags(name, warnings)
    return [c1, c2, c3, c4], curve


def _native(obj):
    """JSON-native copy (NumPy scalars → Python), so that a fresh and a cached result are the same objects."""
    return json.loads(json.dumps(obj, default=lambda o: o.item() if isinstance(o, np.generic) else str(o)))


def evaluate_row(cfg: Config, label: str, offset: int = 0, kind: str = "full", log=print,
                 progress: bool = True) -> dict:
    """The suite (and for ``full`` the checklist) on one row's model, every piece cached beside its checkpoint.

    Returns a record: the row's metrics (a batch-dependent model's also scored one image at a time, ``metrics_b1``),
    their per-image flags (``flags``, for the claims), how many images AutoAttack ran on (``aa_n``: the first
    :func:`aa_images` of the test images, all of them outside the cpu profile), AutoAttack's warnings, the checklist,
    the training budget, and the seconds this call took."""
    if kind not in KINDS:
        raise ConfigError(f"unknown evaluation kind {kind!r}; valid: {', '.join(KINDS)}")
    rm = row(cfg, label, offset, progress)
    test, bs, seed = cfg.test(), rm.eval_batch, derive_seed(PAPER, cfg.s.seed, label, offset)
    atk = suite(cfg, bs)
    n_aa = aa_images(cfg)
    # one evaluation of the whole suite, or (AutoAttack on a prefix) the suite without AutoAttack on every test image
    # and AutoAttack alone on the first n_aa: each cached under its own key (the quick and paper keys are unchanged)
    jobs = [(atk, None)] if n_aa >= len(test) else [({k: a for k, a in atk.items() if k != "aa"}, None),
                                                    ({"aa": atk["aa"]}, n_aa)]
    aa_job = jobs[-1]
    what = {"aa_warnings": ex.eval_fingerprint(rm.key, aa_job[0], test, aa_job[1], bs, seed)}   # before AA runs
    t0 = time.perf_counter()
    run = dict(model=rm.model, batch_size=bs, seed=seed, device=cfg.s.device, progress=progress,
               desc=f"{label} seed {cfg.s.seed + offset}")
    parts = [ex.evaluate_cached(None, a, test, cache_dir=rm.trained.folder, model_key=rm.key, n=n, **run)
             for a, n in jobs]

    def hear_warnings():         # flags read from the cache: run AutoAttack once more to hear its warnings
        if parts[-1].meta.get("cached"):
            ex.evaluate_cached(None, aa_job[0], test, n=aa_job[1], **run)
        return {"warnings": list(atk["aa"].warnings)}
    warnings = list(ex.cached(None, what, hear_warnings, cache_dir=rm.trained.folder, model_key=rm.key)["warnings"])
    acc, flags = parts[0].accuracies(), {k: parts[0].flags[k] for k in parts[0].flags.columns}
    for res in parts[1:]:                                  # AutoAttack's columns come from its own evaluation
        a = res.accuracies()
        for k in ("aa", "aa" + B1):
            if k in a:
                acc[k], flags[k] = a[k], res.flags[k]
    dependent = bool(parts[0].meta.get("batch_dependent"))
    rec = {"label": label, "offset": offset, "seed": cfg.s.seed + offset, "kind": kind, "n": parts[0].n,
           "aa_n": parts[-1].n, "eval_batch": bs,
           "metrics": {k: float(acc[k]) for k in METRICS}, "batch_dependent": dependent,
           "metrics_b1": {k: float(acc[k + B1]) for k in METRICS if k + B1 in acc} if dependent else None,
           "flags": {k: [bool(v) for v in flags[k]] for k in METRICS},
           "aa_warnings": warnings, "train": rm.info, "hardware": hardware_label(hardware_info(cfg.s.device)),
           "suite_s": time.perf_counter() - t0, "checks": None, "eps_curve": None, "verdict": None,
           "checklist_s": None}
    if kind == "full":
        t1 = time.perf_counter()
        src = row(cfg, transfer_source(label), 0, progress)
        about = {"checklist": {k: cfg.profile[k] for k in ("eps_grid", "eps_steps", "sr_steps", "restarts",
                                                             "square_queries", "transfer_steps", "tol", "pgd_record")},
                 "defence": label, "data": [test.name, len(test)], "batch": bs, "seed": cfg.s.seed,
                 "source": src.key, "white": [rec["metrics"]["pgd100"], rec["metrics"]["gama100"]],
                 "warnings": warnings}

        def run_checklist():
            checks, curve = checklist(cfg, rm, rec["metrics"], warnings, src)
            return _native({"checks": [c.row() for c in checks], "eps_curve": curve.to_dict("records"),
                            "verdict": audit.verdict(label, checks)})
        rec.update(ex.cached(None, about, run_checklist, cache_dir=rm.trained.folder, model_key=rm.key),
                   checklist_s=time.perf_counter() - t1)
    log(f"{label:28s} seed {rec['seed']}  " + "  ".join(f"{k} {v:5.1f}" for k, v in rec["metrics"].items())
        + f"  ({rec['suite_s']:.0f} s suite" + (f", {rec['checklist_s']:.0f} s checklist" if kind == "full" else "")
        + ")")
    return rec


# ------------------------------------------------------------------------------------------------ report rows


def row_note(cfg: Config, rec: dict) -> str:
    t, label = rec["train"], rec["label"]
    parts = [f"{t['source']}; {t['epochs']} epochs" + (f" (recipe {t['recipe_epochs']})" if t.get("recipe_epochs")
                                                       else "") + f"; {t['selection']}"]
    if ROWS[label]["chapter"] == "nuat":
        parts.append("NuAT's ResNet-18 block (extra ReLU)")
    if rec["batch_dependent"]:
        parts.append(f"batch-global statistics: PGD and GAMA crafted and scored in batches of {rec['eval_batch']}; "
                     "AutoAttack attacks and scores the batch-size-1 function (per-sample statistics)")
        if rec.get("metrics_b1"):
            parts.append("scored one image at a time: " + ", ".join(f"{k} {v:.1f} %" for k, v in
                                                                   rec["metrics_b1"].items()))
    if label == "AdvProp (aux BN)":
        parts.append("the same trained network as AdvProp, through its auxiliary BNs; cost is that one run's")
    if cfg.s.profile == "smoke":
        r = cfg.pgd_record
        parts.append(f"smoke: pgd20/pgd100 hold PGD-{r['pgd20']}/{r['pgd100']}, gama100 GAMA-PGD-{cfg.gama_steps}, "
                     f"aa APGD-CE-{cfg.aa_apgd_budget[0]} + Square-{cfg.aa_square_queries}")
    elif cfg.s.profile == "cpu":
        r = cfg.pgd_record
        parts.append(f"cpu: pgd100 holds PGD-{r['pgd100']}, gama100 GAMA-PGD-{cfg.gama_steps}, both on {rec['n']} "
                     f"images; aa is AutoAttack {cfg.aa_version} on the first {rec.get('aa_n', rec['n'])} of them")
    return "; ".join(parts)


def add_row(cfg: Config, rep: Report, rec: dict) -> dict:
    t = rec["train"]
    table = TABLE if rec["offset"] == 0 else f"{TABLE}_seed{rec['seed']}"
    paper, src = paper_numbers(rec["label"])
    n_aa = rec.get("aa_n") or rec["n"]
    ci = {}
    if n_aa != rec["n"]:      # AutoAttack ran on a prefix: its interval is on its own image count
        ci["aa"] = wilson_interval(round(rec["metrics"]["aa"] * n_aa / 100), n_aa)
    return rep.add_row(table, rec["label"], rec["metrics"], paper=paper, cost_passes=t["cost_passes"],
                       train_s=t["train_s"], epochs=t["epochs"], note=row_note(cfg, rec), n=rec["n"],
                       seed=rec["seed"], gpu_s=t["gpu_s"], total_passes=t["total_passes"], hardware=rec["hardware"],
                       eval_batch=rec["eval_batch"], source=t["source"], selection=t["selection"],
                       recipe_epochs=t.get("recipe_epochs"), family=ROWS[rec["label"]]["family"],
                       paper_source=src, aa_warnings=rec["aa_warnings"], checks=rec["checks"],
                       verdict=rec["verdict"], eps_curve=rec["eps_curve"], batch_dependent=rec["batch_dependent"],
                       metrics_b1=rec["metrics_b1"], ci=ci, flags=rec.get("flags"), aa_n=n_aa)


def run_part(cfg: Config, part: str, rep: Report | None = None, log=print, progress: bool = True) -> list[dict]:
    """Evaluate (training what is missing) every row of a part notebook; adds a row per evaluation to ``rep``."""
    if part not in PARTS:
        raise ConfigError(f"unknown part {part!r}; valid: {', '.join(PARTS)}")
    recs = [evaluate_row(cfg, label, offset, kind, log, progress) for label, offset, kind in PARTS[part]]
    if rep is not None:
        for r in recs:
            add_row(cfg, rep, r)
    return recs


def collect(cfg: Config, rep: Report, log=print, progress: bool = True) -> pd.DataFrame:
    """The chapter's rows: every part's results file (:func:`robustlib.experiment.gather`); a part that did not run
    is evaluated here (its cached evaluations make that quick when only its results file is missing). Then the
    rows in table order and the seed-spread table."""
    found = ex.gather(rep, {p: NOTEBOOKS[p] for p in PARTS})
    for part in found.index:
        if not str(found.loc[part, "status"]).endswith(" rows"):
            log(f"{NOTEBOOKS[part]}: {found.loc[part, 'status']}; evaluating its rows here")
            run_part(cfg, part, rep, log, progress)
            found.loc[part, "status"] = "evaluated here"
    order = {m: i for i, m in enumerate(METHODS)}
    seeds = [(lab, off) for tasks in PARTS.values() for lab, off, _ in tasks if off]
    rank = {lab: i for i, (lab, _) in enumerate(dict.fromkeys(seeds))}
    rep.rows.sort(key=lambda r: (0, order.get(r["method"], 99)) if r["table"] == TABLE else
                  (1, rank.get(r["method"], 99)) if r["table"].startswith(TABLE + "_seed") else (2, 0))
    missing = [m for m in METHODS if m not in first_seed(rep.rows)]
    if missing:
        rep.add_missing(TABLE, missing, "not evaluated in this run", METRICS)
    add_spread(rep)
    return found


def add_spread(rep: Report) -> None:
    """The spread table: |seed a − seed b| per row with two seeds and per metric."""
    sp = spread(rep.rows)
    for method, g in sp.groupby("method", sort=False):
        d = {r.metric: r.abs_diff for r in g.itertuples() if r.metric in METRICS}
        rep.add_row("spread", method, d, paper={}, percent=(), cost_passes=None, train_s=None, epochs=None,
                    note=f"|seed {int(g.seed_a.iloc[0])} − seed {int(g.seed_b.iloc[0])}| in percentage points; two "
                         "seeds give a range, not a standard deviation",
                    ci_width={r.metric: r.ci_width for r in g.itertuples() if r.metric in METRICS},
                    train_s_rel_diff=next((r.abs_diff for r in g.itertuples() if r.metric == "train_s"), None))


# --------------------------------------------------------------------------------------------------- planning


def basis(cfg: Config) -> str:
    """Which time model plans this run: "cpu" (two CPU cores, :data:`CPU_PLAN` applied to the cpu profile's budgets)
    in the cpu profile, else "quick" (the quick profile on one H200, :data:`PLAN`)."""
    return "cpu" if cfg.s.profile == "cpu" else "quick"


def _undefended(cfg: Config, label: str) -> bool:
    return label in (CPU_PLAN["undefended_rows"] if basis(cfg) == "cpu" else NOT_ROBUST)


def cpu_aa_seconds(profile: dict, acc: dict, n: int) -> float:
    """Planned seconds of AutoAttack ``standard`` on ``n`` images on two CPU cores (:data:`CPU_PLAN`): a clean forward
    pass of every image, APGD-CE on the clean-correct fraction ``acc["clean"]``, then APGD-T, FAB-T and Square on the
    fraction still robust, ``acc["aa"]`` (:data:`AA_STANDARD`: iterations or queries, and target classes)."""
    if profile["aa_version"] != "standard":
        raise ConfigError(f"the cpu time model plans AutoAttack 'standard' only, not {profile['aa_version']!r}")
    step, fwd = CPU_PLAN["aa_step_s"], CPU_PLAN["forward_s"]
    (ce, _), (t_it, t_k), (f_it, f_k), (queries, _) = (AA_STANDARD[k] for k in ("apgd-ce", "apgd-t", "fab-t",
                                                                                 "square"))
    per_image = fwd + acc["clean"] * ce * step + acc["aa"] * (t_k * t_it * step + f_k * f_it * (step + fwd)
                                                              + queries * fwd)
    return n * per_image


def cpu_suite_seconds(profile: dict, undefended: bool) -> float:
    """Planned seconds of the suite on two CPU cores: PGD (one run to the longest snapshot) and GAMA-PGD on the
    ``n_test`` images, AutoAttack on the first ``aa_n`` (:func:`cpu_aa_seconds`)."""
    acc = CPU_PLAN["undefended" if undefended else "robust"]
    n = profile["n_test"]
    n_aa = min(profile["aa_n"] or n, n)
    steps = max(profile["pgd_record"].values()) + profile["gama_steps"]
    return n * (CPU_PLAN["forward_s"] + steps * CPU_PLAN["pgd_step_s"]) + cpu_aa_seconds(profile, acc, n_aa)


def cpu_checklist_seconds(profile: dict, undefended: bool, batch_dependent: bool = False) -> float:
    """Planned seconds of the checklist on two CPU cores, on the ``n_test`` images: the ε sweep, PGD with restarts,
    the transfer attack (crafted on its source), Square on the images it does not break (``acc["square"]``, every
    clean-correct image on a robust row), and for a batch-dependent row the white-box PGD at batch size 1 that
    Square is compared with."""
    acc = CPU_PLAN["undefended" if undefended else "robust"]
    n, step, fwd = profile["n_test"], CPU_PLAN["pgd_step_s"], CPU_PLAN["forward_s"]
    steps = (len(profile["eps_grid"]) * profile["eps_steps"] + max(profile["sr_steps"]) * (1 + profile["restarts"])
             + profile["transfer_steps"] + (max(profile["pgd_record"].values()) if batch_dependent else 0))
    forwards = len(profile["eps_grid"]) + 3 + acc["clean"] + acc["square"] * profile["square_queries"]
    return n * (steps * step + forwards * fwd)


def eval_seconds(cfg: Config, label: str, kind: str) -> float:
    """Planned seconds of one evaluation (the suite, and for ``full`` the checklist) of row ``label``: one H200's
    quick-profile estimate (:data:`PLAN`), or in the cpu profile two CPU cores' (:data:`CPU_PLAN` on the profile's
    budgets, × the row's ``slower`` factor)."""
    if kind not in KINDS:
        raise ConfigError(f"unknown evaluation kind {kind!r}; valid: {', '.join(KINDS)}")
    und = _undefended(cfg, label)
    if basis(cfg) == "quick":
        return PLAN["suite_plain" if und else "suite_robust"] + (
            PLAN["audit_plain" if und else "audit_robust"] if kind == "full" else 0.0)
    ev = cpu_suite_seconds(cfg.profile, und)
    if kind == "full":
        ev += cpu_checklist_seconds(cfg.profile, und, batch_dependent=bool(ROWS[label].get("own_batch")))
    return ev * CPU_PLAN["slower"].get(label, 1.0)


def _fd_planning(cfg: Config) -> tuple[dict, int, float]:
    """(profile, training images, seconds per pass) with which the FD runs are planned in this basis."""
    if basis(cfg) == "cpu":
        return cfg.profile, CPU_PLAN["train_images"], CPU_PLAN["fd_seconds_per_pass"]
    return PROFILES["quick"], PLAN["train_images"], PLAN["fd_seconds_per_pass"]


def _train_estimate(cfg: Config, label: str, offset: int) -> float:
    """Estimated seconds (this run's basis, :func:`basis`) to train what the row needs and its chapter has not
    trained: the FD runs (the one time model, :func:`robustlib.experiment.estimate_seconds`) and second seeds of
    NuAT-chapter rows (that chapter's own estimate of the same run)."""
    if label in RECIPES:
        prof, n, spp = _fd_planning(cfg)
        return ex.estimate_seconds(make_spec(label, prof, cfg.s.seed + offset), n, spp)
    if ROWS[label]["chapter"] == "nuat" and offset:
        return (CPU_PLAN if basis(cfg) == "cpu" else PLAN)["second_seed"][label]
    return 0.0


def train_plan(cfg: Config) -> pd.DataFrame:
    """The runs this chapter trains, planned in this run's basis (the quick profile on one H200, or the cpu profile on
    two CPU cores; :func:`robustlib.experiment.plan`)."""
    prof, n, spp = _fd_planning(cfg)
    specs = [dataclasses.replace(make_spec(k, prof, cfg.s.seed + off), alias=f"{PAPER}-fd-seed{cfg.s.seed + off}")
             for k in RECIPES for off in (0, 1)]
    return ex.plan(specs, n, spp)


def plan(cfg: Config) -> pd.DataFrame:
    """Every evaluation of every part notebook: row, seed, what runs, and the estimated minutes (training what its
    chapter did not train, evaluation, checklist) of the quick profile on one H200 — or, in the cpu profile, of the cpu
    profile on two CPU cores; the column names say which (``est. quick …`` / ``est. cpu …``). Estimates, not
    measurements."""
    b = basis(cfg)
    out = []
    for part, tasks in PARTS.items():
        for label, offset, kind in tasks:
            train_s = _train_estimate(cfg, label, offset)
            out.append({"notebook": NOTEBOOKS[part] + ".ipynb", "row": label, "seed": cfg.s.seed + offset,
                        "evaluation": "suite + checklist" if kind == "full" else "suite",
                        "trained here": "yes" if label in RECIPES else
                        "by its chapter (seed + 1)" if train_s else "no (reused)",
                        f"est. {b} train min": train_s / 60, f"est. {b} eval min": eval_seconds(cfg, label, kind) / 60})
    return pd.DataFrame(out).set_index(["notebook", "row", "seed"])


def part_minutes(cfg: Config) -> pd.DataFrame:
    """Estimated minutes per notebook (with its start-up; part 1 also its demonstration run in the cpu profile), of
    the quick profile on one H200 or of the cpu profile on two CPU cores (:func:`basis`), and the limit each part
    notebook is planned to (10 and 45 minutes)."""
    b = basis(cfg)
    base = CPU_PLAN if b == "cpu" else PLAN
    cols = [f"est. {b} train min", f"est. {b} eval min"]
    tot = plan(cfg).reset_index().groupby("notebook", sort=False)[cols].sum()
    tot["est. total min"] = tot.sum(axis=1) + base["startup"] / 60
    if b == "cpu":
        tot.loc[NOTEBOOKS["fd"] + ".ipynb", "est. total min"] += CPU_PLAN["fd_demo"] / 60
    tot.loc[NOTEBOOKS[None] + ".ipynb"] = [0.0, 0.0, (base["startup"] + base["chapter"]) / 60]
    tot["limit min"] = PART_LIMIT_MIN[b]
    return tot


__all__ = [
    "AA_STANDARD", "BNRouted", "CHAPTERS", "CLAIMS", "COSTS", "CPU_PLAN", "Config", "EPS", "FD", "KINDS", "METHODS",
    "METRICS", "NOTEBOOKS", "PAPER", "PARTS", "PART_LIMIT_MIN", "PLAN", "PROFILES", "RECIPES", "ROWS", "RowModel",
    "SPREAD_ROWS", "TABLE", "aa_images", "add_row", "add_spread", "basis", "budget", "budget_table", "checklist",
    "checklist_tables", "checks_of", "claims", "collect", "config", "cpu_aa_seconds", "cpu_checklist_seconds",
    "cpu_suite_seconds", "eps_frame", "eval_seconds", "evaluate_row", "first_seed", "flagged", "main_table",
    "make_spec", "paper_numbers", "pareto_mask", "pareto_points", "pareto_table", "part_minutes", "part_summary",
    "plan", "plot_eps", "plot_pareto", "plot_spread", "records_of", "recipe_table", "report", "reported_points",
    "reported_sources", "row", "row_note", "rows_table", "run_part", "second_seeds", "spread", "spread_summary",
    "spread_wide", "suite",
    "train_fd", "train_plan", "trained_row", "transfer_source",
]
