"""Chapter: ABNN — adaptive batch-normalisation networks, robustness without adversarial training (Lo & Patel, AVSS
2024), reproduced and audited.

Steps the notebooks call:

* part ``pgdat`` (``21_abnn__pgdat``): the PGD-AT baseline with t_max = 5 (12N);
* part ``train`` (``22_abnn__train``): the substitute (pre-trained on Tiny-ImageNet-32, or torchvision ImageNet
  weights a user supplies), the undefended target (2N) and the headline ABNN (batch-global μ/σ, stage placement, 3N);
* part ``variants`` (``23_abnn__variants``): ABNN with per-sample μ/σ and ABNN with an adaptive BN at every BN;
* the chapter (``20_abnn``): reuses every trained model, evaluates the CIFAR-10 table (clean, PGD, ROA, AutoAttack),
  the gradient-masking sanity checks, the cost table, the ROA examples, and (smoke profile only, or with UCF-101 at
  hand) the video experiment.

Environment variables for readers who have what this project lacks: ``ROBUSTLIB_ABNN_SUBSTITUTE`` = a local
torchvision ImageNet ResNet-18 checkpoint (used instead of the Tiny-ImageNet pre-training); ``ROBUSTLIB_UCF101`` = a
folder of UCF-101 clips as npz shards (``train*.npz``/``test*.npz``; ``x`` uint8 N×(T·112)×112×3, HWC as every npz
shard, with the T frames stacked along the height; ``y`` labels) and ``ROBUSTLIB_KINETICS_R3D18`` = torchvision's Kinetics-400 ``r3d_18``
checkpoint, for the UCF-101 experiment.
"""
from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .. import reported
from ..attacks import PGD, Attack, AutoAttack, predict
from ..attacks.roa import ROA
from ..data import Augment, load_dataset
from ..evaluation import B1, EvalResult, evaluate
from ..methods import PGDAT, Standard
from ..methods.abnn import ABNN, ABNNNet, ABNNView, cost_formula, freeze, load_torchvision_weights
from ..models import build_model, num_parameters
from ..models.video import KINETICS_MEAN, KINETICS_STD, synthetic_clips
from ..report import Report
from ..schedules import Piecewise, triangular
from ..stats import wilson_interval
from ..training import TrainConfig, TrainResult
from ..utils import fingerprint
from .common import RunSettings, by_profile, cifar10_splits, settings, train_cached

PAPER = "abnn"
EPS, ALPHA = 8 / 255, 2 / 255
ROWS = ("No Defense", "PGD-AT", "ABNN")
VARIANTS = {"ABNN": dict(placement="stages", stats="batch_global"),
            "ABNN (per-sample μ/σ)": dict(placement="stages", stats="per_sample"),
            "ABNN (every BN)": dict(placement="every_bn", stats="batch_global")}
ENV_SUBSTITUTE, ENV_UCF101, ENV_KINETICS = "ROBUSTLIB_ABNN_SUBSTITUTE", "ROBUSTLIB_UCF101", "ROBUSTLIB_KINETICS_R3D18"


