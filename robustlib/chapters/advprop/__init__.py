"""Chapter — AdvProp (Xie et al., CVPR 2020) as a CIFAR-10 analogue, on the experiment layer.

The paper's ImageNet numbers are the reference; the analogue trains ResNet-18s at two or three widths with Vanilla,
Mixed (shared BN), AdvProp and PGD-AT over seeds, an attack-strength sweep, and evaluates clean and PGD accuracy
through the main and the auxiliary BNs and a CIFAR-10-C-style corruption suite (:mod:`robustlib.corruptions`).

* :data:`RECIPES` — one row per method of the tables (registered method name, hyperparameters, optimisation, source);
  :data:`PROFILES` — what smoke / cpu / quick / paper change (sizes, widths, seeds, sweep, epochs, evaluation budgets).
* :func:`config` turns them into one :class:`~robustlib.experiment.RunSpec` per trained model (``cfg.specs``, keyed
  by run alias) and assigns the runs to the part notebooks (``cfg.parts``); ``overrides={row: {hp: value}}`` changes
  a row's hyperparameters without editing this module.
* :func:`run_part` trains (or reopens) a part's runs with :func:`robustlib.experiment.train` and evaluates each with
  :func:`~robustlib.experiment.evaluate_cached` (per BN route) and :func:`~robustlib.experiment.cached` (per-image
  corruption flags); the chapter notebook rebuilds every record from those caches (:func:`collect`).
* :func:`trained` is the public entry for other chapters; :data:`CLAIMS` and :func:`claims` (:mod:`.chapter`) check
  the paper's claims on the report's rows; :func:`part_minutes` is the time model's plan per notebook.

Tables are in :mod:`.tables`, figures in :mod:`.figures`.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from ... import corruptions as corr
from ... import experiment as ex
from ...attacks import PGD
from ...data import Augment, load_dataset
from ...errors import ConfigError, UnknownNameError
from ...evaluation import evaluate
from ...methods.advprop import bn_route, dual_batchnorms, dualize, is_dual
from ...models import build_model, num_parameters
from ...report import Report
from ...schedules import Piecewise, triangular
from ...threat import CIFAR10
from ...training import TrainConfig, run_fingerprint
from ...utils import derive_seed
from ..common import ProfileValues, RunSettings, check_profile, cifar10_splits, settings

PAPER = "advprop"

# The recipes: one row per method of the chapter's tables, named by registered method (METHODS.names()); every run of
# a row is a ResNet-18 ("resnet18" in MODELS) of the profile's width, dual-BN (dualize) where "dual_bn" is set. The
# paper trains no CIFAR model: the optimisation is the book's standard CIFAR-10 ResNet-18 schedule (advprop.md §9.1).
# This table is printed in the notebook, feeds every run's fingerprint, and is the one place to edit (_OPT is the
# optimisation the rows share; a row that names one of its keys after **_OPT overrides it).
_OPT = {"epochs": 200, "batch": 128, "lr": 0.1, "milestones": (100, 150), "momentum": 0.9, "weight_decay": 5e-4,
        "augment": "crop 4 + flip", "selection": "last epoch (fixed schedule)"}
RECIPES = {
    "Vanilla": {"key": "vanilla", "method": "standard", "hp": {}, "dual_bn": False, **_OPT,
                "source": "standard training (Rice et al. 2020 train_cifar.py schedule: lr 0.1 ÷10 at 100 and 150)"},
    "Mixed (shared BN)": {
        "key": "mixed", "method": "mixed_at", "hp": {"eps": 1 / 255, "bn_mode": "eval", "reduction": "mean"},
        "dual_bn": False, **_OPT,
        "source": "the paper's 'vanilla adversarial training' baseline: AdvProp's step without the auxiliary BNs "
                  "(same attacker; [x; x_adv] through one BN)"},
    "AdvProp": {
        "key": "advprop", "method": "advprop", "hp": {"eps": 1 / 255, "bn_mode": "eval", "reduction": "mean"},
        "dual_bn": True, **_OPT,
        "source": "Xie et al. 2020 via Fast AdvProp §3.2.2 and the authors-guided PyTorch port: targeted PGD "
                  "(uniform start, random wrong label) through the auxiliary BNs in eval mode; steps and step by the "
                  "paper's rule attacker(ε·255) (PGD-1 of 1/255 at ε = 1/255, as both ResNet ports); "
                  "(L_clean + L_adv)/2"},
    "PGD-AT": {
        "key": "pgdat", "method": "pgd_at",
        "hp": {"eps": CIFAR10.eps, "steps": 7, "start": "uniform"}, "alpha_rule": 2.5,
        "dual_bn": False, **_OPT,
        "source": "Madry et al. 2018: PGD-7, step α = 2.5ε/t (alpha_rule), uniform start, train-mode BN"},
}
CORRUPTIONS = corr.standard_corruptions()      # the 13 CIFAR-10-C corruptions robustlib regenerates

# What each profile changes. "schedule": ("triangular", peak lr) replaces the recipe's step schedule by one triangle
# over the shortened run; None keeps the recipe's epochs/batch/schedule. "seeds" counts seeds (seed, seed+1, ...);
# "strength_*" is the attack-strength sweep (AdvProp at each ε·255, Mixed at strength_mixed_eps); "pgdat_widths" the
# widths with a PGD-AT row. The time model: "pass_s" is the assumed seconds per pass per image at each width (bf16 H200
# for quick/paper, 2 CPU cores for smoke and cpu); "eval_s" the evaluation seconds of one run (a number, or per width
# the pair (plain-BN model, dual-BN model: both BN routes attacked)); "notebook_s" a part notebook's fixed seconds
# (start-up, data, the corruption suite). "small_mixed_sweep_part": the part notebook that trains the smaller widths'
# Mixed (shared BN) sweep runs (to balance the parts' time).
PROFILES = {
    "smoke": {"n_train": 256, "n_test": 100, "widths": (4, 8), "blocks": (1, 1, 1, 1), "seeds": 2,
              "epochs": 1, "batch": 64, "schedule": ("triangular", 0.1), "hp": {"PGD-AT": {"steps": 2}},
              "strength_eps": (8,), "strength_mixed_eps": (8,), "strength_seeds": 1, "strength_widths": (8,),
              "pgdat_widths": (8,), "eval_pgd_steps": 2, "eval_eps": (1, 8), "eval_batch": 500,
              "corruptions": CORRUPTIONS, "severities": (3,), "corruption_seed": 0,
              "pass_s": {4: 5e-4, 8: 9e-4}, "eval_s": 1.0, "notebook_s": 10.0, "small_mixed_sweep_part": "small"},
    "quick": {"n_train": None, "n_test": 1000, "widths": (16, 64), "blocks": (2, 2, 2, 2), "seeds": 3,
              "epochs": 6, "batch": 256, "schedule": ("triangular", 0.2), "hp": {"PGD-AT": {"steps": 3}},
              "strength_eps": (2, 4, 8), "strength_mixed_eps": (8,), "strength_seeds": 1, "strength_widths": (16, 64),
              "pgdat_widths": (16, 64), "eval_pgd_steps": 20, "eval_eps": (1, 8), "eval_batch": 1000,
              "corruptions": CORRUPTIONS, "severities": (1, 2, 3, 4, 5), "corruption_seed": 0,
              "pass_s": {16: 1.0e-5, 64: 2.5e-5}, "eval_s": 4.0, "notebook_s": 30.0, "small_mixed_sweep_part": "small"},
    # two CPU cores, each notebook ≤ 45 min: every row of the quick profile at widths 8 and 16, three seeds each,
    # one epoch per run (what fits: the 32 runs take ≈ 2.6 h of the planned time), PGD-AT with 5 steps, PGD-10 in the
    # evaluation. Time model from this project's measurements on two AMD EPYC cores (bf16 autocast + channels_last):
    # a standard epoch of 49 000 images at width 16, batch 128, ≈ 50 s ⇒ 6e-4 s per pass per image (attack passes are
    # cheaper: PGD-AT-5 measured 215 s per epoch where the rule plans 359 s, so attack-heavy runs are overestimated);
    # width 8 assumed 2.5× cheaper (not measured). Evaluation of one run at width 16: PGD-10 at two ε on 1 000 images
    # ≈ 40 s per BN route (PGD-20 measured ≈ 40 s per ε), the 65 000 images of the corruption suite ≈ 65 s (1 s per
    # 1 000 forward passes), so ≈ 110 s for a plain-BN model and ≈ 150 s for a dual-BN one (both routes attacked);
    # width 8 ≈ 2.3× cheaper (measured on clean forward passes).
    "cpu": {"n_train": None, "n_test": 1000, "widths": (8, 16), "blocks": (2, 2, 2, 2), "seeds": 3,
            "epochs": 1, "batch": 128, "schedule": ("triangular", 0.1), "hp": {"PGD-AT": {"steps": 5}},
            "strength_eps": (2, 4, 8), "strength_mixed_eps": (8,), "strength_seeds": 1, "strength_widths": (8, 16),
            "pgdat_widths": (8, 16), "eval_pgd_steps": 10, "eval_eps": (1, 8), "eval_batch": 500,
            "corruptions": CORRUPTIONS, "severities": (1, 2, 3, 4, 5), "corruption_seed": 0,
            "pass_s": {8: 2.4e-4, 16: 6e-4}, "eval_s": {8: (50.0, 65.0), 16: (110.0, 150.0)}, "notebook_s": 60.0,
            "small_mixed_sweep_part": "strength"},
    "paper": {"n_train": None, "n_test": 1000, "widths": (16, 32, 64), "blocks": (2, 2, 2, 2), "seeds": 3,
              "epochs": None, "batch": None, "schedule": None, "hp": {},
              "strength_eps": (2, 4, 8), "strength_mixed_eps": (8,), "strength_seeds": 3,
              "strength_widths": (16, 32, 64), "pgdat_widths": (16, 32, 64), "eval_pgd_steps": 20, "eval_eps": (1, 8),
              "eval_batch": 1000, "corruptions": CORRUPTIONS, "severities": (1, 2, 3, 4, 5), "corruption_seed": 0,
              "pass_s": {16: 1.0e-5, 32: 1.4e-5, 64: 2.5e-5}, "eval_s": 4.0, "notebook_s": 30.0,
              "small_mixed_sweep_part": "small"},
}
NOTES = {"smoke": "smoke profile: tiny ResNet-18s, 256 training images, one epoch, PGD-2 for the 'pgd20' keys, one "
                   "corruption severity; the numbers only show that the pipeline runs.",
         "cpu": "cpu profile (two CPU cores, each notebook ≤ 45 minutes): all 50 000 CIFAR-10 training images, "
                "ResNet-18 at widths 8 and 16 instead of 16 and 64 (the standard ResNet-18), one epoch per run "
                "(triangular learning rate 0 → 0.1 → 0 at batch 128) instead of the recipe's 200, three seeds per row "
                "at both widths, PGD-AT with 5 steps instead of 7 (α = 2.5ε/5), the strength sweep (AdvProp at ε = "
                "2, 4, 8/255, Mixed at 8/255) with one seed at both widths (the narrow Mixed sweep run is trained by "
                "the strength part, 33, to balance the parts); evaluation on the first 1 000 test images with PGD-10 "
                "instead of PGD-20 (the 'pgd20' keys hold PGD-10) at ε = 1/255 and 8/255 through both BN routes, and "
                "the full CIFAR-10-C-style suite (13 corruptions × 5 severities). The time model plans 6e-4 s per "
                "pass per image at width 16 (measured: a standard epoch ≈ 50 s) and 2.4e-4 s at width 8 (assumed "
                "2.5× cheaper, not measured). The claims compare the seed-0 rows paired over the test images, with "
                "the mean ± sd over the three seeds beside. CPU scale: compare the differences between rows, not the "
                "absolute numbers.",
         "quick": "quick profile: 6 epochs (triangular learning rate) instead of 200; the strength sweep with one "
                  "seed; PGD-AT with 3 steps.",
         "paper": "paper profile: the analogue at full length; the paper itself trains EfficientNets on ImageNet."}
PART_NOTEBOOKS = {"large": "31_advprop__large", "small": "32_advprop__small", "strength": "33_advprop__strength",
                  "reference": "34_advprop__reference"}
PARTS = tuple(PART_NOTEBOOKS)
LABELS = {r["key"]: label for label, r in RECIPES.items()}      # "advprop" → "AdvProp"
METHODS = tuple(LABELS)
HEADLINE_METRICS = ("clean", "clean_aux", "corruption_mean", "pgd20", "pgd20_aux", "pgd20_eps1", "pgd20_eps1_aux")
# Per-image flags a record keeps (the seed-0 rows carry them into the report, for the paired claims): the
# accuracies of both BN routes and "corruption_rotated", one corrupted copy per test image (:func:`rotated`).
FLAG_METRICS = HEADLINE_METRICS[:2] + HEADLINE_METRICS[3:] + ("corruption_rotated",)


# ------------------------------------------------------------------------------------------------ the specs


def recipe_table() -> pd.DataFrame:
    """RECIPES as the hyperparameter table of the notebook."""
    return pd.DataFrame([{"row": k, **r} for k, r in RECIPES.items()]).set_index("row")


def alias(key: str, width: int, eps_255: int, seed: int) -> str:
    """The run's readable name (and checkpoint-folder prefix), e.g. ``advprop-advprop-w64-e1-s0``."""
    return f"{PAPER}-{key}-w{width}{'' if key == 'vanilla' else f'-e{eps_255}'}-s{seed}"


