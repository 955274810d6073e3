"""Chapter 0 — adversarial examples, and what robustness costs.

A standard CIFAR-10 ResNet-18, its FGSM/PGD adversarial examples, robust accuracy against ε for FGSM, PGD and
AutoAttack, a PGD-AT model trained on the min–max objective, and the measured training cost in network passes N
beside the ABNN slides' formula 2N(t + 1).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
import torch

import dataclasses

from .. import experiment as ex
from ..claims import Claim, table as claims_table
from .. import plotting
from ..attacks import FGSM, PGD, AutoAttack, predict
from ..data import Augment
from ..errors import ConfigError
from ..evaluation import evaluate
from ..report import Report
from ..schedules import Piecewise, triangular
from ..stats import wilson_interval
from ..threat import CIFAR10
from ..training import TrainConfig, TrainResult
from .common import ProfileValues, RunSettings, cifar10_splits, settings

PAPER = "adversarial_examples"
EPS = CIFAR10.eps


# The recipes: the paper's hyperparameters, one row per trained model, named by registered method (METHODS) and
# model (MODELS). This table is printed in the notebook, feeds every run's fingerprint, and is the one place to edit.
RECIPES = {
    "Standard": {"method": "standard", "hp": {}, "epochs": 200, "batch": 128, "lr": 0.1, "milestones": (100, 150),
                 "momentum": 0.9, "weight_decay": 5e-4, "augment": "crop 4 + flip",
                 "source": "Rice et al. (2020), train_cifar.py: 200 epochs, lr 0.1 ÷10 at 100 and 150"},
    "PGD-AT": {"method": "pgd_at", "hp": {"eps": EPS, "alpha": 2 / 255, "steps": 10}, "epochs": 200, "batch": 128,
               "lr": 0.1, "milestones": (100, 150), "momentum": 0.9, "weight_decay": 5e-4, "augment": "crop 4 + flip",
               "source": "Madry et al. (2018) with Rice et al.'s train_cifar.py: PGD-10 of 2/255 from a uniform start, "
                         "train-mode BatchNorm, 200 epochs, lr 0.1 ÷10 at 100 and 150"},
}

# What each profile changes (everything else comes from RECIPES). "schedule": "triangular" replaces the piecewise
# schedule by a triangle 0 → lr → 0 over the shortened run (peak at half, CyclicLR's momentum cycling).
PROFILES = {
    "smoke": {"n_train": 1000, "n_test": 64, "model": {"width": 8, "blocks": (1, 1, 1, 1)}, "batch": 64,
              "epochs": {"Standard": 3, "PGD-AT": 2}, "hp": {"PGD-AT": {"steps": 2}}, "schedule": "triangular",
              "eps_grid": (0, 8, 32), "pgd_steps": 5, "aa_eps": (8,), "aa": ("custom", ("apgd-ce",), (20, 1)),
              "cost_batches": 2, "eval_batch": 64},
    "quick": {"n_train": None, "n_test": 1000, "model": {}, "batch": 128, "epochs": {"Standard": 15, "PGD-AT": 10},
              "hp": {"PGD-AT": {"steps": 5}}, "schedule": "triangular", "eps_grid": (0, 1, 2, 4, 6, 8, 12, 16),
              "pgd_steps": 20, "aa_eps": (2, 4, 8), "aa": ("standard", None, None), "cost_batches": 5,
              "eval_batch": 1000},
    # two CPU cores: NuAT's width-16 ResNet-18 (bf16 + channels_last where the CPU computes bf16 natively), 15 epochs
    # of standard training and 4 of PGD-AT with t = 5 (the slides' 12N), AutoAttack on 500 images
    "cpu": {"n_train": None, "n_test": 1000, "model": {"width": 16}, "batch": 128,
            "epochs": {"Standard": 15, "PGD-AT": 4}, "hp": {"PGD-AT": {"steps": 5}}, "schedule": "triangular",
            "eps_grid": (0, 2, 4, 8, 16), "pgd_steps": 20, "aa_eps": (8,), "aa": ("standard", None, None),
            "aa_n": 500, "cost_batches": 3, "eval_batch": 500},
    "paper": {"n_train": None, "n_test": 1000, "model": {}, "batch": 128, "epochs": {}, "hp": {}, "schedule": None,
              "eps_grid": (0, 1, 2, 4, 6, 8, 12, 16), "pgd_steps": 20, "aa_eps": (1, 2, 4, 8, 16),
              "aa": ("standard", None, None), "cost_batches": 5, "eval_batch": 1000},
}
NOTES = {
    "cpu": "cpu profile (two CPU cores): a width-16 ResNet-18 (NuAT's width for its CPU table), 15 epochs of standard "
           "training and 4 epochs of PGD-AT with t = 5, triangular learning rate, instead of 200 epochs and t = 10; "
           "AutoAttack (standard) on the first 500 test images. CPU scale: compare the differences between rows, "
           "not the absolute numbers.",
    "smoke": "smoke profile: a width-8 ResNet-18 with one block per stage, 1 000 training images, 64 test images, "
             "PGD-5, AutoAttack reduced to APGD-CE with 20 iterations. The numbers only show that the pipeline runs.",
    "quick": "quick profile: 15 epochs of standard training and 10 epochs of PGD-AT with t = 5 (triangular learning "
             "rate), instead of 200 epochs and t = 10.",
}


@dataclass
class Config(ProfileValues):
    s: RunSettings
    profile: dict                        # PROFILES[s.profile]
    specs: dict[str, ex.RunSpec]         # one per RECIPES row, with the profile's changes and the overrides applied
    notes: list[str] = field(default_factory=list)


    @property
    def at_steps(self) -> int:
        return self.specs["PGD-AT"].hp["steps"]

    def table(self) -> pd.DataFrame:
        """The configuration as a two-column table for the notebook."""
        std, at = self.specs["Standard"].config, self.specs["PGD-AT"].config
        rows = {
            "profile": self.s.profile, "device": str(self.s.device), "seed": self.s.seed,
            "training images": self.n_train or "all 50 000", "test images": self.n_test,
            "model": f"ResNet-18 {self.model}",
            "standard training": f"{std.epochs} epochs, batch {std.batch_size}, {std.schedule.describe()}",
            "PGD-AT": f"t = {self.at_steps} steps of 2/255, ε = 8/255, {at.epochs} epochs",
            "ε grid (×1/255)": ", ".join(map(str, self.eps_grid)),
            "PGD for the sweep": f"{self.pgd_steps} steps of ε/4, one uniform random start",
            "AutoAttack": f"{self.aa[0]}{' ' + '+'.join(self.aa[1]) if self.aa[1] else ''} at ε = "
                          + ", ".join(f"{e}/255" for e in self.aa_eps),
        }
        return pd.DataFrame({"setting": list(rows), "value": [str(v) for v in rows.values()]}).set_index("setting")


def recipe_table() -> pd.DataFrame:
    """RECIPES as the paper's hyperparameter table."""
    return ex.recipe_frame(RECIPES)