@dataclass
class Config:
    s: RunSettings
    n_train: int | None
    n_test: int
    target_arch: str
    target: dict
    substitute_arch: str
    substitute: dict
    substitute_weights: str | None
    n_substitute: int | None
    sub_train: TrainConfig
    standard: TrainConfig
    pgd_at: TrainConfig
    abnn: TrainConfig
    variants: TrainConfig
    at_steps: int
    pgd_steps: int                       # the headline "PGD" (t = 5, α = 2/255, one random start)
    steps_grid: tuple[int, ...]          # PGD steps for the more-steps check (the middle one is the "PGD-k" variants)
    restarts: int
    eps_grid: tuple[int, ...]            # ε × 255 for the ε sweep
    batch_sizes: tuple[int, ...]         # evaluation batch sizes for the batch-dependence check
    eval_batch: int                      # the fixed evaluation batch size of every other number
    roa: dict
    aa_version: str | None
    aa_attacks: tuple[str, ...] | None
    video: dict | None
    share: dict = field(default_factory=dict)   # baselines shared with chapter 0 when its configuration is the same
    notes: list[str] = field(default_factory=list)

    @property
    def mid_steps(self) -> int:
        return self.steps_grid[len(self.steps_grid) // 2]

    def table(self) -> pd.DataFrame:
        sub = (f"{self.substitute_arch} {self.substitute or ''} with ImageNet weights from {self.substitute_weights}"
               if self.substitute_weights else
               f"{self.substitute_arch} {self.substitute or ''} pre-trained on Tiny-ImageNet-32 "
               f"({self.n_substitute or 'all 10 000'} images, 200 classes), {self.sub_train.epochs} epochs; "
               "frozen, BN in eval mode")
        rows = {
            "profile": self.s.profile, "device": str(self.s.device), "seed": self.s.seed,
            "training images (CIFAR-10)": self.n_train or "all 50 000", "test images": self.n_test,
            "target": f"{self.target_arch} {self.target or ''}", "substitute": sub,
            "No Defense": _describe(self.standard),
            f"PGD-AT (t_max = {self.at_steps}, ε = 8/255, α = 2/255)": _describe(self.pgd_at),
            "ABNN (clean cross-entropy)": _describe(self.abnn), "ABNN variants": _describe(self.variants),
            "evaluation PGD": f"ε = 8/255, α = 2/255, {self.pgd_steps} steps, one uniform random start",
            "sanity checks": f"PGD-{'/'.join(map(str, self.steps_grid))}, {self.restarts} restarts, ε grid "
                             f"{', '.join(map(str, self.eps_grid))} /255, batch sizes "
                             f"{', '.join(map(str, self.batch_sizes))}",
            "ROA": f"{self.roa['area']:.0%} area (10×10 on 32×32), grey start, t_max = {self.roa['steps']}, α = "
                   f"{self.roa['alpha'] * 255:.0f}/255, location searched on a strided grid (and random)",
            "AutoAttack": (f"{self.aa_version}{' ' + '+'.join(self.aa_attacks) if self.aa_attacks else ''}, ε = 8/255"
                           if self.aa_version else "not run in this profile"),
            "evaluation batch size": self.eval_batch,
        }
        return pd.DataFrame({"setting": list(rows), "value": [str(v) for v in rows.values()]}).set_index("setting")


def _describe(tc: TrainConfig) -> str:
    return f"{tc.epochs} epochs, batch {tc.batch_size}, {tc.schedule.describe()['name']} lr, wd {tc.weight_decay}"


def config(profile: str = "smoke", seed: int = 0, device: str = "auto", data_dir: str | None = None,
           out_dir: str | None = None) -> Config:
    s = settings(profile, seed, device, data_dir, out_dir)
    p = s.profile
    target_arch = by_profile(p, "resnet18", "resnet18", "resnet50")
    target = by_profile(p, {"width": 8, "blocks": (1, 1, 1, 1)}, {}, {})
    weights = os.environ.get(ENV_SUBSTITUTE) or None
    substitute = {} if (weights or p != "smoke") else {"width": 8, "blocks": (1, 1, 1, 1)}
    std_epochs = by_profile(p, 3, 15, 200)
    at_epochs = by_profile(p, 1, 10, 200)
    abnn_epochs = by_profile(p, 3, 15, 200)
    var_epochs = by_profile(p, 2, 10, 200)
    sub_epochs = by_profile(p, 2, 30, 100)
    sched = lambda e: by_profile(p, triangular(0.1, e), triangular(0.1, e), Piecewise(0.1, [100, 150], 0.1))  # noqa
    batch = by_profile(p, 64, 128, 128)
    common = dict(batch_size=batch, momentum=0.9, weight_decay=5e-4, augment=Augment(4, 0, True), seed=seed)
    cfg = Config(
        s=s, n_train=by_profile(p, 2000, None, None), n_test=by_profile(p, 100, 1000, 1000),
        target_arch=target_arch, target=target, substitute_arch="tv_resnet18", substitute=substitute,
        substitute_weights=weights, n_substitute=by_profile(p, 2000, None, None),
        sub_train=TrainConfig(epochs=sub_epochs, schedule=by_profile(p, triangular(0.1, sub_epochs),
                                                                     triangular(0.1, sub_epochs),
                                                                     Piecewise(0.1, [50, 75], 0.1)), **common),
        standard=TrainConfig(epochs=std_epochs, schedule=sched(std_epochs), **common),
        pgd_at=TrainConfig(epochs=at_epochs, schedule=sched(at_epochs), **common),
        abnn=TrainConfig(epochs=abnn_epochs, schedule=sched(abnn_epochs), **common),
        variants=TrainConfig(epochs=var_epochs, schedule=sched(var_epochs), **common),
        at_steps=5, pgd_steps=by_profile(p, 2, 5, 5),
        steps_grid=by_profile(p, (1, 2, 3), (5, 20, 50), (5, 20, 50)),
        restarts=by_profile(p, 2, 5, 5),
        eps_grid=by_profile(p, (0, 8, 64), (0, 2, 4, 8, 16, 32, 64), (0, 2, 4, 8, 16, 32, 64)),
        batch_sizes=by_profile(p, (1, 25, 100), (1, 10, 50, 200, 1000), (1, 10, 50, 200, 1000)),
        eval_batch=by_profile(p, 100, 500, 500),
        roa=dict(area=0.10, steps=by_profile(p, 2, 5, 5), alpha=70 / 255, stride=by_profile(p, 11, None, None)),
        aa_version=by_profile(p, None, "standard", "standard"), aa_attacks=None,
        video=_video_config(p, seed),
    )
    cfg.share = _shared_with_chapter0(cfg, profile, seed, device, data_dir, out_dir)
    n = cfg.notes
    if p == "smoke":
        n.append("smoke profile: width-8 ResNet-18 target and width-8 torchvision-layout ResNet-18 substitute, 2 000 "
                 "CIFAR-10 and 2 000 Tiny-ImageNet images, 100 test images, 1–3 epochs, cut attack budgets and no "
                 "AutoAttack. The numbers only show that the pipeline runs.")
    if p == "quick":
        n.append("quick profile: ResNet-18 target instead of the ResNet-50 that abnn.md recommends (ResNet-18 keeps "
                 "the "
                 "three trainings inside the 10-minute budgets); 15 epochs of standard and ABNN training and 10 "
                 "epochs of PGD-AT (t_max = 5) with a triangular learning rate, instead of ~200 epochs; the two ABNN "
                 "variants get 10 epochs (so that both fit one 10-minute job).")
    if p == "paper":
        n.append("paper profile: ResNet-50 target, 200 epochs with lr 0.1 divided by 10 at epochs 100 and 150 "
                 "(abnn.md §6; the slides give no CIFAR-10 recipe).")
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


def _video_config(profile: str, seed: int) -> dict | None:
    ucf, kin = os.environ.get(ENV_UCF101), os.environ.get(ENV_KINETICS)
    if ucf and kin:  # a reader with UCF-101 and Kinetics weights: the paper's networks
        frames = int(os.environ.get("ROBUSTLIB_UCF101_FRAMES", 40))  # the authors' 40-frame clips
        return dict(kind="ucf101", folder=ucf, substitute_weights=kin, frames=frames,
                    size=112, target=dict(width=64, blocks=(3, 4, 23, 3), cardinality=32),
                    substitute=dict(normalize=(KINETICS_MEAN, KINETICS_STD)),
                    epochs=by_profile(profile, 1, 5, 40), batch_size=16, eval_batch=16, lr=0.001, grad_clip=None,
                    eps=4 / 255, alpha=1 / 255, steps=5, n_test=None, roa_stride=None, seed=seed,
                    # torchvision's r3d_18 keeps 56×56 maps after its stem: flattened whole, the style maps would
                    # hold ≈ 3 billion weights, so the substitute features are average-pooled to 2×7×7 (a deviation)
                    style_pool=(2, 7, 7))
    if profile != "smoke":
        return None
    return dict(kind="synthetic", frames=4, size=16, num_classes=5, n_train=150, n_test=40,
                target=dict(width=8, blocks=(1, 1, 1, 1), cardinality=4), substitute=dict(width=8, blocks=(1, 1, 1, 1)),
                epochs=3, batch_size=10, eval_batch=20, lr=0.05, grad_clip=1.0, eps=8 / 255, alpha=2 / 255,
                steps=5, roa_stride=6, seed=seed, style_pool=None)


def _shared_with_chapter0(cfg: Config, profile, seed, device, data_dir, out_dir) -> dict:
    """Which baselines are exactly chapter 0's runs (same model, data and training configuration): those reuse
    chapter 0's checkpoints (keys ``ch0-…``) instead of training again."""
    from . import adversarial_examples as ch0
    try:
        c0 = ch0.config(profile, seed, device, data_dir, out_dir)
    except Exception:  # pragma: no cover - chapter 0 unavailable
        return {}
    same = (cfg.target_arch == "resnet18" and c0.model == cfg.target and c0.n_train == cfg.n_train)
    std0, at0 = c0.specs["Standard"].config, c0.specs["PGD-AT"].config   # chapter 0's RunSpecs
    out = {}
    if same and std0.describe() == cfg.standard.describe():
        out["standard"] = c0
    if same and c0.at_steps == cfg.at_steps and at0.describe() == cfg.pgd_at.describe():
        out["pgd_at"] = c0
    return out


def report(cfg: Config, part: str | None = None) -> Report:
    return Report(PAPER, cfg.s.profile, cfg.s.out_dir, "cifar10", cfg.n_test, cfg.s.seed, str(cfg.s.device), part=part)


# ------------------------------------------------------------------------------------------------- training


def load_data(cfg: Config):
    train, _, test = cifar10_splits(cfg.s, cfg.n_train, cfg.n_test)
    return train, test


def build_target(cfg: Config):
    return build_model(cfg.target_arch, **cfg.target)


def train_standard(cfg: Config, train) -> TrainResult:
    if "standard" in cfg.share:
        from . import adversarial_examples as ch0
        return ch0.train_standard(cfg.share["standard"], train)
    return train_cached(cfg.s, "abnn-standard", lambda: build_target(cfg), Standard(), train, cfg.standard)


def train_pgd_at(cfg: Config, train) -> TrainResult:
    if "pgd_at" in cfg.share:
        from . import adversarial_examples as ch0
        return ch0.train_pgd_at(cfg.share["pgd_at"], train)
    method = PGDAT(EPS, ALPHA, cfg.at_steps, name="PGD-AT")
    return train_cached(cfg.s, f"abnn-pgdat{cfg.at_steps}", lambda: build_target(cfg), method, train, cfg.pgd_at)


@dataclass
class Substitute:
    net: torch.nn.Module                  # frozen, on the CPU
    result: TrainResult | None            # the pre-training run (None with supplied weights)
    val_accuracy: float | None            # top-1 on the Tiny-ImageNet-32 validation images (%)
    key: str                              # identifies the substitute in the ABNN checkpoint keys
    source: str


def substitute(cfg: Config) -> Substitute:
    """The frozen substitute: torchvision ImageNet weights if supplied, else pre-trained on Tiny-ImageNet-32."""
    val = load_dataset("tinyimagenet32", "val", cfg.s.data_dir)
    if cfg.substitute_weights:
        net = build_model(cfg.substitute_arch, num_classes=1000, **cfg.substitute)
        load_torchvision_weights(net, cfg.substitute_weights)
        key = "imagenet-" + fingerprint([str(Path(cfg.substitute_weights).resolve()), cfg.substitute_arch])
        return Substitute(freeze(net), None, None, key, f"ImageNet weights {cfg.substitute_weights}")
    data = load_dataset("tinyimagenet32", "train", cfg.s.data_dir, limit=cfg.n_substitute)
    res = train_cached(cfg.s, f"abnn-substitute-{cfg.substitute_arch}",
                       lambda: build_model(cfg.substitute_arch, num_classes=data.num_classes, **cfg.substitute),
                       Standard(), data, cfg.sub_train)
    net = copy.deepcopy(res.model).cpu()
    acc = evaluate(res.model, val, {}, batch_size=cfg.eval_batch, device=cfg.s.device, progress=False)["clean"]
    key = "tin-" + fingerprint([res.hyperparameters, cfg.substitute_arch, cfg.substitute, len(data)])
    return Substitute(freeze(net), res, acc, key, f"Tiny-ImageNet-32 ({len(data)} images, 200 classes)")


def build_abnn(cfg: Config, sub: Substitute, variant: str = "ABNN") -> ABNNNet:
    return ABNNNet(build_target(cfg), copy.deepcopy(sub.net), input_shape=(3, 32, 32), **VARIANTS[variant])


def train_abnn(cfg: Config, train, sub: Substitute, variant: str = "ABNN") -> TrainResult:
    v = VARIANTS[variant]
    tc = cfg.abnn if variant == "ABNN" else cfg.variants
    key = f"abnn-abnn-{v['placement']}-{v['stats']}-{sub.key}"
    return train_cached(cfg.s, key, lambda: build_abnn(cfg, sub, variant), ABNN(), train, tc)


def record_training(cfg: Config, rep: Report, name: str, res: TrainResult, test, note: str = "") -> dict:
    """A part notebook's row: clean test accuracy of a freshly trained model, its measured cost and time."""
    acc = evaluate(res.model, test, {}, batch_size=cfg.eval_batch, device=cfg.s.device, progress=False)["clean"]
    return rep.add_row("training", name, {"clean": acc}, cost_passes=res.passes_per_sample,
                       train_s=res.train_seconds, epochs=res.epochs, note=note or _row_note(cfg, name))


def _row_note(cfg: Config, name: str) -> str:
    base = {"smoke": "smoke profile (tiny models, 2 000 images)", "quick": "quick profile (shortened schedule)",
            "paper": ""}[cfg.s.profile]
    if cfg.s.profile == "quick":
        epochs = {"PGD-AT": cfg.pgd_at.epochs, "No Defense": cfg.standard.epochs, "ABNN": cfg.abnn.epochs}.get(
            name, cfg.variants.epochs)
        base += f": {epochs} epochs"
        base += f", {cfg.target_arch} target"
    if name.startswith("ABNN") and not cfg.substitute_weights:
        base += ("; " if base else "") + "substitute pre-trained on Tiny-ImageNet-32, not ImageNet"
    return base


def training_curves(results: dict[str, TrainResult]):
    """Training loss and accuracy per epoch of several runs (one line per run)."""
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.3))
    for name, r in results.items():
        h = r.history
        axes[0].plot(h["epoch"], h["train_loss"], marker=".", label=name)
        col = "acc" if "acc" in h else "adv_acc"
        if col in h:
            kind = "clean" if col == "acc" else "adversarial"
            axes[1].plot(h["epoch"], 100 * h[col], marker=".", label=f"{name} ({kind})")
    axes[0].set_title("training loss"), axes[1].set_title("training accuracy (%)")
    for a in axes:
        a.set_xlabel("epoch")
        a.legend(fontsize=8)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------------------------- evaluation


