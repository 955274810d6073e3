"""Chapter: scaleable input-gradient regularisation by finite differences (Finlay & Oberman, 2019).

The chapter trains Finlay & Oberman's ResNeXt34-2x32 on CIFAR-10 undefended, with 7-step adversarial training, with
the finite-difference (FD) squared-ℓ1 and squared-ℓ2 penalties (λ ∈ {0.1, 1}), with the exact double-backprop
penalty and with smooth ReLUs (:data:`recipes.RECIPES`, one row per model); it measures each model's per-image
minimum adversarial distance and L-/C-bounds (cached beside the checkpoint by :func:`robustlib.experiment.cached`),
the h-ablation, the agreement of the FD penalty with the exact one (:mod:`.numerics`) and the training cost.

Each row is trained by one part notebook (``4X_gradreg__<part>``, :data:`recipes.PARTS`); the chapter notebook
(``40_gradreg``) gathers the parts' results and reopens their runs (nothing is trained twice). Other chapters ask
for a trained row through :func:`trained`. ImageNet-1k lives in :mod:`.imagenet`. The paper's headline claims, checked
on the rows' per-image flags, are :mod:`.chapter` (:data:`CLAIMS`, :func:`claims`). The cpu profile trains only the
rows its ``"rows"`` entry lists (:attr:`Config.rows`; ``specs`` keeps every row) and is planned with the two-core
time model (``recipes.CPU_SECONDS_PER_PASS``).
"""
from __future__ import annotations

import contextlib
import inspect
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import torch

from ... import experiment as ex
from ... import reported
from ...bounds import bound_stats
from ...data import Augment, load_dataset
from ...distances import min_distances
from ...errors import ConfigError, UnknownNameError
from ...methods import METHODS
from ...models import build_model, num_parameters
from ...report import Report
from ...schedules import build_schedule
from ...training import TrainConfig
from ...utils import fp32_strict
from ..common import ProfileValues, RunSettings, cifar10_splits, settings
from .recipes import (CPU_EVAL_SECONDS, CPU_SECONDS_PER_PASS, CPU_SLOWER_PASSES, EVAL_SECONDS, NOTES, PART_NOTEBOOKS,
                      PARTS, PROFILES, RECIPES, SECONDS_PER_PASS, SLOWER_PASSES, TRAINING)
from .figures import (plot_bounds, plot_costs, plot_distance_curves, plot_h_ablation, plot_smooth_relu,  # noqa: F401
                      plot_training)
from .numerics import PRECISIONS, fd_vs_exact, plot_fd_vs_exact  # noqa: F401
from .tables import (L2_ROWS, MAIN_ROWS, PAPER, PERCENT_METRICS, TABLES, add_missing_rows, add_rows,  # noqa: F401
                     bound_violations, compare, constants_metrics, describe, l2_flags, l2_metrics, linf_flags,
                     linf_metrics, part_tables, style, wide)
from . import imagenet  # noqa: F401,E402
from .chapter import BOUND_CLAIMS, CLAIMS, BoundClaim, check_bound, claims, verdicts  # noqa: F401,E402

TRAIN_KEYS = ("epochs", "batch", "lr", "momentum", "weight_decay")   # row overrides that change the optimisation
# a table row label → the RECIPES row that trains it (the h-ablation's labels name the same models)
ROW_OF = {**{k: k for k in RECIPES}, **{r["ablation"]: k for k, r in RECIPES.items() if r["ablation"]}}
# the cost table's rows (the journal's hours table) and the recipe whose method each measures
COST_ROWS = {"Standard (undefended)": "Undefended", "FD squared l1 lambda=1": "squared l1 lambda=1",
             "DBP squared l1 lambda=1": "DBP squared l1 lambda=1", "7-step AT": "7-step AT"}


# ------------------------------------------------------------------------------------------------ configuration