def make_spec(label: str, profile: dict, seed: int, overrides: dict | None = None) -> ex.RunSpec:
    """The RunSpec of one RECIPES row under a profile; ``overrides`` ({row: {hyperparameter: value}}) change the
    method's hyperparameters without editing this module."""
    r = RECIPES[label]
    epochs = profile["epochs"].get(label, r["epochs"])
    sched = (triangular(r["lr"], epochs) if profile["schedule"] == "triangular"
             else Piecewise(r["lr"], list(r["milestones"]), 0.1))
    hp = {**r["hp"], **profile["hp"].get(label, {}), **(overrides or {}).get(label, {})}
    tc = TrainConfig(epochs=epochs, schedule=sched, batch_size=profile["batch"], momentum=r["momentum"],
                     weight_decay=r["weight_decay"], augment=Augment(4, 0, True), seed=seed)
    return ex.RunSpec(alias=f"ch0-{ex.slug(label)}", label=label, method=r["method"], hp=hp, model="resnet18",
                      model_kw=dict(profile["model"]), config=tc, source=r["source"])


def config(profile: str = "smoke", seed: int = 0, device: str = "auto", data_dir: str | None = None,
           out_dir: str | None = None, overrides: dict | None = None) -> Config:
    s = settings(profile, seed, device, data_dir, out_dir)
    if s.profile not in PROFILES:
        raise ConfigError(f"chapter 0 has no {s.profile!r} profile; valid: {', '.join(PROFILES)}")
    prof = PROFILES[s.profile]
    bad = set(overrides or {}) - set(RECIPES)
    if bad:
        raise ConfigError(f"overrides name unknown rows {sorted(bad)}; valid: {', '.join(RECIPES)}")
    cfg = Config(s=s, profile=prof, specs={k: make_spec(k, prof, seed, overrides) for k in RECIPES})
    if s.profile in NOTES:
        cfg.notes.append(NOTES[s.profile])
    if overrides:
        cfg.notes.append(f"hyperparameters overridden by the notebook: {overrides}")
    cfg.notes.append("Evaluation uses the first 1 000 CIFAR-10 test images (the rest of the test split is not "
                     "available losslessly in this project).")
    return cfg