class TransferAttack(Attack):
    """A black-box transfer attack: ``attack`` crafted on ``source`` (e.g. an undefended model), scored on the
    evaluated model."""

    def __init__(self, source: torch.nn.Module, attack: Attack, name: str = "transfer"):
        super().__init__(attack.eps, attack.norm, attack.bn_mode)
        self._source, self._attack, self.name = source, attack, name

    def perturb(self, model, x, y):
        return self._attack.perturb(self._source, x, y)


class ViewAttack(Attack):
    """``attack`` crafted on ``view`` (the same weights run differently, e.g. :class:`ABNNView` with μ/σ as constants
    or per-sample statistics), scored on the evaluated model with its ordinary forward."""

    def __init__(self, view: torch.nn.Module, attack: Attack, name: str):
        super().__init__(attack.eps, attack.norm, attack.bn_mode)
        self._view, self._attack, self.name = view, attack, name

    def perturb(self, model, x, y):
        return self._attack.perturb(self._view, x, y)


def _roa(cfg: Config, location: str = "search", **kw) -> ROA:
    return ROA(cfg.roa["area"], steps=cfg.roa["steps"], alpha=cfg.roa["alpha"], stride=cfg.roa["stride"],
               location=location, seed=cfg.s.seed, **kw)


def _aa(cfg: Config) -> AutoAttack | None:
    if not cfg.aa_version:
        return None
    return AutoAttack(EPS, version=cfg.aa_version, attacks=cfg.aa_attacks, seed=cfg.s.seed, batch_size=cfg.eval_batch)


