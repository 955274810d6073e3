"""Chapter: scaleable input-gradient regularisation by finite differences (Finlay & Oberman, 2019).

The chapter trains Finlay & Oberman's ResNeXt34-2x32 on CIFAR-10 undefended, with 7-step adversarial training, with
the finite-difference (FD) squared-ℓ1 and squared-ℓ2 penalties (λ ∈ {0.1, 1}), with the exact double-backprop
penalty, and — for the curvature bound — with smooth ReLUs; it measures each model's per-image minimum adversarial
distance (PGD bisection and FAB), the L- and C-bounds, the h-ablation of the journal version, the agreement of the
FD penalty with the exact one as h shrinks (in float64, fp32, TF32 and bf16), and the training cost in N and seconds.

The runs are a *plan* (:data:`RUNS`): each run belongs to one part notebook (``4X_gradreg__<part>``), sized so that
every notebook of the quick profile fits 10 minutes on one H200; the chapter notebook (``40_gradreg``) collects every
run (reusing the parts' checkpoints and cached evaluations; anything missing is trained or evaluated on the spot)
and builds the tables and figures.
"""
from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from .. import reported
from ..attacks import attack_mode
from ..bounds import bound_stats
from ..data import Augment
from ..distances import (AttackBudget, bootstrap_ci, error_at, error_curve, improvement_ratio, mean_distance,
                         min_distances)
from ..methods import PGDAT, Standard
from ..methods.gradreg import DoubleBackpropGR, FiniteDifferenceGR, dual_norm_sq, fd_penalty
from ..models import build_model
from ..report import Report
from ..schedules import StepDecay
from ..training import TrainConfig, Trainer, TrainResult
from ..utils import fingerprint, fp32_strict
from .common import RunSettings, by_profile, cifar10_splits, settings, train_cached

PAPER = "gradreg"
EPS_2, EPS_8 = 2 / 255, 8 / 255
AT_EPS = 0.0314                          # the authors' projection radius (≈ 8/255)
AT_ALPHA = 0.43 / math.sqrt(3072)        # their ℓ2-normalised sign step, 0.43/√3072 ≈ 1.98/255
PARTS = ("baselines", "l1", "l2", "smooth")   # the part notebooks 40-43; runs of part "chapter" train in 49
EVAL_VERSION = 2                         # bump when the evaluation code changes (invalidates cached evaluations)

# Estimated seconds per epoch on one H200 (ResNeXt34-2x32, batch 128, full CIFAR-10): bf16 for standard/AT, strict
# fp32 (no TF32) for the penalties. Not measured in this project yet; they size the quick profile.
EST_EPOCH_S = {"standard": 8, "at": 30, "fd": 25, "dbp": 45}
EST_SMOOTH_FACTOR = 1.2
EST_EVAL_S = 15                          # one minimum-distance evaluation (1 000 images, one norm)
EST_LANCZOS_S = 20


# --------------------------------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class Run:
    """One trained model of the chapter."""

    key: str                    # checkpoint folder gradreg-<key>
    label: str                  # its row label in the tables
    part: str                   # the part notebook that trains it ("chapter": the chapter notebook)
    kind: str                   # standard | at | fd | dbp
    smooth: bool = False
    norm: str | None = None     # penalty norm: l1 (against ℓ∞ attacks) or l2
    lam: float = 0.0
    h: float | None = None
    evals: tuple[str, ...] = ("linf",)
    ablation: str | None = None  # its row in the h-ablation table

    @property
    def model_name(self) -> str:
        return "smooth_resnext34_2x32" if self.smooth else "resnext34_2x32"

    @property
    def strict(self) -> bool:
        return self.kind in ("fd", "dbp")

    def describe(self) -> str:
        if self.kind == "standard":
            return "cross-entropy"
        if self.kind == "at":
            return "7-step ℓ∞ PGD-AT (no random start, step 0.43/√3072, ε = 0.0314)"
        pen = {"l1": "squared ℓ1", "l2": "squared ℓ2"}[self.norm]
        if self.kind == "fd":
            return f"FD {pen}, λ = {self.lam:g}, h = {self.h:g}"
        return f"double backprop {pen}, λ = {self.lam:g}"


RUNS: tuple[Run, ...] = (
    Run("undefended", "Undefended", "baselines", "standard", evals=("linf", "l2")),
    Run("at7", "7-step AT", "baselines", "at", evals=("linf", "l2")),
    Run("dbp-l1-lam1", "DBP squared l1 lambda=1", "baselines", "dbp", norm="l1", lam=1.0,
        ablation="DBP (exact gradient)"),
    Run("fd-l1-lam0.1-h0.01", "squared l1 lambda=0.1", "l1", "fd", norm="l1", lam=0.1, h=0.01),
    Run("fd-l1-lam1-h0.1", "squared l1 lambda=1", "l1", "fd", norm="l1", lam=1.0, h=0.1, ablation="h=0.1"),
    Run("fd-l1-lam1-h1", "squared l1 lambda=1, h=1", "l1", "fd", norm="l1", lam=1.0, h=1.0, ablation="h=1"),
    Run("fd-l2-lam0.1-h0.01", "squared l2 lambda=0.1", "l2", "fd", norm="l2", lam=0.1, h=0.01, evals=("linf", "l2")),
    Run("fd-l2-lam1-h0.01", "squared l2 lambda=1", "l2", "fd", norm="l2", lam=1.0, h=0.01, evals=("linf", "l2")),
    Run("fd-l1-lam1-h0.01", "squared l1 lambda=1, h=0.01", "l2", "fd", norm="l1", lam=1.0, h=0.01,
        ablation="h=1e-2"),
    Run("smooth-undefended", "Undefended (smooth)", "smooth", "standard", smooth=True, evals=("l2",)),
    Run("smooth-fd-l2-lam0.1-h0.01", "squared l2 lambda=0.1 (smooth)", "smooth", "fd", smooth=True, norm="l2",
        lam=0.1, h=0.01, evals=("l2",)),
    Run("fd-l1-lam1-h0.001", "squared l1 lambda=1, h=0.001", "smooth", "fd", norm="l1", lam=1.0, h=1e-3,
        ablation="h=1e-3"),
    Run("fd-l1-lam1-h0.0001", "squared l1 lambda=1, h=0.0001", "chapter", "fd", norm="l1", lam=1.0, h=1e-4,
        ablation="h=1e-4"),
)
RUN_BY_KEY = {r.key: r for r in RUNS}

# rows of the chapter's tables (ours) and the reported table each is compared with
MAIN_ROWS = ("Undefended", "7-step AT", "squared l1 lambda=0.1", "squared l1 lambda=1", "squared l2 lambda=0.1",
             "squared l2 lambda=1")
