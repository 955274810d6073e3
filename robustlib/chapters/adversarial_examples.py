"""Chapter 0 — adversarial examples, and what robustness costs.

A standard CIFAR-10 ResNet-18, its FGSM/PGD adversarial examples, robust accuracy against ε for FGSM, PGD and
AutoAttack, a PGD-AT model trained on the min–max objective, and the measured training cost in network passes N
beside the ABNN slides' formula 2N(t + 1).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
import torch

from .. import plotting
from ..attacks import FGSM, PGD, AutoAttack, predict
from ..data import Augment
from ..evaluation import evaluate
from ..methods import PGDAT, Standard
from ..models import build_model
from ..report import Report
from ..schedules import Piecewise, triangular
from ..stats import wilson_interval
from ..training import TrainConfig, Trainer, TrainResult
from .common import RunSettings, by_profile, cifar10_splits, settings, train_cached

PAPER = "adversarial_examples"
EPS = 8 / 255


@dataclass
class Config:
    s: RunSettings
    n_train: int | None
    n_test: int
    model: dict
    standard: TrainConfig
    pgd_at: TrainConfig
    at_steps: int
    eps_grid: tuple[int, ...]            # ε × 255 for the sweep
    pgd_steps: int
    aa_eps: tuple[int, ...]              # ε × 255 at which AutoAttack runs
    aa_version: str
    aa_attacks: tuple[str, ...] | None
    aa_apgd_budget: tuple[int, int] | None
    cost_steps: tuple[int, ...]          # attack steps t for the cost table
    cost_batches: int
    eval_batch: int
    notes: list[str] = field(default_factory=list)

    def table(self) -> pd.DataFrame:
        """The configuration as a two-column table for the notebook."""
        rows = {
            "profile": self.s.profile, "device": str(self.s.device), "seed": self.s.seed,
            "training images": self.n_train or "all 50 000", "test images": self.n_test,
            "model": f"ResNet-18 {self.model}",
            "standard training": f"{self.standard.epochs} epochs, batch {self.standard.batch_size}, "
                                 f"{self.standard.schedule.describe()}",
            "PGD-AT": f"t = {self.at_steps} steps of 2/255, ε = 8/255, {self.pgd_at.epochs} epochs",
            "ε grid (×1/255)": ", ".join(map(str, self.eps_grid)),
            "PGD for the sweep": f"{self.pgd_steps} steps of ε/4, one uniform random start",
            "AutoAttack": f"{self.aa_version}{' ' + '+'.join(self.aa_attacks) if self.aa_attacks else ''} at ε = "
                          + ", ".join(f"{e}/255" for e in self.aa_eps),
        }
        return pd.DataFrame({"setting": list(rows), "value": [str(v) for v in rows.values()]}).set_index("setting")


def config(profile: str = "smoke", seed: int = 0, device: str = "auto", data_dir: str | None = None,
           out_dir: str | None = None) -> Config:
    s = settings(profile, seed, device, data_dir, out_dir)
    p = s.profile
    model = by_profile(p, {"width": 8, "blocks": (1, 1, 1, 1)}, {}, {})
    std_epochs = by_profile(p, 3, 15, 200)
    at_epochs = by_profile(p, 2, 10, 200)
    std_sched = by_profile(p, triangular(0.1, std_epochs), triangular(0.1, std_epochs),
                           Piecewise(0.1, [100, 150], 0.1))
    at_sched = by_profile(p, triangular(0.1, at_epochs), triangular(0.1, at_epochs), Piecewise(0.1, [100, 150], 0.1))
    batch = by_profile(p, 64, 128, 128)
    common = dict(batch_size=batch, momentum=0.9, weight_decay=5e-4, augment=Augment(4, 0, True), seed=seed)
    cfg = Config(
        s=s,
        n_train=by_profile(p, 1000, None, None),
        n_test=by_profile(p, 64, 1000, 1000),
        model=model,
        standard=TrainConfig(epochs=std_epochs, schedule=std_sched, **common),
        pgd_at=TrainConfig(epochs=at_epochs, schedule=at_sched, **common),
        at_steps=by_profile(p, 2, 5, 10),
        eps_grid=by_profile(p, (0, 8, 32), (0, 1, 2, 4, 6, 8, 12, 16), (0, 1, 2, 4, 6, 8, 12, 16)),
        pgd_steps=by_profile(p, 5, 20, 20),
        aa_eps=by_profile(p, (8,), (2, 4, 8), (1, 2, 4, 8, 16)),
        aa_version=by_profile(p, "custom", "standard", "standard"),
        aa_attacks=by_profile(p, ("apgd-ce",), None, None),
        aa_apgd_budget=by_profile(p, (20, 1), None, None),
        cost_steps=(0, 1, 2, 5, 10),
        cost_batches=by_profile(p, 2, 5, 5),
        eval_batch=by_profile(p, 64, 1000, 1000),
    )
    if p == "smoke":
        cfg.notes.append("smoke profile: a width-8 ResNet-18 with one block per stage, 1 000 training images, "
                         "64 test images, PGD-5, AutoAttack reduced to APGD-CE with 20 iterations. The numbers only show that the "
                         "pipeline runs.")
    if p == "quick":
        cfg.notes.append("quick profile: 15 epochs of standard training and 10 epochs of PGD-AT with t = 5 "
                         "(triangular learning rate), instead of 200 epochs and t = 10.")
    cfg.notes.append("Evaluation uses the first 1 000 CIFAR-10 test images (the rest of the test split is not "
                     "available losslessly in this project).")
    return cfg


def report(cfg: Config) -> Report:
    return Report(PAPER, cfg.s.profile, cfg.s.out_dir, "cifar10", cfg.n_test, cfg.s.seed, str(cfg.s.device))


def load_data(cfg: Config):
    train, _, test = cifar10_splits(cfg.s, cfg.n_train, cfg.n_test)
    return train, test


def build(cfg: Config):
    return build_model("resnet18", **cfg.model)


def train_standard(cfg: Config, train) -> TrainResult:
    return train_cached(cfg.s, "ch0-standard", lambda: build(cfg), Standard(), train, cfg.standard)


def train_pgd_at(cfg: Config, train) -> TrainResult:
    method = PGDAT(EPS, 2 / 255, cfg.at_steps, name="PGD-AT")
    return train_cached(cfg.s, f"ch0-pgdat{cfg.at_steps}", lambda: build(cfg), method, train, cfg.pgd_at)


def adversarial_examples(cfg: Config, model, test, n: int = 8, eps: float = EPS):
    """FGSM and PGD examples of the first ``n`` test images: images, predictions, and the figure."""
    x, y = test.images(cfg.s.device)[:n], test.y[:n].to(cfg.s.device)
    torch.manual_seed(cfg.s.seed)
    adv = {"FGSM": FGSM(eps).perturb(model, x, y), f"PGD-{cfg.pgd_steps}": PGD(eps, eps / 4, cfg.pgd_steps)
           .perturb(model, x, y)}
    preds = {"clean": predict(model, x), **{k: predict(model, v) for k, v in adv.items()}}
    fig = plotting.example_grid(x, y, adv, preds, test.classes, eps)
    return fig


def eps_sweep(cfg: Config, models: dict, test) -> pd.DataFrame:
    """Accuracy of each model under FGSM, PGD and AutoAttack over the ε grid (tidy DataFrame with 95 % CIs).

    At ε = 0 every attack's accuracy is the clean accuracy, so each curve starts there."""
    names = ["FGSM", f"PGD-{cfg.pgd_steps}", "AutoAttack"]
    rows = []
    for model_name, model in models.items():
        for e in cfg.eps_grid:
            eps = e / 255
            attacks = {}
            if e > 0:
                attacks = {"FGSM": FGSM(eps), f"PGD-{cfg.pgd_steps}": PGD(eps, eps / 4, cfg.pgd_steps)}
                if e in cfg.aa_eps:
                    attacks["AutoAttack"] = _autoattack(cfg, eps)
            torch.manual_seed(cfg.s.seed)
            res = evaluate(model, test, attacks, batch_size=cfg.eval_batch, device=cfg.s.device,
                           desc=f"{model_name} ε={e}/255")
            acc = res.accuracies()
            for atk in names:
                key = "clean" if e == 0 else atk
                if key not in acc:
                    continue
                lo, hi = wilson_interval(int(res.flags[key].sum()), res.n)
                rows.append({"model": model_name, "attack": atk, "eps_255": e, "accuracy": acc[key],
                             "ci_low": lo, "ci_high": hi, "seconds": res.seconds.get(key), "n": res.n})
    return pd.DataFrame(rows)