def _dual_resnet18(**kw) -> torch.nn.Module:
    return dualize(build_model("resnet18", **kw))


def row_hp(label: str, profile: dict, overrides: dict | None = None) -> dict:
    """A row's method hyperparameters: RECIPES, then the profile's changes, then the notebook's overrides."""
    return {**RECIPES[label]["hp"], **profile["hp"].get(label, {}), **(overrides or {}).get(label, {})}


def check_overrides(overrides: dict | None) -> None:
    bad = set(overrides or {}) - set(RECIPES)
    if bad:
        raise ConfigError(f"overrides name unknown rows {sorted(bad)}; valid: {', '.join(RECIPES)}")


def headline_eps(label: str, profile: dict, overrides: dict | None = None) -> int:
    """The row's attacker ε in grey levels (0 for Vanilla)."""
    hp = row_hp(label, profile, overrides)
    return round(hp["eps"] * 255) if "eps" in hp else 0


def make_spec(label: str, profile: dict, width: int, seed: int, *, eps_255: int | None = None,
              overrides: dict | None = None) -> ex.RunSpec:
    """The RunSpec of RECIPES row ``label`` at ``width`` and ``seed`` under a profile; ``eps_255`` sets the attacker's
    ε (the strength sweep; steps and step then follow the paper's rule unless the row states them)."""
    r = RECIPES[label]
    hp = row_hp(label, profile, overrides)
    if eps_255 is not None and "eps" in hp:
        hp["eps"] = eps_255 / 255
    if "alpha_rule" in r and "alpha" not in hp:
        hp["alpha"] = r["alpha_rule"] * hp["eps"] / hp["steps"]
    eps = round(hp["eps"] * 255) if "eps" in hp else 0
    epochs = profile["epochs"] or r["epochs"]
    sched = (triangular(profile["schedule"][1], epochs) if profile["schedule"]
             else Piecewise(r["lr"], list(r["milestones"]), 0.1))
    tc = TrainConfig(epochs=epochs, batch_size=profile["batch"] or r["batch"], schedule=sched,
                     momentum=r["momentum"], weight_decay=r["weight_decay"], augment=Augment(4, 0, True), seed=seed)
    kw = {"width": width, "blocks": tuple(profile["blocks"])}
    return ex.RunSpec(alias=alias(r["key"], width, eps, seed), label=label, method=r["method"], hp=hp,
                      model="resnet18", model_kw=kw, config=tc, source=r["source"],
                      build=functools.partial(_dual_resnet18, **kw) if r["dual_bn"] else None,
                      extra={"key": r["key"], "width": width, "eps": eps, "seed": seed})