@dataclass
class Config(ProfileValues):
    s: RunSettings
    profile: dict                        # PROFILES[s.profile]
    specs: dict[str, ex.RunSpec]         # one per RECIPES row, with the profile's changes and the overrides applied
    notes: list[str] = field(default_factory=list)


    @property
    def epochs(self) -> int:
        return self.profile["epochs"] or TRAINING["epochs"]

    @property
    def batch_size(self) -> int:
        return self.profile["batch"] or TRAINING["batch"]

    @property
    def budgets(self) -> dict:
        return {"linf": self.linf, "l2": self.l2}

    @property
    def rows(self) -> list[str]:
        """The RECIPES rows this profile trains (the cpu profile trains a subset; ``specs`` keeps every row)."""
        keep = self.profile.get("rows")
        return [k for k in self.specs if keep is None or k in keep]

    def part_labels(self, part: str) -> list[str]:
        if part not in PARTS:
            raise UnknownNameError("gradreg part", part, PARTS)
        return [k for k in self.rows if self.specs[k].extra["part"] == part]

    def plan(self, part: str | None = None) -> pd.DataFrame:
        """Which notebook trains which row, with the one time model's estimate (:func:`robustlib.experiment.plan`:
        derived passes × images × epochs × the estimated seconds per pass — of one H200, or of two CPU cores in the
        cpu profile — plus evaluation)."""
        specs = [self.specs[k] for k in (self.part_labels(part) if part else self.rows)]
        basis = self.basis
        df = ex.plan(specs, self.n_train or 50000, {sp.alias: seconds_per_pass(sp, basis) for sp in specs},
                     {sp.alias: eval_seconds(sp, self.n_test, basis) for sp in specs})
        df["part"] = [sp.extra["part"] for sp in specs]
        df["model"] = [sp.model for sp in specs]
        df["training"] = [describe(sp) for sp in specs]
        df["attack norms"] = [", ".join(sp.extra["evals"]) for sp in specs]
        df["h-ablation row"] = [sp.extra["ablation"] or "" for sp in specs]
        return df.reset_index().rename(columns={"label": "row"}).set_index(["part", "row"])

    @property
    def basis(self) -> str:
        """Which time model plans this profile: "cpu" (two CPU cores) for the cpu profile, else "gpu" (one H200)."""
        return "cpu" if self.s.profile == "cpu" else "gpu"

    def estimate_minutes(self, part: str = "chapter") -> float:
        """Estimated minutes of a notebook (one H200; two CPU cores in the cpu profile): start-up plus its runs (the
        plan), and for the chapter notebook the reopening, agreement check, cost measurement and the public-API
        cell's extra run."""
        ev = CPU_EVAL_SECONDS if self.basis == "cpu" else EVAL_SECONDS
        trains = self.part_labels(part) if part else self.rows
        total = ev["notebook"] + (60 * self.plan(part)["minutes"].sum() if trains else 0.0)
        if part == "chapter":
            extra = self.specs["squared l1 lambda=1"].replace(hp={"lam": 0.3})
            total += ev["chapter"] + ex.estimate_seconds(extra, self.n_train or 50000,
                                                         seconds_per_pass(extra, self.basis))
        return total / 60

    def table(self) -> pd.DataFrame:
        b = self.budgets
        rows = {
            "profile": self.s.profile, "device": str(self.s.device), "seed": self.s.seed,
            "training images": self.n_train or "all 50 000", "test images": f"the first {self.n_test}",
            "model": f"ResNeXt34-2x32 {self.model or '(width 32, 5-5-5 blocks)'}",
            "schedule": f"{self.epochs} epochs, batch {self.batch_size}, SGD lr {TRAINING['lr']} ÷5 at 30/60/80 % "
                        "(the authors: 200 epochs, ÷5 at 60/120/160)"
                        + "".join(f"; {k}: {v} epoch{'s' if v > 1 else ''}"
                                  for k, v in (self.profile.get("row_epochs") or {}).items()),
            "rows trained": "all" if self.profile.get("rows") is None else ", ".join(self.rows),
            "checkpoint": "the last epoch (the authors selected on clean test error; we do not)",
            "ℓ∞ distance": b["linf"].describe(), "ℓ2 distance": b["l2"].describe(),
            "Lanczos": f"≤ {self.lanczos_iters} iterations, tolerance {self.lanczos_tol:g}",
        }
        if self.s.profile != "smoke":
            where = "2 CPU cores" if self.basis == "cpu" else "H200"
            rows[f"estimated {where} minutes"] = ", ".join(f"{p}: {self.estimate_minutes(p):.1f}" for p in PARTS)
        return pd.DataFrame({"setting": list(rows), "value": [str(v) for v in rows.values()]}).set_index("setting")


