"""The ABNN chapter's recipes and profiles as literal tables, and the configuration built from them.

RECIPES holds one row per trained model of the paper's CIFAR-10 tables (plus the substitute they need), named by
registered method (``METHODS.names()``) and model (``MODELS.names()``), with the hyperparameters and where they come
from. PROFILES says what the smoke, cpu, quick and paper profiles change. :func:`config` turns every row into an
:class:`~robustlib.experiment.RunSpec`; ``overrides={row: {key: value}}`` changes a row without editing this module.
"""
from __future__ import annotations

import copy
import inspect
import os
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ... import experiment as ex
from ...data import Augment
from ...errors import ConfigError
from ...methods import METHODS
from ...schedules import Piecewise, triangular
from ...threat import CIFAR10
from ...training import TrainConfig
from ..common import ProfileValues, RunSettings, settings

PAPER = "abnn"
EPS, ALPHA = CIFAR10.eps, CIFAR10.pgd_step
ENV_SUBSTITUTE, ENV_UCF101, ENV_KINETICS = "ROBUSTLIB_ABNN_SUBSTITUTE", "ROBUSTLIB_UCF101", "ROBUSTLIB_KINETICS_R3D18"

_SGD = {"batch": 128, "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4, "augment": "crop 4 + flip"}

# The recipes: one row per trained model. This table is printed in the notebooks, feeds every run's fingerprint, and is
# the one place to edit. ABNN rows use the registered model "abnn" (target + frozen substitute + adaptive BNs): its
# "model_kw" names the target, the substitute row it takes its weights from, and the adaptive BN's two choices.
RECIPES: dict[str, dict[str, Any]] = {
    "Substitute": {
        "method": "standard", "hp": {}, "model": "tv_resnet18", "model_kw": {"num_classes": 200},
        "data": "tinyimagenet32",
        "epochs": 100, "milestones": (50, 75), **_SGD,
        "source": "abnn.md §6: the paper's substitute is a public ImageNet-pretrained network [seed]; without ImageNet "
                  "weights, torchvision's ResNet-18 layout pre-trained here on Tiny-ImageNet-32 (200 ImageNet classes, "
                  "a dataset other than CIFAR-10); cross-entropy, 100 epochs, lr 0.1 ÷10 at 50 and 75 (our choice)"},
    "No Defense": {
        "method": "standard", "hp": {}, "model": "resnet50", "model_kw": {}, "data": "cifar10",
        "epochs": 200, "milestones": (100, 150), **_SGD,
        "source": "slides Table 1 (2N); the slides give no recipe: abnn.md §6's standard CIFAR recipe (SGD 0.9, wd "
                  "5e-4, 200 epochs, lr 0.1 ÷10 at 100 and 150) and a ResNet-50 after the slides' CIFAR-10 example"},
    "PGD-AT": {
        "method": "pgd_at", "hp": {"eps": EPS, "alpha": ALPHA, "steps": 5}, "model": "resnet50", "model_kw": {},
        "data": "cifar10", "epochs": 200, "milestones": (100, 150), **_SGD,
        "source": "slides Table 1: PGD-AT (Madry et al.) at 12N = 2N(t_max + 1) ⇒ t_max = 5; ℓ∞ ε = 8/255, α = "
                  "2/255, uniform start, train-mode BN in the attack; schedule as No Defense"},
    "ABNN": {
        "method": "abnn", "hp": {}, "model": "abnn", "data": "cifar10", "epochs": 200, "milestones": (100, 150),
        "model_kw": {"target": "resnet50", "substitute": "Substitute", "placement": "stages",
                     "stats": "batch_global"}, **_SGD,
        "source": "slides: clean cross-entropy, frozen substitute, 3N; adaptive BN as in shaoyuanlo/GARD_eval "
                  "models/resnext_onthefly.py (after the stem and each stage, batch-global μ/σ); schedule as No "
                  "Defense"},
    "ABNN (per-sample μ/σ)": {
        "method": "abnn", "hp": {}, "model": "abnn", "data": "cifar10", "epochs": 200, "milestones": (100, 150),
        "model_kw": {"target": "resnet50", "substitute": "Substitute", "placement": "stages",
                     "stats": "per_sample"}, **_SGD,
        "source": "abnn.md §6: μ/σ over each sample's own substitute feature (batch independent); a variant"},
    "ABNN (every BN)": {
        "method": "abnn", "hp": {}, "model": "abnn", "data": "cifar10", "epochs": 200, "milestones": (100, 150),
        "model_kw": {"target": "resnet50", "substitute": "Substitute", "placement": "every_bn",
                     "stats": "batch_global"}, **_SGD,
        "source": "abnn.md §6: an adaptive BN in place of every BatchNorm of the target; an ablation"},
}
CIFAR_ROWS = ("No Defense", "PGD-AT", "ABNN")
VARIANT_ROWS = ("ABNN (per-sample μ/σ)", "ABNN (every BN)")

# What each profile changes. "target": the CIFAR-10 network of every row (None: the recipe's); "schedule":
# "triangular" replaces the piecewise schedule by a triangle 0 → lr → 0 over the shortened run; the attack budgets
# are the evaluation's (PGD steps, the sanity checks' step grid, restarts, ε grid, batch sizes, ROA, AutoAttack).
_TINY = {"width": 8, "blocks": (1, 1, 1, 1)}
PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {"n_train": 2000, "n_test": 100, "n_substitute": 2000, "target": "resnet18", "target_kw": _TINY,
              "substitute_kw": _TINY, "batch": 64, "schedule": "triangular",
              "epochs": {"Substitute": 2, "No Defense": 3, "PGD-AT": 1, "ABNN": 3, "ABNN (per-sample μ/σ)": 2,
                         "ABNN (every BN)": 2}, "hp": {},
              "pgd_steps": 2, "steps_grid": (1, 2, 3), "restarts": 2, "eps_grid": (0, 8, 64),
              "batch_sizes": (1, 25, 100), "eval_batch": 100,
              "roa": {"area": 0.10, "steps": 2, "alpha": 70 / 255, "stride": 11}, "aa": None, "video": "synthetic"},
    "quick": {"n_train": None, "n_test": 1000, "n_substitute": None, "target": "resnet18", "target_kw": {},
              "substitute_kw": {}, "batch": 128, "schedule": "triangular",
              "epochs": {"Substitute": 30, "No Defense": 15, "PGD-AT": 10, "ABNN": 15, "ABNN (per-sample μ/σ)": 10,
                         "ABNN (every BN)": 10}, "hp": {},
              "pgd_steps": 5, "steps_grid": (5, 20, 50), "restarts": 5, "eps_grid": (0, 2, 4, 8, 16, 32, 64),
              "batch_sizes": (1, 10, 50, 200, 1000), "eval_batch": 500,
              "roa": {"area": 0.10, "steps": 5, "alpha": 70 / 255, "stride": None}, "aa": ("standard", None),
              "video": None},
    # two CPU cores (each notebook ≤ 45 min): width-16 ResNet-18 target and width-16 torchvision-layout substitute,
    # 49 000 training images, epochs compressed (triangular schedule), the audit at full strength on ABNN only
    "cpu": {"n_train": None, "holdout": 100, "n_test": 1000, "n_substitute": None, "target": "resnet18",
            "target_kw": {"width": 16}, "substitute_kw": {"width": 16}, "batch": 128, "schedule": "triangular",
            "epochs": {"Substitute": 30, "No Defense": 15, "PGD-AT": 6, "ABNN": 15, "ABNN (per-sample μ/σ)": 10,
                       "ABNN (every BN)": 10}, "hp": {},
            "pgd_steps": 5, "steps_grid": (5, 20, 50), "restarts": 3, "eps_grid": (0, 2, 8, 32, 255),
            "batch_sizes": (1, 10, 100, 500), "eval_batch": 500,
            "roa": {"area": 0.10, "steps": 5, "alpha": 70 / 255, "stride": 4},
            "aa": ("custom", ("apgd-ce", "apgd-t"), (100, 1)), "aa_targets": 3, "aa_n": 500,
            "sweep_n": 500, "variant_n": 500, "restarts_on": "abnn", "video": "synthetic"},
    "paper": {"n_train": None, "n_test": 1000, "n_substitute": None, "target": None, "target_kw": {},
              "substitute_kw": {}, "batch": 128, "schedule": "piecewise", "epochs": {}, "hp": {},
              "pgd_steps": 5, "steps_grid": (5, 20, 50), "restarts": 5, "eps_grid": (0, 2, 4, 8, 16, 32, 64),
              "batch_sizes": (1, 10, 50, 200, 1000), "eval_batch": 500,
              "roa": {"area": 0.10, "steps": 5, "alpha": 70 / 255, "stride": None}, "aa": ("standard", None),
              "video": None},
}
NOTES = {
    "smoke": "smoke profile: width-8 ResNet-18 target and width-8 torchvision-layout ResNet-18 substitute, 2 000 "
             "CIFAR-10 and 2 000 Tiny-ImageNet images, 100 test images, 1–3 epochs, cut attack budgets and no "
             "AutoAttack. The numbers only show that the pipeline runs.",
    "quick": "quick profile: ResNet-18 target instead of the ResNet-50 that abnn.md recommends (ResNet-18 keeps the "
             "three trainings inside the 10-minute budgets); 15 epochs of standard and ABNN training and 10 epochs of "
             "PGD-AT (t_max = 5) with a triangular learning rate, instead of ~200 epochs; the two ABNN variants get 10 "
             "epochs (so that both fit one 10-minute job).",
    "cpu": "cpu profile (two CPU cores, each notebook ≤ 45 minutes): the CIFAR-10 training set minus a 1 000-image "
           "hold-out (100 per class; no checkpoint is selected, every row is its final epoch, so no test image "
           "chooses anything), a CIFAR ResNet-18 target at width 16 instead of ResNet-50, torchvision's ResNet-18 "
           "layout at width 16 as the substitute (pre-trained on all 10 000 Tiny-ImageNet-32 images for 30 epochs), "
           "triangular learning rate compressed to 15 epochs of No Defense and ABNN, 6 of PGD-AT (t_max = 5, 12N) "
           "and 10 of each ABNN variant, instead of 200. Attacks: the headline PGD-5, PGD-5/20/50 and ROA (10×10 "
           "grey patch, location searched on a stride-4 grid of 49 places instead of stride 2) on the first 1 000 "
           "test images; AutoAttack reduced to APGD-CE + APGD-T (3 target classes, 100 iterations, one restart) on "
           "the first 500 — FAB-T and Square left out for time — so the worst-case column leaves AutoAttack out; the "
           "audit at full strength on the trained ABNN only (PGD-50 × 3 restarts, transfer from No Defense, μ/σ as "
           "constants, batch size 1, no gradient into the substitute), the ε sweep (up to ε = 1.0) and the "
           "batch-size sweep on the first 500 test images, the variants table on the first 500; UCF-101 is not "
           "run, the video code runs on synthetic clips. CPU scale: compare the differences between rows, not the "
           "absolute numbers.",
    "paper": "paper profile: ResNet-50 target, 200 epochs with lr 0.1 divided by 10 at epochs 100 and 150 (abnn.md "
             "§6; the slides give no CIFAR-10 recipe).",
}
ABNN_OPTIONS = ("placement", "stats")     # ABNNNet's choices that an override may change (besides hyperparameters)