def plan_parts(profile: dict, seed: int, overrides: dict | None = None) -> dict[str, list[tuple]]:
    """Which runs (row, width, ε·255, seed) each part notebook trains, balanced to fit the 10-minute quick budget (and
    the cpu profile's 45 minutes)."""
    widths = sorted(profile["widths"])
    L = widths[-1]
    seeds = [seed + i for i in range(profile["seeds"])]
    sweep_seeds = seeds[:profile["strength_seeds"]]
    he = {k: headline_eps(k, profile, overrides) for k in RECIPES}
    head = ("Vanilla", "Mixed (shared BN)", "AdvProp")

    def h(label, w, s):
        return (label, w, he[label], s)

    def sweep(w, label, grid):
        return [(label, w, e, s) for e in grid for s in sweep_seeds if e != he[label]]

    small = [h(m, w, s) for w in widths if w != L for s in seeds
             for m in head + (("PGD-AT",) if w in profile["pgdat_widths"] else ())]
    moved = {"small": small, "strength": [], "reference": []}
    for w in sorted(profile["strength_widths"]):
        if w != L:
            small += sweep(w, "AdvProp", profile["strength_eps"])
            moved[profile["small_mixed_sweep_part"]] += sweep(w, "Mixed (shared BN)", profile["strength_mixed_eps"])
    ref = [h("PGD-AT", L, s) for s in seeds] if L in profile["pgdat_widths"] else []
    ref += sweep(L, "Mixed (shared BN)", profile["strength_mixed_eps"]) if L in profile["strength_widths"] else []
    strength = sweep(L, "AdvProp", profile["strength_eps"]) if L in profile["strength_widths"] else []
    return {"large": [h(m, L, s) for s in seeds for m in head], "small": small,
            "strength": strength + moved["strength"], "reference": ref + moved["reference"]}


