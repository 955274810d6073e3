"""The comparison chapter — four defences, one protocol, and an evaluation you can trust.

None of the four papers compares itself with the others, and each uses its own protocol. This chapter evaluates ten
CIFAR-10 ResNet-18 models at ε = 8/255 with one attack suite (PGD-20, PGD-100, GAMA-PGD-100, AutoAttack
``standard``), audits every one with the gradient-masking checklist of :mod:`robustlib.audit` (after Carlini et al.,
2019), puts AutoAttack accuracy against the measured training cost (Pareto front), and measures the run-to-run spread
of every metric with a second training seed.

Where the models come from ("each method as its chapter trained it", evaluated under one protocol):

=============================  =================================================================================
row                            source
=============================  =================================================================================
Normal, PGD-AT, TRADES, FBF,   the NuAT chapter's CIFAR-10 ResNet-18 table-1 runs (NuAT's ResNet-18 block, extra
NuAT, NuAT-WA                  ReLU), each row's hold-out-selected model (``TrainResult.load_best``)
AdvProp, AdvProp (aux BN)      the AdvProp chapter's width-64, first-seed, headline-attacker run; main and auxiliary
                               BatchNorms through :func:`~robustlib.methods.advprop.bn_route`
ABNN                           the ABNN chapter's headline run (ResNet-18 target; in the paper profile, whose ABNN
                               chapter uses a ResNet-50 target, a ResNet-18 ABNN is trained here with that recipe)
FD gradient regularization     trained here: ResNet-18, squared ℓ1 penalty, λ = 1, h = 0.1 (the journal's best ℓ∞
                               model), the gradreg chapter's recipe shape
=============================  =================================================================================

Each model is obtained by calling the paper chapter's own ``config`` with this notebook's parameters and its training
function, so the finished checkpoints of the same run are found and nothing is trained again
(:func:`~robustlib.chapters.common.train_cached`); if a chapter has not run yet, its training runs here.

The work is split over part notebooks (:data:`PARTS`), each ≤ 10 quick-profile minutes on one H200 by estimate
(:func:`plan`); every evaluation is cached as JSON beside the checkpoints (``<checkpoints>/comparison-eval/``), keyed
by the evaluation settings and the checkpoint file it evaluated, and the chapter notebook gathers them
(:func:`gather`).
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from .. import audit, reported
from ..attacks import GAMAPGD, PGD, AutoAttack
from ..data import Augment, load_dataset
from ..errors import ConfigError
from ..evaluation import B1, evaluate
from ..methods.advprop import bn_route
from ..methods.gradreg import FiniteDifferenceGR
from ..models import build_model
from ..report import Report
from ..stats import accuracy_ci, newcombe_difference, wilson_interval
from ..training import TrainConfig, TrainResult
from ..utils import atomic_write_text, derive_seed, fingerprint, fp32_strict, hardware_info, hardware_label
from .common import RunSettings, by_profile, cifar10_splits, settings, train_cached

PAPER = "comparison"
TABLE = "resnet18"
EPS = 8 / 255
METRICS = ("clean", "pgd20", "pgd100", "gama100", "aa")
FD = "FD gradient regularization"
METHODS = ("Normal", "PGD-AT", "TRADES", "FBF", "NuAT", "NuAT-WA", "AdvProp", "AdvProp (aux BN)", "ABNN", FD)
NUAT_RUNS = {"Normal": "cifar10/Normal", "PGD-AT": "cifar10/PGD-AT", "TRADES": "cifar10/TRADES", "FBF": "cifar10/FBF",
             "NuAT": "cifar10/NuAT", "NuAT-WA": "cifar10/NuAT-WA"}
CHAPTER_OF = {**{m: "nuat" for m in NUAT_RUNS}, "AdvProp": "advprop", "AdvProp (aux BN)": "advprop",
              "ABNN": "abnn", FD: "comparison"}
FAMILY = {"Normal": "no defence", "PGD-AT": "multi-step AT", "TRADES": "multi-step AT", "FBF": "single-step AT",
          "NuAT": "single-step AT", "NuAT-WA": "single-step AT", "AdvProp": "AT for clean accuracy",
          "AdvProp (aux BN)": "AT for clean accuracy", "ABNN": "no AT", FD: "no AT"}
EVAL_VERSION = 2            # bump when the evaluation code changes (invalidates cached evaluations)
# 2: batch-dependent models (ABNN) scored as crafted, AutoAttack on their batch-size-1 function, @b1 metrics
FD_EPOCHS = {"smoke": 1, "quick": 4, "paper": 200}
KINDS = ("full", "suite")   # full: the suite and the checklist; suite: the attack suite only (second seeds)


@dataclass(frozen=True)
class Task:
    """One evaluation: a row's model of seed ``cfg.s.seed + offset``, with the attack suite (``suite``) or the suite
    and the gradient-masking checklist (``full``)."""

    method: str
    offset: int = 0
    kind: str = "full"

    def __post_init__(self):
        if self.method not in METHODS:
            raise ConfigError(f"unknown row {self.method!r}; valid: {', '.join(METHODS)}")
        if self.kind not in KINDS:
            raise ConfigError(f"unknown task kind {self.kind!r}; valid: {', '.join(KINDS)}")

    @property
    def key(self) -> str:
        return f"{slug(self.method)}-s{self.offset}-{self.kind}"


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


# Part notebooks (9X_comparison__<part>) and what each evaluates; balanced by the estimates of :func:`plan`.
PARTS: dict[str, tuple[Task, ...]] = {
    "fd": (Task(FD, 0, "full"), Task(FD, 1, "suite")),
    "baselines": (Task("Normal", 0, "full"), Task("Normal", 1, "suite"), Task("PGD-AT", 0, "full"),
                  Task("TRADES", 0, "full")),
    "single_step": (Task("FBF", 0, "full"), Task("NuAT", 0, "full"), Task("NuAT-WA", 0, "full")),
    "seed1": (Task("FBF", 1, "suite"), Task("NuAT", 1, "suite")),
    "bn": (Task("AdvProp", 0, "full"), Task("AdvProp (aux BN)", 0, "full"), Task("AdvProp", 1, "suite"),
           Task("AdvProp (aux BN)", 1, "suite"), Task("ABNN", 0, "full")),
}
NOTEBOOKS = {"fd": "91_comparison__fd", "baselines": "92_comparison__baselines",
             "single_step": "93_comparison__single_step", "seed1": "94_comparison__seed1",
             "bn": "95_comparison__bn", None: "90_comparison"}
PART_TITLES = {
    "fd": "FD gradient regularization on ResNet-18, trained here (two seeds)",
    "baselines": "Normal (two seeds), PGD-AT and TRADES",
    "single_step": "FBF, NuAT and NuAT-WA",
    "seed1": "second seeds of FBF and NuAT",
    "bn": "AdvProp (main and auxiliary BN, two seeds) and ABNN",
}
SPREAD_ROWS = ("Normal", "FBF", "NuAT", FD, "AdvProp", "AdvProp (aux BN)")

# Planning estimates for the quick profile on one H200 (seconds; not measurements — the first GPU run replaces them):
# the suite on 1 000 images of a robust ResNet-18 (AutoAttack standard ≈ 1.5 min, PGD-100 and GAMA-100 a few seconds
# each) or of an undefended one (AutoAttack stops early); the checklist's extra attacks (ε sweep, restarts, transfer,
# Square 5 000 queries ≈ 0.5 min); FD training per epoch in strict fp32 (≈ 3× a bf16 standard epoch, as in the
# gradreg chapter); and each notebook's start-up.
EST_S = {"suite_robust": 100.0, "suite_plain": 25.0, "audit_robust": 60.0, "audit_plain": 30.0, "fd_epoch": 28.0,
         "startup": 30.0, "chapter": 60.0}
NOT_ROBUST = ("Normal", "AdvProp", "AdvProp (aux BN)")


# ------------------------------------------------------------------------------------------------ configuration


@dataclass
class Config:
    s: RunSettings
    params: tuple                         # (profile, seed, device, data_dir, out_dir) as given to config()
    n_test: int
    eval_batch: int
    pgd_record: dict[str, int]
    gama_steps: int
    aa_version: str
    aa_attacks: tuple[str, ...] | None
    aa_apgd_budget: tuple[int, int] | None
    aa_square_queries: int | None
    eps_grid: tuple[int, ...]
    eps_steps: int
    sr_steps: tuple[int, ...]
    restarts: int
    square_queries: int
    transfer_steps: int
    tol: float
    fd_model: dict
    fd_n_train: int | None
    fd_epochs: int
    fd_batch: int
    fd_max_batches: int | None
    fd_lam: float = 1.0
    fd_h: float = 0.1
    parts: dict[str, tuple[Task, ...]] = field(default_factory=lambda: dict(PARTS))
    notes: list[str] = field(default_factory=list)
    _chapters: dict = field(default_factory=dict, repr=False)
    _loaded: dict = field(default_factory=dict, repr=False)
    _test: object = field(default=None, repr=False)
    _data: dict = field(default_factory=dict, repr=False)

    @property
    def profile(self) -> str:
        return self.s.profile

    def tasks(self) -> list[Task]:
        out: list[Task] = []
        for p in self.parts.values():
            out += [t for t in p if t not in out]
        return out

    def seed_of(self, offset: int) -> int:
        return self.s.seed + offset

    def describe(self) -> dict:
        """Everything that decides an evaluation's numbers (the cache key of every evaluation record)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
             if not f.name.startswith("_") and f.name not in ("s", "params", "notes", "parts")}
        d.update(profile=self.profile, seed=self.s.seed, version=EVAL_VERSION)
        return d

    @property
    def eval_fingerprint(self) -> str:
        return fingerprint(self.describe())

    def chapter(self, name: str, offset: int = 0):
        """The named paper chapter's configuration for this notebook's parameters (seed + ``offset``)."""
        key = (name, offset)
        if key not in self._chapters:
            from . import abnn, advprop, nuat
            mod = {"nuat": nuat, "advprop": advprop, "abnn": abnn}[name]
            profile, seed, device, data_dir, out_dir = self.params
            self._chapters[key] = mod.config(profile, seed + offset, device, data_dir, out_dir)
        return self._chapters[key]

    def test(self):
        if self._test is None:
            self._test = load_dataset("cifar10", "test", self.s.data_dir).head(self.n_test)
        return self._test

    def table(self) -> pd.DataFrame:
        """The configuration as a two-column table for the notebook."""
        rows = {
            "profile": self.profile, "device": str(self.s.device), "seed": self.s.seed,
            "second seed": f"{self.seed_of(1)} for {', '.join(SPREAD_ROWS)}",
            "test images": f"the first {self.n_test} CIFAR-10 test images, batches of {self.eval_batch} (ABNN: its "
                           "chapter's evaluation batch; its AutoAttack at batch size 1)",
            "attack suite": f"ε = 8/255; PGD (step 2/255, one uniform start) snapshots "
                            + ", ".join(f"{k} = PGD-{v}" for k, v in self.pgd_record.items())
                            + f"; GAMA-PGD-{self.gama_steps}; AutoAttack {self.aa_version}"
                            + (f" ({'+'.join(self.aa_attacks)})" if self.aa_attacks else "")
                            + (f", APGD {self.aa_apgd_budget[0]} iterations × {self.aa_apgd_budget[1]}"
                               if self.aa_apgd_budget else "")
                            + (f", Square {self.aa_square_queries} queries" if self.aa_square_queries else ""),
            "checklist: ε → 0": f"PGD-{self.eps_steps} (step ε/4) at ε = "
                                + ", ".join(f"{e}/255" for e in self.eps_grid) + "; pass if ≤ 2 % at the largest",
            "checklist: steps, restarts": f"PGD-{'/'.join(map(str, self.sr_steps))} (one run) and PGD-"
                                          f"{max(self.sr_steps)} × {self.restarts} restarts; tolerance {self.tol:g} "
                                          "points",
            "checklist: black box": f"transfer of PGD-{self.transfer_steps} from the Normal model (for Normal: from "
                                    f"PGD-AT), Square with {self.square_queries} queries, against min(PGD-100, "
                                    "GAMA-PGD-100)",
            "checklist: AutoAttack": "its own warnings (randomness, non-logit outputs, dynamic model, zero gradients, "
                                     "Square beating the gradient attacks)",
            "FD gradient regularization": f"ResNet-18 {self.fd_model or ''}, squared ℓ1, λ = {self.fd_lam:g}, h = "
                                          f"{self.fd_h:g}; {self.fd_epochs} epochs, batch {self.fd_batch}, lr 0.1 ÷5 "
                                          "at 30/60/80 %, strict fp32, last epoch",
        }
        return pd.DataFrame({"setting": list(rows), "value": [str(v) for v in rows.values()]}).set_index("setting")


