"""Chapter — AdvProp: adversarial examples improve image recognition (Xie et al., CVPR 2020), a CIFAR-10 analogue.

The paper trains EfficientNets on ImageNet with an auxiliary BatchNorm for adversarial examples and reports higher
*clean* accuracy, more for bigger models. This chapter shows the paper's ImageNet numbers as the reference and
reproduces the idea at a scale one GPU can run: ResNet-18 at two or three widths on CIFAR-10, with

* ``Vanilla`` (standard training), ``Mixed (shared BN)`` (clean + adversarial images through one BN, the paper's
  motivation), ``AdvProp`` (the same images through main | auxiliary BNs) and ``PGD-AT`` (Madry, for reference);
* several seeds per row (mean ± sd), since the expected clean gain at this scale is about the size of seed noise;
* a CIFAR-10-C-style corruption suite generated from the test images (:mod:`robustlib.corruptions`);
* PGD robustness of both BN branches, an attack-strength × width ablation, and the main vs auxiliary BN statistics.

The runs are split over *part* notebooks (each ≤ 10 quick-profile minutes on one H200) that write
``advprop__<part>.json`` with one record per trained model; the chapter notebook gathers them (:func:`gather`).
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
import torch

from .. import corruptions as corr
from .. import reported, results
from ..attacks import PGD
from ..data import Augment
from ..errors import ConfigError
from ..evaluation import evaluate
from ..methods import PGDAT, Standard
from ..methods.advprop import AdvProp, MixedAT, attacker, bn_route, dual_batchnorms, dualize, is_dual
from ..models import build_model, num_parameters
from ..report import Report
from ..schedules import Piecewise, triangular
from ..stats import mean_sd, newcombe_difference, t95, wilson_interval
from ..training import TrainConfig, TrainResult
from ..utils import atomic_save, derive_seed, fingerprint, load_checkpoint
from .common import RunSettings, by_profile, cifar10_splits, settings, train_cached

PAPER = "advprop"
LABELS = {"vanilla": "Vanilla", "mixed": "Mixed (shared BN)", "advprop": "AdvProp", "pgdat": "PGD-AT"}
METHODS = tuple(LABELS)
HEADLINE_METRICS = ("clean", "clean_aux", "corruption_mean", "pgd20", "pgd20_aux", "pgd20_eps1", "pgd20_eps1_aux")
PARTS = ("large", "small", "strength", "reference")
PART_TITLES = {
    "large": "the full-width ResNet-18: Vanilla, Mixed (shared BN) and AdvProp over seeds",
    "small": "the narrow ResNet-18: every row and the attack-strength sweep",
    "strength": "the attack-strength sweep at full width",
    "reference": "PGD-AT at full width, and Mixed (shared BN) under the strongest attacker",
}
# ------------------------------------------------------------------------------------------------- runs


@dataclass(frozen=True)
class Run:
    """One trained model: method, ResNet-18 width, attacker ε (×255) and seed."""

    method: str
    width: int
    seed: int
    eps: int = 0          # Mixed/AdvProp: the targeted attacker's ε·255; PGD-AT: its ε·255; Vanilla: 0

    def __post_init__(self):
        if self.method not in LABELS:
            raise ConfigError(f"unknown method {self.method!r}; valid: {', '.join(LABELS)}")

    @property
    def key(self) -> str:
        e = f"-e{self.eps}" if self.method != "vanilla" else ""
        return f"{PAPER}-{self.method}-w{self.width}{e}-s{self.seed}"

    @property
    def label(self) -> str:
        return LABELS[self.method]


@dataclass
class Config:
    s: RunSettings
    n_train: int | None
    n_test: int
    widths: tuple[int, ...]               # ResNet-18 first-stage widths (64 = the standard ResNet-18)
    blocks: tuple[int, ...]               # blocks per stage ((2, 2, 2, 2) = ResNet-18)
    seeds: tuple[int, ...]
    eps: int                              # headline attacker ε·255 for Mixed and AdvProp
    strength_eps: tuple[int, ...]         # AdvProp attacker sweep (ε·255) for the ablation
    strength_mixed_eps: tuple[int, ...]   # Mixed (shared BN) at these ε too
    strength_seeds: tuple[int, ...]
    strength_widths: tuple[int, ...]
    pgdat_widths: tuple[int, ...]
    pgdat_eps: int
    pgdat_steps: int
    train: TrainConfig
    eval_pgd_steps: int
    eval_eps: tuple[int, ...]             # PGD evaluation ε·255 (8 → key "pgd20", others "pgd20_eps<e>")
    corruptions: tuple[str, ...]
    severities: tuple[int, ...]
    corruption_seed: int
    eval_batch: int
    parts: dict[str, tuple[Run, ...]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def large(self) -> int:
        return max(self.widths)

    @property
    def small(self) -> int:
        return min(self.widths)

    def runs(self) -> list[Run]:
        out: list[Run] = []
        for p in PARTS:
            out += [r for r in self.parts.get(p, ()) if r not in out]
        return out

    def headline_run(self, method: str, width: int, seed: int) -> Run:
        eps = {"vanilla": 0, "pgdat": self.pgdat_eps}.get(method, self.eps)
        return Run(method, width, seed, eps)

    def describe(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("s", "notes", "parts",
                                                                                                 "train")}
        d["train"] = self.train.describe()
        d["parts"] = {k: [r.key for r in v] for k, v in self.parts.items()}
        d["profile"], d["seed"] = self.s.profile, self.s.seed
        return d

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.describe())

    def table(self) -> pd.DataFrame:
        """The configuration as a two-column table for the notebook."""
        tc = self.train
        sched = tc.schedule.describe()
        steps, alpha = attacker(self.eps)
        rows = {
            "profile": self.s.profile, "device": str(self.s.device), "seeds": ", ".join(map(str, self.seeds)),
            "training images": self.n_train or "all 50 000", "test images": self.n_test,
            "model": f"ResNet-18 (blocks {self.blocks}) at widths {', '.join(map(str, self.widths))}"
                     f" ({', '.join(f'{model_params(self, w) / 1e6:.2f} M' for w in self.widths)} parameters)",
            "training": f"{tc.epochs} epochs, batch {tc.batch_size}, SGD momentum {tc.momentum}, weight decay "
                        f"{tc.weight_decay}, "
                        f"{'triangular' if sched['name'] == 'cyclic' else sched['name']} learning rate (peak "
                        f"{sched.get('max_lr', sched.get('lr'))}), "
                        "random crop + flip",
            "AdvProp / Mixed attacker": f"targeted PGD-{steps} towards a random wrong label, ε = {self.eps}/255, "
                                        f"step {alpha * 255:g}/255, uniform random start, BN running statistics "
                                        "(aux BNs for AdvProp); loss (L_clean + L_adv)/2",
            "attack-strength sweep": "AdvProp at ε = " + ", ".join(
                f"{e}/255 (PGD-{attacker(e)[0]})" for e in (self.eps,) + self.strength_eps)
                + "; Mixed at ε = " + ", ".join(f"{e}/255" for e in (self.eps,) + self.strength_mixed_eps)
                + f"; widths {', '.join(map(str, self.strength_widths))}; seeds "
                  f"{', '.join(map(str, self.strength_seeds))} beyond ε = {self.eps}/255",
            "PGD-AT": f"ε = {self.pgdat_eps}/255, {self.pgdat_steps} steps of 2.5ε/{self.pgdat_steps}, uniform start, "
                      f"widths {', '.join(map(str, self.pgdat_widths))}",
            "evaluation": f"clean (main and aux BNs); PGD-{self.eval_pgd_steps} at ε = "
                          + ", ".join(f"{e}/255" for e in self.eval_eps) + " on both branches",
            "corruptions": f"{len(self.corruptions)} corruptions × severities {self.severities} "
                           f"(CIFAR-10-C recipe, seed {self.corruption_seed})",
            "parts": "; ".join(f"{p}: {len(v)} runs" for p, v in self.parts.items()),
        }
        return pd.DataFrame({"setting": list(rows), "value": [str(v) for v in rows.values()]}).set_index("setting")


def config(profile: str = "smoke", seed: int = 0, device: str = "auto", data_dir: str | None = None,
           out_dir: str | None = None) -> Config:
    s = settings(profile, seed, device, data_dir, out_dir)
    p = s.profile
    epochs = by_profile(p, 1, 6, 200)
    batch = by_profile(p, 64, 256, 128)
    lr = by_profile(p, 0.1, 0.2, 0.1)
    sched = by_profile(p, triangular(lr, epochs), triangular(lr, epochs), Piecewise(0.1, [100, 150], 0.1))
    n_seeds = by_profile(p, 2, 3, 3)
    seeds = tuple(seed + i for i in range(n_seeds))
    cfg = Config(
        s=s,
        n_train=by_profile(p, 256, None, None),
        n_test=by_profile(p, 100, 1000, 1000),
        widths=by_profile(p, (4, 8), (16, 64), (16, 32, 64)),
        blocks=by_profile(p, (1, 1, 1, 1), (2, 2, 2, 2), (2, 2, 2, 2)),
        seeds=seeds,
        eps=1,
        strength_eps=by_profile(p, (8,), (2, 4, 8), (2, 4, 8)),
        strength_mixed_eps=(8,),
        strength_seeds=by_profile(p, seeds[:1], seeds[:1], seeds),
        strength_widths=by_profile(p, (8,), (16, 64), (16, 32, 64)),
        pgdat_widths=by_profile(p, (8,), (16, 64), (16, 32, 64)),
        pgdat_eps=8,
        pgdat_steps=by_profile(p, 2, 3, 7),
        train=TrainConfig(epochs=epochs, batch_size=batch, schedule=sched, momentum=0.9, weight_decay=5e-4,
                          augment=Augment(4, 0, True), seed=seed),
        eval_pgd_steps=by_profile(p, 2, 20, 20),
        eval_eps=(1, 8),
        corruptions=corr.standard_corruptions(),
        severities=by_profile(p, (3,), corr.SEVERITIES, corr.SEVERITIES),
        corruption_seed=0,
        eval_batch=by_profile(p, 500, 1000, 1000),
    )
    cfg.parts = plan_parts(cfg)
    if p == "smoke":
        cfg.notes.append("smoke profile: ResNet-18s of width 4 and 8 with one block per stage, 256 training images, "
                         "1 epoch, 2 seeds, 100 test images, PGD-2 instead of PGD-20 (the 'pgd20' keys), corruption "
                         "severity 3 only, the attack-strength sweep and PGD-AT at width 8 only. The numbers "
                         "only show that the pipeline runs.")
    if p == "quick":
        cfg.notes.append(f"quick profile: ResNet-18 at widths 16 and 64, {epochs} epochs at batch {batch} with a "
                         f"triangular learning rate (peak {lr}) instead of long schedules; 3 seeds per table row; the "
                         "attack-strength sweep (ε = 2, 4, 8/255) with one seed; PGD-AT with 3 steps.")
    if p == "paper":
        cfg.notes.append("paper profile: the protocol of this project's analogue at full length (200 epochs, step "
                         "learning rate), widths 16, 32, 64, 3 seeds everywhere, PGD-AT with 7 steps. The paper "
                         "itself trains EfficientNets on ImageNet, which this project cannot (see the chapter).")
    cfg.notes.append("Evaluation uses the first 1 000 CIFAR-10 test images (the rest of the test split is not "
                     "available losslessly in this project); no hyperparameter or checkpoint is chosen on them: every "
                     "model is the one at the end of its fixed schedule.")
    cfg.notes.append("Loss weighting: (L_clean + L_adv)/2 (the reimplementations' mean; the paper's sum is the same "
                     "up to a factor 2 in learning rate). AdvProp attacks through the auxiliary BNs in eval mode "
                     "(running statistics), as Fast AdvProp describes the original.")
    return cfg


def plan_parts(cfg: Config) -> dict[str, tuple[Run, ...]]:
    """Which runs each part notebook trains (balanced so that each fits the 10-minute quick budget)."""
    L, S = cfg.large, cfg.small
    head = ("vanilla", "mixed", "advprop")
    large = tuple(cfg.headline_run(m, L, s) for s in cfg.seeds for m in head)
    small = tuple(cfg.headline_run(m, w, s) for w in sorted(cfg.widths) if w != L for s in cfg.seeds
                  for m in head + (("pgdat",) if w in cfg.pgdat_widths else ()))
    sweep = lambda w: tuple(Run("advprop", w, s, e) for e in cfg.strength_eps for s in cfg.strength_seeds  # noqa
                            if e != cfg.eps)
    mixed = lambda w: tuple(Run("mixed", w, s, e) for e in cfg.strength_mixed_eps for s in cfg.strength_seeds  # noqa
                            if e != cfg.eps)
    small += tuple(r for w in sorted(cfg.strength_widths) if w != L for r in sweep(w) + mixed(w))
    strength = sweep(L) if L in cfg.strength_widths else ()
    reference = (tuple(cfg.headline_run("pgdat", L, s) for s in cfg.seeds) if L in cfg.pgdat_widths else ()) \
        + (mixed(L) if L in cfg.strength_widths else ())
    return {"large": large, "small": small, "strength": strength, "reference": reference}


def report(cfg: Config, part: str | None = None) -> Report:
    if part is not None and part not in PARTS:
        raise ConfigError(f"unknown part {part!r}; valid: {', '.join(PARTS)}")
    rep = Report(PAPER, cfg.s.profile, cfg.s.out_dir, "cifar10", cfg.n_test, cfg.s.seed, str(cfg.s.device), part=part)
    rep.extra["config_fingerprint"] = cfg.fingerprint
    return rep


def load_data(cfg: Config):
    train, _, test = cifar10_splits(cfg.s, cfg.n_train, cfg.n_test)
    return train, test


def build(cfg: Config, run: Run) -> torch.nn.Module:
    model = build_model("resnet18", width=run.width, blocks=cfg.blocks)
    return dualize(model) if run.method == "advprop" else model


def model_params(cfg: Config, width: int) -> int:
    """Parameters of the plain network at ``width`` (what is exported and tested; the aux BNs add < 0.1 %)."""
    return num_parameters(build_model("resnet18", width=width, blocks=cfg.blocks))


def method_for(cfg: Config, run: Run):
    if run.method == "vanilla":
        return Standard()
    if run.method == "pgdat":
        e = run.eps / 255
        return PGDAT(e, 2.5 * e / cfg.pgdat_steps, cfg.pgdat_steps, start="uniform", name="PGD-AT")
    steps, alpha = attacker(run.eps)
    cls = AdvProp if run.method == "advprop" else MixedAT
    return cls(run.eps / 255, steps, alpha, bn_mode="eval", reduction="mean")


def attack_steps(cfg: Config, run: Run) -> int:
    return {"vanilla": 0, "pgdat": cfg.pgdat_steps}.get(run.method, attacker(run.eps)[0] if run.eps else 0)


def formula_passes(cfg: Config, run: Run) -> int:
    """The derived cost in N per sample: 2 (vanilla), 2t + 4 (Mixed, AdvProp), 2(t + 1) (PGD-AT)."""
    t = attack_steps(cfg, run)
    return {"vanilla": 2, "pgdat": 2 * (t + 1)}.get(run.method, 2 * t + 4)


def train_run(cfg: Config, run: Run, train) -> TrainResult:
    tc = dataclasses.replace(cfg.train, seed=run.seed)
    return train_cached(cfg.s, run.key, lambda: build(cfg, run), method_for(cfg, run), train, tc)


# --------------------------------------------------------------------------------------------- evaluation


def corruption_suite(cfg: Config, test) -> dict:
    """The CIFAR-10-C-style suite of the test images, generated once per run folder and cached beside the models."""
    key = fingerprint({"names": cfg.corruptions, "sev": cfg.severities, "seed": cfg.corruption_seed,
                       "n": len(test), "src": test.source, "ysum": int(test.y.sum()), "xsum": int(test.x.sum())})
    path = cfg.s.checkpoint_dir / f"{PAPER}-cifar10c-{key}.pt"
    pairs = [(c, s) for c in cfg.corruptions for s in cfg.severities]
    if path.exists():
        state = load_checkpoint(path)
        x = state["x"]
    else:
        x = torch.stack([corr.corrupt(test.x, c, s, cfg.corruption_seed) for c, s in pairs])
        atomic_save({"x": x, "pairs": [list(p) for p in pairs]}, path)
    return {(c, s): dataclasses.replace(test, x=x[i], split=f"{c}-{s}") for i, (c, s) in enumerate(pairs)}


def _pgd_key(e: int) -> str:
    return "pgd20" if e == 8 else f"pgd20_eps{e}"


def _eval_attacks(cfg: Config) -> dict[str, PGD]:
    out = {}
    for e in cfg.eval_eps:
        eps = e / 255
        alpha = 2 / 255 if e == 8 else eps / 4
        out[_pgd_key(e)] = PGD(eps, alpha, cfg.eval_pgd_steps, start="uniform", loss="ce", bn_mode="eval")
    return out


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
    return {k: getattr(getattr(m, br), st).float().cpu().tolist()
            for k, (br, st) in {"mean_main": ("main", "running_mean"), "mean_aux": ("aux", "running_mean"),
                                "var_main": ("main", "running_var"), "var_aux": ("aux", "running_var")}.items()}


def evaluate_run(cfg: Config, run: Run, res: TrainResult, test, suite) -> dict:
    """Everything the chapter reports about one trained model, as a JSON-ready record."""
    model = res.model.eval()
    dev = cfg.s.device
    metrics: dict[str, float | None] = {}
    routes = ("main", "aux") if is_dual(model) else (None,)
    t0 = time.perf_counter()
    for route in routes:
        suffix = "_aux" if route == "aux" else ""
        ctx = bn_route(model, route) if route else contextlib.nullcontext()
        with ctx:
            torch.manual_seed(derive_seed("advprop-eval", run.key, route))
            ev = evaluate(model, test, _eval_attacks(cfg), batch_size=cfg.eval_batch, device=dev, progress=False,
                          desc=f"{run.key} {route or ''}")
            acc = ev.accuracies()
            metrics["clean" + suffix] = acc["clean"]
            for e in cfg.eval_eps:
                metrics[_pgd_key(e) + suffix] = acc[_pgd_key(e)]
            if route != "aux":
                ctab = corr.evaluate_corruptions(model, suite, batch_size=cfg.eval_batch, device=dev)
    for k in HEADLINE_METRICS:
        metrics.setdefault(k, None)
    metrics["corruption_mean"] = float(ctab["accuracy"].mean())
    for fam, g in ctab.groupby("family", sort=False):
        metrics[f"corruption_{fam}"] = float(g["accuracy"].mean())
    hist = res.history
    keep = [c for c in ("epoch", "lr", "train_loss", "acc", "clean_acc", "adv_acc", "loss_clean", "loss_adv",
                        "train_seconds") if c in hist]
    rec = {"key": run.key, "method": run.method, "label": run.label, "width": run.width, "eps": run.eps,
           "seed": run.seed, "attack_steps": attack_steps(cfg, run), "params": num_parameters(model),
           "params_plain": model_params(cfg, run.width), "metrics": metrics,
           "corruptions": ctab[["corruption", "family", "severity", "accuracy"]].to_dict("records"),
           "cost_passes": float(res.cost["total"]), "formula_passes": formula_passes(cfg, run),
           "train_s": float(res.train_seconds), "epochs": int(res.epochs), "eval_s": time.perf_counter() - t0,
           "history": hist[keep].to_dict("records")}
    if is_dual(model):
        rec["bn_stats"] = bn_layer_stats(model)
        rec["bn_channels_first"] = bn_channels(model, 0)
    return rec


def run_part(cfg: Config, part: str, rep: Report | None = None, data=None, log=print) -> list[dict]:
    """Train (or reuse) and evaluate every run of ``part``; adds its rows and records to ``rep``."""
    if part not in cfg.parts:
        raise ConfigError(f"unknown part {part!r}; valid: {', '.join(cfg.parts)}")
    train, test = data if data is not None else load_data(cfg)
    suite = corruption_suite(cfg, test)
    records = []
    for run in cfg.parts[part]:
        res = train_run(cfg, run, train)
        rec = evaluate_run(cfg, run, res, test, suite)
        records.append(rec)
        m = rec["metrics"]
        log(f"{run.key:32s} clean {m['clean']:5.1f}"
            + (f"  aux {m['clean_aux']:5.1f}" if m.get("clean_aux") is not None else " " * 10)
            + f"  corruptions {m['corruption_mean']:5.1f}  pgd20 {m['pgd20']:5.1f}  {rec['cost_passes']:.2f} N  "
              f"train {rec['train_s']:.0f} s  eval {rec['eval_s']:.0f} s")
        del res
    if rep is not None:
        rep.extra["runs"] = records
        add_rows(rep, records, cfg, complete=False)
    return records


def gather(cfg: Config, log=print) -> list[dict]:
    """Every part's records, read from ``<OUT_DIR>/advprop__<part>.json``; a part whose file is missing or was made
    with another configuration is run here (which takes that part's time)."""
    records: list[dict] = []
    data = None
    for part in cfg.parts:
        path = cfg.s.out_dir / f"{PAPER}__{part}.json"
        doc = results.load(path) if path.exists() else None
        if doc is not None and doc.get("config_fingerprint") == cfg.fingerprint and doc["profile"] == cfg.s.profile:
            records += doc["runs"]
            continue
        why = "not found" if doc is None else "made with another configuration"
        log(f"{path.name} {why}: running part {part!r} here")
        data = data or load_data(cfg)
        records += run_part(cfg, part, data=data, log=log)
    return records


# ------------------------------------------------------------------------------------------ aggregation


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
    eps = {"vanilla": 0, "pgdat": cfg.pgdat_eps}.get(method, cfg.eps)
    return _select(df, method, width, eps)


def _mean_sd(values) -> tuple[float | None, float | None, int]:
    v = [float(x) for x in values if x is not None and not (isinstance(x, float) and math.isnan(x))]
    if not v:
        return None, None, 0
    m, sd, n = mean_sd(v)
    return m, sd, n


def _note(cfg: Config, n: int, seeds: Iterable[int]) -> str:
    tc = cfg.train
    base = (f"{cfg.s.profile} profile: {tc.epochs} epochs at batch {tc.batch_size}; mean over {n} seed(s) "
            f"({', '.join(map(str, seeds))}), sd in 'sd'")
    if cfg.eval_pgd_steps != 20:
        base += f"; 'pgd20' keys hold PGD-{cfg.eval_pgd_steps}"
    if cfg.s.profile == "smoke":
        base += "; smoke numbers mean nothing"
    return base


def _add_group(rep: Report, cfg: Config, table: str, name: str, sub: pd.DataFrame, metrics: Sequence[str],
               paper: dict | None = None, extra_note: str = "") -> None:
    vals, sds = {}, {}
    for k in metrics:
        m, sd, _ = _mean_sd(sub[k]) if k in sub else (None, None, 0)
        vals[k], sds[k] = m, sd
    seeds = sorted(int(s) for s in sub.seed)
    per_seed = {k: {str(int(s)): (None if pd.isna(v) else float(v)) for s, v in zip(sub.seed, sub[k])}
                for k in metrics if k in sub}
    note = _note(cfg, len(sub), seeds) + (f"; {extra_note}" if extra_note else "")
    rep.add_row(table, name, vals, paper=paper, cost_passes=float(sub.cost_passes.mean()),
                train_s=float(sub.train_s.mean()), epochs=int(sub.epochs.max()), note=note, sd=sds,
                n_seeds=len(sub), seeds=seeds, per_seed=per_seed,
                formula_passes=int(sub.formula_passes.iloc[0]))


def strength_label(method: str, eps: int) -> str:
    return f"{LABELS[method]} ε={eps}/255 (PGD-{attacker(eps)[0]})"


def add_rows(rep: Report, records: Sequence[dict], cfg: Config, complete: bool = True) -> None:
    """Aggregate the records into the report's tables (mean over seeds, sd and per-seed values in extra keys):

    * ``cifar10_w<width>``: Vanilla, Mixed (shared BN), AdvProp, PGD-AT (headline attacker);
    * ``strength_w<width>``: Vanilla and AdvProp / Mixed at every attacker ε;
    * ``cost``: measured N per sample per method and attack steps, beside the formula and Fast AdvProp's numbers.

    With ``complete``, rows the configuration plans but the records lack are kept with a note."""
    df = frame(records)
    if df.empty:
        return
    extra_metrics = sorted(c for c in df.columns if c.startswith("corruption_") and c != "corruption_mean")
    metrics = list(HEADLINE_METRICS) + extra_metrics
    for w in cfg.widths:
        table = f"cifar10_w{w}"
        for m in METHODS:
            sub = _headline(df, cfg, m, w)
            if len(sub):
                _add_group(rep, cfg, table, LABELS[m], sub, metrics)
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


def _pm(m, sd, n=2, digits=2) -> str:
    """"mean ± sd" (just the value for a single seed)."""
    if m is None:
        return ""
    return f"{m:.{digits}f} ± {sd:.{digits}f}" if n > 1 and sd is not None else f"{m:.{digits}f}"


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


def _fmt(v, d):
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{d}f}"