@dataclass
class Config(ProfileValues):
    s: RunSettings
    profile: dict                            # PROFILES[s.profile]
    specs: dict[str, ex.RunSpec]             # run alias → spec (RECIPES row at a width, attacker and seed)
    parts: dict[str, tuple[str, ...]]        # part → run aliases
    overrides: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


    @property
    def large(self) -> int:
        return max(self.widths)

    @property
    def small(self) -> int:
        return min(self.widths)

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(self.s.seed + i for i in range(self.profile["seeds"]))

    @property
    def strength_seeds(self) -> tuple[int, ...]:
        return self.seeds[:self.profile["strength_seeds"]]

    @property
    def train(self) -> TrainConfig:
        """The optimisation every run shares (its seed is the run's)."""
        return make_spec("Vanilla", self.profile, self.large, self.s.seed).config

    def headline_eps(self, key: str) -> int:
        return headline_eps(LABELS[key], self.profile, self.overrides)

    @property
    def eps(self) -> int:
        """AdvProp's headline attacker ε·255."""
        return self.headline_eps("advprop")

    def runs(self, part: str | None = None) -> list[ex.RunSpec]:
        parts = PARTS if part is None else (part,)
        return [self.specs[a] for p in parts for a in self.parts.get(p, ())]

    def table(self) -> pd.DataFrame:
        """The configuration as a two-column table for the notebook."""
        return config_table(self)