def config(profile: str = "smoke", seed: int = 0, device: str = "auto", data_dir: str | None = None,
           out_dir: str | None = None) -> Config:
    s = settings(profile, seed, device, data_dir, out_dir)
    p = s.profile
    cfg = Config(
        s=s, params=(profile, int(seed), str(s.device), str(s.data_dir), str(s.out_dir)),
        n_test=by_profile(p, 32, 1000, 1000),
        eval_batch=by_profile(p, 32, 1000, 1000),
        pgd_record=by_profile(p, {"pgd20": 2, "pgd100": 4}, {"pgd20": 20, "pgd100": 100},
                              {"pgd20": 20, "pgd100": 100}),
        gama_steps=by_profile(p, 4, 100, 100),
        aa_version=by_profile(p, "custom", "standard", "standard"),
        aa_attacks=by_profile(p, ("apgd-ce", "square"), None, None),
        aa_apgd_budget=by_profile(p, (3, 1), None, None),
        aa_square_queries=by_profile(p, 5, None, None),
        eps_grid=by_profile(p, (8, 128), (8, 16, 32, 64, 128), (8, 16, 32, 64, 128)),
        eps_steps=by_profile(p, 2, 20, 50),
        sr_steps=by_profile(p, (1, 2, 4), (10, 20, 100), (10, 20, 100)),
        restarts=by_profile(p, 2, 3, 5),
        square_queries=by_profile(p, 5, 5000, 5000),
        transfer_steps=by_profile(p, 2, 20, 20),
        tol=1.0,
        fd_model=by_profile(p, {"width": 8, "blocks": (1, 1, 1, 1)}, {}, {}),
        fd_n_train=by_profile(p, 600, None, None),
        fd_epochs=FD_EPOCHS[p],
        fd_batch=by_profile(p, 32, 128, 128),
        fd_max_batches=by_profile(p, 4, None, None),
    )
    n = cfg.notes
    if p == "smoke":
        n.append("smoke profile: the paper chapters' tiny models (ResNet-18 of width 8, one block per stage), 32 test "
                 "images, cut attack budgets (pgd20/pgd100 hold PGD-2/4, gama100 GAMA-PGD-4, aa APGD-CE (3 "
                 "iterations) + Square (5 queries)), a cut checklist (PGD-2 at ε = 8/255 and 128/255, PGD-1/2/4 with "
                 "2 restarts, PGD-2 transfer, Square with 5 queries), FD trained for 4 batches. The numbers only show "
                 "that the pipeline runs; pass/fail in this profile means nothing.")
    if p == "quick":
        n.append(f"quick profile: every reused row keeps its chapter's quick budget (table 'budgets'); FD gradient "
                 f"regularization gets {cfg.fd_epochs} epochs (the same total passes per sample, 20N, as the FBF "
                 "row's 5 epochs at 4N; the gradreg chapter's quick budget is also 4 epochs); the checklist uses "
                 f"PGD-{cfg.eps_steps} for the ε sweep and {cfg.restarts} restarts (paper profile: PGD-50, 5 restarts).")
    if p == "paper":
        n.append("paper profile: every reused row at its chapter's paper budget; FD gradient regularization with the "
                 "authors' 200-epoch recipe; ABNN with a ResNet-18 target trained here with the ABNN chapter's "
                 "recipe (the ABNN chapter's paper profile uses ResNet-50).")
    n.append("Each method is evaluated as its chapter trained it: budgets (epochs, passes, seconds) differ between "
             "rows and are shown beside the accuracies; the comparison is of methods at those budgets, under one "
             "evaluation protocol.")
    n.append("The NuAT-chapter rows use NuAT's ResNet-18 block (an extra ReLU before the residual addition); AdvProp, "
             "ABNN and FD use the standard CIFAR ResNet-18 block. All are ResNet-18s (11.2 M parameters; AdvProp adds "
             "the auxiliary BNs, ABNN its style maps and the frozen substitute).")
    n.append("ABNN's batch-global statistics make a prediction depend on the other images of its batch. PGD and "
             "GAMA-PGD craft on, and are scored in, batches of its chapter's evaluation batch size; AutoAttack cannot "
             "be (it attacks shrinking sub-batches of the images still robust), so it attacks and scores ABNN's "
             "batch-size-1 function (the same weights with per-sample statistics): ABNN's AutoAttack number, and "
             "its point on the Pareto figure, are robust accuracy at batch size 1. Every metric is also reported with "
             "the adversarial images scored one at a time (metrics_b1), and the checklist's Square attack is "
             "compared with a white-box PGD at batch size 1.")
    n.append("Evaluation uses the first CIFAR-10 test images (the first 1 000 are all that is available losslessly); "
             "no hyperparameter or checkpoint is chosen on them.")
    return cfg