L2_ROWS = ("Undefended", "Undefended (smooth)", "7-step AT", "squared l2 lambda=0.1",
           "squared l2 lambda=0.1 (smooth)", "squared l2 lambda=1")
TABLES = {"cifar10_linf": "poster_linf", "cifar10_l2": "arxiv_l2", "constants": "arxiv_constants",
          "h_ablation": "journal_h_ablation", "cost": "journal_hours"}
PERCENT_METRICS = {"err_clean", "err_2", "err_8"}


# ------------------------------------------------------------------------------------------------ configuration


@dataclass
class Config:
    s: RunSettings
    n_train: int | None
    n_test: int
    model: dict
    epochs: int
    batch_size: int
    lr: float
    budgets: dict[str, AttackBudget]
    lanczos_iters: int
    lanczos_tol: float
    eval_batch: int
    fd_check_n: int
    fd_check_h: tuple[float, ...]
    cost_batches: int
    runs: tuple[Run, ...] = RUNS
    notes: list[str] = field(default_factory=list)

    def part_runs(self, part: str) -> list[Run]:
        if part not in PARTS + ("chapter",):
            raise ValueError(f"unknown part {part!r}; valid: {', '.join(PARTS + ('chapter',))}")
        return [r for r in self.runs if r.part == part]

    def train_config(self, run: Run) -> TrainConfig:
        """The authors' recipe: SGD(0.9), weight decay 5e-4 on everything, batch 128, lr 0.1 ÷5 at 30/60/80 % of
        training, crop with grey (128) padding, flip, Cutout 16 with the patch's mean colour; the penalties in
        strict fp32 (amp off), the rest in bf16 autocast on GPUs."""
        return TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
                           schedule=StepDecay(self.lr, self.epochs), momentum=0.9, weight_decay=5e-4,
                           nesterov=False, augment=Augment(crop_padding=4, fill=128, flip=True, cutout=16),
                           seed=self.s.seed, amp="off" if run.strict else "auto")

    def estimate_minutes(self, part: str = "chapter") -> float:
        """Estimated H200 minutes of a part notebook (or of the chapter notebook, ``"chapter"``) in this profile:
        start-up, the part's trainings and evaluations, and for the chapter loading every checkpoint, the FD
        agreement check and the cost measurement."""
        scale = (self.n_train or 50000) / 50000
        total = 20.0 if part != "chapter" else 20.0 + 30 + 20 + 60
        for r in self.part_runs(part):
            s = EST_EPOCH_S[r.kind] * (EST_SMOOTH_FACTOR if r.smooth else 1.0)
            total += s * self.epochs * scale + EST_EVAL_S * len(r.evals) * self.n_test / 1000
            if r.smooth:
                total += EST_LANCZOS_S * self.n_test / 1000
        return total / 60

    def table(self) -> pd.DataFrame:
        b = self.budgets
        rows = {
            "profile": self.s.profile, "device": str(self.s.device), "seed": self.s.seed,
            "training images": self.n_train or "all 50 000", "test images": f"the first {self.n_test}",
            "model": f"ResNeXt34-2x32 {self.model or '(width 32, 5-5-5 blocks)'}",
            "schedule": f"{self.epochs} epochs, batch {self.batch_size}, SGD lr {self.lr} ÷5 at 30/60/80 % "
                        "(the authors: 200 epochs, ÷5 at 60/120/160)",
            "checkpoint": "the last epoch (the authors selected on clean test error; we do not)",
            "ℓ∞ distance": b["linf"].describe(), "ℓ2 distance": b["l2"].describe(),
            "Lanczos": f"≤ {self.lanczos_iters} iterations, tolerance {self.lanczos_tol:g}",
        }
        if self.s.profile != "smoke":
            rows["estimated H200 minutes"] = ", ".join(f"{p}: {self.estimate_minutes(p):.1f}"
                                                       for p in PARTS + ("chapter",))
        return pd.DataFrame({"setting": list(rows), "value": [str(v) for v in rows.values()]}).set_index("setting")

    def plan(self) -> pd.DataFrame:
        """Which notebook trains which model."""
        return pd.DataFrame([{"part": r.part, "row": r.label, "model": r.model_name, "training": r.describe(),
                              "attack norms": ", ".join(r.evals),
                              "h-ablation row": r.ablation or ""} for r in self.runs]).set_index(["part", "row"])


def config(profile: str = "smoke", seed: int = 0, device: str = "auto", data_dir: str | None = None,
           out_dir: str | None = None) -> Config:
    s = settings(profile, seed, device, data_dir, out_dir)
    p = s.profile
    linf = by_profile(
        p,
        AttackBudget("linf", eps_max=32 / 255, eps_cap=64 / 255, pgd_steps=2, bisect_steps=3,
                     anchors=(EPS_2, EPS_8), fab_iter=3, batch_size=500),
        AttackBudget("linf", eps_max=32 / 255, pgd_steps=10, bisect_steps=8, anchors=(EPS_2, EPS_8), fab_iter=30,
                     batch_size=1000),
        AttackBudget("linf", eps_max=32 / 255, pgd_steps=50, bisect_steps=10, anchors=(EPS_2, EPS_8), fab_iter=100,
                     fab_restarts=2, batch_size=1000))
    l2 = by_profile(
        p,
        AttackBudget("l2", eps_max=1.0, eps_cap=2.0, pgd_steps=2, bisect_steps=3, fab_iter=3, batch_size=500),
        AttackBudget("l2", eps_max=1.0, pgd_steps=10, bisect_steps=8, fab_iter=30, batch_size=1000),
        AttackBudget("l2", eps_max=1.0, pgd_steps=50, bisect_steps=10, fab_iter=100, fab_restarts=2,
                     batch_size=1000))
    cfg = Config(
        s=s,
        n_train=by_profile(p, 64, None, None),
        n_test=by_profile(p, 32, 1000, 1000),
        model=by_profile(p, {"width": 4, "blocks": (1, 1, 1)}, {}, {}),
        epochs=by_profile(p, 1, 4, 200),
        batch_size=by_profile(p, 32, 128, 128),
        lr=0.1,
        budgets={"linf": linf, "l2": l2},
        lanczos_iters=by_profile(p, 4, 50, 50),
        lanczos_tol=1e-3,
        eval_batch=by_profile(p, 500, 500, 500),
        fd_check_n=by_profile(p, 4, 100, 200),
        fd_check_h=by_profile(p, (1.0, 1e-2, 1e-4),
                              (1.0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6),
                              (1.0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6)),
        cost_batches=by_profile(p, 1, 5, 20),
    )
    if p == "smoke":
        cfg.notes.append("smoke profile: a width-4 ResNeXt with one block per stage, 64 training images, one "
                         "epoch at batch 32, 32 test images and cut attack budgets. The numbers only show that the pipeline "
                         "runs.")
    if p == "quick":
        cfg.notes.append(f"quick profile: {cfg.epochs} epochs per model instead of 200 (the same step schedule, "
                         "compressed: lr 0.1 ÷5 at 30/60/80 % of training), every model on the full training set; "
                         "the h-ablation uses the same short schedule. Attack budgets are smaller than the paper "
                         "profile's (stated in the configuration table).")
    cfg.notes += [
        "Checkpoints: the last epoch. The authors kept the epoch with the lowest clean *test* error (best.pth.tar), "
        "which selects on the test set; we do not.",
        "Minimum distances: PGD with per-image bisection on ε plus FAB (pyautoattack), the per-image minimum; the "
        "paper's suite (Carlini–Wagner, Boundary, LogBarrier, PGD; budgets unstated) is not used.",
        "Evaluation on the first 1 000 CIFAR-10 test images (the paper: 1 000 random test images); clean errors "
        "count at distance 0.",
        "The penalties (FD and double backprop) train in fp32 with TF32 off, forward and backward; the undefended "
        "and 7-step AT models in bf16 autocast on GPUs, so their training seconds are not comparable with the "
        "penalties' (the cost section measures every method in the same precision).",
        "7-step AT: the authors' steps (0.43/√3072 ≈ 1.98/255, no random start, radius 0.0314) with batch "
        "statistics in the attack; unlike their code, the attack keeps images in [0, 1] and does not update the "
        "BatchNorm running statistics.",
        "The h-ablation's runs are spread over the part notebooks (and h = 1e-4 over the chapter notebook) so that "
        "each notebook fits 10 minutes; the chapter notebook gathers them.",
        "Bounds: the L-bound uses the hard CW loss on probabilities for every model (the authors used SoftCW for the "
        "smooth models); the C-bound uses SoftCW with the threshold −ln(10)/10 that misclassification guarantees "
        "(the authors used 0, reported alongside as a violation rate). Lanczos re-orthogonalises fully.",
    ]
    return cfg