def report(cfg: Config) -> Report:
    return Report(PAPER, cfg.s.profile, cfg.s.out_dir, "cifar10", cfg.n_test, cfg.s.seed, str(cfg.s.device))


def load_data(cfg: Config):
    train, _, test = cifar10_splits(cfg.s, cfg.n_train, cfg.n_test)
    return train, test


def train_row(cfg: Config, label: str, train, progress: bool = True) -> ex.Trained:
    """Train one RECIPES row (or reopen its finished run)."""
    return ex.train(cfg.specs[label], train, cfg.s.checkpoint_dir, device=cfg.s.device, progress=progress)


def train_standard(cfg: Config, train) -> ex.Trained:
    return train_row(cfg, "Standard", train)


def train_pgd_at(cfg: Config, train) -> ex.Trained:
    return train_row(cfg, "PGD-AT", train)


def adversarial_examples(cfg: Config, model, test, n: int = 8, eps: float = EPS):
    """FGSM and PGD examples of the first ``n`` test images: images, predictions, and the figure."""
    x, y = test.images(cfg.s.device)[:n], test.y[:n].to(cfg.s.device)
    torch.manual_seed(cfg.s.seed)
    adv = {"FGSM": FGSM(eps).perturb(model, x, y), f"PGD-{cfg.pgd_steps}": PGD(eps, eps / 4, cfg.pgd_steps)
           .perturb(model, x, y)}
    preds = {"clean": predict(model, x), **{k: predict(model, v) for k, v in adv.items()}}
    fig = plotting.example_grid(x, y, adv, preds, test.classes, eps)
    return fig


def _evaluations(cfg: Config, run: ex.Trained, test, e: int, desc: str) -> list:
    """The cached evaluations of one run at ε = e/255: FGSM and PGD on all test images, AutoAttack with them or on
    the first ``aa_n`` images when the profile says so (its cost on a CPU)."""
    eps, aa_n = e / 255, cfg.profile.get("aa_n")
    attacks = {"FGSM": FGSM(eps), f"PGD-{cfg.pgd_steps}": PGD(eps, eps / 4, cfg.pgd_steps)} if e > 0 else {}
    separate = e in cfg.aa_eps and aa_n is not None and aa_n < len(test)
    if e in cfg.aa_eps and not separate:
        attacks["AutoAttack"] = _autoattack(cfg, eps)
    kw = dict(batch_size=cfg.eval_batch, seed=cfg.s.seed, device=cfg.s.device)
    out = [ex.evaluate_cached(run, attacks, test, desc=f"{desc} ε={e}/255", **kw)]
    if separate:
        out.append(ex.evaluate_cached(run, {"AutoAttack": _autoattack(cfg, eps)}, test, n=aa_n,
                                      desc=f"{desc} AutoAttack ε={e}/255", **kw))
    return out


def eps_sweep(cfg: Config, runs: dict[str, ex.Trained], test) -> pd.DataFrame:
    """Accuracy of each trained run under FGSM, PGD and AutoAttack over the ε grid (tidy DataFrame with 95 % CIs),
    every evaluation cached beside its checkpoint (a resumed run does not redo it).

    At ε = 0 every attack's accuracy is the clean accuracy, so each curve starts there."""
    names = ["FGSM", f"PGD-{cfg.pgd_steps}", "AutoAttack"]
    rows = []
    for model_name, run in runs.items():
        for e in cfg.eps_grid:
            results = _evaluations(cfg, run, test, e, model_name)
            for res in results:
                acc = res.accuracies()
                for atk in names:
                    key = "clean" if e == 0 else atk
                    if key not in acc or (key == "clean" and res is not results[0]):
                        continue
                    lo, hi = wilson_interval(int(res.flags[key].sum()), res.n)
                    rows.append({"model": model_name, "attack": atk, "eps_255": e, "accuracy": acc[key],
                                 "ci_low": lo, "ci_high": hi, "seconds": res.seconds.get(key), "n": res.n})
    return pd.DataFrame(rows)