def config(profile: str = "smoke", seed: int = 0, device: str = "auto", data_dir: str | None = None,
           out_dir: str | None = None, overrides: dict | None = None) -> Config:
    s = settings(profile, seed, device, data_dir, out_dir)
    prof = PROFILES[s.profile]
    check_overrides(overrides)
    specs, parts = {}, {}
    for part, runs in plan_parts(prof, s.seed, overrides).items():
        sps = [make_spec(label, prof, w, sd, eps_255=e, overrides=overrides) for label, w, e, sd in runs]
        specs.update({sp.alias: sp for sp in sps})
        parts[part] = tuple(sp.alias for sp in sps)
    cfg = Config(s=s, profile=prof, specs=specs, parts=parts, overrides=dict(overrides or {}))
    cfg.notes.append(NOTES[s.profile])
    if overrides:
        cfg.notes.append(f"hyperparameters overridden by the notebook: {overrides}")
    cfg.notes.append("Evaluation uses the first 1 000 CIFAR-10 test images (the rest of the test split is not "
                     "available losslessly in this project); every model is the one at the end of its fixed "
                     "schedule.")
    return cfg


def report(cfg: Config, part: str | None = None) -> Report:
    if part is not None and part not in PARTS:
        raise UnknownNameError("AdvProp part", part, PARTS)
    return Report(PAPER, cfg.s.profile, cfg.s.out_dir, "cifar10", cfg.n_test, cfg.s.seed, str(cfg.s.device),
                  part=part)


def load_data(cfg: Config):
    train, _, test = cifar10_splits(cfg.s, cfg.n_train, cfg.n_test)
    return train, test


def model_params(cfg: Config, width: int) -> int:
    """Parameters of the plain network at ``width`` (what is exported and tested; the aux BNs add < 0.1 %)."""
    return num_parameters(build_model("resnet18", width=width, blocks=tuple(cfg.blocks)))


# ------------------------------------------------------------------------------------------------ training


def train_run(cfg: Config, run: str | ex.RunSpec, train, progress: bool = True) -> ex.Trained:
    """Train one run (an alias of ``cfg.specs`` or a spec), or reopen its finished checkpoint."""
    spec = cfg.specs[run] if isinstance(run, str) else run
    return ex.train(spec, train, cfg.s.checkpoint_dir, device=cfg.s.device, progress=progress)


def trained(s: RunSettings, label: str, *, seed: int | None = None, progress: bool = True,
            overrides: dict | None = None) -> ex.Trained:
    """The run behind this chapter's table row ``label`` (a RECIPES row; "AdvProp" for the comparison) at the
    profile's largest width (64 = the standard ResNet-18 in quick and paper) with the row's headline attacker and
    ``seed`` (default ``s.seed``): trained, or reopened when a part notebook has trained it. ``overrides`` as in
    :func:`config`.

    The AdvProp model has dual BNs; ``t.model(t.spec.rows[label])`` routes every image through the main BNs (the
    deployed network). For its auxiliary BNs: ``with robustlib.methods.advprop.bn_route(model, "aux"): ...``."""
    check_profile(s.profile)
    check_overrides(overrides)
    if label not in RECIPES:
        raise UnknownNameError("AdvProp row", label, RECIPES)
    prof = PROFILES[s.profile]
    spec = make_spec(label, prof, max(prof["widths"]), s.seed if seed is None else seed, overrides=overrides)
    train = load_dataset("cifar10", "train", s.data_dir, limit=prof["n_train"])
    return ex.train(spec, train, s.checkpoint_dir, device=s.device, progress=progress)


# ---------------------------------------------------------------------------------------------- evaluation


def pgd_key(e: int) -> str:
    return "pgd20" if e == 8 else f"pgd20_eps{e}"