def report(cfg: Config, part: str | None = None) -> Report:
    if part is not None and part not in PARTS:
        raise ValueError(f"unknown part {part!r}; valid: {', '.join(PARTS)}")
    return Report(PAPER, cfg.s.profile, cfg.s.out_dir, "cifar10", cfg.n_test, cfg.s.seed, str(cfg.s.device),
                  part=part)


def load_data(cfg: Config):
    train, _, test = cifar10_splits(cfg.s, cfg.n_train, cfg.n_test)
    return train, test


# ---------------------------------------------------------------------------------------------------- training


def build(cfg: Config, run: Run) -> nn.Module:
    return build_model(run.model_name, **cfg.model)


def method_for(run: Run):
    if run.kind == "standard":
        return Standard()
    if run.kind == "at":
        return PGDAT(AT_EPS, AT_ALPHA, 7, start=None, bn_mode="train", name="7-step AT")
    if run.kind == "fd":
        return FiniteDifferenceGR(run.lam, run.h, run.norm, name=run.label)
    if run.kind == "dbp":
        return DoubleBackpropGR(run.lam, run.norm, name=run.label)
    raise ValueError(f"unknown run kind {run.kind!r}")


def train_run(cfg: Config, run: Run, train, progress: bool = True) -> TrainResult:
    """Train (or reuse) one run. The penalties train inside ``fp32_strict()`` (TF32 restored afterwards)."""
    ctx = fp32_strict() if run.strict else contextlib.nullcontext()
    with ctx:
        return train_cached(cfg.s, f"gradreg-{run.key}", lambda: build(cfg, run), method_for(run), train,
                            cfg.train_config(run), progress=progress)


def train_part(cfg: Config, part: str, train) -> dict[str, TrainResult]:
    return {r.key: train_run(cfg, r, train) for r in cfg.part_runs(part)}


def training_table(cfg: Config, results: dict[str, TrainResult]) -> pd.DataFrame:
    """Per run: epochs, measured N per sample, training seconds and the last epoch's loss, accuracy and penalty."""
    rows = []
    for key, res in results.items():
        r = RUN_BY_KEY[key]
        last = res.history.iloc[-1].to_dict() if len(res.history) else {}
        acc = last.get("acc", last.get("adv_acc", np.nan))
        rows.append({"row": r.label, "training": r.describe(), "epochs": res.epochs,
                     "N per sample": res.passes_per_sample, "train time (s)": res.train_seconds,
                     "last train loss": last.get("train_loss", np.nan),
                     "last train accuracy (%)" if r.kind != "at" else "last train accuracy (%, adversarial)":
                         100 * acc,
                     "last penalty": last.get("penalty", np.nan)})
    return pd.DataFrame(rows).set_index("row")


# -------------------------------------------------------------------------------------------------- evaluation


@dataclass
class Evaluation:
    """Per-image results of one run: distances per norm and attack, clean correctness, ℓ2 bound statistics."""

    arrays: dict[str, np.ndarray]
    seconds: dict[str, float]

    def dist(self, norm: str, attack: str = "best") -> np.ndarray:
        return self.arrays[f"{norm}_{attack}"]

    @property
    def clean_correct(self) -> np.ndarray:
        return self.arrays["clean_correct"].astype(bool)

    def has(self, key: str) -> bool:
        return key in self.arrays


def _eval_path(cfg: Config, run: Run, res: TrainResult) -> Path:
    fp = fingerprint({"v": EVAL_VERSION, "n": cfg.n_test, "evals": run.evals, "smooth": run.smooth,
                      "budgets": {k: asdict(v) for k, v in cfg.budgets.items()}, "seed": cfg.s.seed,
                      "lanczos": [cfg.lanczos_iters, cfg.lanczos_tol], "train": res.hyperparameters,
                      "epochs": res.epochs})
    return cfg.s.checkpoint_dir / f"gradreg-{run.key}" / f"eval-{fp}.npz"