def report(cfg: Config, part: str | None = None) -> Report:
    if part is not None and part not in cfg.parts:
        raise ConfigError(f"unknown part {part!r}; valid: {', '.join(cfg.parts)}")
    rep = Report(PAPER, cfg.profile, cfg.s.out_dir, "cifar10", cfg.n_test, cfg.s.seed, str(cfg.s.device), part=part)
    rep.extra["eval_fingerprint"] = cfg.eval_fingerprint
    return rep


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
class Loaded:
    """A row's model and what its training cost."""

    method: str
    offset: int
    model: nn.Module
    result: TrainResult
    eval_batch: int
    checkpoint: Path              # the file the evaluated weights come from
    info: dict                    # source, epochs, recipe epochs, cost, seconds, selection, model, recipe


def _budget(res: TrainResult, replays: int = 1) -> dict:
    shards = int((res.hyperparameters.get("train") or {}).get("data_shards") or 1)
    cost = float(res.cost["total"]) * replays
    return {"epochs": int(res.epochs), "cost_passes": cost, "total_passes": cost * res.epochs,
            "train_s": float(res.train_seconds), "gpu_s": float(res.train_seconds) * shards, "processes": shards}


def fd_train_config(cfg: Config, seed: int) -> TrainConfig:
    """The gradreg chapter's recipe shape (SGD 0.9, weight decay 5e-4, batch 128, lr 0.1 ÷5 at 30/60/80 % of training,
    crop with grey padding, flip, Cutout 16, strict fp32) at this chapter's budget."""
    from ..schedules import StepDecay
    return TrainConfig(epochs=cfg.fd_epochs, batch_size=cfg.fd_batch, lr=0.1, schedule=StepDecay(0.1, cfg.fd_epochs),
                       momentum=0.9, weight_decay=5e-4, nesterov=False,
                       augment=Augment(crop_padding=4, fill=128, flip=True, cutout=16), seed=seed, amp="off",
                       max_batches=cfg.fd_max_batches)


def fd_method(cfg: Config) -> FiniteDifferenceGR:
    return FiniteDifferenceGR(cfg.fd_lam, cfg.fd_h, "l1", name=FD)


def fd_key(cfg: Config, seed: int) -> str:
    return f"{PAPER}-fd-l1-lam{cfg.fd_lam:g}-h{cfg.fd_h:g}-resnet18-seed{seed}"


def train_fd(cfg: Config, offset: int = 0, progress: bool = True) -> TrainResult:
    """FD gradient regularization (squared ℓ1, λ = 1, h = 0.1) on a ResNet-18, trained here (or reused)."""
    seed = cfg.seed_of(offset)
    train = _memo(cfg, "fd", lambda: cifar10_splits(cfg.s, cfg.fd_n_train, None))[0]
    with fp32_strict():
        return train_cached(cfg.s, fd_key(cfg, seed), lambda: build_model("resnet18", **cfg.fd_model), fd_method(cfg),
                            train, fd_train_config(cfg, seed), progress=progress)


def _memo(cfg: Config, key: str, fn: Callable):
    """A chapter's data, loaded once per notebook."""
    if key not in cfg._data:
        cfg._data[key] = fn()
    return cfg._data[key]


def _nuat_row(cfg: Config, method: str, offset: int, progress: bool) -> Loaded:
    from . import nuat
    ncfg = cfg.chapter("nuat", offset)
    run = nuat.runs(ncfg)[NUAT_RUNS[method]]
    if offset == 0:
        res, key = nuat.train_run(ncfg, run, progress=progress), run.key
        source = f"NuAT chapter, run {run.run_id} ({nuat.PARTS[run.part]})"
    else:  # a second seed of the same recipe, trained by this chapter under its own key
        train, val, _ = nuat.load_data(ncfg, "cifar10")
        key = f"{PAPER}-seed{ncfg.s.seed}-{run.key}"
        res = train_cached(ncfg.s, key, lambda: nuat.build_net(ncfg, "cifar10"), run.method(), train, run.config,
                           selector=nuat.selector(ncfg, run, val), progress=progress)
        source = f"this chapter: run {run.run_id} of the NuAT chapter with seed {ncfg.s.seed}"
    which = run.rows[method]
    model = res.load_best(which)
    sel = "clean" if run.selector_metric == "clean" else "I-FGSM-7"
    info = {"source": source, "key": key, "recipe_epochs": run.paper_epochs, "recipe": run.recipe,
            "model": "ResNet-18, NuAT's block (extra ReLU)", **_budget(res, run.replays),
            "selection": f"hold-out {sel} accuracy, epoch {res.best[which]['epoch']}"
                         + (f" of the weight average ({which})" if which != "model" else "")}
    return Loaded(method, offset, model, res, cfg.eval_batch, Path(res.best[which]["path"]), info)