# The chapter's claims (the textbook facts it demonstrates), checked on our runs with paired intervals.
CLAIMS = [
    Claim("pgd_stronger", "PGD is a stronger attack than FGSM (undefended model)", "less", "pgd20", "Standard@pgd20",
          "Standard@fgsm", source="Madry et al. (2018)"),
    Claim("pgd_stronger_at", "PGD is a stronger attack than FGSM (PGD-AT model)", "less", "pgd20", "PGD-AT@pgd20",
          "PGD-AT@fgsm", source="Madry et al. (2018)"),
    Claim("at_robust", "Adversarial training buys robustness: PGD-AT beats Standard under PGD at 8/255", "greater",
          "pgd20", "PGD-AT", "Standard", paper="NuAT table: PGD-AT 51.5 % vs Normal 0.0 % (PGD-20)",
          source="NuAT paper, table 1"),
    Claim("at_clean_cost", "…at a price in clean accuracy: PGD-AT is below Standard on clean images", "less", "clean",
          "PGD-AT", "Standard", paper="NuAT table: 82.2 % vs 95.0 %", source="NuAT paper, table 1"),
    Claim("standard_broken", "An undefended model is broken by PGD at 8/255 (below 5 %)", "below", "pgd20", "Standard",
          value=5.0, paper="Normal: 0.0 %", source="NuAT paper, table 1"),
    Claim("at_cost", "PGD-AT costs t + 1 times standard training per epoch (measured passes)", "cost_ratio_at_most",
          "passes", "PGD-AT", "Standard", value=11.0, source="ABNN slides: 2N(t + 1); value set to t + 1 per profile"),
]


def claims(cfg: Config, runs: dict[str, ex.Trained], test) -> pd.DataFrame:
    """CLAIMS checked: the flags come from the sweep's cached evaluations at ε = 8/255 (nothing is recomputed)."""
    flags = {}
    for name, run in runs.items():
        res = _evaluations(cfg, run, test, 8, name)[0]
        for col, key in (("clean", "clean"), (f"PGD-{cfg.pgd_steps}", "pgd20"), ("FGSM", "fgsm")):
            flags[(name, key)] = res.flags[col].tolist()
            flags[(f"{name}@{key}", "pgd20")] = res.flags[col].tolist()
    t = cfg.at_steps
    cost = {name: run.passes_per_sample for name, run in runs.items()}.get
    listed = [dataclasses.replace(c, value=t + 1 + 1e-9) if c.key == "at_cost" else c for c in CLAIMS]
    return claims_table(listed, lambda row, metric: flags.get((row, metric)), cost)


def _autoattack(cfg: Config, eps: float) -> AutoAttack:
    version, attacks, budget = cfg.aa
    return AutoAttack(eps, version=version, attacks=attacks, seed=cfg.s.seed, batch_size=cfg.eval_batch,
                      apgd_budget=budget)


def headline(cfg: Config, runs: dict[str, ex.Trained], sweep: pd.DataFrame, rep: Report):
    """The chapter's main table at ε = 8/255 from the sweep, recorded in the report (AutoAttack with its own
    interval when it ran on fewer images)."""
    table = "cifar10_resnet18"
    for name, r in runs.items():
        sub = sweep[(sweep.model == name) & (sweep.eps_255.isin([0, 8]))]

        def get(a, e, col="accuracy"):
            hit = sub[(sub.attack == a) & (sub.eps_255 == e)]
            return float(hit[col].iloc[0]) if len(hit) else None
        metrics = {"clean": get("FGSM", 0), "fgsm": get("FGSM", 8), "pgd20": get(f"PGD-{cfg.pgd_steps}", 8),
                   "aa": get("AutoAttack", 8)}
        note = " ".join(cfg.notes[:1])
        if cfg.pgd_steps != 20:
            note += f" The 'pgd20' column holds PGD-{cfg.pgd_steps} in this profile."
        if name == "PGD-AT" and cfg.at_steps != 10:
            note += f" PGD-AT trained with t = {cfg.at_steps} (the paper row uses t = 10)."
        ci = {}
        aa_n = get("AutoAttack", 8, "n")
        if aa_n is not None and int(aa_n) != cfg.n_test:
            note += f" AutoAttack on the first {int(aa_n)} test images."
            ci["aa"] = (get("AutoAttack", 8, "ci_low"), get("AutoAttack", 8, "ci_high"))
        rep.add_row(table, name, metrics, cost_passes=r.passes_per_sample, train_s=r.train_seconds,
                    epochs=r.epochs, note=note.strip(), ci=ci, precision=r.result.hyperparameters.get("resolved"))
    return rep.compare(table)