def corruption_frame(records: Sequence[dict]) -> pd.DataFrame:
    """Long table: one row per (run, corruption, severity) with the accuracy."""
    rows = []
    for r in records:
        for c in r["corruptions"]:
            rows.append({"key": r["key"], "method": r["method"], "width": r["width"], "eps": r["eps"],
                         "seed": r["seed"], "clean": r["metrics"]["clean"], **c})
    return pd.DataFrame(rows)


def corruption_table(records: Sequence[dict], cfg: Config, width: int | None = None) -> pd.DataFrame:
    """Table 2: mean accuracy per corruption family and severity (mean over seeds), per headline method, with
    AdvProp − Vanilla per family; the paper's EfficientNet-B7 ImageNet-C gain is the reference."""
    width = width or cfg.large
    cf = corruption_frame(records)
    rows = []
    for m in METHODS:
        eps = {"vanilla": 0, "pgdat": cfg.pgdat_eps}.get(m, cfg.eps)
        sub = cf[(cf.method == m) & (cf.width == width) & (cf.eps == eps)]
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
    keys = ["clean", "clean_aux"] + [k for e in cfg.eval_eps for k in (_pgd_key(e), _pgd_key(e) + "_aux")]
    return summary_table(records, cfg, keys)


def cost_table(rep: Report) -> pd.DataFrame:
    """Measured N per sample beside the derived formula and Fast AdvProp's numbers (from the report's cost rows)."""
    rows = [{"method": r["method"], "measured (N/sample)": r["cost_passes"], "formula (N)": r.get("formula_passes"),
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


# ----------------------------------------------------------------------------------------------- figures


def _plt():
    import matplotlib.pyplot as plt
    return plt


def fig_reference(records: Sequence[dict], cfg: Config):
    """Figure 1: the paper's ImageNet figure (B0–B8, vanilla vs AdvProp) beside the CIFAR-10 analogue (clean
    accuracy against width, mean ± sd over seeds) and the gains of both."""
    plt = _plt()
    ref = reported.table(PAPER, "imagenet_efficientnet")
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.9))
    a, b, c = axes
    xs = np.arange(len(ref))
    names = [i.replace("EfficientNet-", "") for i in ref.index]
    a.plot(xs, ref["vanilla"], marker="o", label="Vanilla (AutoAugment)")
    a.plot(xs, ref["advprop"], marker="s", label="AdvProp + AutoAugment")
    a.set_xticks(xs, names)
    a.set_xlabel("EfficientNet")
    a.set_ylabel("ImageNet top-1 (%)")
    a.set_title("Paper: ImageNet (release table)")
    a.legend(fontsize=8)
    df = frame(records)
    df.attrs["n_eval"] = cfg.n_test
    widths = sorted(set(df.width))
    for k, m in enumerate(("vanilla", "mixed", "advprop", "pgdat")):
        pts = [(w, *_mean_sd(_headline(df, cfg, m, w).clean)[:2]) for w in widths]
        pts = [p for p in pts if p[1] is not None]
        if pts:
            b.errorbar([p[0] * (1 + 0.03 * (k - 1.5)) for p in pts], [p[1] for p in pts],
                       yerr=[p[2] or 0 for p in pts], marker="os^D"[k], capsize=3, label=LABELS[m])
    b.set_xscale("log", base=2)
    b.set_xticks(widths, [str(w) for w in widths])
    b.set_xlabel("ResNet-18 width (first-stage channels)")
    b.set_ylabel("CIFAR-10 clean accuracy (%)")
    b.set_title(f"This project: CIFAR-10 ({cfg.s.profile})")
    b.legend(fontsize=8)
    gains = (ref["advprop"] - ref["vanilla"]).dropna()
    c.bar(np.arange(len(gains)), gains, color="tab:gray", alpha=0.6, label="ImageNet: AdvProp − Vanilla (paper)")
    off = len(gains) + 1
    for k, w in enumerate(widths):
        for j, (m, col) in enumerate((("advprop", "tab:green"), ("mixed", "tab:orange"))):
            pdiff = paired_difference(df, _headline(df, cfg, m, w), _headline(df, cfg, "vanilla", w))
            if pdiff["diff"] is None:
                continue
            x = off + 2.2 * k + 0.8 * j
            c.errorbar([x], [pdiff["diff"]], yerr=[[pdiff["diff"] - pdiff["lo"]], [pdiff["hi"] - pdiff["diff"]]],
                       marker="o", color=col, capsize=3,
                       label=f"CIFAR: {LABELS[m]} − Vanilla" if k == 0 else None)
    c.axhline(0, color="k", lw=0.8)
    c.set_xticks(list(range(len(gains))) + [off + 2.2 * k + 0.4 for k in range(len(widths))],
                 [i.replace("EfficientNet-", "") for i in gains.index] + [f"w{w}" for w in widths], fontsize=8)
    c.set_ylabel("clean accuracy gain (pp)")
    c.set_title("Gain over vanilla (95 % intervals)")
    c.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig


def fig_corruption_examples(test, cfg: Config, index: int = 0):
    """One test image under every corruption of the suite at severities 1–5."""
    plt = _plt()
    names = cfg.corruptions
    sev = corr.SEVERITIES
    fig, axes = plt.subplots(len(sev) + 1, len(names), figsize=(1.05 * len(names), 1.1 * (len(sev) + 1)),
                             squeeze=False)
    x = test.x[index:index + 1]
    for j, n in enumerate(names):
        axes[0, j].imshow(x[0].permute(1, 2, 0).numpy(), interpolation="nearest")
        axes[0, j].set_title(n.replace("_", "\n"), fontsize=7)
        for i, s in enumerate(sev, 1):
            axes[i, j].imshow(corr.corrupt(test.x[:index + 1], n, s, cfg.corruption_seed)[index]
                              .permute(1, 2, 0).numpy(), interpolation="nearest")
    for i, s in enumerate(("clean",) + tuple(f"severity {v}" for v in sev)):
        axes[i, 0].set_ylabel(s, fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([]), ax.set_yticks([])
    fig.tight_layout(h_pad=0.2, w_pad=0.2)
    return fig


def fig_corruptions(records: Sequence[dict], cfg: Config, width: int | None = None):
    """Figure 2: accuracy against severity (0 = clean) per corruption, one line per method (mean over seeds, bars =
    sd), plus the family means."""
    plt = _plt()
    width = width or cfg.large
    cf = corruption_frame(records)
    names = list(dict.fromkeys(cf.corruption))
    fams = list(dict.fromkeys(cf.family))
    ncol = 5
    nrow = math.ceil((len(names) + len(fams)) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.0 * ncol, 2.5 * nrow), sharey=True, squeeze=False)
    panels = [("corruption", n) for n in names] + [("family", f) for f in fams]
    colors = dict(zip(METHODS, ("tab:blue", "tab:orange", "tab:green", "tab:red")))
    for ax, (kind, name) in zip(axes.flat, panels):
        for m in METHODS:
            eps = {"vanilla": 0, "pgdat": cfg.pgdat_eps}.get(m, cfg.eps)
            sub = cf[(cf.method == m) & (cf.width == width) & (cf.eps == eps) & (cf[kind] == name)]
            if not len(sub):
                continue
            per_seed = sub.groupby(["seed", "severity"]).accuracy.mean().unstack("severity")
            clean = sub.groupby("seed").clean.first()
            per_seed.insert(0, 0, clean)
            mean, sd = per_seed.mean(), per_seed.std(ddof=1) if len(per_seed) > 1 else per_seed.mean() * 0
            ax.errorbar(mean.index, mean.values, yerr=sd.values, marker=".", capsize=2, color=colors[m],
                        label=LABELS[m])
        ax.set_title(name.replace("_", " ") + (" (family mean)" if kind == "family" else ""), fontsize=9)
        ax.set_xticks([0] + list(cfg.severities))
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel("accuracy (%)")
    for ax in axes[-1]:
        ax.set_xlabel("severity (0 = clean)")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(f"CIFAR-10-C-style corruptions, ResNet-18 width {width}: mean over seeds (bars: sd)", fontsize=11)
    fig.tight_layout()
    return fig