def evaluate_run(cfg: Config, run: Run, res: TrainResult, test) -> Evaluation:
    """Minimum distances (each norm of ``run.evals``) and, with ℓ2, the L-bound (and for smooth models the Lanczos
    curvature and C-bound); cached next to the run's checkpoint."""
    path = _eval_path(cfg, run, res)
    if path.exists():
        z = np.load(path, allow_pickle=False)
        arrays = {k: z[k] for k in z.files if k != "_seconds"}
        return Evaluation(arrays, json.loads(str(z["_seconds"])))
    dev = cfg.s.device
    model = res.model.to(dev).eval()
    x, y = test.images(dev), test.y.to(dev)
    arrays: dict[str, np.ndarray] = {}
    seconds: dict[str, float] = {}
    for norm in run.evals:
        t0 = time.perf_counter()
        df = min_distances(model, x, y, cfg.budgets[norm], seed=cfg.s.seed)
        seconds[norm] = _sync_elapsed(t0, dev)
        for c in df.columns:
            if c != "clean_correct":
                arrays[f"{norm}_{c}"] = df[c].to_numpy(dtype=float)
        arrays["clean_correct"] = df["clean_correct"].to_numpy(dtype=bool)
    if "l2" in run.evals:
        t0 = time.perf_counter()
        b = bound_stats(model, x, y, curvature=run.smooth, iters=cfg.lanczos_iters, tol=cfg.lanczos_tol,
                        seed=cfg.s.seed, batch_size=cfg.eval_batch)
        seconds["bounds"] = _sync_elapsed(t0, dev)
        arrays.update(b.to_arrays())
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(tmp, **arrays, _seconds=np.array(json.dumps(seconds)))
    tmp.replace(path)
    return Evaluation(arrays, seconds)


def _sync_elapsed(t0: float, dev: torch.device) -> float:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    return time.perf_counter() - t0


def evaluate_part(cfg: Config, part: str, results: dict[str, TrainResult], test) -> dict[str, Evaluation]:
    return {k: evaluate_run(cfg, RUN_BY_KEY[k], res, test) for k, res in results.items()
            if RUN_BY_KEY[k].part == part}


def collect(cfg: Config, train, test, keys: Sequence[str] | None = None):
    """Every run of the plan: (training results, evaluations), reusing the parts' checkpoints and evaluations."""
    keys = keys or [r.key for r in cfg.runs]
    results = {k: train_run(cfg, RUN_BY_KEY[k], train) for k in keys}
    evals = {k: evaluate_run(cfg, RUN_BY_KEY[k], results[k], test) for k in keys}
    return results, evals


# -------------------------------------------------------------------------------------------------- statistics


def linf_metrics(ev: Evaluation) -> dict[str, float]:
    d = ev.dist("linf")
    return {"err_clean": 100 * (1 - ev.clean_correct.mean()), "err_2": error_at(d, EPS_2),
            "err_8": error_at(d, EPS_8), "mean_dist": mean_distance(d, cap=1.0)}


def l2_metrics(ev: Evaluation) -> dict[str, float | None]:
    d = ev.dist("l2")
    out = {"err_clean": 100 * (1 - ev.clean_correct.mean()), "lbound": float(np.mean(ev.arrays["b_lbound"])),
           "cbound": float(np.mean(ev.arrays["b_cbound"])) if ev.has("b_cbound") else None,
           "mean_dist": mean_distance(d, cap=math.sqrt(3072))}
    return out


def constants_metrics(ev: Evaluation) -> dict[str, float | None]:
    """Mean and max ℓ2 gradient norm of the CW loss (SoftCW for smooth models, as the authors) and of the largest
    Hessian eigenvalue (smooth models)."""
    g = ev.arrays["b_soft_grad_norm"] if ev.has("b_soft_grad_norm") else ev.arrays["b_grad_norm"]
    lam = ev.arrays.get("b_lam_max")
    return {"grad_mean": float(g.mean()), "grad_max": float(g.max()),
            "curv_mean": float(lam.mean()) if lam is not None else None,
            "curv_max": float(lam.max()) if lam is not None else None}


def _bootstrap(values, seed) -> list[float]:
    return list(bootstrap_ci(values, seed=seed))


def bound_violations(ev: Evaluation) -> dict[str, float]:
    """% of images whose bound exceeds the distance the attacks found (L and C are estimated, so the bounds are not
    certificates; the paper found no violation on CIFAR-10 and some on ImageNet). ``cbound_paper`` is the C-bound
    with the authors' SoftCW threshold 0."""
    d = ev.dist("l2")
    out = {}
    for k in ("lbound", "cbound", "cbound_paper"):
        if ev.has(f"b_{k}"):
            out[k] = 100 * float(np.mean(ev.arrays[f"b_{k}"] > d + 1e-9))
    return out


def add_rows(cfg: Config, rep: Report, results: dict[str, TrainResult], evals: dict[str, Evaluation]) -> None:
    """Rows of every table for the given runs; ratios only when the undefended run is among them."""
    note_base = _row_note(cfg)
    und = evals.get("undefended")
    for k, ev in evals.items():
        run, res = RUN_BY_KEY[k], results[k]
        common = dict(cost_passes=res.passes_per_sample, train_s=res.train_seconds, epochs=res.epochs)
        note = f"{note_base} {run.describe()}.".strip()
        if run.label in MAIN_ROWS:
            m = linf_metrics(ev)
            paper = reported.lookup(PAPER, "poster_linf", run.label)
            paper["ratio"] = reported.lookup(PAPER, "arxiv_linf", run.label).get("ratio")
            m["ratio"] = _ratio(und, ev, "linf") if run.key != "undefended" else None
            rep.add_row("cifar10_linf", run.label, m, paper=paper, note=note, n=cfg.n_test, percent=PERCENT_METRICS,
                        ci={"mean_dist": _bootstrap(np.minimum(ev.dist("linf"), 1.0), cfg.s.seed)}, **common)
        if run.label in L2_ROWS and "l2" in run.evals:
            m = l2_metrics(ev)
            m["ratio"] = _ratio(und, ev, "l2") if run.key != "undefended" else None
            ci = {"lbound": _bootstrap(ev.arrays["b_lbound"], cfg.s.seed),
                  "mean_dist": _bootstrap(np.minimum(ev.dist("l2"), math.sqrt(3072)), cfg.s.seed)}
            if ev.has("b_cbound"):
                ci["cbound"] = _bootstrap(ev.arrays["b_cbound"], cfg.s.seed)
            rep.add_row("cifar10_l2", run.label, m, reported_table="arxiv_l2", note=note, n=cfg.n_test,
                        percent=PERCENT_METRICS, ci=ci, bound_violations=bound_violations(ev), **common)
            g = ev.arrays["b_soft_grad_norm"] if ev.has("b_soft_grad_norm") else ev.arrays["b_grad_norm"]
            ci = {"grad_mean": _bootstrap(g, cfg.s.seed)}
            if ev.has("b_lam_max"):
                ci["curv_mean"] = _bootstrap(ev.arrays["b_lam_max"], cfg.s.seed)
            rep.add_row("constants", run.label, constants_metrics(ev), reported_table="arxiv_constants",
                        note=note, n=cfg.n_test, percent=PERCENT_METRICS, ci=ci,
                        loss=("SoftCW" if run.smooth else "CW") + " on probabilities", **common)
        if run.ablation:
            m = linf_metrics(ev)
            rep.add_row("h_ablation", run.ablation, m, reported_table="journal_h_ablation", note=note,
                        n=cfg.n_test, percent=PERCENT_METRICS, h=run.h,
                        ci={"mean_dist": _bootstrap(np.minimum(ev.dist("linf"), 1.0), cfg.s.seed)}, **common)


