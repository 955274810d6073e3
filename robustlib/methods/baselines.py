"""Baselines of the NuAT tables that are not in :mod:`robustlib.methods.adversarial` (FGSM-AT, RFGSM-AT, FBF and
PGD-AT live there). Every class is one method beside its paper's equation; facts and sources in
``../shared/papers/nuat.md`` §5. A "-WA" row (GAT-WA, TRADES-WA) is the same method trained with a weight average
(``TrainConfig(ema=(0.9998,))``): one run gives both rows, the live model and its average.

* :class:`GAT` — Guided Adversarial Training (Sriramanan et al., NeurIPS 2020; val-iisc/GAMA-GAT ``GAT_cifar10.py``,
  the fixed 2020-12-23 version): NuAT's single-step scheme with a per-image regulariser on **softmax** outputs,
  λ·mean_i ‖p(x̃_i) − p(x_i)‖²₂, λ = 10 multiplied by 4 after epoch 85 of 100 (the script's ``if epoch == 85`` at the
  end of 0-based epoch 85, so λ = 40 from epoch 86, together with the second learning-rate drop); the attack uses the
  term on odd iterations only; clean reference from a train-mode forward; Bernoulli ±4/255 start, one step of ε,
  eval-mode BN in the attack (the script's ``model.eval()``). GAT's MNIST script (``GAT-MNIST.py``) uses λ = 15, ×3,
  the term on every attack iteration (``alternate=False``); its ImageNet-100 script λ = 20, ×7 from epoch 90 and an
  eval-mode reference (``ref_mode="eval"``). Cost 7N.
* :class:`TRADES` — Zhang et al., ICML 2019 (yaodongyu/TRADES ``train_trades_cifar10.py``): CE(f(x), y) + β·KL(p(x) ‖
  p(x')), x' from 10 eval-mode steps of 0.007 on KL(p(x) ‖ p(x')) within ε = 0.031 from x + 0.001·N(0, I) (eval mode
  as in the script's ``model.eval()``); β = 6. The
  official attack recomputes p(x) at every step; we compute it once (same values in eval mode). Cost 1 + 2·10 + 4 =
  **25N**.
* :class:`TRADESAWP` — Adversarial Weight Perturbation on TRADES (Wu, Xia & Wang, NeurIPS 2020; csdongxian/AWP
  ``trades_AWP``): after the TRADES attack, one ascent step of the TRADES loss on a proxy copy of the network (SGD lr
  0.01) gives per-layer directions Δ_l; the weights are moved by v_l = γ·‖w_l‖·Δ_l/‖Δ_l‖ (γ = 0.005, weights of
  conv/linear layers only), the TRADES loss is back-propagated at w + v, and v is removed before the optimiser step
  (the official code removes it after the step; with SGD the only difference is the weight-decay term on v). The
  script counts epochs from 1 and perturbs the weights when ``epoch >= awp_warmup`` (10), i.e. from the 10th epoch,
  0-based epoch **9** (``warmup_epochs=9`` here; epochs 0–8 are plain TRADES). The TRADES attack runs in eval mode
  (the script's ``model.eval()``), the proxy in train mode. Cost 25N + proxy forwards 2 + backwards 2 = **29N**
  ("11 AT steps").
* :class:`FreeAT` — "Adversarial Training for Free!" (Shafahi et al., NeurIPS 2019), the most likely reading of the
  NuAT table's "ATF" (its identity is not confirmed, nuat.md §5.8): each minibatch is replayed ``replays`` = m times;
  each replay's single forward/backward both updates the weights and moves the perturbation δ ← Π(δ + ε·sign ∇_δ),
  which carries over to the next minibatch (locuslab's ``train_free.py``: m = 8, 10 epochs, LR 0 → 0.04 → 0). 2N per
  replay, i.e. 2mN per sample per epoch.
* :class:`RMGM` — our reading of "R-MGM", the regulariser to mitigate gradient masking of Vivek, Baburaj & Babu (CVPR
  Workshops 2019; same lab, identified by acronym and authorship, not confirmed): the training loss grows with the
  distance between the logits of the FGSM and the R-FGSM adversaries of each image. Published in our sources only
  as that sentence of the abstract, so the form — CE on the FGSM adversary + λ·mean_i ‖f(x_FGSM) − f(x_RFGSM)‖²₂ — and
  λ = 0.2 are this project's choices, and so is BatchNorm in **eval mode** for both of its attacks (the convention of
  the same lab's GAT and NuAT scripts; no R-MGM code is public). Cost 2 + 2 + 4 = **8N**.
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..attacks.core import attack_mode, project, random_start
from .base import Method, Step, accuracy_log, register_method
from .nuat import ALPHA, EPS, NuAT, paper_epoch


# ------------------------------------------------------------------------------------------------------- GAT


class GAT(NuAT):
    """GAT: λ·mean ‖softmax(f(x̃)) − softmax(f(x))‖²₂ in attack (odd iterations) and training; λ = ``lam`` (10),
    × ``mult`` (4) from 0-based paper epoch ``mult_epoch`` (86 of 100: ``GAT_cifar10.py`` multiplies at the end of
    epoch 85). Other keywords go to :class:`NuAT` (``alternate``, ``ref_mode``, ...)."""

    name = "GAT"

    def __init__(self, eps: float = EPS, alpha: float = ALPHA, lam: float = 10.0, mult: float = 4.0,
                 mult_epoch: float = 86, epoch_scale: float = 1.0, **kw):
        super().__init__(eps, alpha, lam_max=lam, ramp_epochs=1, epoch_scale=epoch_scale, ramp=False, **kw)
        self.mult, self.mult_epoch = mult, mult_epoch

    def lam(self, step: Step) -> float:
        return self.lam_max * (self.mult if paper_epoch(step, self.epoch_scale) >= self.mult_epoch else 1.0)

    def regulariser(self, adv_logits, clean_logits):
        p_adv = torch.softmax(adv_logits.float(), 1)
        p_clean = torch.softmax(clean_logits.float(), 1)
        return ((p_adv - p_clean) ** 2).sum(1).mean()


@register_method("gat")
def gat(epoch_scale: float = 1.0, **kw) -> GAT:
    return GAT(epoch_scale=epoch_scale, **kw)


# ---------------------------------------------------------------------------------------------------- TRADES


def _kl(log_p_adv: torch.Tensor, p_clean: torch.Tensor) -> torch.Tensor:
    """KL(p_clean ‖ p_adv) summed over the batch (PyTorch's ``kl_div(log q, p, reduction='sum')``)."""
    return F.kl_div(log_p_adv, p_clean, reduction="sum")


class TRADES(Method):
    name = "TRADES"
    attack_steps = 10

    def __init__(self, eps: float = 0.031, alpha: float = 0.007, steps: int = 10, beta: float = 6.0,
                 init_std: float = 0.001, name: str | None = None):
        self.eps, self.alpha, self.steps, self.beta, self.init_std = eps, alpha, steps, beta, init_std
        self.attack_steps = steps
        if name:
            self.name = name

    def attack(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Maximise KL(p(x) ‖ p(x')) by ``steps`` signed steps in eval mode (one clean forward, then 2N per step)."""
        with attack_mode(model, "eval"), torch.enable_grad():
            with torch.no_grad():
                p_clean = torch.softmax(model(x).float(), 1)
            x_adv = x + self.init_std * torch.randn_like(x)
            for _ in range(self.steps):
                x_adv = x_adv.detach().requires_grad_(True)
                loss = _kl(F.log_softmax(model(x_adv).float(), 1), p_clean)
                g, = torch.autograd.grad(loss, x_adv)
                x_adv = project(x_adv.detach() + self.alpha * g.sign(), x, self.eps, "linf")
        return x_adv.detach()

    def derived_passes(self) -> float:
        """Eval-mode clean forward 1 + t attack steps × 2 + training forwards of clean and adversarial 2 + their
        backwards 2 = 2t + 5 N (25 at t = 10)."""
        return 2.0 * self.steps + 5.0

    def trades_loss(self, model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor):
        clean, adv = model(x), model(x_adv)
        robust = _kl(F.log_softmax(adv.float(), 1), torch.softmax(clean.float(), 1)) / len(x)
        return F.cross_entropy(clean.float(), y) + self.beta * robust, clean, adv

    def loss(self, model, x, y, step):
        x_adv = self.attack(model, x)
        loss, clean, adv = self.trades_loss(model, x, x_adv, y)
        return loss, {"clean_acc": accuracy_log(clean, y), "adv_acc": accuracy_log(adv, y)}


@register_method("trades")
def trades(**kw) -> TRADES:
    return TRADES(**kw)


class TRADESAWP(TRADES):
    name = "AWP"

    def __init__(self, eps: float = 8 / 255, alpha: float = 2 / 255, steps: int = 10, beta: float = 6.0,
                 gamma: float = 0.005, warmup_epochs: float = 9, epoch_scale: float = 1.0, proxy_lr: float = 0.01,
                 **kw):
        super().__init__(eps, alpha, steps, beta, **kw)
        self.attack_steps = steps + 1
        self.gamma, self.warmup_epochs, self.epoch_scale, self.proxy_lr = gamma, warmup_epochs, epoch_scale, proxy_lr
        self._proxy: nn.Module | None = None
        self._v: dict[str, torch.Tensor] = {}

    def derived_passes(self) -> float:
        """TRADES' 2t + 5 plus, after the warm-up, the proxy's forwards of clean and adversarial 2 and backwards 2:
        2t + 9 N (29 at t = 10; 2t + 5 during the warm-up epochs)."""
        return 2.0 * self.steps + 9.0

    def setup(self, trainer):
        self._proxy = copy.deepcopy(trainer.model)
        self._proxy._forward_hooks.clear()  # the copy inherits the cost meter's hook on the model: count it as proxy
        self._proxy_opt = torch.optim.SGD(self._proxy.parameters(), lr=self.proxy_lr)
        trainer.meter.watch(self._proxy, "proxy")

    def weight_perturbation(self, model: nn.Module, x, x_adv, y) -> dict[str, torch.Tensor]:
        """v_l = γ·‖w_l‖·Δ_l/‖Δ_l‖ from one ascent step of the TRADES loss on the proxy (conv/linear weights)."""
        proxy = self._proxy
        proxy.load_state_dict(model.state_dict())
        proxy.train()
        loss, _, _ = self.trades_loss(proxy, x, x_adv, y)
        self._proxy_opt.zero_grad(set_to_none=True)
        (-loss).backward()
        self._proxy_opt.step()
        new = dict(proxy.named_parameters())
        v = {}
        with torch.no_grad():
            for k, w in model.named_parameters():
                if w.ndim <= 1 or not k.endswith("weight"):
                    continue
                d = new[k].detach() - w.detach()
                v[k] = self.gamma * w.norm() / (d.norm() + 1e-20) * d
        return v

    def _shift(self, model: nn.Module, sign: float) -> None:
        params = dict(model.named_parameters())
        with torch.no_grad():
            for k, v in self._v.items():
                params[k].add_(v, alpha=sign)

    def loss(self, model, x, y, step):
        x_adv = self.attack(model, x)
        self._v = {}
        if paper_epoch(step, self.epoch_scale) >= self.warmup_epochs:
            self._v = self.weight_perturbation(model, x, x_adv, y)
            self._shift(model, +1.0)
        loss, clean, adv = self.trades_loss(model, x, x_adv, y)
        return loss, {"clean_acc": accuracy_log(clean, y), "adv_acc": accuracy_log(adv, y),
                      "awp": torch.tensor(float(bool(self._v)), device=x.device)}

    def post_backward(self, trainer):
        if self._v:
            self._shift(trainer.model, -1.0)
            self._v = {}


@register_method("awp")
def awp(epoch_scale: float = 1.0, **kw) -> TRADESAWP:
    return TRADESAWP(epoch_scale=epoch_scale, **kw)


# --------------------------------------------------------------------------------------------------- Free-AT


class FreeAT(Method):
    name = "ATF"
    attack_steps = 1

    def __init__(self, eps: float = EPS, replays: int = 8, step_size: float | None = None, name: str | None = None):
        self.eps, self.replays = eps, int(replays)
        self.step_size = eps if step_size is None else step_size
        self._delta: torch.Tensor | None = None
        self._leaf: torch.Tensor | None = None
        if name:
            self.name = name

    def derived_passes(self) -> float:
        """One forward/backward per replay, m replays of every minibatch: 2m N per sample per epoch (16 at m = 8)."""
        return 2.0 * self.replays

    def loss(self, model, x, y, step):
        if self._delta is None or self._delta.shape != x.shape or self._delta.device != x.device:
            self._delta = torch.zeros_like(x)
        self._leaf = self._delta.detach().clone().requires_grad_(True)
        logits = model((x + self._leaf).clamp(0, 1))
        return F.cross_entropy(logits.float(), y), {"adv_acc": accuracy_log(logits, y)}

    def post_backward(self, trainer):
        g = self._leaf.grad
        if g is not None:
            self._delta = (self._leaf.detach() + self.step_size * g.sign()).clamp(-self.eps, self.eps)
        self._leaf = None

    def state_dict(self):
        return {} if self._delta is None else {"delta": self._delta.detach().cpu()}

    def load_state_dict(self, state):
        self._delta = state.get("delta")


@register_method("free_at")
def free_at(**kw) -> FreeAT:
    return FreeAT(**kw)


# ----------------------------------------------------------------------------------------------------- R-MGM


class RMGM(Method):
    name = "R-MGM"
    attack_steps = 1

    def __init__(self, eps: float = EPS, rand_alpha: float | None = None, lam: float = 0.2, name: str | None = None):
        self.eps, self.lam = eps, lam
        self.rand_alpha = eps / 2 if rand_alpha is None else rand_alpha
        if name:
            self.name = name

    def derived_passes(self) -> float:
        """FGSM attack 2 + R-FGSM attack 2 + forwards of both adversaries 2 + the backward through both 2 = 8N."""
        return 8.0

    def _fgsm(self, model, x, y, start: torch.Tensor, step_size: float) -> torch.Tensor:
        """One signed step from ``x + start`` in eval-mode BN (our choice, as in the lab's GAT/NuAT scripts)."""
        with attack_mode(model, "eval"), torch.enable_grad():
            xs = (x + start).clamp(0, 1).requires_grad_(True)
            g, = torch.autograd.grad(F.cross_entropy(model(xs).float(), y), xs)
        return project(xs.detach() + step_size * g.sign(), x, self.eps, "linf")

    def loss(self, model, x, y, step):
        x_f = self._fgsm(model, x, y, torch.zeros_like(x), self.eps)
        x_r = self._fgsm(model, x, y, random_start(x, "bernoulli", self.rand_alpha, "linf"),
                         self.eps - self.rand_alpha)
        lf, lr = model(x_f), model(x_r)
        reg = ((lf.float() - lr.float()) ** 2).sum(1).mean()
        loss = F.cross_entropy(lf.float(), y) + self.lam * reg
        return loss, {"adv_acc": accuracy_log(lf, y), "reg": reg.detach()}


@register_method("rmgm")
def rmgm(**kw) -> RMGM:
    return RMGM(**kw)