@dataclass
class Config(ProfileValues):
    s: RunSettings
    profile: dict                         # PROFILES[s.profile]
    specs: dict[str, ex.RunSpec]          # one per RECIPES row, with the profile's changes and the overrides applied
    substitute_weights: str | None        # a local torchvision ImageNet checkpoint ($ROBUSTLIB_ABNN_SUBSTITUTE)
    video: dict | None
    notes: list[str] = field(default_factory=list)
    _cache: dict = field(default_factory=dict, repr=False)   # the frozen substitute, once loaded


    @property
    def at_steps(self) -> int:
        return self.specs["PGD-AT"].hp["steps"]

    @property
    def mid_steps(self) -> int:
        return self.steps_grid[len(self.steps_grid) // 2]

    @property
    def aa_version(self) -> str | None:
        return self.aa[0] if self.aa else None

    @property
    def aa_attacks(self):
        return self.aa[1] if self.aa else None

    @property
    def aa_budget(self):
        """APGD's (iterations, restarts) in a custom AutoAttack (None: the version's own)."""
        return self.aa[2] if self.aa and len(self.aa) > 2 else None

    @property
    def aa_n(self) -> int | None:
        """AutoAttack on the first ``aa_n`` test images (None: on all of them)."""
        return self.profile.get("aa_n")

    @property
    def sweep_n(self) -> int | None:
        """The ε and batch-size sweeps on the first ``sweep_n`` test images (None: on all of them)."""
        return self.profile.get("sweep_n")

    @property
    def variant_n(self) -> int | None:
        """The variants table on the first ``variant_n`` test images (None: on all, reusing Table 1's attacks)."""
        return self.profile.get("variant_n")

    @property
    def holdout(self) -> int:
        return self.profile.get("holdout", 0)

    @property
    def target_arch(self) -> str:
        return self.specs["ABNN"].model_kw["target"]

    def table(self) -> pd.DataFrame:
        """The run's settings as a two-column table for the notebook."""
        sp = self.specs
        sub = sp["Substitute"]
        abnn_kw = sp["ABNN"].model_kw
        sub_text = (f"{sub.model} {abnn_kw['substitute_kw'] or ''} with ImageNet weights from "
                    f"{self.substitute_weights}" if self.substitute_weights else
                    f"{sub.model} {sub.model_kw or ''} pre-trained on Tiny-ImageNet-32 "
                    f"({self.n_substitute or 'all 10 000'} images, 200 classes), {sub.config.epochs} epochs; "
                    "frozen, BN in eval mode")
        rows = {
            "profile": self.s.profile, "device": str(self.s.device), "seed": self.s.seed,
            "training images (CIFAR-10)": (f"{(self.n_train or 50_000) - 10 * self.holdout} (the training set minus "
                                           f"a hold-out of {self.holdout} per class; final epochs, no selection)"
                                           if self.holdout else self.n_train or "all 50 000"),
            "test images": self.n_test,
            "target": f"{self.target_arch} {abnn_kw['target_kw'] or ''}", "substitute": sub_text,
            "No Defense": _describe(sp["No Defense"]),
            f"PGD-AT (t_max = {self.at_steps}, ε = 8/255, α = 2/255)": _describe(sp["PGD-AT"]),
            "ABNN (clean cross-entropy)": _describe(sp["ABNN"]),
            "ABNN variants": _describe(sp[VARIANT_ROWS[0]]),
            "evaluation PGD": f"ε = 8/255, α = 2/255, {self.pgd_steps} steps, one uniform random start",
            "sanity checks": f"PGD-{'/'.join(map(str, self.steps_grid))}, {self.restarts} restarts"
                             + (" (ABNN only)" if self.profile.get("restarts_on") == "abnn" else "")
                             + f", ε grid {', '.join(map(str, self.eps_grid))} /255, batch sizes "
                             f"{', '.join(map(str, self.batch_sizes))}"
                             + (f"; both sweeps on the first {self.sweep_n} test images" if self.sweep_n else ""),
            "ROA": f"{self.roa['area']:.0%} area (10×10 on 32×32), grey start, t_max = {self.roa['steps']}, α = "
                   f"{self.roa['alpha'] * 255:.0f}/255, location searched on a strided grid"
                   + ("" if self.roa["stride"] is None else f" of stride {self.roa['stride']}") + " (and random)",
            "AutoAttack": _aa_text(self),
            "ABNN variants evaluated on": (f"the first {self.variant_n} test images" if self.variant_n
                                           else "all test images"),
            "evaluation batch size": self.eval_batch,
        }
        return pd.DataFrame({"setting": list(rows), "value": [str(v) for v in rows.values()]}).set_index("setting")


def _aa_text(cfg: Config) -> str:
    if not cfg.aa_version:
        return "not run in this profile"
    text = f"{cfg.aa_version}{' ' + '+'.join(cfg.aa_attacks) if cfg.aa_attacks else ''}, ε = 8/255"
    if cfg.aa_budget:
        text += f", {cfg.aa_budget[0]} iterations × {cfg.aa_budget[1]} restart(s)"
    if cfg.profile.get("aa_targets"):
        text += f", {cfg.profile['aa_targets']} target classes"
    return text + (f", on the first {cfg.aa_n} test images" if cfg.aa_n else "")


def _describe(spec: ex.RunSpec) -> str:
    tc, recipe = spec.config, spec.extra["paper_epochs"]
    return (f"{tc.epochs} epochs{'' if tc.epochs == recipe else f' (recipe: {recipe})'}, batch {tc.batch_size}, "
            f"{tc.schedule.describe()['name']} lr, wd {tc.weight_decay}")


def recipe_table() -> pd.DataFrame:
    """RECIPES as the paper's hyperparameter table."""
    return pd.DataFrame([{"row": k, **r} for k, r in RECIPES.items()]).set_index("row")


def profile_table() -> pd.DataFrame:
    """PROFILES side by side (one column per profile)."""
    return pd.DataFrame({p: {k: str(v) for k, v in prof.items()} for p, prof in PROFILES.items()})


def valid_overrides(label: str) -> tuple[str, ...]:
    """What ``overrides[label]`` may change: the method's keyword arguments, ``epochs``, the CIFAR-10 rows'
    ``target`` (a registered model name), and the ABNN rows' adaptive-BN choices."""
    r = RECIPES[label]
    params = [p for p in inspect.signature(METHODS.get(r["method"])).parameters if p not in ("self", "kw", "kwargs")]
    extra = ["epochs"] + (["target"] if r["data"] == "cifar10" else []) + (list(ABNN_OPTIONS) if r["method"] == "abnn"
                                                                           else [])
    return tuple(params + extra)


def _check_overrides(overrides: dict | None) -> None:
    for label, changes in (overrides or {}).items():
        if label not in RECIPES:
            raise ConfigError(f"overrides name an unknown row {label!r}; valid: {', '.join(RECIPES)}")
        bad = set(changes) - set(valid_overrides(label))
        if bad:
            raise ConfigError(f"overrides of {label!r} change unknown keys {sorted(bad)}; valid: "
                              f"{', '.join(valid_overrides(label))}")


def make_spec(cfg: Config, label: str, overrides: dict | None = None) -> ex.RunSpec:
    """The RunSpec of one RECIPES row under the configuration's profile, with ``overrides`` ({row: {key: value}})
    applied. ABNN rows build their network with the substitute row's trained (or supplied) weights."""
    r, p = RECIPES[label], cfg.profile
    o = dict((overrides or {}).get(label, {}))
    epochs = o.pop("epochs", p["epochs"].get(label, r["epochs"]))
    sched = (triangular(r["lr"], epochs) if p["schedule"] == "triangular"
             else Piecewise(r["lr"], list(r["milestones"]), 0.1))
    tc = TrainConfig(epochs=epochs, schedule=sched, batch_size=p["batch"], momentum=r["momentum"],
                     weight_decay=r["weight_decay"], augment=Augment(4, 0, True), seed=cfg.s.seed)
    target = o.pop("target", p["target"] or (r["model_kw"].get("target") or r["model"]))
    options = {k: o.pop(k) for k in ABNN_OPTIONS if k in o}
    hp = {**r["hp"], **p["hp"].get(label, {}), **o}
    alias = ex.slug(label) if label.startswith("ABNN") else f"abnn-{ex.slug(label)}"
    extra = {"data": r["data"], "paper_epochs": r["epochs"], "eval_batch": p["eval_batch"]}
    if label == "Substitute":
        kw = {"num_classes": 1000} if cfg.substitute_weights else {**r["model_kw"], **p["substitute_kw"]}
        return ex.RunSpec(alias=alias, label=label, method=r["method"], hp=hp, model=r["model"], model_kw=kw,
                          config=tc, source=r["source"], extra={**extra, "n": p["n_substitute"]})
    if r["method"] != "abnn":
        return ex.RunSpec(alias=alias, label=label, method=r["method"], hp=hp, model=target,
                          model_kw=dict(p["target_kw"]), config=tc, source=r["source"], extra=extra)
    sub = RECIPES[r["model_kw"]["substitute"]]
    kw = {**r["model_kw"], **options, "target": target, "target_kw": dict(p["target_kw"]),
          "substitute": sub["model"], "substitute_kw": {} if cfg.substitute_weights else dict(p["substitute_kw"])}
    return ex.RunSpec(alias=alias, label=label, method=r["method"], hp=hp, model=r["model"], model_kw=kw, config=tc,
                      source=r["source"], extra=extra, build=lambda: build_abnn(cfg, kw))


def build_abnn(cfg: Config, model_kw: dict):
    """An ABNN network (registered model "abnn") with a copy of the configuration's frozen substitute."""
    from ...models import MODELS
    from .runs import substitute
    sub = substitute(cfg)
    kw = {k: v for k, v in model_kw.items() if k not in ("substitute", "substitute_kw")}
    return MODELS.build("abnn", substitute=copy.deepcopy(sub.net), substitute_id=sub.key, input_shape=(3, 32, 32),
                        **kw)


def config(profile: str = "smoke", seed: int = 0, device: str = "auto", data_dir: str | None = None,
           out_dir: str | None = None, overrides: dict | None = None) -> Config:
    """The chapter's configuration for a notebook's parameters; ``overrides`` ({row: {key: value}}, keys from
    :func:`valid_overrides`) change RECIPES rows without editing robustlib."""
    return from_settings(settings(profile, seed, device, data_dir, out_dir), overrides)


def from_settings(s: RunSettings, overrides: dict | None = None) -> Config:
    _check_overrides(overrides)
    from .video import video_config
    weights = os.environ.get(ENV_SUBSTITUTE) or None
    cfg = Config(s=s, profile=PROFILES[s.profile], specs={}, substitute_weights=weights,
                 video=video_config(s.profile, s.seed))
    cfg.specs = {k: make_spec(cfg, k, overrides) for k in RECIPES}
    n = cfg.notes
    n.append(NOTES[s.profile])
    if overrides:
        n.append(f"recipes overridden by the notebook: {overrides}")
    if weights:
        n.append(f"substitute: torchvision ImageNet ResNet-18 weights from {weights} (${ENV_SUBSTITUTE}).")
    else:
        n.append("substitute: torchvision's ImageNet ResNet-18 architecture pre-trained here on the 32×32 "
                 "Tiny-ImageNet subset (200 ImageNet classes, 50 images each; a dataset different from CIFAR-10), "
                 "because no ImageNet weights are available in this project. The paper's substitute is pre-trained "
                 f"on ImageNet; set ${ENV_SUBSTITUTE} to a local torchvision checkpoint to use one.")
    n.append("headline ABNN: the authors' code form with batch-global μ/σ (two scalars over the whole evaluation "
             f"batch of {cfg.eval_batch}), adaptive BNs after the stem and after each stage; per-sample μ/σ and "
             "every-BN placement are trained as variants.")
    n.append("batch-global μ/σ make every prediction depend on the batch, so each attack on ABNN is scored in the "
             f"batch of {cfg.eval_batch} it was crafted in, and its adversarial images are also scored one at a time "
             "(@b1); AutoAttack, which attacks shrinking sub-batches, attacks and scores ABNN's batch-size-1 "
             "function (per-sample μ/σ, the same weights) instead.")
    n.append("Evaluation uses the first 1 000 CIFAR-10 test images (the rest of the test split is not available "
             "losslessly in this project).")
    return cfg