def _ratio(und: Evaluation | None, ev: Evaluation, norm: str) -> float | None:
    if und is None:
        return None
    e0, e = 100 * (1 - und.clean_correct.mean()), 100 * (1 - ev.clean_correct.mean())
    cap = 1.0 if norm == "linf" else math.sqrt(3072)
    mu0, mu = mean_distance(und.dist(norm), cap), mean_distance(ev.dist(norm), cap)
    if e0 == 0 or mu0 == 0 or e == e0:
        return None
    return improvement_ratio(e0, mu0, e, mu)


def _row_note(cfg: Config) -> str:
    p = cfg.s.profile
    if p == "smoke":
        return "smoke profile (tiny model, 64 images, 1 epoch): numbers meaningless."
    if p == "quick":
        return f"quick profile: {cfg.epochs} of 200 epochs; last epoch; PGD-bisection + FAB distances."
    return "paper protocol (200 epochs); last epoch; PGD-bisection + FAB distances."


def add_missing_rows(rep: Report) -> None:
    """The paper rows this chapter cannot reproduce — every ImageNet-1k row — keep their place, with the paper's
    numbers and a note."""
    note = ("not reproduced: ImageNet-1k is not available in this project (section 8 gives the command for readers "
            "who have it); the paper's number is shown for reference.")
    sources = [("cifar10_linf", "poster_linf"), ("cifar10_linf", "arxiv_linf"), ("cifar10_l2", "arxiv_l2"),
               ("constants", "arxiv_constants")]
    for table, ref in sources:
        metrics = reported.spec(PAPER, ref)["metrics"]
        for m in reported.methods(PAPER, ref):
            if not m.startswith("ImageNet") or any(r["table"] == table and r["method"] == m for r in rep.rows):
                continue
            vals = reported.lookup(PAPER, ref, m)
            if table == "cifar10_linf":
                vals["ratio"] = reported.lookup(PAPER, "arxiv_linf", m).get("ratio")
            rep.rows.append({"table": table, "method": m, "metrics": {k: None for k in vals}, "paper": vals,
                             "ci": {}, "n": rep.n_eval, "cost_passes": None, "train_s": None, "epochs": None,
                             "note": note, "paper_version": reported.spec(PAPER, ref).get("version", "")})


def compare(rep: Report, table: str) -> pd.DataFrame:
    """Ours beside the paper per (row, metric): ours with its 95 % interval (Wilson for error rates, bootstrap over
    images for mean distances and bounds), the paper's number and version, the difference and its interval."""
    src = TABLES.get(table)
    version = reported.spec(PAPER, src).get("version", "") if src else ""
    out = []
    for r in [r for r in rep.rows if r["table"] == table]:
        for m, ours in r["metrics"].items():
            ref = (r.get("paper") or {}).get(m)
            if ours is None and ref is None:
                continue
            ci = r.get("ci", {}).get(m)
            ver = "arXiv v1" if (table == "cifar10_linf" and m == "ratio") else r.get("paper_version", version)
            rec = {"row": r["method"], "metric": m, "ours": ours,
                   "ours 95% CI": _fmt_ci(ci), "paper": ref, "paper version": ver if ref is not None else "",
                   "diff": None if ours is None or ref is None else ours - ref,
                   "diff 95% CI": _fmt_ci([ci[0] - ref, ci[1] - ref]) if ci and ref is not None else ""}
            out.append(rec)
    cols = ["row", "metric", "ours", "ours 95% CI", "paper", "paper version", "diff", "diff 95% CI"]
    return pd.DataFrame(out, columns=cols).set_index(["row", "metric"])


def wide(rep: Report, table: str) -> pd.DataFrame:
    """One line per row: ours and the paper's number side by side for each metric."""
    rows = []
    for r in [r for r in rep.rows if r["table"] == table]:
        rec = {"row": r["method"]}
        for m, v in r["metrics"].items():
            rec[f"{m}"] = v
            rec[f"{m} (paper)"] = (r.get("paper") or {}).get(m)
        rec["N"] = r.get("cost_passes")
        rec["train s"] = r.get("train_s")
        rows.append(rec)
    return pd.DataFrame(rows).set_index("row")


def _fmt_ci(ci) -> str:
    if not ci:
        return ""
    return f"[{_g(ci[0])}, {_g(ci[1])}]"


def _g(v) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return ""
    return f"{v:.3g}"


def style(df: pd.DataFrame):
    """Three significant digits for every number, blanks for missing values."""
    def fmt(v):
        if v is None or isinstance(v, bool):
            return "" if v is None else str(v)
        if isinstance(v, (int, float, np.integer, np.floating)):
            return _g(float(v))
        return str(v)
    return df.style.format(fmt, na_rep="")


def part_tables(rep: Report) -> list[str]:
    """The chapter tables that hold at least one row of this report."""
    return [t for t in TABLES if any(r["table"] == t for r in rep.rows)]


def runs_table(rep: Report, table: str) -> pd.DataFrame:
    return pd.DataFrame([{"row": r["method"], "N per sample": r.get("cost_passes"),
                          "train time (s)": r.get("train_s"), "epochs": r.get("epochs"), "note": r.get("note", "")}
                         for r in rep.rows if r["table"] == table]).set_index("row")


# ------------------------------------------------------------------------------------------------------ figures


def architecture_facts(seed: int = 0) -> dict:
    """The full ResNeXt34-2x32's parameter count and the smallest logit of a fresh model on random images (≥ 0: the
    ReLU on the logits, one of the authors' quirks)."""
    from ..models import num_parameters
    g = torch.Generator().manual_seed(seed)
    full = build_model("resnext34_2x32").eval()
    with torch.no_grad():
        low = float(full(torch.rand(8, 3, 32, 32, generator=g)).min())
    return {"parameters_M": num_parameters(full) / 1e6, "min_logit_random_images": low}


def plot_smooth_relu():
    """ReLU beside the C² smooth ReLU of the curvature bound (they differ only on |x| < ½, shaded)."""
    import matplotlib.pyplot as plt
    from ..models.resnext import smooth_relu
    t = torch.linspace(-1.5, 1.5, 301)
    fig, ax = plt.subplots(figsize=(4.5, 3))
    ax.plot(t, torch.relu(t), label="ReLU")
    ax.plot(t, smooth_relu(t), label="smooth ReLU")
    ax.axvspan(-0.5, 0.5, color="gray", alpha=0.15)
    ax.legend()
    ax.set_title("The C² smooth ReLU of the curvature bound")
    return fig


