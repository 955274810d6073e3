"""NuAT: nuclear-norm adversarial training (Sriramanan, Addepalli, Baburaj & Babu, NeurIPS 2021).

For a minibatch X (B images, rows) with labels Y, f the logits and ‖·‖_* the nuclear norm of a B×K matrix:

* attack (maximised, one signed step of ε from a Bernoulli ±α start, eval-mode BN):
  L̃(X') = CE(f(X'), Y) + λ·‖f(X') − f(X)‖_* / B
* training (minimised, train-mode BN, clean and adversarial batches forwarded separately):
  L = CE(f(X), Y) + λ·‖f(X̃) − f(X)‖_* / B — the cross-entropy sees clean images only.

Details that follow the authors' code (val-iisc/NuAT @ 89622905a8f2, ``CIFAR10/NuAT_cifar10.py`` and siblings; facts in
``../shared/papers/nuat.md`` §2), each with a switch so the chapter can measure what it buys:

* ``scale_by_batch``: the nuclear norm is divided by the batch size (64); λ values are the code's.
* ``alternate``: single-step NuAT includes the nuclear term only on odd iterations (``alt = counter % 2``); even
  iterations take a plain cross-entropy R-FGSM-like step. The README/seed formula has the term every iteration.
* ``ramp``: λ grows linearly, updated once per epoch: NuAT λ_e = 0.05·e up to 4.5 at epoch 90; NuAT-WA / NuAT2 /
  NuAT2-WA λ_e = 4·e/E (never quite reaching 4). λ = 0 in epoch 0, so epoch 0 is clean training with an R-FGSM-like
  attack whose result is unused. ``epoch_scale`` (paper epochs per run epoch) lets a shortened run follow the same
  curve as a function of progress (λ then changes every 1/epoch_scale run epochs, as it does every paper epoch).
* ``ref_mode``: the clean reference logits of the single-step attack come from a *train-mode* forward (BN batch
  statistics, which also updates the running statistics; the Trainer has the model in train mode) before the
  attack; NuAT2 uses eval mode.
* The attack steps themselves always run with **eval-mode** BN (running statistics), as the scripts'
  ``model.eval()`` before the attack — unlike the PGD-AT/FBF family, whose cited scripts attack in train mode
  (:mod:`robustlib.methods.adversarial`). The model's own train/eval flags are restored afterwards.
* ``separate_bn``: clean and adversarial batches are forwarded separately in training (each with its own BN batch
  statistics); ``False`` concatenates them into one 2B batch.
* ``norm``: ``"nuc"`` (NuAT) or ``"fro"`` (ablation: the Frobenius norm, which does not couple the batch).
* The norm is computed in fp32 inside bf16 autocast (:func:`robustlib.attacks.nuclear.nuclear_norm`).

Variants: :class:`NuAT` (single step, ResNet-18: λ_max 4.5 over 90 of 100 epochs, cyclic-step LR), NuAT-WA (the same
method with λ_max 4 ramped over all 100 epochs; the weight average τ = 0.9998 over parameters *and* BN buffers is the
Trainer's ``ema``; pure cyclic LR), :class:`NuAT2` (two steps: CE + λ·nuclear every time, then CE only; eval-mode
detached reference), :class:`NuAT2WA` (step 1 on the τ = 0.99 weight average, step 2 on the live model; the
reported model is the τ = 0.9998 average) and :class:`NuATHybrid` (NuAT-H / NuAT-WA-H, *this project's* switching
rule — the paper's is unpublished, see its docstring).

Cost per training sample in passes N (forward or backward of one image through one network = 1 N):
NuAT = reference forward 1 + attack forward/backward 2 + training clean and adversarial forwards 2 + backward through
both 2 = **7N**; NuAT2 = 1 + 2 + 2 + 4 = **9N**; NuAT2-WA 9N (3 of them on the τ = 0.99 average); NuAT-H 7N + 3N on
each minibatch that takes the second step (its attack step 2 + the adversarial forward again).
"""
from __future__ import annotations