def fig_strength(records: Sequence[dict], cfg: Config):
    """Figure 3: clean-accuracy gain over Vanilla against the attacker's ε, per width (the paper's ablation: bigger
    models profit from stronger attackers), and the auxiliary branch's clean and robust accuracy."""
    plt = _plt()
    st = strength_frame(records, cfg)
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.9))
    for k, w in enumerate(sorted(set(st.width))):
        col = plt.cm.viridis(k / max(1, len(set(st.width)) - 1) * 0.85)
        for m, mk, ls in (("AdvProp", "o", "-"), ("Mixed (shared BN)", "x", ":")):
            sub = st[(st.width == w) & (st.method == m)].dropna(subset=["gain"]).sort_values("eps_255")
            if not len(sub):
                continue
            x = sub.eps_255 * (1 + 0.04 * (k - 0.5))
            a.errorbar(x, sub.gain, yerr=[sub.gain - sub.gain_lo, sub.gain_hi - sub.gain], marker=mk, ls=ls,
                       color=col, capsize=3, label=f"{m}, width {w}")
            if m == "AdvProp":
                sd = sub.vanilla_sd.iloc[0] or 0
                a.axhspan(-sd, sd, color=col, alpha=0.08)
                b.plot(sub.eps_255, sub.clean_aux, marker="o", color=col, label=f"aux BN clean, width {w}")
                b.plot(sub.eps_255, sub.pgd20_aux, marker="s", ls="--", color=col,
                       label=f"aux BN PGD ε=8/255, width {w}")
    a.axhline(0, color="k", lw=0.8)
    for ax in (a, b):
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(set(st.eps_255)), [f"{e}/255" for e in sorted(set(st.eps_255))])
        ax.set_xlabel("attacker ε (PGD iterations = ε·255 + 1, 1 at ε = 1/255)")
    a.set_ylabel("clean acc. − Vanilla (pp, main BN)")
    a.set_title("Clean gain vs attacker (bands: ±1 sd of Vanilla)")
    a.legend(fontsize=7)
    b.set_ylabel("accuracy (%)")
    b.set_title("Auxiliary BN branch")
    b.legend(fontsize=7)
    fig.tight_layout()
    return fig