def seconds_per_pass(spec: ex.RunSpec, basis: str = "gpu") -> float:
    """The time model's estimated seconds per pass N for a run: one H200 (recipes.SECONDS_PER_PASS, SLOWER_PASSES),
    or two CPU cores with ``basis="cpu"`` (CPU_SECONDS_PER_PASS, CPU_SLOWER_PASSES)."""
    per, slower = (CPU_SECONDS_PER_PASS, CPU_SLOWER_PASSES) if basis == "cpu" else (SECONDS_PER_PASS, SLOWER_PASSES)
    s = per["fp32" if spec.config.amp == "off" else "bf16"]
    return s * slower.get(spec.model, 1.0) * slower.get(spec.method, 1.0)


def eval_seconds(spec: ex.RunSpec, n_test: int, basis: str = "gpu") -> float:
    """Estimated evaluation seconds of a run (each norm's minimum distances, the smooth rows' Lanczos); on two CPU
    cores a smooth model's evaluation is slower by the smooth ReLU's factor too."""
    ev = CPU_EVAL_SECONDS if basis == "cpu" else EVAL_SECONDS
    per = ev["norm"] * len(spec.extra["evals"])
    if spec.extra["smooth"] and "l2" in spec.extra["evals"]:
        per += ev["lanczos"]
    if basis == "cpu":
        per *= CPU_SLOWER_PASSES.get(spec.model, 1.0)
    return per * n_test / 1000


def recipe_table() -> pd.DataFrame:
    """RECIPES with the shared TRAINING recipe: the paper's hyperparameter table, one line per trained model."""
    shared = {k: v for k, v in TRAINING.items() if k not in ("source", "selection")}
    part = {k: p for p, labels in PARTS.items() for k in labels}
    return pd.DataFrame([{"row": k, "method": r["method"], "hp": r["hp"], "model": r["model"], **shared,
                          "amp": r["amp"], "attack norms": ", ".join(r["evals"]), "h-ablation": r["ablation"] or "",
                          "part": part[k], "source": r["source"]} for k, r in RECIPES.items()]).set_index("row")


def make_spec(label: str, profile: dict, seed: int, overrides: dict | None = None) -> ex.RunSpec:
    """The RunSpec of one RECIPES row under a profile. ``overrides`` ({row: {name: value}}) change a row's method
    hyperparameters (``lam``, ``h``, ``norm``, ``steps``, …) or its optimisation (:data:`TRAIN_KEYS`)."""
    r = RECIPES[label]
    over = dict((overrides or {}).get(label, {}))
    train = {k: over.pop(k) for k in list(over) if k in TRAIN_KEYS}
    valid = [p for p in inspect.signature(METHODS.get(r["method"])).parameters if p != "name"]
    bad = sorted(set(over) - set(valid))
    if bad:
        raise ConfigError(f"overrides of row {label!r} name unknown hyperparameters {bad}; valid: "
                          f"{', '.join(valid + list(TRAIN_KEYS))}")
    epochs = train.get("epochs", (profile.get("row_epochs") or {}).get(label) or profile["epochs"]
                       or TRAINING["epochs"])
    lr = train.get("lr", TRAINING["lr"])
    tc = TrainConfig(epochs=epochs, batch_size=train.get("batch", profile["batch"] or TRAINING["batch"]), lr=lr,
                     schedule=build_schedule({**TRAINING["schedule"], "lr": lr, "epochs": epochs}),
                     momentum=train.get("momentum", TRAINING["momentum"]), nesterov=TRAINING["nesterov"],
                     weight_decay=train.get("weight_decay", TRAINING["weight_decay"]), ema=TRAINING["ema"],
                     augment=Augment(**TRAINING["augment"]), seed=seed, amp=r["amp"])
    part = next(p for p, labels in PARTS.items() if label in labels)
    rows = {label: "model", **({r["ablation"]: "model"} if r["ablation"] else {})}
    return ex.RunSpec(alias=f"gradreg-{ex.slug(label)}", label=label, method=r["method"], hp={**r["hp"], **over},
                      model=r["model"], model_kw=dict(profile["model"]), config=tc, rows=rows, source=r["source"],
                      note=TRAINING["selection"],
                      extra={"part": part, "evals": tuple(r["evals"]), "smooth": r["model"].startswith("smooth"),
                             "ablation": r["ablation"], "paper_epochs": TRAINING["epochs"]})