ATTACK_LABELS = {
    "pgd": "PGD-{t} (headline)", "pgd_a": "PGD-{a}", "pgd_b": "PGD-{b}", "pgd_c": "PGD-{c}",
    "restarts": "PGD-{c} × {r} restarts", "transfer": "transfer: PGD-{b} on No Defense",
    "const_stats": "PGD-{b}, μ/σ as constants", "no_sub_grad": "PGD-{b}, no gradient into the substitute",
    "bs1_attack": "PGD-{b} crafted at batch size 1", "aa": "AutoAttack (batch-global ABNN: at batch size 1)",
    "roa": "ROA (searched location)",
    "roa_random": "ROA (random location)", "worst": "worst case over all ℓ∞ attacks",
}


def suite(cfg: Config, model, *, source=None, abnn: bool = False) -> dict[str, Attack]:
    """Every attack of the chapter at ε = 8/255 (plus ROA) for one model, as {metric key: attack}."""
    a, b, c = cfg.steps_grid
    atk: dict[str, Attack] = {
        "pgd": PGD(EPS, ALPHA, cfg.pgd_steps, name="pgd"),
        "snapshots": PGD(EPS, ALPHA, c, record={"pgd_a": a, "pgd_b": b, "pgd_c": c}),
        "restarts": PGD(EPS, ALPHA, c, restarts=cfg.restarts, name="restarts"),
    }
    if source is not None:
        atk["transfer"] = TransferAttack(source, PGD(EPS, ALPHA, b))
    if abnn:
        atk["const_stats"] = ViewAttack(ABNNView(model, detach_stats=True), PGD(EPS, ALPHA, b), "const_stats")
        atk["no_sub_grad"] = ViewAttack(ABNNView(model, detach_substitute=True), PGD(EPS, ALPHA, b), "no_sub_grad")
        atk["bs1_attack"] = ViewAttack(ABNNView(model, stats="per_sample"), PGD(EPS, ALPHA, b), "bs1_attack")
    aa = _aa(cfg)
    if aa is not None:
        atk["aa"] = aa
    atk["roa"] = _roa(cfg, "search", name="roa")
    if abnn:  # Lo & Patel's random-location ROA, as a check that the searched location is the stronger choice
        atk["roa_random"] = _roa(cfg, "random", name="roa_random")
    return atk


LINF_KEYS = ("pgd", "pgd_a", "pgd_b", "pgd_c", "restarts", "transfer", "const_stats", "no_sub_grad", "bs1_attack", "aa")


def evaluate_models(cfg: Config, models: dict[str, torch.nn.Module], test, source=None) -> dict[str, EvalResult]:
    """Run :func:`suite` on every model (ABNN-specific attacks on ABNN models; transfer from ``source``), with the
    per-image worst case over the ℓ∞ attacks in the ``worst`` column.

    A batch-global ABNN is batch-dependent (:func:`~robustlib.evaluation.batch_dependent`): each attack is scored
    in the evaluation batch it was crafted in, except AutoAttack, which attacks and scores the batch-size-1 function
    (per-sample μ/σ; it attacks shrinking sub-batches, see :class:`~robustlib.attacks.AutoAttack`); every column
    also comes scored one image at a time (``<key>@b1``, with ``worst@b1`` over the ℓ∞ ones)."""
    out = {}
    for name, model in models.items():
        is_abnn = isinstance(model, ABNNNet)
        src = source if (source is not None and source is not model) else None
        torch.manual_seed(cfg.s.seed)
        res = evaluate(model, test, suite(cfg, model, source=src, abnn=is_abnn), batch_size=cfg.eval_batch,
                       device=cfg.s.device, desc=f"evaluate {name}")
        linf = [k for k in LINF_KEYS if k in res.flags]
        res.flags["worst"] = res.flags[["clean", *linf]].all(axis=1)
        if "clean" + B1 in res.flags:
            linf1 = [k + B1 for k in linf if k + B1 in res.flags]
            res.flags["worst" + B1] = res.flags[["clean" + B1, *linf1]].all(axis=1)
        out[name] = res
    return out


def scoring_note(cfg: Config, res: EvalResult) -> str:
    """How a batch-dependent model's numbers were scored (empty for a batch-independent model)."""
    if not res.meta.get("batch_dependent"):
        return ""
    acc = res.accuracies()
    alone = ", ".join(f"{k} {acc[k + B1]:.1f} %" for k in ("clean", "pgd", "roa") if k + B1 in acc)
    return (f"batch-global μ/σ: PGD and ROA crafted and scored in batches of {cfg.eval_batch}"
            + ("; AutoAttack attacks and scores the batch-size-1 function (per-sample μ/σ), because it attacks "
               "shrinking sub-batches" if "aa" in acc else "")
            + (f"; the same adversarial images scored one at a time: {alone}" if alone else ""))