def fig_bn_stats(records: Sequence[dict], cfg: Config, width: int | None = None):
    """Figure 4: main vs auxiliary BN running statistics per layer for the AdvProp models of one width (seed of the
    sweep), one line per attacker ε; and the first BN layer channel by channel."""
    plt = _plt()
    width = width or cfg.large
    seed = cfg.strength_seeds[0]
    recs = sorted((r for r in records if r["method"] == "advprop" and r["width"] == width and r["seed"] == seed
                   and "bn_stats" in r), key=lambda r: r["eps"])
    fig, axes = plt.subplots(1, 4, figsize=(17, 3.8))
    if not recs:
        return fig
    a, b, c, d = axes
    for k, r in enumerate(recs):
        col = plt.cm.plasma(k / max(1, len(recs) - 1) * 0.8)
        st = pd.DataFrame(r["bn_stats"])
        lab = f"ε = {r['eps']}/255"
        if k in (0, len(recs) - 1):
            a.plot(st.layer, st.var_main, color=col, marker=".", label=f"main, {lab}")
            a.plot(st.layer, st.var_aux, color=col, marker="x", ls="--", label=f"aux, {lab}")
        b.plot(st.layer, st.smd, color=col, marker=".", label=lab)
        c.plot(st.layer, st.log_var_ratio, color=col, marker=".", label=lab)
    a.set_yscale("log")
    a.set_title("mean running variance per layer")
    b.set_title("|μ_main − μ_aux| / pooled σ (channel mean)")
    c.set_title("|log σ²_aux / σ²_main| (channel mean)")
    for ax in (a, b, c):
        ax.set_xlabel("BN layer (input → output)")
        ax.legend(fontsize=7)
    r = recs[-1]
    ch = r["bn_channels_first"]
    d.scatter(ch["var_main"], ch["var_aux"], s=12, label="running variance")
    d.scatter(np.abs(ch["mean_main"]), np.abs(ch["mean_aux"]), s=12, marker="x", label="|running mean|")
    lim = max(max(ch["var_main"] + ch["var_aux"]), max(np.abs(ch["mean_main"] + ch["mean_aux"]))) * 1.1
    d.plot([1e-4, lim], [1e-4, lim], color="gray", lw=0.8)
    d.set_xscale("log"), d.set_yscale("log")
    d.set_xlabel("main BN")
    d.set_ylabel("auxiliary BN")
    d.set_title(f"first BN layer per channel (ε = {r['eps']}/255)")
    d.legend(fontsize=7)
    fig.suptitle(f"AdvProp, ResNet-18 width {width}, seed {seed}: the two distributions the dual BN separates",
                 fontsize=11)
    fig.tight_layout()
    return fig