def _autoattack(cfg: Config, eps: float) -> AutoAttack:
    return AutoAttack(eps, version=cfg.aa_version, attacks=cfg.aa_attacks, seed=cfg.s.seed,
                      batch_size=cfg.eval_batch, apgd_budget=cfg.aa_apgd_budget)


def headline(cfg: Config, models: dict, sweep: pd.DataFrame, results: dict[str, TrainResult], rep: Report):
    """The chapter's main table at ε = 8/255 from the sweep, recorded in the report."""
    table = "cifar10_resnet18"
    for name, model in models.items():
        sub = sweep[(sweep.model == name) & (sweep.eps_255.isin([0, 8]))]
        get = lambda a, e: float(sub[(sub.attack == a) & (sub.eps_255 == e)].accuracy.iloc[0]) if len(  # noqa: E731
            sub[(sub.attack == a) & (sub.eps_255 == e)]) else None
        metrics = {"clean": get("FGSM", 0), "fgsm": get("FGSM", 8), "pgd20": get(f"PGD-{cfg.pgd_steps}", 8),
                   "aa": get("AutoAttack", 8)}
        r = results[name]
        note = " ".join(cfg.notes[:1])
        if cfg.pgd_steps != 20:
            note += f" The 'pgd20' column holds PGD-{cfg.pgd_steps} in this profile."
        if name == "PGD-AT" and cfg.at_steps != 10:
            note += f" PGD-AT trained with t = {cfg.at_steps} (the paper row uses t = 10)."
        rep.add_row(table, name, metrics, cost_passes=r.passes_per_sample, train_s=r.train_seconds,
                    epochs=r.epochs, note=note.strip())
    return rep.compare(table)