def eval_attacks(cfg: Config) -> dict[str, PGD]:
    """Untargeted PGD with a uniform start and eval-mode BNs at each ε of ``eval_eps`` (step 2/255 at 8/255, ε/4
    otherwise)."""
    out = {}
    for e in cfg.eval_eps:
        eps = e / 255
        alpha = CIFAR10.pgd_step if eps == CIFAR10.eps else eps / 4
        out[pgd_key(e)] = PGD(eps, alpha, cfg.eval_pgd_steps, start="uniform", loss="ce", bn_mode="eval")
    return out


class Suite:
    """The CIFAR-10-C-style suite of the test images, generated on first use (only when some evaluation is not
    cached yet)."""

    def __init__(self, cfg: Config, test):
        self.cfg, self.test, self._suite = cfg, test, None

    @property
    def pairs(self) -> list[tuple[str, int]]:
        return [(c, s) for c in self.cfg.corruptions for s in self.cfg.severities]

    def describe(self) -> dict:
        t = self.test
        return {"corruptions": list(self.cfg.corruptions), "severities": list(self.cfg.severities),
                "seed": self.cfg.corruption_seed, "test": [t.name, t.split, len(t), int(t.y.sum())]}

    def get(self) -> dict:
        if self._suite is None:
            self._suite = corr.corruption_suite(self.test, self.cfg.corruptions, self.cfg.severities,
                                                self.cfg.corruption_seed)
        return self._suite


def corruption_flags(cfg: Config, t: ex.Trained, model, suite: Suite) -> np.ndarray:
    """Per-image correct flags of the main-BN model on the corruption suite, one row per (corruption, severity) of
    ``suite.pairs`` (cached beside the run)."""
    def compute():
        s = suite.get()
        big = dataclasses.replace(s[suite.pairs[0]], x=torch.cat([s[p].x for p in suite.pairs]),
                                  y=torch.cat([s[p].y for p in suite.pairs]), split="corruptions")
        flags = evaluate(model, big, batch_size=cfg.eval_batch, device=cfg.s.device, progress=False).flags["clean"]
        return {"flags": flags.to_numpy()}
    what = {"corruption suite": suite.describe(), "batch": cfg.eval_batch, "route": "main"}
    return np.asarray(ex.cached(t, what, compute)["flags"]).astype(bool).reshape(len(suite.pairs), -1)


def corruption_table_of(suite: Suite, flags: np.ndarray) -> pd.DataFrame:
    """Accuracy per (corruption, severity) from :func:`corruption_flags`."""
    return pd.DataFrame([{"corruption": c, "family": corr.family_of(c), "severity": s,
                          "accuracy": 100 * int(f.sum()) / len(f)} for (c, s), f in zip(suite.pairs, flags)])


def corruption_accuracy(cfg: Config, t: ex.Trained, model, suite: Suite) -> pd.DataFrame:
    """Accuracy per (corruption, severity) of the main-BN model, from per-image flags cached beside the run."""
    return corruption_table_of(suite, corruption_flags(cfg, t, model, suite))


def rotated(flags: np.ndarray) -> np.ndarray:
    """One corrupted copy per test image: image i under the (i mod P)-th (corruption, severity) pair of the suite —
    every pair equally often, each test image once, so a paired interval over the test images is valid (the full
    suite repeats every image P times, and its P flags per image are correlated)."""
    n_pairs, n = flags.shape
    return flags[np.arange(n) % n_pairs, np.arange(n)]


def bn_layer_stats(model: torch.nn.Module) -> list[dict]:
    """Per dual-BN layer: channel averages of the main and auxiliary running means, variances and γ, β, and two
    distances between them (mean standardised mean difference, mean |log variance ratio|)."""
    out = []
    names = {m: n for n, m in model.named_modules()}
    for i, m in enumerate(dual_batchnorms(model)):
        a, b = m.main, m.aux
        mu_m, mu_a = a.running_mean.float().cpu(), b.running_mean.float().cpu()
        var_m, var_a = a.running_var.float().cpu(), b.running_var.float().cpu()
        pooled = ((var_m + var_a) / 2).clamp_min(1e-12).sqrt()
        out.append({
            "layer": i, "name": names[m], "channels": int(mu_m.numel()),
            "mean_main": float(mu_m.mean()), "mean_aux": float(mu_a.mean()),
            "var_main": float(var_m.mean()), "var_aux": float(var_a.mean()),
            "smd": float(((mu_m - mu_a).abs() / pooled).mean()),
            "log_var_ratio": float((var_a.clamp_min(1e-12) / var_m.clamp_min(1e-12)).log().abs().mean()),
            "gamma_main": float(a.weight.detach().float().cpu().mean()),
            "gamma_aux": float(b.weight.detach().float().cpu().mean()),
            "gamma_diff": float((a.weight - b.weight).detach().float().abs().mean()),
            "beta_diff": float((a.bias - b.bias).detach().float().abs().mean()),
        })
    return out