COST_STEPS = (0, 1, 2, 5, 10)            # attack steps t for the cost table
SLIDES_N = {0: 2.0, 5: 12.0}             # the ABNN slides' numbers: standard 2N, PGD-AT at t = 5 12N


def measure_costs(cfg: Config, train, rep: Report | None = None) -> pd.DataFrame:
    """Train a few batches with t = 0 (standard), 1, 2, 5, 10 attack steps and read the cost meter.

    Returns measured N per sample beside the method's own statement (``PGDAT.derived_passes``: 2(t + 1)), and
    seconds per batch on this hardware (after one untimed warm-up batch, so one-off start-up work is not counted).
    """
    rows = []
    for t in COST_STEPS:
        label = "Standard" if t == 0 else f"PGD-AT (t = {t})"
        tc = TrainConfig(epochs=1, batch_size=cfg.batch, schedule={"name": "constant", "lr": 0.01},
                         augment=Augment(), seed=cfg.s.seed)
        spec = ex.RunSpec(alias=f"ch0-cost-t{t}", label=label, method="standard" if t == 0 else "pgd_at",
                          hp={} if t == 0 else {"eps": EPS, "alpha": 2 / 255, "steps": t}, model="resnet18",
                          model_kw=dict(cfg.model), config=tc)
        m = ex.measure_cost(spec, train, batches=cfg.cost_batches, device=cfg.s.device)
        rows.append({"method": label, "t": t, "measured_N": m["measured_N"], "formula_N": m["derived_N"],
                     "seconds_per_batch": m["seconds_per_batch"], "batch_size": tc.batch_size})
        if rep is not None:
            slides = SLIDES_N.get(t)
            rep.add_row("cost", label, {}, cost_passes=m["measured_N"],
                        train_s=m["seconds_per_batch"] * cfg.cost_batches, epochs=None,
                        note=f"cost only: {cfg.cost_batches} batches of {tc.batch_size}; formula 2N(t+1) = "
                             f"{m['derived_N']:g}N" + (f"; slides: {slides:.0f}N" if slides else ""),
                        formula_passes=m["derived_N"], paper_cost_passes=slides)
    df = pd.DataFrame(rows)
    df["time_vs_standard"] = df["seconds_per_batch"] / df.loc[df.t == 0, "seconds_per_batch"].iloc[0]
    return df


def plot_costs(costs: pd.DataFrame):
    """Measured passes per sample beside the formula 2N(t + 1), and measured time per batch relative to standard."""
    import matplotlib.pyplot as plt
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    xs = range(len(costs))
    a.bar([i - 0.2 for i in xs], costs["measured_N"], width=0.4, label="measured (cost meter)")
    a.bar([i + 0.2 for i in xs], costs["formula_N"], width=0.4, label="formula 2N(t + 1)", alpha=0.6)
    a.set_xticks(list(xs), [f"t = {t}" for t in costs["t"]])
    a.set_ylabel("network passes per sample (N)")
    a.set_title("Cost in passes")
    a.legend(fontsize=8)
    b.plot(costs["formula_N"] / 2, costs["time_vs_standard"], marker="o", label="measured time")
    b.plot(costs["formula_N"] / 2, costs["formula_N"] / 2, ls="--", color="gray", label="passes ratio (t + 1)")
    b.set_xlabel("passes relative to standard training (t + 1)")
    b.set_ylabel("time per batch relative to standard")
    b.set_title("Cost in time")
    b.legend(fontsize=8)
    fig.tight_layout()
    return fig