def fig_training(records: Sequence[dict]):
    """Training loss (and, for the paired methods, clean vs adversarial training accuracy) per epoch of every run."""
    plt = _plt()
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.6))
    colors = dict(zip(METHODS, ("tab:blue", "tab:orange", "tab:green", "tab:red")))
    seen = set()
    for r in records:
        h = pd.DataFrame(r["history"])
        lab = f"{r['label']} w{r['width']}" + (f" ε={r['eps']}/255" if r["method"] in ("mixed", "advprop") else "")
        first = lab not in seen
        seen.add(lab)
        a.plot(h.epoch, h.train_loss, color=colors[r["method"]], alpha=0.7, marker=".",
               label=lab if first else None)
        if "adv_acc" in h:
            b.plot(h.epoch, 100 * h.adv_acc, color=colors[r["method"]], ls="--", alpha=0.7, marker=".",
                   label=f"{lab}: adversarial" if first else None)
        acc = h["clean_acc"] if "clean_acc" in h else h.get("acc")
        if acc is not None:
            b.plot(h.epoch, 100 * acc, color=colors[r["method"]], alpha=0.7, marker=".",
                   label=f"{lab}: clean" if first else None)
    a.set_title("training loss")
    b.set_title("training-batch accuracy (%)")
    for ax in (a, b):
        ax.set_xlabel("epoch")
    b.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------------- part helpers