def _advprop_base(cfg: Config, offset: int, progress: bool) -> tuple[nn.Module, TrainResult, dict]:
    from . import advprop
    key = ("advprop-base", offset)
    if key not in cfg._loaded:
        acfg = cfg.chapter("advprop")
        if offset >= len(acfg.seeds):
            raise ConfigError(f"the AdvProp chapter trains {len(acfg.seeds)} seed(s) in this profile; no seed offset "
                              f"{offset}")
        run = acfg.headline_run("advprop", acfg.large, acfg.seeds[offset])
        train = _memo(cfg, "advprop", lambda: advprop.load_data(acfg))[0]
        res = advprop.train_run(acfg, run, train)
        steps, alpha = advprop.attacker(run.eps)
        info = {"source": f"AdvProp chapter, run {run.key}", "key": run.key,
                "recipe_epochs": None, "recipe": f"targeted PGD-{steps} at ε = {run.eps}/255 through the auxiliary "
                                                 "BNs; (L_clean + L_adv)/2",
                "model": f"ResNet-18 (width {run.width}, blocks {tuple(acfg.blocks)}) with dual BNs",
                **_budget(res), "selection": "last epoch (fixed schedule)"}
        cfg._loaded[key] = (res.model.eval(), res, info)
    return cfg._loaded[key]


def _advprop_row(cfg: Config, method: str, offset: int, progress: bool) -> Loaded:
    base, res, info = _advprop_base(cfg, offset, progress)
    route = "aux" if method == "AdvProp (aux BN)" else "main"
    info = {**info, "model": info["model"] + f", evaluated through the {route} BNs"}
    return Loaded(method, offset, BNRouted(base, route).eval(), res, cfg.eval_batch, Path(res.out_dir) / "last.pt",
                  info)


def abnn_config(cfg: Config):
    """The ABNN chapter's configuration, with a ResNet-18 target where that chapter uses another one (paper)."""
    acfg = cfg.chapter("abnn")
    if acfg.target_arch != "resnet18":
        acfg = dataclasses.replace(acfg, target_arch="resnet18", target={})
    return acfg


def _abnn_row(cfg: Config, method: str, offset: int, progress: bool) -> Loaded:
    from . import abnn
    from ..methods.abnn import ABNN
    if offset:
        raise ConfigError("ABNN is evaluated for one seed only (its chapter trains one)")
    orig = cfg.chapter("abnn")
    acfg = abnn_config(cfg)
    sub = abnn.substitute(acfg)
    train, _ = abnn.load_data(acfg)
    if acfg is orig:
        res = abnn.train_abnn(acfg, train, sub)
        source = "ABNN chapter, headline run (batch-global μ/σ, stage placement)"
    else:
        key = f"{PAPER}-abnn-resnet18-stages-batch_global-{sub.key}"
        res = train_cached(acfg.s, key, lambda: abnn.build_abnn(acfg, sub), ABNN(), train, acfg.abnn,
                           progress=progress)
        source = (f"this chapter: the ABNN chapter's headline recipe with a ResNet-18 target (that chapter's "
                  f"{orig.target_arch} in this profile)")
    info = {"source": source, "key": str(Path(res.out_dir).name), "recipe_epochs": None,
            "recipe": f"clean cross-entropy; frozen substitute ({sub.source})",
            "model": "ResNet-18 target + frozen torchvision-layout ResNet-18 substitute", **_budget(res),
            "selection": "last epoch (fixed schedule)", "eval_batch": acfg.eval_batch,
            "substitute_train_s": None if sub.result is None else float(sub.result.train_seconds)}
    return Loaded(method, offset, res.model.eval(), res, acfg.eval_batch, Path(res.out_dir) / "last.pt", info)


def _fd_row(cfg: Config, method: str, offset: int, progress: bool) -> Loaded:
    res = train_fd(cfg, offset, progress)
    info = {"source": "this chapter (the gradreg chapter trains ResNeXt34-2x32)", "key": fd_key(cfg, cfg.seed_of(offset)),
            "recipe_epochs": 200, "recipe": f"squared ℓ1 penalty, λ = {cfg.fd_lam:g}, h = {cfg.fd_h:g}; the "
                                            "gradreg chapter's recipe shape",
            "model": "ResNet-18 (standard block)", **_budget(res), "selection": "last epoch (as the gradreg chapter)"}
    return Loaded(method, offset, res.model.eval(), res, cfg.eval_batch, Path(res.out_dir) / "last.pt", info)


def load(cfg: Config, method: str, offset: int = 0, progress: bool = True) -> Loaded:
    """The row's model (trained by its chapter, or here), on this run's device, cached for the notebook's lifetime.

    Trains only what is missing: each chapter's own training function finds the run's finished checkpoint."""
    key = (method, offset)
    if key not in cfg._loaded:
        if method in NUAT_RUNS:
            fn = _nuat_row
        elif method.startswith("AdvProp"):
            fn = _advprop_row
        elif method == "ABNN":
            fn = _abnn_row
        elif method == FD:
            fn = _fd_row
        else:
            raise ConfigError(f"unknown row {method!r}; valid: {', '.join(METHODS)}")
        loaded = fn(cfg, method, offset, progress)
        loaded.model = loaded.model.to(cfg.s.device).eval()
        cfg._loaded[key] = loaded
    return cfg._loaded[key]


# ------------------------------------------------------------------------------------------------ evaluation