import math
from collections import deque

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules.batchnorm import _BatchNorm

from ..attacks.core import attack_mode, project, random_start
from ..attacks.nuclear import matrix_norm
from ..distributed import gather_rows
from ..errors import ConfigError
from .base import Method, Step, accuracy_log, register_method

EPS = 8 / 255
ALPHA = 4 / 255


def paper_epoch(step: Step, epoch_scale: float = 1.0) -> int:
    """The integer epoch of the paper's schedule that the current iteration corresponds to."""
    nb = max(step.trainer.batches_per_epoch, 1)
    return int(math.floor((step.epoch + step.iteration / nb) * epoch_scale + 1e-9))


def ramp_value(epoch: int, lam_max: float, ramp_epochs: float, ramp: bool = True) -> float:
    """λ at paper epoch ``epoch``: λ_max·min(epoch / ramp_epochs, 1) (constant λ_max without the ramp)."""
    if not ramp:
        return float(lam_max)
    return float(lam_max) * min(epoch / float(ramp_epochs), 1.0)


class NuAT(Method):
    """Single-step NuAT (``NuAT_cifar10.py``); also NuAT-WA with ``lam_max=4, ramp_epochs=100`` and an EMA."""

    name = "NuAT"
    attack_steps = 1

    def __init__(self, eps: float = EPS, alpha: float = ALPHA, lam_max: float = 4.5, ramp_epochs: float = 90,
                 epoch_scale: float = 1.0, *, alternate: bool = True, ramp: bool = True, ref_mode: str = "train",
                 separate_bn: bool = True, norm: str = "nuc", scale_by_batch: bool = True,
                 name: str | None = None):
        if ref_mode not in ("train", "eval"):
            raise ConfigError(f"ref_mode must be 'train' or 'eval', got {ref_mode!r}")
        if norm not in ("nuc", "fro"):
            raise ConfigError(f"norm must be 'nuc' or 'fro', got {norm!r}")
        self.eps, self.alpha, self.lam_max, self.ramp_epochs = eps, alpha, lam_max, ramp_epochs
        self.epoch_scale = float(epoch_scale)
        self.alternate, self.ramp, self.ref_mode, self.separate_bn = alternate, ramp, ref_mode, separate_bn
        self.norm, self.scale_by_batch = norm, scale_by_batch
        self.current_lam = 0.0
        if name:
            self.name = name

    # ---------------------------------------------------------------------------------------------- pieces

    def lam(self, step: Step) -> float:
        return ramp_value(paper_epoch(step, self.epoch_scale), self.lam_max, self.ramp_epochs, self.ramp)

    def regulariser(self, adv_logits: torch.Tensor, clean_logits: torch.Tensor) -> torch.Tensor:
        """‖f(X̃) − f(X)‖_* / B (fp32). Under ``torchrun`` the rows of every rank are gathered first, so the norm
        is that of the global batch, as in a single-process run (:func:`robustlib.distributed.gather_rows`)."""
        d = gather_rows(adv_logits.float() - clean_logits.float())
        r = matrix_norm(d, self.norm)
        return r / len(d) if self.scale_by_batch else r

    def reference(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Clean logits for the attack: a train-mode forward (BN batch statistics) or an eval-mode one."""
        with torch.no_grad():
            if self.ref_mode == "train":
                return model(x).detach()
            with attack_mode(model, "eval"):
                return model(x).detach()

    def ascent_step(self, model: nn.Module, x: torch.Tensor, x_start: torch.Tensor, y: torch.Tensor,
                    ref: torch.Tensor | None, lam: float) -> torch.Tensor:
        """One signed step of ε on CE + λ·regulariser from ``x_start`` (eval-mode BN), projected onto the ε-ball."""
        with attack_mode(model, "eval"), torch.enable_grad():
            xs = x_start.detach().requires_grad_(True)
            logits = model(xs)
            loss = F.cross_entropy(logits.float(), y)
            if lam and ref is not None:
                loss = loss + lam * self.regulariser(logits, ref)
            g, = torch.autograd.grad(loss, xs)
        return project(xs.detach() + self.eps * g.sign(), x, self.eps, "linf")

    def start(self, x: torch.Tensor) -> torch.Tensor:
        """Bernoulli start: every pixel ±α with probability ½, clipped to [0, 1]."""
        return (x + random_start(x, "bernoulli", self.alpha, "linf")).clamp(0, 1)

    def attack(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, lam: float, step: Step) -> torch.Tensor:
        ref = self.reference(model, x)
        use_reg = (not self.alternate) or step.global_step % 2 == 1
        return self.ascent_step(model, x, self.start(x), y, ref, lam if use_reg else 0.0)

    def train_logits(self, model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor):
        if self.separate_bn:
            return model(x), model(x_adv)
        out = model(torch.cat([x, x_adv]))
        return out[:len(x)], out[len(x):]

    # ------------------------------------------------------------------------------------------------ loss

    def derived_passes(self) -> float:
        """Reference forward 1 + attack forward/backward 2 + training forwards of the clean and the adversarial
        batch 2 + the backward through both 2 = 7N (the same with ``separate_bn=False``: one 2B forward)."""
        return 7.0

    def loss(self, model, x, y, step):
        lam = self.lam(step)
        self.current_lam = lam
        x_adv = self.attack(model, x, y, lam, step)
        clean, adv = self.train_logits(model, x, x_adv)
        reg = self.regulariser(adv, clean)
        loss = F.cross_entropy(clean.float(), y) + lam * reg
        return loss, {"clean_acc": accuracy_log(clean, y), "adv_acc": accuracy_log(adv, y), "reg": reg.detach()}


class NuAT2(NuAT):
    """Two-step NuAT (``NuAT2_WRN_cifar10.py``): eval-mode detached reference; step 1 on CE + λ·nuclear (every
    iteration), step 2 on CE only, each of size ε from the Bernoulli start, projected after each step."""

    name = "NuAT2"
    attack_steps = 2

    def __init__(self, eps: float = EPS, alpha: float = ALPHA, lam_max: float = 4.0, ramp_epochs: float = 55,
                 epoch_scale: float = 1.0, **kw):
        kw.setdefault("ref_mode", "eval")
        kw.setdefault("alternate", False)
        super().__init__(eps, alpha, lam_max, ramp_epochs, epoch_scale, **kw)

    def derived_passes(self) -> float:
        """Reference forward 1 + two attack steps 4 + training forwards 2 + backwards 2 = 9N (NuAT2-WA: 3 of them
        on the τ = 0.99 average, which the cost meter watches too)."""
        return 9.0

    def first_step_model(self, model: nn.Module, step: Step) -> nn.Module:
        return model

    def attack(self, model, x, y, lam, step):
        m1 = self.first_step_model(model, step)
        ref = self.reference(m1, x)
        x1 = self.ascent_step(m1, x, self.start(x), y, ref, lam)
        return self.ascent_step(model, x, x1, y, None, 0.0)


class NuAT2WA(NuAT2):
    """NuAT2-WA (``NuAT2-WA_WRN_cifar10.py``): step 1 (reference logits and the gradient of CE + λ·nuclear) on the
    τ = ``attack_tau`` weight average, step 2 on the live model; in epoch 0 the live model plays both roles. Train
    with ``TrainConfig(ema=(attack_tau, 0.9998))``; the reported model is the 0.9998 average."""

    name = "NuAT2-WA"

    def __init__(self, *args, attack_tau: float = 0.99, **kw):
        super().__init__(*args, **kw)
        self.attack_tau = float(attack_tau)

    def first_step_model(self, model, step):
        if step.epoch == 0:
            return model
        key = f"ema{self.attack_tau:g}"
        if key not in step.trainer.emas:
            raise ConfigError(f"NuAT2-WA needs a weight average with τ = {self.attack_tau:g} "
                              f"(TrainConfig(ema=({self.attack_tau:g}, 0.9998))); have {list(step.trainer.emas)}")
        return step.trainer.emas[key].model


def _bn_buffers(model: nn.Module) -> list[torch.Tensor]:
    return [b for m in model.modules() if isinstance(m, _BatchNorm) for b in m.buffers()]


class NuATHybrid(NuAT):
    """NuAT-H / NuAT-WA-H with **this project's switching rule** (the paper's rule is not in its code or text).

    The README says only that the hybrid "switches adaptively between single-step and two-step optimization for
    attack generation". Our rule (nuat.md §2.6, option A, loss-triggered per minibatch):

    1. run the single-step NuAT attack and the training forwards as in NuAT;
    2. r = CE(f(X̃), Y) / CE(f(X), Y) on the training logits measures how much the attack raised the loss;
    3. the attack counts as *weak* when r < 1 + ``margin`` — or, with ``target_rate`` p, when r falls below the
       p-quantile of the last ``window`` ratios (the margin calibrated online, so that about a fraction p of minibatches take
       the second step; p = k/E reproduces the paper's "E₊k" cost notation);
    4. for a weak attack, take NuAT2's second step (CE only, size ε, eval-mode BN) from X̃, discard the first
       adversarial forward (its BN running-statistics update is undone) and forward the new X̃.

    The fraction of minibatches that took the second step is logged per epoch (``two_step``) and in total
    (:attr:`two_step_rate`); the chapter reports it as the "₊k" epochs.
    """

    name = "NuAT-H"

    def __init__(self, *args, margin: float | None = None, target_rate: float | None = 0.1, window: int = 200,
                 min_history: int = 20, **kw):
        super().__init__(*args, **kw)
        if margin is None and target_rate is None:
            raise ConfigError("NuATHybrid needs a margin or a target_rate")
        if target_rate is not None and not 0 < target_rate < 1:
            raise ConfigError(f"target_rate must lie in (0, 1), got {target_rate}")
        self.margin, self.target_rate, self.window, self.min_history = margin, target_rate, window, min_history
        self._ratios: deque[float] = deque(maxlen=window)
        self._decisions = 0
        self._triggers = 0

    def derived_passes(self) -> float | None:
        """NuAT's 7N, plus 3N (the second step's forward/backward and the new adversarial forward) on the fraction
        of minibatches that take the second step: 7 + 3p with ``target_rate`` p (not stated with a fixed margin,
        where p is only known after training; the chapter reports the measured rate)."""
        return None if self.target_rate is None else 7.0 + 3.0 * self.target_rate

    @property
    def two_step_rate(self) -> float:
        return self._triggers / max(self._decisions, 1)

    def weak(self, ratio: float) -> bool:
        if self.margin is not None:
            return ratio < 1.0 + self.margin
        if len(self._ratios) < self.min_history:
            return False
        hist = sorted(self._ratios)
        q = hist[min(len(hist) - 1, int(self.target_rate * len(hist)))]
        return ratio < q

    def loss(self, model, x, y, step):
        lam = self.lam(step)
        self.current_lam = lam
        x_adv = self.attack(model, x, y, lam, step)
        clean = model(x)
        saved = [b.detach().clone() for b in _bn_buffers(model)]
        adv = model(x_adv)
        ce_clean = F.cross_entropy(clean.float(), y)
        ratio = float((F.cross_entropy(adv.float(), y) / ce_clean.clamp_min(1e-12)).detach())  # host sync
        weak = self.weak(ratio)
        self._ratios.append(ratio)
        self._decisions += 1
        if weak:
            self._triggers += 1
            with torch.no_grad():  # through .data: the clean forward's graph keeps (unused) references to them
                for b, v in zip(_bn_buffers(model), saved):
                    b.data.copy_(v)
            x_adv = self.ascent_step(model, x, x_adv, y, None, 0.0)
            adv = model(x_adv)
        reg = self.regulariser(adv, clean)
        loss = ce_clean + lam * reg
        one = torch.ones((), device=x.device)
        return loss, {"clean_acc": accuracy_log(clean, y), "adv_acc": accuracy_log(adv, y), "reg": reg.detach(),
                      "two_step": one if weak else one * 0, "ce_ratio": one * ratio}

    def state_dict(self):
        return {"ratios": list(self._ratios), "decisions": self._decisions, "triggers": self._triggers}

    def load_state_dict(self, state):
        self._ratios = deque(state.get("ratios", []), maxlen=self.window)
        self._decisions = int(state.get("decisions", 0))
        self._triggers = int(state.get("triggers", 0))


# --------------------------------------------------------------------------------------------- registered names


@register_method("nuat")
def nuat(epoch_scale: float = 1.0, **kw) -> NuAT:
    """NuAT on ResNet-18: λ_max = 4.5 reached at epoch 90 (0.05 per epoch), α = 4/255, ε = 8/255."""
    return NuAT(lam_max=kw.pop("lam_max", 4.5), ramp_epochs=kw.pop("ramp_epochs", 90), epoch_scale=epoch_scale, **kw)


@register_method("nuat_wa")
def nuat_wa(epoch_scale: float = 1.0, epochs: float = 100, **kw) -> NuAT:
    """NuAT-WA: λ_max = 4 over all ``epochs`` (100 on ResNet-18); train with an EMA τ = 0.9998."""
    return NuAT(lam_max=kw.pop("lam_max", 4.0), ramp_epochs=epochs, epoch_scale=epoch_scale,
                name=kw.pop("name", "NuAT-WA"), **kw)


@register_method("nuat_textbook")
def nuat_textbook(epoch_scale: float = 1.0, **kw) -> NuAT:
    """The README/seed formula taken literally: the nuclear term in every attack step, constant λ, one joint
    forward of clean and adversarial images, eval-mode reference logits (the /B scaling kept so λ is comparable)."""
    kw = {"alternate": False, "ramp": False, "separate_bn": False, "ref_mode": "eval", "name": "NuAT (textbook)", **kw}
    return NuAT(lam_max=kw.pop("lam_max", 4.5), ramp_epochs=kw.pop("ramp_epochs", 90), epoch_scale=epoch_scale, **kw)


@register_method("nuat2")
def nuat2(epoch_scale: float = 1.0, epochs: float = 55, **kw) -> NuAT2:
    """NuAT2 on WRN-34-10: λ_max = 4 over ``epochs`` (55)."""
    return NuAT2(lam_max=kw.pop("lam_max", 4.0), ramp_epochs=epochs, epoch_scale=epoch_scale, **kw)


@register_method("nuat2_wa")
def nuat2_wa(epoch_scale: float = 1.0, epochs: float = 80, attack_tau: float = 0.99, **kw) -> NuAT2WA:
    """NuAT2-WA on WRN-34-10: λ_max = 4 over ``epochs`` (80); step 1 on the τ = 0.99 average."""
    return NuAT2WA(lam_max=kw.pop("lam_max", 4.0), ramp_epochs=epochs, epoch_scale=epoch_scale,
                   attack_tau=attack_tau, **kw)


@register_method("nuat_h")
def nuat_h(epoch_scale: float = 1.0, epochs: float = 50, target_rate: float = 0.1, **kw) -> NuATHybrid:
    """NuAT-H (this project's rule): λ_max = 4 over ``epochs``; ≈ ``target_rate`` of minibatches take 2 steps."""
    return NuATHybrid(lam_max=kw.pop("lam_max", 4.0), ramp_epochs=epochs, epoch_scale=epoch_scale,
                      target_rate=target_rate, **kw)


@register_method("nuat_wa_h")
def nuat_wa_h(epoch_scale: float = 1.0, epochs: float = 60, target_rate: float = 0.1, **kw) -> NuATHybrid:
    """NuAT-WA-H (this project's rule); train with an EMA τ = 0.9998."""
    return NuATHybrid(lam_max=kw.pop("lam_max", 4.0), ramp_epochs=epochs, epoch_scale=epoch_scale,
                      target_rate=target_rate, name=kw.pop("name", "NuAT-WA-H"), **kw)