def measure_costs(cfg: Config, train, rep: Report | None = None) -> pd.DataFrame:
    """Train a few batches with t = 0 (standard), 1, 2, 5, 10 attack steps and read the cost meter.

    Returns measured N per sample, the formula 2N(t + 1), and seconds per batch on this hardware (after one
    untimed warm-up batch, so one-off start-up work is not counted).
    """
    rows = []
    for t in cfg.cost_steps:
        label = "Standard" if t == 0 else f"PGD-AT (t = {t})"
        runs = []
        for batches in (1, cfg.cost_batches):  # the first run only warms up kernels and caches
            method = Standard() if t == 0 else PGDAT(EPS, 2 / 255, t)
            tc = TrainConfig(epochs=1, batch_size=cfg.standard.batch_size, max_batches=batches,
                             schedule={"name": "constant", "lr": 0.01}, augment=Augment(), seed=cfg.s.seed)
            runs.append(Trainer(build(cfg), method, train, tc, device=cfg.s.device, progress_bar=False).fit())
        res = runs[-1]
        measured = res.cost["total"]
        rows.append({"method": label, "t": t, "measured_N": measured, "formula_N": 2 * (t + 1),
                     "seconds_per_batch": res.train_seconds / cfg.cost_batches, "batch_size": tc.batch_size})
        if rep is not None:
            slides = {0: 2.0, 5: 12.0}.get(t)
            rep.add_row("cost", label, {}, cost_passes=measured, train_s=res.train_seconds, epochs=None,
                        note=f"cost only: {cfg.cost_batches} batches of {tc.batch_size}; formula 2N(t+1) = "
                             f"{2 * (t + 1)}N" + (f"; slides: {slides:.0f}N" if slides else ""),
                        formula_passes=2 * (t + 1), paper_cost_passes=slides)
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