def bn_channels(model: torch.nn.Module, layer: int = 0) -> dict:
    """Per-channel running statistics of one dual-BN layer (main and auxiliary)."""
    m = dual_batchnorms(model)[layer]
    return {f"{st}_{br}": getattr(getattr(m, br), f"running_{st}").float().cpu().tolist()
            for st in ("mean", "var") for br in ("main", "aux")}


HISTORY = ("epoch", "lr", "train_loss", "acc", "clean_acc", "adv_acc", "loss_clean", "loss_adv", "train_seconds")


def evaluate_run(cfg: Config, t: ex.Trained, test, suite: Suite) -> dict:
    """Everything the chapter reports about one trained model, as a JSON-ready record (evaluations cached beside
    the checkpoint: PGD flags per BN route, corruption flags)."""
    sp, model = t.spec, t.model()
    metrics: dict[str, float | None] = {}
    flags: dict[str, list[bool]] = {}
    t0 = time.perf_counter()
    for route in ("main", "aux") if is_dual(model) else (None,):
        suffix = "_aux" if route == "aux" else ""
        with bn_route(model, route) if route else contextlib.nullcontext():
            ev = ex.evaluate_cached(None, eval_attacks(cfg), test, model=model, cache_dir=t.folder,
                                    model_key=[t.fingerprint, "model", t.selected_epoch(), t.result.epochs, route],
                                    batch_size=cfg.eval_batch, seed=derive_seed("advprop-eval", sp.alias, route),
                                    device=cfg.s.device, progress=False, desc=f"{sp.alias} {route or ''}")
        acc = ev.accuracies()
        metrics["clean" + suffix] = acc["clean"]
        flags["clean" + suffix] = ev.flags["clean"].astype(bool).tolist()
        for e in cfg.eval_eps:
            metrics[pgd_key(e) + suffix] = acc[pgd_key(e)]
            flags[pgd_key(e) + suffix] = ev.flags[pgd_key(e)].astype(bool).tolist()
    cflags = corruption_flags(cfg, t, model, suite)
    ctab = corruption_table_of(suite, cflags)
    for k in HEADLINE_METRICS:
        metrics.setdefault(k, None)
    metrics["corruption_mean"] = float(ctab["accuracy"].mean())
    rot = rotated(cflags)
    metrics["corruption_rotated"] = 100 * float(rot.mean())
    flags["corruption_rotated"] = rot.tolist()
    for fam, g in ctab.groupby("family", sort=False):
        metrics[f"corruption_{fam}"] = float(g["accuracy"].mean())
    res, x, method = t.result, sp.extra, sp.make_method()
    hist = res.history
    rec = {"key": sp.alias, "method": x["key"], "label": sp.label, "width": x["width"], "eps": x["eps"],
           "seed": x["seed"], "attack_steps": method.attack_steps, "params": num_parameters(model),
           "params_plain": model_params(cfg, x["width"]), "metrics": metrics,
           "corruptions": ctab.to_dict("records"), "cost_passes": float(res.cost["total"]),
           "formula_passes": method.derived_passes(), "train_s": float(res.train_seconds),
           "epochs": int(res.epochs), "eval_s": time.perf_counter() - t0, "flags": flags,
           "precision": (res.hyperparameters or {}).get("resolved"),
           "history": hist[[c for c in HISTORY if c in hist]].to_dict("records")}
    if is_dual(model):
        rec["bn_stats"] = bn_layer_stats(model)
        rec["bn_channels_first"] = bn_channels(model, 0)
    return rec


def run_part(cfg: Config, part: str, rep: Report | None = None, data=None, log=print,
             progress: bool = True) -> list[dict]:
    """Train (or reopen) and evaluate every run of ``part``; adds its rows to ``rep``. Returns the records."""
    if part not in cfg.parts:
        raise UnknownNameError("AdvProp part", part, cfg.parts)
    train, test = data if data is not None else load_data(cfg)
    suite = Suite(cfg, test)
    records = []
    for sp in cfg.runs(part):
        rec = evaluate_run(cfg, train_run(cfg, sp, train, progress), test, suite)
        records.append(rec)
        m = rec["metrics"]
        log(f"{sp.alias:32s} clean {m['clean']:5.1f}"
            + (f"  aux {m['clean_aux']:5.1f}" if m.get("clean_aux") is not None else " " * 10)
            + f"  corruptions {m['corruption_mean']:5.1f}  pgd20 {m['pgd20']:5.1f}  {rec['cost_passes']:.2f} N  "
              f"train {rec['train_s']:.0f} s  eval {rec['eval_s']:.0f} s")
    if rep is not None:
        add_rows(rep, records, cfg, complete=False)
    return records