def _config(s: RunSettings, seed: int, overrides: dict | None = None) -> Config:
    overrides = {ROW_OF.get(k, k): v for k, v in (overrides or {}).items()}
    bad = sorted(set(overrides) - set(RECIPES))
    if bad:
        raise ConfigError(f"overrides name unknown rows {bad}; valid: {', '.join(RECIPES)}")
    prof = PROFILES[s.profile]
    cfg = Config(s=s, profile=prof, specs={k: make_spec(k, prof, seed, overrides) for k in RECIPES})
    if s.profile in NOTES:
        cfg.notes.append(NOTES[s.profile].format(epochs=cfg.epochs))
    if overrides:
        cfg.notes.append(f"hyperparameters overridden by the notebook: {overrides}")
    return cfg


def config(profile: str = "smoke", seed: int = 0, device: str = "auto", data_dir: str | None = None,
           out_dir: str | None = None, overrides: dict | None = None) -> Config:
    s = settings(profile, seed, device, data_dir, out_dir)
    return _config(s, s.seed, overrides)


def report(cfg: Config, part: str | None = None) -> Report:
    if part is not None and part not in PART_NOTEBOOKS:
        raise UnknownNameError("gradreg part", part, PART_NOTEBOOKS)
    return Report(PAPER, cfg.s.profile, cfg.s.out_dir, "cifar10", cfg.n_test, cfg.s.seed, str(cfg.s.device),
                  part=part)


def load_data(cfg: Config):
    train, _, test = cifar10_splits(cfg.s, cfg.n_train, cfg.n_test)
    return train, test


# ---------------------------------------------------------------------------------------------------- training


def _precision(spec: ex.RunSpec):
    """The penalties train inside ``fp32_strict()`` (TF32 off, restored afterwards); the rest as the Trainer says."""
    return fp32_strict() if spec.config.amp == "off" else contextlib.nullcontext()


def train_row(cfg: Config, label: str, train, progress: bool = True) -> ex.Trained:
    """Train one RECIPES row (or reopen its finished run) through the experiment layer."""
    spec = cfg.specs[ROW_OF.get(label, label)]
    with _precision(spec):
        return ex.train(spec, train, cfg.s.checkpoint_dir, device=cfg.s.device, progress=progress)


def train_part(cfg: Config, part: str, train) -> dict[str, ex.Trained]:
    return {k: train_row(cfg, k, train) for k in cfg.part_labels(part)}


def trained(s: RunSettings, label: str, *, seed: int | None = None, progress: bool = True) -> ex.Trained:
    """The trained run that gives table row ``label`` (a RECIPES row or an h-ablation row such as ``"h=0.1"``) under
    profile ``s.profile`` — reopened when finished, trained otherwise. ``t.model(t.spec.rows[label])`` is the model
    of the row. For other chapters (the comparison reuses the squared-ℓ1, λ = 1 row)."""
    if label not in ROW_OF:
        raise UnknownNameError("gradreg row", label, ROW_OF)
    cfg = _config(s, s.seed if seed is None else seed)
    train = load_dataset("cifar10", "train", s.data_dir, limit=cfg.n_train)
    return train_row(cfg, ROW_OF[label], train, progress)


def training_table(cfg: Config, runs: dict[str, ex.Trained]) -> pd.DataFrame:
    """Per run: epochs, measured N per sample, training seconds and the last epoch's loss, accuracy and penalty."""
    rows = []
    for label, t in runs.items():
        res = t.result
        last = res.history.iloc[-1].to_dict() if len(res.history) else {}
        acc = last.get("acc", last.get("adv_acc", np.nan))
        adv = t.spec.method == "pgd_at"
        rows.append({"row": label, "training": describe(t.spec), "epochs": res.epochs,
                     "N per sample": t.cost_passes, "train time (s)": res.train_seconds,
                     "last train loss": last.get("train_loss", np.nan),
                     "last train accuracy (%, adversarial)" if adv else "last train accuracy (%)": 100 * acc,
                     "last penalty": last.get("penalty", np.nan), "checkpoint": t.folder.name})
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