def headline(cfg: Config, evals: dict[str, EvalResult], results: dict[str, TrainResult], rep: Report,
             table: str = "cifar10"):
    """Rows No Defense / PGD-AT / ABNN (and any variant) of the CIFAR-10 table: clean, PGD, ROA, AutoAttack."""
    for name, res in evals.items():
        acc = res.accuracies()
        r = results[name]
        note = _row_note(cfg, name)
        if "aa" not in acc:
            note += ("; " if note else "") + "AutoAttack not run in this profile"
        scored = scoring_note(cfg, res)
        if scored:
            note += ("; " if note else "") + scored
        b1 = {k: acc[k + B1] for k in ("clean", "pgd", "roa", "aa", "worst") if k + B1 in acc}
        rep.add_row(table, name, {"clean": acc["clean"], "pgd": acc["pgd"], "roa": acc["roa"], "aa": acc.get("aa")},
                    cost_passes=r.passes_per_sample, train_s=r.train_seconds, epochs=r.epochs, note=note,
                    n=res.n, worst_linf=acc["worst"], eval_batch=cfg.eval_batch,
                    batch_dependent=bool(res.meta.get("batch_dependent")), scored_alone=b1 or None)
    return rep.compare(table)


def table1(rep: Report) -> pd.DataFrame:
    """Table 1 laid out as on the slides: Clean / PGD / training cost, the slides' value beside ours."""
    paper = reported.table(PAPER, "cifar10")
    rows = []
    for r in rep.rows:
        if r["table"] != "cifar10":
            continue
        m = r["method"]
        ref = paper.loc[m] if m in paper.index else None
        rows.append({"method": m,
                     "clean (slides)": None if ref is None else ref["clean"], "clean (ours)": r["metrics"].get("clean"),
                     "PGD (slides)": None if ref is None else ref["pgd"], "PGD (ours)": r["metrics"].get("pgd"),
                     "cost (slides)": None if ref is None else f"{ref['cost_passes']:.0f}N",
                     "cost (ours)": None if r["cost_passes"] is None else f"{r['cost_passes']:.2f}N"})
    return pd.DataFrame(rows).set_index("method")


def sanity_table(cfg: Config, evals: dict[str, EvalResult]) -> pd.DataFrame:
    """Long table: model, attack (readable label), where it was scored, accuracy with its 95 % interval. A
    batch-dependent model also gets each metric scored one image at a time (keys ``<key>@b1``)."""
    a, b, c = cfg.steps_grid
    fmt = dict(t=cfg.pgd_steps, a=a, b=b, c=c, r=cfg.restarts)
    rows = []
    for model, res in evals.items():
        dependent = bool(res.meta.get("batch_dependent"))
        for base in ("clean", *LINF_KEYS, "worst", "roa", "roa_random"):
            for key in (base, base + B1):
                if key not in res.flags:
                    continue
                k = int(res.flags[key].sum())
                lo, hi = wilson_interval(k, res.n)
                alone = key.endswith(B1) or (dependent and base == "aa")
                label = ATTACK_LABELS.get(base, base).format(**fmt) + (", each image scored alone"
                                                                       if key.endswith(B1) else "")
                scored = ("batch size 1" if alone else f"its batch of {cfg.eval_batch}") if dependent else "any batch"
                rows.append({"model": model, "key": key, "attack": label, "scored at": scored,
                             "accuracy": 100 * k / res.n, "ci_low": lo, "ci_high": hi, "n": res.n,
                             "seconds": res.seconds.get(key)})
    return pd.DataFrame(rows)


def eps_sweep(cfg: Config, models: dict, test) -> pd.DataFrame:
    """PGD-k (α = ε/4, k the middle step count) accuracy against ε: it must reach 0 as ε grows."""
    rows = []
    k = cfg.mid_steps
    for name, model in models.items():
        for e in cfg.eps_grid:
            atk = {} if e == 0 else {"pgd": PGD(e / 255, e / 255 / 4, k)}
            torch.manual_seed(cfg.s.seed)
            res = evaluate(model, test, atk, batch_size=cfg.eval_batch, device=cfg.s.device, progress=False)
            key = "clean" if e == 0 else "pgd"
            cnt = int(res.flags[key].sum())
            lo, hi = wilson_interval(cnt, res.n)
            rows.append({"model": name, "attack": f"PGD-{k}", "eps_255": e, "accuracy": 100 * cnt / res.n,
                         "ci_low": lo, "ci_high": hi, "n": res.n})
    return pd.DataFrame(rows)


def batch_size_sweep(cfg: Config, models: dict, test) -> pd.DataFrame:
    """Clean and PGD-k accuracy against the evaluation batch size (the attack runs on, and predictions are made
    for, batches of that size). Batch size 1 is evaluated exactly and fast through per-sample statistics (for a
    batch-global ABNN, μ/σ over a batch of one image are that image's own)."""
    rows = []
    k = cfg.mid_steps
    for name, model in models.items():
        for bs in cfg.batch_sizes:
            m, b = model, bs
            if bs == 1 and isinstance(model, ABNNNet):
                m, b = ABNNView(model, stats="per_sample"), cfg.eval_batch
            elif bs == 1:
                b = cfg.eval_batch  # no batch dependence: identical at any batch size
            torch.manual_seed(cfg.s.seed)
            res = evaluate(m, test, {"pgd": PGD(EPS, ALPHA, k)}, batch_size=b, device=cfg.s.device, progress=False)
            for key, label in (("clean", "clean"), ("pgd", f"PGD-{k}")):
                cnt = int(res.flags[key].sum())
                lo, hi = wilson_interval(cnt, res.n)
                rows.append({"model": name, "metric": label, "batch_size": bs, "accuracy": 100 * cnt / res.n,
                             "ci_low": lo, "ci_high": hi, "n": res.n})
    return pd.DataFrame(rows)