def plot_distance_curves(cfg: Config, evals: dict[str, Evaluation]):
    """Percent misclassified against ℓ∞ (squared-ℓ1 models) and ℓ2 distance (squared-ℓ2 models), one curve per
    model, with the paper's ℓ∞ errors at 2/255 and 8/255 as crosses."""
    import matplotlib.pyplot as plt
    panels = {"linf": ["undefended", "fd-l1-lam0.1-h0.01", "fd-l1-lam1-h0.1", "at7"],
              "l2": ["undefended", "fd-l2-lam0.1-h0.01", "fd-l2-lam1-h0.01", "at7"]}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    colors = dict(zip(["undefended", "lam0.1", "lam1", "at7"], ["tab:red", "tab:blue", "tab:green", "tab:gray"]))
    for ax, (norm, keys) in zip(axes, panels.items()):
        xmax = 32 / 255 if norm == "linf" else 2.0
        grid = np.linspace(0, xmax, 300)
        for k in keys:
            if k not in evals or not evals[k].has(f"{norm}_best"):
                continue
            lab = RUN_BY_KEY[k].label
            c = colors["undefended" if k == "undefended" else "at7" if k == "at7" else
                       "lam0.1" if "lam0.1" in k else "lam1"]
            ax.plot(grid * (255 if norm == "linf" else 1), error_curve(evals[k].dist(norm), grid), color=c,
                    label=lab)
            if norm == "linf":
                p = reported.lookup(PAPER, "poster_linf", lab)
                if p.get("err_2") is not None:
                    ax.scatter([2, 8], [p["err_2"], p["err_8"]], marker="x", color=c, s=40, zorder=3)
        if norm == "linf":
            for e in (2, 8):
                ax.axvline(e, color="k", lw=0.6, ls=":")
            ax.set_xlabel("ℓ∞ adversarial distance (×1/255)")
            ax.set_title("ℓ∞ attacks (squared-ℓ1 models; × = paper)")
        else:
            ax.set_xlabel("ℓ2 adversarial distance")
            ax.set_title("ℓ2 attacks (squared-ℓ2 models)")
        ax.set_ylim(-2, 102)
        ax.set_ylabel("percent misclassified")
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle(f"Minimum adversarial distance per image, CIFAR-10 ({cfg.s.profile} profile, "
                 f"{cfg.n_test} test images)", fontsize=11)
    fig.tight_layout()
    return fig


def plot_bounds(cfg: Config, evals: dict[str, Evaluation]):
    """The lower-bound figure: for the smooth undefended and smooth defended (squared ℓ2, λ = 0.1) models, the
    empirical CDF of the best attack's ℓ2 distance and of the L- and C-bounds (log distance axis)."""
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    pairs = [("smooth-undefended", "tab:red", "undefended"), ("smooth-fd-l2-lam0.1-h0.01", "tab:blue", "defended")]
    lo, hi = math.inf, 0.0
    for k, _, _ in pairs:
        if k in evals:
            ev = evals[k]
            for a in (ev.dist("l2"), ev.arrays["b_lbound"], ev.arrays.get("b_cbound", np.array([]))):
                pos = a[(a > 0) & np.isfinite(a)]
                if len(pos):
                    lo, hi = min(lo, pos.min()), max(hi, pos.max())
    if not math.isfinite(lo):
        lo, hi = 1e-4, 1.0
    grid = np.geomspace(lo / 1.5, hi * 1.5, 400)
    for k, c, name in pairs:
        if k not in evals:
            continue
        ev = evals[k]
        ax.plot(grid, error_curve(ev.dist("l2"), grid), color=c, label=f"{name}: best attack")
        ax.plot(grid, error_curve(ev.arrays["b_lbound"], grid), color=c, ls="--", label=f"{name}: L-bound")
        if ev.has("b_cbound"):
            ax.plot(grid, error_curve(ev.arrays["b_cbound"], grid), color=c, ls=":", label=f"{name}: C-bound")
    ax.set_xscale("log")
    ax.set_xlabel("Euclidean (ℓ2) distance")
    ax.set_ylabel("percent misclassified")
    ax.set_ylim(-2, 102)
    ax.set_title("Lower bounds vs attacks, smooth-ReLU ResNeXt (defended: squared ℓ2, λ = 0.1)", fontsize=10)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_h_ablation(rep: Report):
    """Error (clean, at 2/255, at 8/255) against h for the squared-ℓ1, λ = 1 models: ours (solid, with the exact
    penalty as a horizontal line) and the journal's Table B.4 (dashed)."""
    import matplotlib.pyplot as plt
    rows = [r for r in rep.rows if r["table"] == "h_ablation"]
    paper = reported.table(PAPER, "journal_h_ablation")
    fig, ax = plt.subplots(figsize=(6.2, 3.8))
    colors = {"err_clean": "tab:green", "err_2": "tab:blue", "err_8": "tab:red"}
    names = {"err_clean": "clean", "err_2": "ε = 2/255", "err_8": "ε = 8/255"}
    fd = sorted([r for r in rows if r.get("h")], key=lambda r: r["h"])
    dbp = [r for r in rows if not r.get("h")]
    for m, c in colors.items():
        if fd:
            ax.plot([r["h"] for r in fd], [r["metrics"][m] for r in fd], marker="o", color=c, label=f"ours, {names[m]}")
        if dbp and dbp[0]["metrics"].get(m) is not None:
            ax.axhline(dbp[0]["metrics"][m], color=c, lw=0.8, ls="-.")
        pf = paper.dropna(subset=["h"])
        ax.plot(pf["h"], pf[m], marker="x", ls="--", color=c, alpha=0.6, label=f"journal, {names[m]}")
    ax.set_xscale("log")
    ax.set_xlabel("finite-difference step h")
    ax.set_ylabel("error (%)")
    ax.set_ylim(-2, 102)
    ax.set_title("h-ablation, squared ℓ1, λ = 1 (dash-dot: our exact-penalty model)", fontsize=10)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def plot_training(results: dict[str, TrainResult]):
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    for k, res in results.items():
        h = res.history
        if not len(h):
            continue
        axes[0].plot(h["epoch"], h["train_loss"], marker=".", label=RUN_BY_KEY[k].label)
        if "penalty" in h:
            axes[1].plot(h["epoch"], h["penalty"], marker=".", label=RUN_BY_KEY[k].label)
    axes[0].set_title("training loss (CE + penalty)")
    axes[1].set_title("penalty mean(D²)/2")
    axes[1].set_yscale("log")
    for a in axes:
        a.set_xlabel("epoch")
        a.legend(fontsize=7)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- finite differences vs double backprop


PRECISIONS = ("float64", "fp32 (TF32 off)", "TF32", "bf16 autocast")