def evaluate(cfg: Config, t: ex.Trained, test) -> Evaluation:
    """Minimum distances (each norm of the row's ``evals``) and, with ℓ2, the L-bound (and for smooth models the
    Lanczos curvature and C-bound) — per image, cached beside the run's checkpoint (:func:`experiment.cached`)."""
    norms = t.spec.extra["evals"]
    what = {"evaluation": "gradreg distances and bounds", "norms": list(norms), "seed": cfg.s.seed,
            "budgets": {n: asdict(cfg.budgets[n]) for n in norms}, "curvature": bool(t.spec.extra["smooth"]),
            "lanczos": [cfg.lanczos_iters, cfg.lanczos_tol], "eval_batch": cfg.eval_batch,
            "test": [test.name, test.split, len(test), int(test.y.sum())]}
    values = dict(ex.cached(t, what, lambda: _distances_and_bounds(cfg, t, test)))
    return Evaluation(values, dict(values.pop("seconds", {})))


def _distances_and_bounds(cfg: Config, t: ex.Trained, test) -> dict:
    dev = cfg.s.device
    model = t.model().to(dev).eval()
    x, y = test.images(dev), test.y.to(dev)
    arrays: dict = {}
    seconds: dict[str, float] = {}

    def clock(t0):
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        return time.perf_counter() - t0

    for norm in t.spec.extra["evals"]:
        t0 = time.perf_counter()
        df = min_distances(model, x, y, cfg.budgets[norm], seed=cfg.s.seed)
        seconds[norm] = clock(t0)
        arrays.update({f"{norm}_{c}": df[c].to_numpy(dtype=float) for c in df.columns if c != "clean_correct"})
        arrays["clean_correct"] = df["clean_correct"].to_numpy(dtype=bool)
    if "l2" in t.spec.extra["evals"]:
        t0 = time.perf_counter()
        b = bound_stats(model, x, y, curvature=t.spec.extra["smooth"], iters=cfg.lanczos_iters, tol=cfg.lanczos_tol,
                        seed=cfg.s.seed, batch_size=cfg.eval_batch)
        seconds["bounds"] = clock(t0)
        arrays.update(b.to_arrays())
    return {**arrays, "seconds": seconds}


def evaluate_part(cfg: Config, part: str, runs: dict[str, ex.Trained], test) -> dict[str, Evaluation]:
    return {k: evaluate(cfg, t, test) for k, t in runs.items() if t.spec.extra["part"] == part}


# --------------------------------------------------------------------------------------------------------- cost


def cost_spec(cfg: Config, label: str) -> ex.RunSpec:
    """The cost measurement's run of a cost-table row: the row's method on the profile's ReLU ResNeXt, a constant
    lr, fp32 with TF32 off for every method (as on the authors' GTX 1080 Ti, which had no tensor cores)."""
    tc = TrainConfig(epochs=1, batch_size=cfg.batch_size, amp="off", schedule={"name": "constant", "lr": 0.01},
                     augment=Augment(**TRAINING["augment"]), seed=cfg.s.seed)
    return cfg.specs[COST_ROWS[label]].replace(alias=f"gradreg-cost-{ex.slug(label)}", label=label,
                                               model="resnext34_2x32", config=tc)


def measure_costs(cfg: Config, train, rep: Report | None = None) -> pd.DataFrame:
    """A few training batches of each method (:func:`experiment.measure_cost`, after one untimed warm-up batch):
    measured N per sample beside the method's own statement, seconds per batch, peak GPU memory, and the time
    relative to standard training beside the paper's hours ratio (journal Table 1)."""
    hours = reported.table(PAPER, "journal_hours")["hours"]
    dev = cfg.s.device
    rows = []
    for label in COST_ROWS:
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        with fp32_strict():
            m = ex.measure_cost(cost_spec(cfg, label), train, batches=cfg.cost_batches, device=dev)
        rows.append({"method": label, "measured_N": m["measured_N"], "derived_N": m["derived_N"],
                     "seconds_per_batch": m["seconds_per_batch"],
                     "peak_memory_GiB": torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else None,
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


# ------------------------------------------------------------------------------------------------ the network


def architecture_facts(seed: int = 0) -> dict:
    """The full ResNeXt34-2x32's parameter count and the smallest logit of a fresh model on random images (≥ 0: the
    ReLU on the logits, one of the authors' quirks)."""
    g = torch.Generator().manual_seed(seed)
    full = build_model("resnext34_2x32").eval()
    with torch.no_grad():
        low = float(full(torch.rand(8, 3, 32, 32, generator=g)).min())
    return {"parameters_M": num_parameters(full) / 1e6, "min_logit_random_images": low}