def verdicts(cfg: Config, sanity: pd.DataFrame, sweep: pd.DataFrame, bsweep: pd.DataFrame,
             model: str = "ABNN", tol: float = 1.0) -> pd.DataFrame:
    """The gradient-masking checks for ``model``, each with what a sound evaluation should show, what this run
    shows, and whether it passes (``tol`` percentage points of slack for sampling noise)."""
    acc = sanity[sanity.model == model].set_index("key")["accuracy"]
    a, b, c = cfg.steps_grid
    out = []

    def add(check, expect, observed, ok):
        out.append({"check": check, "a sound evaluation shows": expect, "observed": observed,
                    "passed": bool(ok) if ok is not None else None})

    sw = sweep[(sweep.model == model) & (sweep.eps_255 > 0)].sort_values("eps_255")
    if len(sw):
        top = sw.iloc[-1]
        add("accuracy → 0 as ε grows", f"PGD-{cfg.mid_steps} accuracy ≈ 0 at ε = {int(top.eps_255)}/255",
            f"{top.accuracy:.1f} % at ε = {int(top.eps_255)}/255", top.accuracy <= tol)
    seq = [acc.get(k) for k in ("pgd_a", "pgd_b", "pgd_c", "restarts")]
    labels = [f"PGD-{a}", f"PGD-{b}", f"PGD-{c}", f"PGD-{c}×{cfg.restarts}"]
    ok = all(y <= x + tol for x, y in zip(seq, seq[1:]) if x is not None and y is not None)
    add("more steps and restarts never raise accuracy", " ≥ ".join(labels),
        " → ".join(f"{v:.1f}" for v in seq if v is not None), ok)
    if "transfer" in acc:
        add("a transfer attack is weaker than white-box", f"transfer ≥ PGD-{b}",
            f"{acc['transfer']:.1f} vs {acc['pgd_b']:.1f}", acc["transfer"] >= acc["pgd_b"] - tol)
    for key, what in (("const_stats", "with μ/σ as constants"), ("bs1_attack", "crafted at batch size 1"),
                      ("no_sub_grad", "without gradients into the substitute")):
        if key in acc:
            add(f"PGD-{b} {what} is not stronger than plain PGD-{b}", f"≥ {acc['pgd_b']:.1f}",
                f"{acc[key]:.1f}", acc[key] >= acc["pgd_b"] - tol)
    bs = bsweep[(bsweep.model == model) & (bsweep.metric != "clean")]
    if len(bs):
        add("robust accuracy does not depend on the evaluation batch size", "a flat line within sampling noise",
            f"{bs.accuracy.min():.1f}–{bs.accuracy.max():.1f} % over batch sizes "
            f"{', '.join(map(str, bs.batch_size))}", bs.accuracy.max() - bs.accuracy.min() <= 2 * tol + 2)
    if "worst" in acc:
        add("the headline PGD is close to the worst case over all attacks", f"worst ≈ PGD-{cfg.pgd_steps}",
            f"{acc['worst']:.1f} vs {acc['pgd']:.1f}", acc["pgd"] - acc["worst"] <= 2 * tol + 2)
    return pd.DataFrame(out).set_index("check")