def collect(cfg: Config, data=None, log=print, progress: bool = False) -> list[dict]:
    """The records of every part's runs, in part order: each run reopened from its checkpoint and its evaluations
    read from the caches (a run whose part notebook has not run is trained and evaluated here)."""
    data = data if data is not None else load_data(cfg)
    return [r for p in cfg.parts for r in run_part(cfg, p, data=data, log=log, progress=progress)]


def eval_seconds(cfg: Config, spec: ex.RunSpec) -> float:
    """The time model's evaluation seconds of one run: the profile's ``eval_s`` (a number per run, or per width the
    pair (plain-BN model, dual-BN model))."""
    ev = cfg.eval_s
    if isinstance(ev, (int, float)):
        return float(ev)
    plain, dual = ev[spec.extra["width"]]
    return float(dual if RECIPES[spec.label]["dual_bn"] else plain)


def part_minutes(cfg: Config) -> pd.DataFrame:
    """Estimated minutes per notebook by the time model (each part, then the chapter notebook): training, evaluation,
    the notebook's fixed time (``notebook_s``: start-up, data, the corruption suite) and the total."""
    rows = []
    for part in PARTS:
        specs = cfg.runs(part)
        n = cfg.n_train or 50_000
        train_s = sum(ex.estimate_seconds(sp, n, cfg.pass_s[sp.extra["width"]]) for sp in specs)
        eval_s = sum(eval_seconds(cfg, sp) for sp in specs)
        rows.append({"part": part, "notebook": PART_NOTEBOOKS[part] + ".ipynb", "runs": len(specs),
                     "train min": train_s / 60, "eval min": eval_s / 60, "fixed min": cfg.notebook_s / 60,
                     "total min": (train_s + eval_s + cfg.notebook_s) / 60})
    # the chapter notebook: every record from the caches, and §10's one extra run (the narrow AdvProp model with the
    # summed loss, evaluated through its main BNs: planned as a plain model's evaluation)
    extra = make_spec("AdvProp", cfg.profile, cfg.small, cfg.s.seed, overrides=cfg.overrides)
    train_s = ex.estimate_seconds(extra, cfg.n_train or 50_000, cfg.pass_s[cfg.small])
    eval_s = eval_seconds(cfg, make_spec("Vanilla", cfg.profile, cfg.small, cfg.s.seed))
    rows.append({"part": "chapter", "notebook": f"30_{PAPER}.ipynb", "runs": 1, "train min": train_s / 60,
                 "eval min": eval_s / 60, "fixed min": cfg.notebook_s / 60,
                 "total min": (train_s + eval_s + cfg.notebook_s) / 60})
    return pd.DataFrame(rows).set_index("part")


def part_plan(cfg: Config, part: str, train=None) -> pd.DataFrame:
    """The runs of a part with the one time model (:func:`robustlib.experiment.plan`: the method's derived passes ×
    images × epochs × the profile's assumed seconds per pass), and, given the training set, whether each run's
    checkpoint is already there."""
    specs = cfg.runs(part)
    n = cfg.n_train or 50_000
    df = ex.plan(specs, n, {sp.alias: cfg.pass_s[sp.extra["width"]] for sp in specs},
                 {sp.alias: eval_seconds(cfg, sp) for sp in specs})
    df.insert(1, "width", [sp.extra["width"] for sp in specs])
    df.insert(2, "attacker", ["—" if sp.extra["key"] == "vanilla" else
                              f"ε = {sp.extra['eps']}/255, PGD-{sp.make_method().attack_steps}" for sp in specs])
    df.insert(3, "seed", [sp.extra["seed"] for sp in specs])
    if train is not None:
        df["trained"] = [(ex.checkpoint_folder(cfg.s.checkpoint_dir, sp, run_fingerprint(
            sp.make_model(), sp.make_method(), train, sp.config)) / "last.pt").exists() for sp in specs]
    return df


from .tables import (add_rows, config_table, corruption_frame, corruption_table, cost_table, frame,  # noqa: E402
                     paired_difference, part_summary, reference_table, robustness_table, strength_frame,
                     strength_label, summary_table)
from .chapter import CLAIMS, claims, claims_rows  # noqa: E402
from .figures import (fig_bn_stats, fig_corruption_examples, fig_corruptions, fig_reference,  # noqa: E402
                      fig_strength, fig_training)