def fd_vs_exact(cfg: Config, models: dict[str, nn.Module], test, norm: str = "l2") -> pd.DataFrame:
    """Relative error of the FD penalty D² against the exact ‖∇ℓ‖² (float64 double backprop) per image, for each h
    and arithmetic: float64, fp32 with TF32 off, TF32 (CUDA only) and bf16 autocast. Eval mode, so that the images
    do not interact through BatchNorm and the exact per-image gradient is well defined."""
    import copy
    dev = cfg.s.device
    x, y = test.images(dev)[:cfg.fd_check_n], test.y[:cfg.fd_check_n].to(dev)
    rows = []
    for name, model in models.items():
        m64 = copy.deepcopy(model).double().to(dev)
        with attack_mode(m64, "eval"), torch.enable_grad(), fp32_strict():
            xi = x.double().requires_grad_(True)
            ce = torch.nn.functional.cross_entropy(m64(xi), y, reduction="sum")
            g, = torch.autograd.grad(ce, xi)
        exact = dual_norm_sq(g, norm).detach()
        keep = exact > 0
        for prec in PRECISIONS:
            if prec == "TF32" and dev.type != "cuda":
                continue
            mdl = m64 if prec == "float64" else model
            xx = x.double() if prec == "float64" else x
            for h in cfg.fd_check_h:
                with attack_mode(mdl, "eval"), torch.enable_grad(), _precision(prec, dev):
                    _, D, _ = fd_penalty(mdl, xx, y, h, norm, strict=prec in ("float64", "fp32 (TF32 off)"))
                est = D.detach().double().pow(2)
                rel = ((est - exact).abs() / exact)[keep].cpu().numpy()
                rows.append({"model": name, "precision": prec, "h": h, "median_rel_err": float(np.median(rel)),
                             "q90_rel_err": float(np.quantile(rel, 0.9)), "n": int(keep.sum())})
    return pd.DataFrame(rows)


@contextlib.contextmanager
def _precision(prec: str, dev: torch.device):
    if prec == "bf16 autocast":
        with torch.autocast(dev.type, dtype=torch.bfloat16):
            yield
    elif prec == "TF32":
        old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        try:
            yield
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old
    else:
        yield


def plot_fd_vs_exact(df: pd.DataFrame):
    import matplotlib.pyplot as plt
    models = list(dict.fromkeys(df["model"]))
    fig, axes = plt.subplots(1, len(models), figsize=(5.2 * len(models), 3.8), squeeze=False, sharey=True)
    for ax, m in zip(axes[0], models):
        sub = df[df.model == m]
        for prec, g in sub.groupby("precision", sort=False):
            g = g.sort_values("h")
            ax.plot(g["h"], g["median_rel_err"].clip(lower=1e-17), marker="o", ms=4, label=prec)
        for h in (0.01, 0.1):
            ax.axvline(h, color="k", lw=0.5, ls=":")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("finite-difference step h")
        ax.set_title(m)
    axes[0, 0].set_ylabel("median |D² − ‖∇ℓ‖²| / ‖∇ℓ‖²")
    axes[0, -1].legend(fontsize=8)
    fig.suptitle("Finite-difference penalty vs the exact squared gradient norm", fontsize=11)
    fig.tight_layout()
    return fig


COST_METHODS = ("Standard (undefended)", "FD squared l1 lambda=1", "DBP squared l1 lambda=1", "7-step AT")


def measure_costs(cfg: Config, train, rep: Report | None = None) -> pd.DataFrame:
    """A few training batches of each method, all in fp32 with TF32 off (as on the authors' GTX 1080 Ti), after one
    untimed warm-up batch: measured N per sample, seconds per batch, peak GPU memory, and the time relative to
    standard training beside the paper's hours ratio (journal Table 1)."""
    hours = reported.table(PAPER, "journal_hours")["hours"]
    mk = {"Standard (undefended)": lambda: Standard(),
          "FD squared l1 lambda=1": lambda: FiniteDifferenceGR(1.0, 0.1, "l1"),
          "DBP squared l1 lambda=1": lambda: DoubleBackpropGR(1.0, "l1"),
          "7-step AT": lambda: PGDAT(AT_EPS, AT_ALPHA, 7, start=None, bn_mode="train")}
    dev = cfg.s.device
    rows = []
    for label in COST_METHODS:
        res = None
        mem = None
        for batches in (1, cfg.cost_batches):
            tc = TrainConfig(epochs=1, batch_size=cfg.batch_size, max_batches=batches, amp="off",
                             schedule={"name": "constant", "lr": 0.01},
                             augment=Augment(crop_padding=4, fill=128, flip=True, cutout=16), seed=cfg.s.seed)
            if dev.type == "cuda":
                torch.cuda.reset_peak_memory_stats(dev)
            with fp32_strict():
                res = Trainer(build(cfg, RUN_BY_KEY["undefended"]), mk[label](), train, tc, device=dev,
                              progress_bar=False).fit()
            if dev.type == "cuda":
                mem = torch.cuda.max_memory_allocated(dev) / 2**30
        rows.append({"method": label, "measured_N": res.cost["total"],
                     "seconds_per_batch": res.train_seconds / cfg.cost_batches, "peak_memory_GiB": mem,
                     "paper_hours": float(hours.get(label, np.nan))})
    df = pd.DataFrame(rows).set_index("method")
    df["time_vs_standard"] = df["seconds_per_batch"] / df.loc["Standard (undefended)", "seconds_per_batch"]
    df["paper_time_vs_standard"] = df["paper_hours"] / df.loc["Standard (undefended)", "paper_hours"]
    if rep is not None:
        for label, r in df.iterrows():
            rep.add_row("cost", label, {"time_vs_standard": float(r["time_vs_standard"])},
                        paper={"time_vs_standard": float(r["paper_time_vs_standard"])},
                        cost_passes=float(r["measured_N"]), train_s=float(r["seconds_per_batch"] * cfg.cost_batches),
                        epochs=None, n=0,
                        note=f"cost only: {cfg.cost_batches} batches of {cfg.batch_size} in fp32 without TF32 on "
                             f"{dev}; the paper's ratio is from its GTX 1080 Ti hours (journal Table 1)",
                        seconds_per_batch=float(r["seconds_per_batch"]), peak_memory_gib=r["peak_memory_GiB"])
    return df