def plot_sanity(sweep: pd.DataFrame, sanity: pd.DataFrame, bsweep: pd.DataFrame, cfg: Config):
    """Three panels: accuracy against ε; accuracy under each ℓ∞ attack; accuracy against the evaluation batch size."""
    import matplotlib.pyplot as plt
    import seaborn as sns
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), gridspec_kw={"width_ratios": [1, 1.5, 1]})
    pal = dict(zip(dict.fromkeys(list(sweep.model) + list(sanity.model)), sns.color_palette("colorblind")))
    ax = axes[0]
    for m, g in sweep.groupby("model", sort=False):
        g = g.sort_values("eps_255")
        ax.plot(g.eps_255, g.accuracy, marker="o", ms=4, label=m, color=pal[m])
        ax.fill_between(g.eps_255, g.ci_low, g.ci_high, alpha=0.2, color=pal[m])
    ax.set_xscale("symlog", linthresh=2)
    ax.set_xlabel("ε (×1/255)"), ax.set_ylabel("accuracy (%)"), ax.set_ylim(-2, 102)
    ax.set_title(f"PGD-{cfg.mid_steps} against ε")
    ax.legend(fontsize=8)
    ax = axes[1]
    sub = sanity[sanity.key.isin(LINF_KEYS + ("worst",))]
    order = list(dict.fromkeys(sub.attack))
    models = list(dict.fromkeys(sub.model))
    w = 0.8 / len(models)
    for i, m in enumerate(models):
        g = sub[sub.model == m].set_index("attack").reindex(order)
        ys = np.arange(len(order)) + (i - (len(models) - 1) / 2) * w
        err = np.clip(np.nan_to_num(np.stack([g.accuracy - g.ci_low, g.ci_high - g.accuracy])), 0, None)
        ax.barh(ys, g.accuracy, height=w, color=pal[m], label=m, xerr=err, error_kw={"lw": 0.8})
    ax.set_yticks(np.arange(len(order)), order, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("accuracy at ε = 8/255 (%)")
    ax.set_title("every ℓ∞ attack at ε = 8/255")
    ax.legend(fontsize=8, loc="lower right")
    ax = axes[2]
    for (m, metric), g in bsweep.groupby(["model", "metric"], sort=False):
        g = g.sort_values("batch_size")
        ax.plot(g.batch_size, g.accuracy, marker="o", ms=4, color=pal.get(m), ls="-" if metric == "clean" else "--",
                label=f"{m}: {metric}")
    ax.set_xscale("log")
    ax.set_xlabel("evaluation batch size"), ax.set_ylabel("accuracy (%)"), ax.set_ylim(-2, 102)
    ax.set_title("batch dependence")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def variants_table(cfg: Config, models: dict, results: dict[str, TrainResult], test, rep: Report,
                   evals: dict[str, EvalResult] | None = None) -> pd.DataFrame:
    """ABNN variants (per-sample μ/σ, every BN) beside the headline ABNN: clean, PGD, PGD with restarts, the
    constant-μ/σ attack, ROA, and clean/PGD at batch size 1. Models already evaluated by :func:`evaluate_models`
    (``evals``) are not attacked again."""
    a, b, c = cfg.steps_grid
    rows = []
    for name, model in models.items():
        if evals is not None and name in evals:
            acc = evals[name].accuracies()
        else:
            atk = {"pgd": PGD(EPS, ALPHA, cfg.pgd_steps, name="pgd"),
                   "restarts": PGD(EPS, ALPHA, c, restarts=cfg.restarts, name="restarts"),
                   "const_stats": ViewAttack(ABNNView(model, detach_stats=True), PGD(EPS, ALPHA, b), "const_stats"),
                   "roa": _roa(cfg, "search", name="roa")}
            torch.manual_seed(cfg.s.seed)
            acc = evaluate(model, test, atk, batch_size=cfg.eval_batch, device=cfg.s.device,
                           desc=f"evaluate {name}").accuracies()
        if model.stats == "per_sample":   # already batch independent: batch size 1 changes nothing
            bs1 = {"clean": acc["clean"], "pgd": acc["pgd"]}
        else:
            torch.manual_seed(cfg.s.seed)
            bs1 = evaluate(ABNNView(model, stats="per_sample"), test, {"pgd": PGD(EPS, ALPHA, cfg.pgd_steps)},
                           batch_size=cfg.eval_batch, device=cfg.s.device, progress=False).accuracies()
        r = results[name]
        metrics = {"clean": acc["clean"], "pgd": acc["pgd"], "pgd_restarts": acc["restarts"],
                   "pgd_const_stats": acc["const_stats"], "roa": acc["roa"], "clean_bs1": bs1["clean"],
                   "pgd_bs1": bs1["pgd"]}
        rep.add_row("variants", name, metrics, cost_passes=r.passes_per_sample, train_s=r.train_seconds,
                    epochs=r.epochs, note=_row_note(cfg, name))
        rows.append({"model": name, **metrics, "N/sample": r.passes_per_sample,
                     "style-map parameters": model.style_parameters()})
    labels = {"pgd": f"PGD-{cfg.pgd_steps}", "pgd_restarts": f"PGD-{c}×{cfg.restarts}",
              "pgd_const_stats": f"PGD-{b}, μ/σ const.", "clean_bs1": "clean @ bs 1",
              "pgd_bs1": f"PGD-{cfg.pgd_steps} @ bs 1"}
    return pd.DataFrame(rows).set_index("model").rename(columns=labels)


# ---------------------------------------------------------------------------------------------------- cost


def cost_table(cfg: Config, results: dict[str, TrainResult], rep: Report | None = None) -> pd.DataFrame:
    """Measured passes per training sample (per network), the slides' formula, and seconds per epoch."""
    formula = {"No Defense": cost_formula("standard"), "PGD-AT": cost_formula("pgd_at", cfg.at_steps),
               "ABNN": cost_formula("abnn")}
    slides = reported.table(PAPER, "cost")["cost_passes"]
    rows = []
    for name, r in results.items():
        c = r.cost
        per_epoch = r.train_seconds / max(r.epochs, 1)
        row = {"method": name, "measured N/sample": c["total"],
               "target fwd": c.get("target.forward", c.get("model.forward")),
               "target bwd": c.get("target.backward", c.get("model.backward")),
               "substitute fwd": c.get("substitute.forward", 0.0), "substitute bwd": c.get("substitute.backward", 0.0),
               "formula N": formula.get(name), "slides N": slides.get(name),
               "s/epoch": per_epoch, "epochs": r.epochs}
        rows.append(row)
        if rep is not None:
            rep.add_row("cost", name, {}, cost_passes=c["total"], train_s=r.train_seconds, epochs=r.epochs,
                        note=f"slides: {slides.get(name, float('nan')):.0f}N; measured by the cost meter over the "
                             "whole training run", formula_passes=formula.get(name),
                        paper_cost_passes=None if name not in slides else float(slides[name]),
                        seconds_per_epoch=per_epoch)
    df = pd.DataFrame(rows).set_index("method")
    base = df.loc["No Defense", "s/epoch"] if "No Defense" in df.index else np.nan
    df["time vs No Defense"] = df["s/epoch"] / base
    if {"PGD-AT", "ABNN"} <= set(df.index):
        df.attrs["ratio"] = {"slides: 0.67(t_max + 1)": 2 * (cfg.at_steps + 1) / 3,
                             "measured passes": (df.loc["PGD-AT", "measured N/sample"]
                                                 / df.loc["ABNN", "measured N/sample"]),
                             "measured time": df.loc["PGD-AT", "s/epoch"] / df.loc["ABNN", "s/epoch"]}
    return df


def plot_costs(costs: pd.DataFrame):
    import matplotlib.pyplot as plt
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    xs = np.arange(len(costs))
    a.bar(xs - 0.2, costs["measured N/sample"], width=0.4, label="measured (cost meter)")
    a.bar(xs + 0.2, costs["slides N"], width=0.4, alpha=0.6, label="slides")
    a.set_xticks(xs, costs.index)
    a.set_ylabel("network passes per training sample (N)")
    a.set_title("Training cost in passes")
    a.legend(fontsize=8)
    b.bar(xs, costs["s/epoch"], color="tab:gray")
    b.set_xticks(xs, costs.index)
    b.set_ylabel("seconds per epoch")
    b.set_title("Training time on this hardware")
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------------------------------- figures


def roa_examples(cfg: Config, models: dict, test, n: int = 6):
    """The first test images, then ROA (searched location) against each model, titled with the prediction."""
    import matplotlib.pyplot as plt
    x, y = test.images(cfg.s.device)[:n], test.y[:n].to(cfg.s.device)
    rows = [("clean", None, x)]
    for name, m in models.items():
        # the location search and the patch use this small batch; batch-global μ/σ come from these n images
        rows.append((f"ROA vs {name}", m, _roa(cfg, "search").perturb(m, x, y)))
    fig, axes = plt.subplots(len(rows), n, figsize=(1.6 * n, 1.8 * len(rows)), squeeze=False)
    for i, (label, m, imgs) in enumerate(rows):
        preds = {k: predict(mm, imgs) for k, mm in models.items()} if m is None else {label: predict(m, imgs)}
        for j in range(n):
            ax = axes[i, j]
            ax.imshow(imgs[j].detach().cpu().permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            p = next(iter(preds.values()))[j] if m is not None else preds[list(models)[-1]][j]
            ax.set_title(test.classes[int(p)], fontsize=8, color="tab:green" if int(p) == int(y[j]) else "tab:red")
        axes[i, 0].set_ylabel(label, fontsize=8)
    fig.suptitle(f"ROA: a 10 % grey patch at the worst place, then {cfg.roa['steps']} signed steps inside it "
                 f"(titles: prediction; clean row: {list(models)[-1]})", fontsize=9)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------------------------ video


def reference_tables() -> dict[str, pd.DataFrame]:
    """The paper's UCF-101 tables and the two earlier video defences as context (from robustlib/reported)."""
    return {k: reported.table(PAPER, k) for k in ("ucf101_pgd", "ucf101_roa", "oudefend", "multibn")}


def video_missing(cfg: Config, rep: Report) -> None:
    """The UCF-101 rows keep their places; they are measured only when UCF-101 and Kinetics weights are given."""
    note = ("not run: needs UCF-101 and a Kinetics-400 3D ResNet-18 (not available in this project); set "
            f"${ENV_UCF101} and ${ENV_KINETICS} to run it")
    rep.add_missing("ucf101_pgd", reported.methods(PAPER, "ucf101_pgd"), note, ("clean", "pgd"))
    rep.add_missing("ucf101_roa", reported.methods(PAPER, "ucf101_roa"), note, ("clean", "roa"))


def video_experiment(cfg: Config, rep: Report) -> pd.DataFrame | None:
    """No Defense vs ABNN on videos: 3D ResNeXt target, frozen 3D ResNet-18 substitute, PGD (ε, α, T = 5) and ROA
    (10 % area, t_max = 5) on whole clips. Smoke profile: tiny networks on synthetic clips (the substitute
    pre-trained on a *different* synthetic clip set, standing in for Kinetics). With ``$ROBUSTLIB_UCF101`` and
    ``$ROBUSTLIB_KINETICS_R3D18``: the paper's networks on UCF-101. Otherwise None."""
    v = cfg.video
    if v is None:
        return None
    s = cfg.s
    T = v["frames"]
    if v["kind"] == "synthetic":
        kw = dict(num_classes=v["num_classes"], frames=T, size=v["size"], seed=v["seed"])
        train, test = synthetic_clips("train", v["n_train"], **kw), synthetic_clips("test", v["n_test"], **kw)
        pre = synthetic_clips("train", v["n_train"], num_classes=8, frames=T, size=v["size"], seed=v["seed"] + 1)
        tc = TrainConfig(epochs=v["epochs"], batch_size=v["batch_size"], schedule=triangular(v["lr"], v["epochs"]),
                         augment=None, seed=s.seed, channels_last=False, grad_clip=v["grad_clip"],
                         amp="off" if s.device.type == "cpu" else "auto")  # CPU bf16 made the 3-D net NaN in epoch 3
        sub_res = train_cached(s, "abnn-video-substitute", lambda: build_model(
            "r3d_18", num_classes=8, frames=T, **v["substitute"]), Standard(), pre, tc)
        sub = freeze(copy.deepcopy(sub_res.model).cpu())
        table, sub_note = "video_synthetic", "substitute pre-trained on another synthetic clip set (8 classes)"
    else:
        folder = v["folder"]
        train = load_dataset("npz", "train", folder=folder)
        test = load_dataset("npz", "test", folder=folder).head(v["n_test"])
        tc = TrainConfig(epochs=v["epochs"], batch_size=v["batch_size"], schedule=triangular(v["lr"], v["epochs"]),
                         momentum=0.9, weight_decay=1e-5, augment=None, seed=s.seed, channels_last=False,
                         grad_clip=v["grad_clip"], amp="off" if s.device.type == "cpu" else "auto")
        sub = build_model("r3d_18", num_classes=400, frames=T, **v["substitute"])
        load_torchvision_weights(sub, v["substitute_weights"])
        sub = freeze(sub)
        table, sub_note = "ucf101", f"substitute: torchvision r3d_18 Kinetics-400 weights ({v['substitute_weights']})"
    k = train.num_classes
    target = lambda: build_model("resnext3d_101", num_classes=k, frames=T, **v["target"])  # noqa: E731
    shape = (3, T, v["size"], v["size"])
    std = train_cached(s, f"abnn-video-{v['kind']}-standard", target, Standard(), train, tc)
    abn = train_cached(s, f"abnn-video-{v['kind']}-abnn-{fingerprint(sub_note)}",
                       lambda: ABNNNet(target(), copy.deepcopy(sub), input_shape=shape, style_pool=v["style_pool"]),
                       ABNN(), train, tc)
    attacks = {"pgd": PGD(v["eps"], v["alpha"], v["steps"], name="pgd"),
               "roa": ROA(0.10, steps=5, alpha=70 / 255, frames=T, stride=v["roa_stride"], location="search",
                          seed=s.seed, name="roa")}
    rows = []
    for name, r in (("No Defense", std), ("ABNN", abn)):
        torch.manual_seed(s.seed)
        res = evaluate(r.model, test, attacks, batch_size=v["eval_batch"], device=s.device, progress=False)
        acc = res.accuracies()
        note = (f"{'synthetic clips, tiny networks: NOT UCF-101' if v['kind'] == 'synthetic' else 'UCF-101'}; "
                f"{v['epochs']} epochs" + (f", gradient norm clipped at {v['grad_clip']}" if v["grad_clip"] else "")
                + f"; PGD ε = {v['eps'] * 255:.0f}/255, α = {v['alpha'] * 255:.0f}/255, "
                f"T = {v['steps']}; ROA 10 % area, searched location (same in every frame), t_max = 5"
                + ("; " + sub_note if name == "ABNN" else "")
                + (f"; substitute features average-pooled to {v['style_pool']} before the style maps"
                   if name == "ABNN" and v["style_pool"] else ""))
        if table == "ucf101":
            rep.add_row("ucf101_pgd", name, {"clean": acc["clean"], "pgd": acc["pgd"]}, cost_passes=r.passes_per_sample,
                        train_s=r.train_seconds, epochs=r.epochs, note=note, n=res.n)
            rep.add_row("ucf101_roa", name, {"clean": acc["clean"], "roa": acc["roa"]}, cost_passes=r.passes_per_sample,
                        train_s=r.train_seconds, epochs=r.epochs, note=note, n=res.n)
        else:
            rep.add_row(table, name, {"clean": acc["clean"], "pgd": acc["pgd"], "roa": acc["roa"]},
                        cost_passes=r.passes_per_sample, train_s=r.train_seconds, epochs=r.epochs, note=note, n=res.n)
        rows.append({"method": name, "clean": acc["clean"], "pgd": acc["pgd"], "roa": acc["roa"],
                     "N/sample": r.passes_per_sample, "clips": res.n})
    return pd.DataFrame(rows).set_index("method")


def parameters_table(models: dict) -> pd.DataFrame:
    rows = []
    for name, m in models.items():
        if isinstance(m, ABNNNet):
            sub, style = num_parameters(m.substitute), m.style_parameters()
            rows.append({"model": name, "target": num_parameters(m) - sub - style, "style maps": style,
                         "substitute (frozen)": sub})
        else:
            rows.append({"model": name, "target": num_parameters(m), "style maps": 0, "substitute (frozen)": 0})
    return pd.DataFrame(rows).set_index("model")


def record_substitute(cfg: Config, rep: Report, sub: Substitute) -> None:
    """The substitute's row: top-1 accuracy on the 1 000 Tiny-ImageNet-32 validation images (200 classes)."""
    if sub.result is None:
        rep.add_row("substitute", "Substitute", {}, note=f"supplied weights: {sub.source}")
        return
    r = sub.result
    rep.add_row("substitute", "Substitute", {"clean": sub.val_accuracy}, n=1000, cost_passes=r.passes_per_sample,
                train_s=r.train_seconds, epochs=r.epochs,
                note=f"{cfg.substitute_arch} pre-trained on {sub.source}; accuracy on the Tiny-ImageNet-32 "
                     "validation images (200 classes, 5 each), not CIFAR-10")


def records(df: pd.DataFrame) -> list[dict]:
    """A DataFrame as JSON-ready records (for ``report.extra``)."""
    import json
    return json.loads(df.reset_index().to_json(orient="records"))