def part_plan(cfg: Config, part: str) -> pd.DataFrame:
    """The runs of a part: method, width, attacker, seed, derived cost, and whether a finished checkpoint exists."""
    rows = []
    for r in cfg.parts[part]:
        steps = attack_steps(cfg, r)
        rows.append({"run": r.key, "method": r.label, "width": r.width,
                     "attacker": "—" if r.method == "vanilla" else
                     f"ε = {r.eps}/255, {steps} step{'s' if steps > 1 else ''}",
                     "seed": r.seed, "cost (N/sample)": formula_passes(cfg, r), "epochs": cfg.train.epochs,
                     "cached": (cfg.s.checkpoint_dir / r.key / "last.pt").exists()})
    return pd.DataFrame(rows).set_index("run")


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


def estimated_minutes(cfg: Config, part: str, unit_s: float = 2.5, eval_s: float = 4.0,
                      overhead_s: float = 60.0) -> float:
    """A planning estimate of a part's quick-profile wall time: ``unit_s`` seconds per epoch of 2N at width 64
    (batch 256, eager bf16 on an H200 — an assumption, not a measurement), cost ∝ passes, narrower widths at a
    floor of 40 % (launch-bound), plus ``eval_s`` per model and a fixed overhead."""
    total = overhead_s
    for r in cfg.parts[part]:
        scale = max(0.4, (r.width / 64) ** 2)
        total += cfg.train.epochs * unit_s * formula_passes(cfg, r) / 2 * scale + eval_s * scale
    return total / 60