def plot_costs(costs: pd.DataFrame):
    import matplotlib.pyplot as plt
    fig, (a, b) = plt.subplots(1, 2, figsize=(10.5, 3.6))
    xs = np.arange(len(costs))
    labels = [s.replace(" squared l1 lambda=1", "\nsq-ℓ1 λ=1").replace(" (undefended)", "") for s in costs.index]
    a.bar(xs, costs["measured_N"], color="tab:blue")
    a.set_xticks(xs, labels, fontsize=8)
    a.set_ylabel("network passes per sample (N)")
    a.set_title("Cost in passes (cost meter)")
    b.bar(xs - 0.2, costs["time_vs_standard"], width=0.4, label="ours (seconds per batch)")
    b.bar(xs + 0.2, costs["paper_time_vs_standard"], width=0.4, alpha=0.6, label="paper (GTX 1080 Ti hours)")
    b.set_xticks(xs, labels, fontsize=8)
    b.set_ylabel("time relative to standard training")
    b.set_title("Cost in time")
    b.legend(fontsize=8)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------------- ImageNet-1k


IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

IMAGENET_COMMAND = """\
python -c "from robustlib.chapters.gradreg import train_imagenet; \\
train_imagenet('/path/to/imagenet/train', 'runs/imagenet-fd-l2-lam0.1', lam=0.1, h=0.01, epochs=29)"
python -c "from robustlib.chapters.gradreg import evaluate_imagenet; \\
print(evaluate_imagenet('/path/to/imagenet/val', 'runs/imagenet-fd-l2-lam0.1/model.pt', n=1000))\""""


def train_imagenet(train_dir: str, out_dir: str, *, lam: float = 0.1, h: float = 0.01, norm: str = "l2",
                   epochs: int = 29, batch_size: int = 256, lr: float = 0.1, image_size: int = 224,
                   arch: str = "resnet50", workers: int = 8, device: str = "auto", max_batches: int | None = None,
                   smooth: bool = False) -> Path:
    """Train the squared-ℓ2 FD model on an ImageNet folder (torchvision ``ImageFolder`` layout).

    What the authors did, as far as one GPU allows: torchvision's ResNet-50 with the last BatchNorm of each block
    zero-initialised (their ``--init-bn0``), inputs *normalised* by the data loader so that h = 0.01 is in
    normalised-input units as in the paper, SGD momentum 0.9, weight decay 1e-4 without biases, the penalty in fp32
    with TF32 off. Not reproduced: their 29-epoch DAWNBench schedule with progressive resizing (128 → 224 → 288 px)
    on four GPUs; here a fixed ``image_size`` with a linear warm-up to ``lr``·batch/256 over 2 epochs, then cosine.
    Expect days on one GPU. Writes ``<out_dir>/model.pt`` (the last epoch).
    """
    import torchvision
    from torchvision import transforms as T
    from ..utils import resolve_device
    dev = resolve_device(device)
    tf = T.Compose([T.RandomResizedCrop(image_size, scale=(0.35, 1.0)), T.RandomHorizontalFlip(), T.ToTensor(),
                    T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    ds = torchvision.datasets.ImageFolder(train_dir, transform=tf)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=workers,
                                         drop_last=True, pin_memory=dev.type == "cuda")
    model = getattr(torchvision.models, arch)(weights=None, num_classes=len(ds.classes),
                                              zero_init_residual=True).to(dev)
    if smooth:
        from ..models.resnext import SmoothReLU
        for name, mod in list(model.named_modules()):
            for cname, child in list(mod.named_children()):
                if isinstance(child, nn.ReLU):
                    setattr(mod, cname, SmoothReLU())
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    peak = lr * batch_size / 256
    opt = torch.optim.SGD([{"params": decay, "weight_decay": 1e-4}, {"params": no_decay, "weight_decay": 0.0}],
                          lr=peak, momentum=0.9)
    steps = epochs * (min(len(loader), max_batches) if max_batches else len(loader))
    warm = 2 * steps / max(epochs, 1)

    def factor(t: int) -> float:
        if t < warm:
            return (t + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * (t - warm) / max(steps - warm, 1)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    model.train()
    with fp32_strict():
        for _ in range(epochs):
            for i, (x, y) in enumerate(loader):
                if max_batches and i >= max_batches:
                    break
                x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
                ce, D, _ = fd_penalty(model, x, y, h, norm)
                loss = ce.mean() + lam * D.pow(2).mean() / 2
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.save({"arch": arch, "num_classes": len(ds.classes), "smooth": smooth, "state": model.state_dict(),
                "lam": lam, "h": h, "norm": norm, "epochs": epochs}, out / "model.pt")
    return out / "model.pt"


def evaluate_imagenet(val_dir: str, checkpoint: str, *, n: int = 1000, image_size: int = 288,
                      budget: AttackBudget | None = None, device: str = "auto", seed: int = 0) -> dict:
    """Top-1/top-5 clean error and the ℓ∞ minimum-distance statistics on the first ``n`` validation images (resize to
    1.14·size, centre crop; the normalisation moves inside the model so that attacks work in [0, 1] pixels).
    The paper's ImageNet attacks count an image as broken when the label leaves the *top 5*; PGD-bisection and FAB
    here use top-1 misclassification, so the distances are smaller than the paper's."""
    import torchvision
    from torchvision import transforms as T
    from ..models.norm import Normalize
    from ..utils import resolve_device
    dev = resolve_device(device)
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    net = getattr(torchvision.models, state["arch"])(weights=None, num_classes=state["num_classes"])
    if state.get("smooth"):
        from ..models.resnext import SmoothReLU
        for mod in list(net.modules()):
            for cname, child in list(mod.named_children()):
                if isinstance(child, nn.ReLU):
                    setattr(mod, cname, SmoothReLU())
    net.load_state_dict(state["state"])
    model = nn.Sequential(Normalize(IMAGENET_MEAN, IMAGENET_STD), net).to(dev).eval()
    tf = T.Compose([T.Resize(int(image_size * 1.14)), T.CenterCrop(image_size), T.ToTensor()])
    ds = torchvision.datasets.ImageFolder(val_dir, transform=tf)
    n = min(n, len(ds))
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(ds), generator=g)[:n].tolist()
    xs, ys = zip(*[ds[i] for i in idx])
    x, y = torch.stack(xs).to(dev), torch.tensor(ys).to(dev)
    with torch.no_grad():
        top5 = torch.cat([model(x[i:i + 100]).topk(min(5, state["num_classes"]), 1).indices
                          for i in range(0, n, 100)])
    budget = budget or AttackBudget("linf", eps_max=8 / 255, pgd_steps=10, bisect_steps=8, anchors=(EPS_2,),
                                    fab_iter=30, batch_size=100)
    d = min_distances(model, x, y, budget, seed=seed)["best"].to_numpy()
    return {"n": n, "top1_err": 100 * float((top5[:, 0] != y).float().mean()),
            "top5_err": 100 * float((top5 != y[:, None]).all(1).float().mean()),
            "err_2": error_at(d, EPS_2), "err_8": error_at(d, EPS_8), "mean_dist": mean_distance(d, cap=1.0)}