def suite(cfg: Config, batch_size: int | None = None) -> dict:
    """The one attack suite: PGD-20/100 (snapshots of one run, step 2/255, one uniform start), GAMA-PGD-100 (one
    restart) and AutoAttack (``standard`` in quick/paper), all at ε = 8/255."""
    steps = max(cfg.pgd_record.values())
    g = cfg.gama_steps
    gama = GAMAPGD(EPS, g) if g >= 100 else GAMAPGD(EPS, g, relax_steps=max(1, g // 4),
                                                    drops=(int(0.6 * g), int(0.85 * g)))
    return {"pgd": PGD(EPS, 2 / 255, steps, start="uniform", record=cfg.pgd_record),
            "gama100": gama,
            "aa": AutoAttack(EPS, version=cfg.aa_version, attacks=cfg.aa_attacks, seed=cfg.s.seed,
                             batch_size=batch_size or cfg.eval_batch, apgd_budget=cfg.aa_apgd_budget,
                             square_queries=cfg.aa_square_queries)}


def transfer_source(method: str) -> str:
    """The black-box transfer source: the Normal model, and for Normal itself the PGD-AT model."""
    return "PGD-AT" if method == "Normal" else "Normal"


def checklist(cfg: Config, loaded: Loaded, metrics: Mapping[str, float], warnings: Sequence[str],
              source: Loaded | None) -> tuple[list[audit.Check], pd.DataFrame]:
    """The four checks of :mod:`robustlib.audit` for one model, at its evaluation batch size (a batch-dependent
    model's Square attack runs, and is compared with a white-box PGD, at batch size 1; see :func:`audit.black_box`)."""
    name, model, bs, dev, test = loaded.method, loaded.model, loaded.eval_batch, cfg.s.device, cfg.test()
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


def _cache_path(cfg: Config, task: Task) -> Path:
    return cfg.s.checkpoint_dir / f"{PAPER}-eval" / f"{task.key}.json"


def _stat(path: str | Path) -> list:
    p = Path(path)
    st = p.stat()
    return [str(p), int(st.st_size), int(st.st_mtime_ns)]


def load_record(cfg: Config, task: Task) -> dict | None:
    """A cached evaluation of ``task``, if it was made with these settings of the very checkpoint files (model and
    transfer source) that exist now."""
    path = _cache_path(cfg, task)
    if not path.exists():
        return None
    try:
        rec = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    if rec.get("eval_fingerprint") != cfg.eval_fingerprint:
        return None
    for k in ("checkpoint", "source_checkpoint"):
        stat = rec.get(k)
        if stat is not None and (not Path(stat[0]).exists() or _stat(stat[0]) != stat):
            return None
    return rec


def evaluate_task(cfg: Config, task: Task, log: Callable[[str], None] = print, progress: bool = True) -> dict:
    """The suite (and for ``full`` tasks the checklist) on one model; a JSON-ready record, cached beside the
    checkpoints so that a later notebook of the same run reuses it."""
    rec = load_record(cfg, task)
    if rec is not None:
        return rec
    t_load = time.perf_counter()
    loaded = load(cfg, task.method, task.offset, progress)
    t_load = time.perf_counter() - t_load
    test = cfg.test()
    atk = suite(cfg, loaded.eval_batch)
    t0 = time.perf_counter()
    torch.manual_seed(derive_seed(PAPER, cfg.s.seed, task.method, task.offset))
    res = evaluate(loaded.model, test, atk, batch_size=loaded.eval_batch, device=cfg.s.device, progress=progress,
                   desc=f"{task.method} seed {cfg.seed_of(task.offset)}")
    acc = res.accuracies()
    metrics = {k: float(acc[k]) for k in METRICS}
    dependent = bool(res.meta.get("batch_dependent"))
    warnings = list(atk["aa"].warnings)
    rec = {"task": task.key, "method": task.method, "offset": task.offset, "seed": cfg.seed_of(task.offset),
           "kind": task.kind, "eval_fingerprint": cfg.eval_fingerprint, "checkpoint": _stat(loaded.checkpoint),
           "n": res.n, "eval_batch": loaded.eval_batch, "metrics": metrics, "aa_warnings": warnings,
           "batch_dependent": dependent, "scoring": res.meta.get("scoring"),
           "metrics_b1": {k: float(acc[k + B1]) for k in METRICS if k + B1 in acc} if dependent else None,
           "train": loaded.info, "hardware": hardware_label(hardware_info(cfg.s.device)),
           "suite_s": time.perf_counter() - t0, "load_s": t_load, "checks": None, "eps_curve": None,
           "source_checkpoint": None}
    if task.kind == "full":
        t1 = time.perf_counter()
        src = load(cfg, transfer_source(task.method), 0, progress)
        checks, curve = checklist(cfg, loaded, metrics, warnings, src)
        rec.update(checks=[c.row() for c in checks], eps_curve=curve.to_dict("records"),
                   verdict=audit.verdict(task.method, checks), source_checkpoint=_stat(src.checkpoint),
                   checklist_s=time.perf_counter() - t1)
    path = _cache_path(cfg, task)
    atomic_write_text(json.dumps(rec, indent=1, default=_json_default), path)
    log(f"{task.method:28s} seed {rec['seed']}  " + "  ".join(f"{k} {v:5.1f}" for k, v in metrics.items())
        + f"  ({rec['suite_s']:.0f} s suite" + (f", {rec['checklist_s']:.0f} s checklist" if task.kind == "full" else "")
        + ")")
    return rec


def records_of(df: pd.DataFrame) -> list[dict]:
    """A DataFrame (index included) as JSON-ready records, with NaN as null (for ``report.extra``)."""
    return json.loads(df.reset_index().to_json(orient="records"))


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, (np.bool_,)):
        return bool(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


# ------------------------------------------------------------------------------------------------ report rows


def row_note(cfg: Config, rec: dict) -> str:
    t = rec["train"]
    parts = [f"{t['source']}; {t['epochs']} epochs" + (f" (recipe {t['recipe_epochs']})" if t.get("recipe_epochs")
                                                       else "") + f"; {t['selection']}"]
    if rec["method"] in NUAT_RUNS:
        parts.append("NuAT's ResNet-18 block (extra ReLU)")
    if rec.get("batch_dependent", rec["method"] == "ABNN"):
        parts.append(f"batch-global statistics: PGD and GAMA crafted and scored in batches of {rec['eval_batch']}; "
                     "AutoAttack attacks and scores the batch-size-1 function (per-sample statistics)")
        b1 = rec.get("metrics_b1") or {}
        if b1:
            parts.append("scored one image at a time: " + ", ".join(f"{k} {v:.1f} %" for k, v in b1.items()))
        if t.get("substitute_train_s") is not None:
            parts.append(f"plus {t['substitute_train_s']:.0f} s of substitute pre-training, not in train_s")
    if rec["method"] == "AdvProp (aux BN)":
        parts.append("the same trained network as AdvProp, through its auxiliary BNs; cost is that one run's")
    if cfg.profile == "smoke":
        parts.append("smoke: pgd20/pgd100 hold PGD-2/4, gama100 GAMA-PGD-4, aa APGD-CE-3 + Square-5")
    return "; ".join(parts)


def paper_numbers(method: str) -> tuple[dict[str, float | None], str]:
    """The row's own paper's number for each metric of :data:`METRICS` (None where the paper has none), and where it
    comes from."""
    out: dict[str, float | None] = {k: None for k in METRICS}
    if method in NUAT_RUNS:
        ref = reported.lookup("nuat", "cifar10_resnet18", method)
        out.update({k: ref.get(k) for k in METRICS if ref.get(k) is not None})
        return out, "NuAT table 1 (ResNet-18, full test set, AA v1)"
    if method == "ABNN":
        ref = reported.lookup("abnn", "cifar10", "ABNN")
        out["clean"] = ref.get("clean")
        return out, "ABNN slides, Table 1 (architecture unstated; its PGD column is not PGD-20)"
    if method == FD:
        ref = reported.lookup("gradreg", "poster_linf", "squared l1 lambda=1")
        out["clean"] = None if ref.get("err_clean") is None else round(100 - ref["err_clean"], 2)
        return out, "Finlay & Oberman, clean = 100 − clean error (ResNeXt34-2x32)"
    return out, "AdvProp reports ImageNet EfficientNets only"


def add_row(cfg: Config, rep: Report, rec: dict) -> dict:
    t = rec["train"]
    table = TABLE if rec["offset"] == 0 else f"{TABLE}_seed{rec['seed']}"
    paper, src = paper_numbers(rec["method"])
    return rep.add_row(table, rec["method"], rec["metrics"], paper=paper, cost_passes=t["cost_passes"],
                       train_s=t["train_s"], epochs=t["epochs"], note=row_note(cfg, rec), n=rec["n"],
                       seed=rec["seed"], gpu_s=t["gpu_s"], total_passes=t["total_passes"], hardware=rec["hardware"],
                       eval_batch=rec["eval_batch"], source=t["source"], selection=t["selection"],
                       recipe_epochs=t.get("recipe_epochs"), family=FAMILY[rec["method"]], paper_source=src,
                       aa_warnings=rec["aa_warnings"], checks=rec.get("checks"), verdict=rec.get("verdict"),
                       eps_curve=rec.get("eps_curve"), batch_dependent=rec.get("batch_dependent"),
                       metrics_b1=rec.get("metrics_b1"))


def run_part(cfg: Config, part: str, rep: Report | None = None, log=print, progress: bool = True) -> list[dict]:
    """Evaluate (training what is missing) every task of a part notebook; adds a row per task to ``rep``."""
    if part not in cfg.parts:
        raise ConfigError(f"unknown part {part!r}; valid: {', '.join(cfg.parts)}")
    recs = [evaluate_task(cfg, t, log, progress) for t in cfg.parts[part]]
    if rep is not None:
        for r in recs:
            add_row(cfg, rep, r)
        rep.extra["tasks"] = [r["task"] for r in recs]
    return recs


def gather(cfg: Config, log=print, progress: bool = True) -> dict[str, dict]:
    """Every evaluation of every part, from the cache beside the checkpoints; anything missing (a part notebook that
    did not run, or ran with other settings or on other checkpoints) is evaluated here, which takes its time."""
    out = {}
    for part, tasks in cfg.parts.items():
        for t in tasks:
            rec = load_record(cfg, t)
            if rec is None:
                log(f"{t.key}: no cached evaluation for these settings ({NOTEBOOKS[part]} did not run?): evaluating "
                    "here")
                rec = evaluate_task(cfg, t, log, progress)
            out[t.key] = rec
    return out


def first_seed(records: Mapping[str, dict]) -> dict[str, dict]:
    """{method: record} of the first seed, in :data:`METHODS` order."""
    by = {(r["method"], r["offset"]): r for r in records.values()}
    return {m: by[(m, 0)] for m in METHODS if (m, 0) in by}


def add_rows(cfg: Config, rep: Report, records: Mapping[str, dict]) -> None:
    """Rows of the main table (first seed, :data:`METHODS` order), the second-seed table and the spread table."""
    for rec in first_seed(records).values():
        add_row(cfg, rep, rec)
    for rec in records.values():
        if rec["offset"]:
            add_row(cfg, rep, rec)
    missing = [m for m in METHODS if not any(r["table"] == TABLE and r["method"] == m for r in rep.rows)]
    if missing:
        rep.add_missing(TABLE, missing, "not evaluated in this run", METRICS)
    sp = spread(records)
    for method, g in sp.groupby("method", sort=False):
        d = {r.metric: r.abs_diff for r in g.itertuples() if r.metric in METRICS}
        rep.add_row("spread", method, d, paper={}, percent=(), cost_passes=None, train_s=None, epochs=None,
                    note=f"|seed {int(g.seed_a.iloc[0])} − seed {int(g.seed_b.iloc[0])}| in percentage points; two "
                         "seeds give a range, not a standard deviation",
                    ci_width={r.metric: r.ci_width for r in g.itertuples() if r.metric in METRICS},
                    train_s_rel_diff=next((r.abs_diff for r in g.itertuples() if r.metric == "train_s"), None))


def main_table(rep: Report) -> pd.DataFrame:
    """Ours with the 95 % interval per metric, one line per row (the paper's numbers are in :meth:`Report.compare`)."""
    rows = []
    for r in rep.rows:
        if r["table"] != TABLE:
            continue
        d = {"method": r["method"], "family": r.get("family", "")}
        for k in METRICS:
            v = r["metrics"].get(k)
            ci = (r.get("ci") or {}).get(k)
            d[k] = "" if v is None else (f"{v:.1f} [{ci[0]:.1f}, {ci[1]:.1f}]" if ci else f"{v:.1f}")
        rows.append(d)
    return pd.DataFrame(rows).set_index("method")


def budget_table(records: Mapping[str, dict]) -> pd.DataFrame:
    """Every row's training budget, from its reused TrainResult: epochs (and the recipe's), measured N per sample per
    epoch, total passes, training seconds, device-seconds, hardware, how the checkpoint was chosen, and the source."""
    rows = []
    for m, r in first_seed(records).items():
        t = r["train"]
        rows.append({"method": m, "epochs": t["epochs"], "recipe epochs": t.get("recipe_epochs"),
                     "N/sample/epoch": t["cost_passes"], "total N/sample": t["total_passes"],
                     "train s": t["train_s"], "device s": t["gpu_s"], "hardware": r["hardware"],
                     "checkpoint": t["selection"], "model": t["model"], "source": t["source"]})
    return pd.DataFrame(rows).set_index("method")


def reported_sources() -> pd.DataFrame:
    return pd.DataFrame([{"method": m, "paper numbers from": paper_numbers(m)[1]} for m in METHODS]).set_index("method")


# --------------------------------------------------------------------------------------------------- checklist


def checks_of(records: Mapping[str, dict]) -> list[audit.Check]:
    out = []
    for r in first_seed(records).values():
        out += [audit.from_row(c) for c in (r.get("checks") or [])]
    return out


def checklist_tables(records: Mapping[str, dict]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(pass/fail table in :data:`METHODS` order, the numbers behind every check, the verdict per defence)."""
    checks = checks_of(records)
    if not checks:
        empty = pd.DataFrame()
        return empty, empty, empty
    order = [m for m in METHODS if any(c.defence == m for c in checks)]
    tab = audit.table(checks).reindex(order)
    tab = tab[[c for c in audit.MEANING if c in tab.columns]]
    tab.columns.name = None
    return tab, audit.details(checks), audit.verdicts(checks).reindex(order)


def flagged(records: Mapping[str, dict]) -> list[str]:
    """Defences that fail at least one check."""
    return [m for m, r in first_seed(records).items()
            if any(c["passed"] is False for c in (r.get("checks") or []))]


def eps_frame(records: Mapping[str, dict]) -> pd.DataFrame:
    """PGD accuracy against ε (with the clean accuracy at ε = 0) of every audited defence, with Wilson intervals."""
    rows = []
    for m, r in first_seed(records).items():
        if not r.get("eps_curve"):
            continue
        n = r["n"]
        pts = [(0, r["metrics"]["clean"])] + [(int(p["eps_255"]), float(p["accuracy"])) for p in r["eps_curve"]]
        for e, a in pts:
            lo, hi = accuracy_ci(a, n)
            rows.append({"defence": m, "eps_255": e, "accuracy": a, "ci_low": lo, "ci_high": hi, "attack": m})
    return pd.DataFrame(rows)


def plot_eps(records: Mapping[str, dict], steps: int):
    """Accuracy against ε for every defence (bands: 95 % intervals): it must reach (near) zero."""
    import matplotlib.pyplot as plt
    import seaborn as sns
    df = eps_frame(records)
    fig, ax = plt.subplots(figsize=(7.5, 4.0))
    if df.empty:
        return fig
    pal = dict(zip(dict.fromkeys(df.defence), sns.color_palette("tab10", n_colors=len(set(df.defence)))))
    for i, (m, g) in enumerate(df.groupby("defence", sort=False)):
        g = g.sort_values("eps_255")
        ax.plot(g.eps_255, g.accuracy, marker="os^vD<>ph*"[i % 10], ms=4, color=pal[m], label=m)
        ax.fill_between(g.eps_255, g.ci_low, g.ci_high, color=pal[m], alpha=0.12)
    ax.set_xscale("symlog", linthresh=8)
    ticks = sorted(set(df.eps_255))
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.set_xlabel("ε (×1/255; 0 = clean)")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(-2, 102)
    ax.set_title(f"PGD-{steps} accuracy against the ℓ∞ budget (it must reach zero)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


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


def pareto_points(records: Mapping[str, dict], metric: str = "aa") -> pd.DataFrame:
    rows = []
    for m, r in first_seed(records).items():
        t = r["train"]
        rows.append({"method": m, "clean": r["metrics"]["clean"], metric: r["metrics"][metric],
                     "cost_passes": t["cost_passes"], "total_passes": t["total_passes"], "gpu_s": t["gpu_s"],
                     "epochs": t["epochs"]})
    df = pd.DataFrame(rows)
    for c in COSTS:
        df[f"front_{c}"] = pareto_mask(df[c], df[metric]) if len(df) else []
    return df


def pareto_table(points: pd.DataFrame, metric: str = "aa") -> pd.DataFrame:
    """The Pareto front on each cost measure: its members in order of cost, with (cost, accuracy)."""
    rows = []
    for c, label in COSTS.items():
        f = points[points[f"front_{c}"]].sort_values(c)
        rows.append({"cost measure": label, "front (cheapest first)": " → ".join(f.method),
                     "points (cost, AA %)": "; ".join(f"{m}: ({x:.3g}, {y:.1f})" for m, x, y in
                                                      zip(f.method, f[c], f[metric]))})
    return pd.DataFrame(rows).set_index("cost measure")


def reported_points() -> pd.DataFrame:
    """The papers' own (cost, robust accuracy) points for the figure: NuAT table 1's AutoAttack at the derived pass
    count of each recipe; the ABNN slides' PGD (not AutoAttack) at its 3N; AdvProp and gradreg have no AutoAttack
    number and are listed as omitted."""
    from . import nuat
    rows = []
    for m, rid in NUAT_RUNS.items():
        ref = reported.lookup("nuat", "cifar10_resnet18", m)
        steps = 10 if m in ("PGD-AT", "TRADES") else None
        n = nuat.derived_passes(m, steps)
        e = nuat.PAPER_EPOCHS[rid]
        rows.append({"method": m, "source": "NuAT table 1", "metric": "aa", "accuracy": ref.get("aa"),
                     "cost_passes": n, "epochs": e, "total_passes": n * e, "plotted": True,
                     "note": "AutoAttack (v1) on the full test set; N derived for the paper's recipe"
                             + (" (t = 10)" if steps else "")})
    ab = reported.table("abnn", "cifar10")
    rows.append({"method": "ABNN", "source": "ABNN slides, Table 1", "metric": "pgd",
                 "accuracy": float(ab.loc["ABNN", "pgd"]), "cost_passes": float(ab.loc["ABNN", "cost_passes"]),
                 "epochs": None, "total_passes": None, "plotted": True,
                 "note": "PGD with unstated settings, NOT AutoAttack: drawn with a different marker; no epochs given"})
    rows.append({"method": "AdvProp", "source": "Xie et al.", "metric": None, "accuracy": None, "cost_passes": None,
                 "epochs": None, "total_passes": None, "plotted": False,
                 "note": "omitted: no AutoAttack number (the paper reports ImageNet clean accuracy of EfficientNets)"})
    rows.append({"method": FD, "source": "Finlay & Oberman", "metric": None, "accuracy": None, "cost_passes": None,
                 "epochs": None, "total_passes": None, "plotted": False,
                 "note": "omitted: no AutoAttack number (the paper reports error rates under its own minimum-distance "
                         "attack suite, on ResNeXt34-2x32)"})
    return pd.DataFrame(rows).set_index("method")


def _label_points(ax, xs, ys, names, fontsize=7, gap_px=9.0):
    """Name every point, moving a label down a line when it would overlap a label already placed near it."""
    ax.figure.canvas.draw()  # fixes the axis limits and scales, so display coordinates are final
    placed: list[tuple[float, float]] = []
    order = sorted(range(len(xs)), key=lambda i: (-ys[i], xs[i]))
    for i in order:
        px, py = ax.transData.transform((xs[i], ys[i]))
        dy = 3.0
        while any(abs(px - qx) < 60 and abs(py + dy - qy) < gap_px for qx, qy in placed):
            dy -= gap_px
        placed.append((px, py + dy))
        ax.annotate(names[i], (xs[i], ys[i]), fontsize=fontsize, xytext=(4, dy), textcoords="offset points")


def plot_pareto(points: pd.DataFrame, reported_df: pd.DataFrame | None = None, metric: str = "aa"):
    """AutoAttack accuracy against three training costs; colour = clean accuracy; the front as a step line; the
    papers' points overlaid (× AutoAttack, ▽ the ABNN slides' PGD)."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import Normalize
    fig, axes = plt.subplots(1, len(COSTS), figsize=(5.6 * len(COSTS), 4.4), squeeze=False)
    d0 = points.dropna(subset=["clean"])
    norm = Normalize(vmin=float(d0.clean.min()) if len(d0) else 0, vmax=float(d0.clean.max()) if len(d0) else 100)
    sc = None
    for ax, (c, label) in zip(axes[0], COSTS.items()):
        d = points.dropna(subset=[c, metric])
        if len(d):
            sc = ax.scatter(d[c], d[metric], c=d.clean, cmap="viridis", norm=norm, s=70, edgecolor="k", zorder=3)
            f = d[d[f"front_{c}"]].sort_values(c)
            if len(f):
                ax.step(f[c], f[metric], where="post", color="tab:red", lw=1.2, alpha=0.7, zorder=2)
                ax.scatter(f[c], f[metric], s=170, facecolor="none", edgecolor="tab:red", lw=1.5, zorder=4,
                           label="Pareto front (ours)")
        xs = list(d[c]) if len(d) else []
        if reported_df is not None and c in ("cost_passes", "total_passes"):
            rp = reported_df[reported_df.plotted].dropna(subset=[c, "accuracy"])
            xs += list(rp[c])
            aa = rp[rp.metric == "aa"]
            if len(aa):
                ax.scatter(aa[c], aa.accuracy, marker="x", color="tab:gray", s=45, zorder=2,
                           label="paper: AutoAttack (NuAT table 1)")
            pg = rp[rp.metric == "pgd"]
            if len(pg):
                ax.scatter(pg[c], pg.accuracy, marker="v", facecolor="none", edgecolor="tab:gray", s=55, zorder=2,
                           label="paper: ABNN slides' PGD (not AA)")
        if xs and max(xs) / max(min(xs), 1e-9) > 20:
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(plt.NullFormatter())
        if len(d):
            _label_points(ax, list(d[c]), list(d[metric]), list(d["method"]))
        ax.set_xlabel(label)
        ax.set_ylabel("AutoAttack accuracy (%)" if metric == "aa" else f"{metric} accuracy (%)")
        ax.legend(fontsize=7, loc="best")
    if sc is not None:
        fig.colorbar(sc, ax=list(axes[0]), label="clean accuracy (%)", shrink=0.85)
    fig.suptitle("Robustness against training cost (colour: clean accuracy)", fontsize=11)
    return fig


# ------------------------------------------------------------------------------------------------ seed spread


def spread(records: Mapping[str, dict]) -> pd.DataFrame:
    """Per row with two seeds and per metric: both values, |difference|, the width of one measurement's 95 % Wilson
    interval, their ratio, and Newcombe's 95 % interval of the difference (as if the two evaluations were independent
    samples; they share the test images, so it is conservative). Training seconds: relative difference in %."""
    by = {(r["method"], r["offset"]): r for r in records.values()}
    rows = []
    for m in METHODS:
        if (m, 0) not in by or (m, 1) not in by:
            continue
        a, b = by[(m, 0)], by[(m, 1)]
        n = min(a["n"], b["n"])
        for k in METRICS:
            va, vb = a["metrics"][k], b["metrics"][k]
            lo_a, hi_a = accuracy_ci(va, n)
            lo_b, hi_b = accuracy_ci(vb, n)
            width = ((hi_a - lo_a) + (hi_b - lo_b)) / 2
            diff, dlo, dhi = newcombe_difference(vb, n, va, n)
            rows.append({"method": m, "metric": k, "seed_a": a["seed"], "seed_b": b["seed"], "value_a": va,
                         "value_b": vb, "diff": vb - va, "abs_diff": abs(vb - va), "ci_width": width,
                         "ratio": abs(vb - va) / width if width > 0 else float("nan"), "diff_lo": dlo,
                         "diff_hi": dhi, "beyond_sampling": bool(dlo > 0 or dhi < 0)})
        ta, tb = a["train"]["train_s"], b["train"]["train_s"]
        rel = 100 * abs(tb - ta) / ta if ta else float("nan")
        rows.append({"method": m, "metric": "train_s", "seed_a": a["seed"], "seed_b": b["seed"], "value_a": ta,
                     "value_b": tb, "diff": tb - ta, "abs_diff": rel, "ci_width": float("nan"), "ratio": float("nan"),
                     "diff_lo": float("nan"), "diff_hi": float("nan"), "beyond_sampling": False})
    return pd.DataFrame(rows)


def spread_summary(sp: pd.DataFrame) -> pd.DataFrame:
    """Per metric over the rows with two seeds: largest and median |seed difference|, the mean width of one
    measurement's 95 % interval, the largest ratio, and how many differences exceed the sampling interval."""
    if sp.empty:
        return pd.DataFrame()
    rows = []
    for k, g in sp.groupby("metric", sort=False):
        if k == "train_s":
            rows.append({"metric": "training seconds (relative, %)", "rows": len(g), "max |Δ|": g.abs_diff.max(),
                         "median |Δ|": g.abs_diff.median(), "mean 95% CI width": None, "max |Δ| / CI width": None,
                         "beyond sampling noise": None})
            continue
        rows.append({"metric": k, "rows": len(g), "max |Δ|": g.abs_diff.max(), "median |Δ|": g.abs_diff.median(),
                     "mean 95% CI width": g.ci_width.mean(), "max |Δ| / CI width": g.ratio.max(),
                     "beyond sampling noise": f"{int(g.beyond_sampling.sum())} of {len(g)}"})
    return pd.DataFrame(rows).set_index("metric")


def spread_wide(sp: pd.DataFrame) -> pd.DataFrame:
    """|seed difference| per row (rows) and metric (columns), in percentage points (training seconds: %)."""
    if sp.empty:
        return pd.DataFrame()
    w = sp.pivot(index="method", columns="metric", values="abs_diff")
    return w.reindex([m for m in METHODS if m in w.index])[[c for c in (*METRICS, "train_s") if c in w.columns]]


def plot_spread(sp: pd.DataFrame):
    """Second seed against first seed for every metric (diagonal: equal), with the 95 % interval width of one
    measurement as a band around the diagonal."""
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    d = sp[sp.metric.isin(METRICS)]
    if d.empty:
        return fig
    half = d.ci_width.mean() / 2
    lim = (-2, 102)
    xs = np.linspace(*lim, 50)
    ax.fill_between(xs, xs - half, xs + half, color="tab:gray", alpha=0.2,
                    label=f"± half the mean 95 % interval ({half:.1f} points)")
    ax.plot(lim, lim, color="k", lw=0.8)
    for i, (k, g) in enumerate(d.groupby("metric", sort=False)):
        ax.scatter(g.value_a, g.value_b, marker="osD^v"[i % 5], s=30, label=k, zorder=3)
    ax.set_xlim(*lim), ax.set_ylim(*lim)
    a, b = int(d.seed_a.iloc[0]), int(d.seed_b.iloc[0])
    ax.set_xlabel(f"seed {a}: accuracy (%)")
    ax.set_ylabel(f"seed {b}: accuracy (%)")
    ax.set_title("Run-to-run spread: the same rows, two seeds")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------------- planning


def _train_estimate(cfg: Config, task: Task) -> float:
    """Estimated quick seconds to train what the task needs and its chapter has not trained (FD; second seeds of
    NuAT-chapter rows)."""
    if task.method == FD:
        return EST_S["fd_epoch"] * FD_EPOCHS["quick"]
    if task.method in NUAT_RUNS and task.offset:
        from . import nuat
        q = nuat._config(RunSettings("quick", cfg.s.seed, torch.device("cpu"), cfg.s.data_dir, cfg.s.out_dir))
        return nuat.estimate_seconds(nuat.runs(q)[NUAT_RUNS[task.method]])[0]
    return 0.0


def _eval_estimate(task: Task) -> float:
    plain = task.method in NOT_ROBUST
    s = EST_S["suite_plain" if plain else "suite_robust"]
    if task.kind == "full":
        s += EST_S["audit_plain" if plain else "audit_robust"]
    return s


def plan(cfg: Config) -> pd.DataFrame:
    """Every task of every part notebook: row, seed, what runs, and the estimated quick-profile minutes on one H200
    (training what its chapter did not train, evaluation, checklist). Estimates, not measurements."""
    rows = []
    for part, tasks in cfg.parts.items():
        for t in tasks:
            rows.append({"notebook": NOTEBOOKS[part] + ".ipynb", "row": t.method, "seed": cfg.seed_of(t.offset),
                         "evaluation": "suite + checklist" if t.kind == "full" else "suite",
                         "trained here": "yes" if _train_estimate(cfg, t) else "no (reused)",
                         "est. quick train min": _train_estimate(cfg, t) / 60,
                         "est. quick eval min": _eval_estimate(t) / 60,
                         "cached": _cache_path(cfg, t).exists()})
    return pd.DataFrame(rows).set_index(["notebook", "row", "seed"])


def part_minutes(cfg: Config) -> pd.DataFrame:
    """Estimated quick-profile minutes per notebook (with its start-up)."""
    p = plan(cfg).reset_index()
    tot = p.groupby("notebook", sort=False)[["est. quick train min", "est. quick eval min"]].sum()
    tot["est. total min"] = tot.sum(axis=1) + EST_S["startup"] / 60
    tot.loc[NOTEBOOKS[None] + ".ipynb"] = [0.0, 0.0, (EST_S["startup"] + EST_S["chapter"]) / 60]
    return tot


def part_summary(records: Sequence[dict]) -> pd.DataFrame:
    """One line per evaluation of a part: metrics, training budget, and the time the evaluation took."""
    rows = []
    for r in records:
        t = r["train"]
        rows.append({"row": r["method"], "seed": r["seed"], **r["metrics"], "N/sample": t["cost_passes"],
                     "epochs": t["epochs"], "train s": t["train_s"], "suite s": r["suite_s"],
                     "checklist s": r.get("checklist_s"), "checks failed": None if not r.get("checks") else
                     sum(c["passed"] is False for c in r["checks"])})
    return pd.DataFrame(rows).set_index(["row", "seed"])
