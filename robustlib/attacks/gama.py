"""GAMA-PGD: Guided Adversarial Margin Attack (Sriramanan et al., NeurIPS 2020), as in the authors' evaluation code.

Maximises the margin on softmax probabilities, max_{j≠y} p_j(x_t) − p_y(x_t), plus a relaxation term
w_t·‖p(x_ref) − p(x_t)‖²₂ whose weight starts at w₀ = 50 and falls linearly to 0 at step 25.

Details that follow the code (``GAMA/GAMA_PGD.py``), not the paper text:

* the start is a vertex of the ε-ball, x₀ = x + ε·s with s ∈ {±1}^d (not clipped before the first forward);
* the reference point x_ref is the noisy start x₀, not the clean image (the code recomputes p(x_ref) every step; in
  eval mode that value never changes, so it is computed once here: same numbers, half the forward passes);
* 100 signed steps of initial size 2ε, divided by 10 after steps 60 and 85; after each step clip to [0, 1], then
  project onto the ε-ball; the output is the final iterate; one restart for the tables.
* the code averages both loss terms over the batch; they are summed here, which scales the gradient by the batch
  size and leaves its sign (up to rounding), hence every step, unchanged.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ..errors import ConfigError
from .core import Attack, project, random_start


class GAMAPGD(Attack):
    name = "gama"

    def __init__(self, eps: float, steps: int = 100, *, alpha: float | None = None, w0: float = 50.0,
                 relax_steps: int = 25, drops: tuple[int, ...] = (60, 85), restarts: int = 1, norm: str = "linf",
                 bn_mode: str = "eval", name: str | None = None):
        super().__init__(eps, norm, bn_mode)
        if norm != "linf":
            raise ConfigError("GAMA-PGD is an ℓ∞ attack; use norm='linf'")
        if steps < 1 or restarts < 1:
            raise ConfigError(f"steps and restarts must be ≥ 1, got {steps}, {restarts}")
        self.steps, self.w0, self.relax_steps, self.drops, self.restarts = steps, w0, relax_steps, drops, restarts
        self.alpha = 2 * eps if alpha is None else alpha
        self.name = name or f"gama{steps}"

    def weight(self, t: int) -> float:
        """Relaxation weight at step t (0-based): w₀·(1 − t/relax_steps), zero from ``relax_steps`` on."""
        return max(0.0, self.w0 * (1 - t / self.relax_steps))

    def step_size(self, t: int) -> float:
        """Step size at step t (0-based): 2ε, ÷10 after each drop."""
        return self.alpha * 0.1 ** sum(t >= d for d in self.drops)

    def _once(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x0 = (x + random_start(x, "bernoulli", self.eps, "linf")).detach()
        with torch.no_grad():
            p_ref = torch.softmax(model(x0).float(), 1)
        onehot = torch.nn.functional.one_hot(y, p_ref.shape[1]).bool()
        x_adv = x0
        for t in range(self.steps):
            x_adv.requires_grad_(True)
            p = torch.softmax(model(x_adv).float(), 1)
            p_true = p.gather(1, y[:, None]).squeeze(1)
            p_other = p.masked_fill(onehot, -1.0).amax(1)
            loss = (p_other - p_true).sum()
            w = self.weight(t)
            if w > 0:
                loss = loss + w * ((p_ref - p) ** 2).sum()
            g, = torch.autograd.grad(loss, x_adv)
            x_adv = (x_adv.detach() + self.step_size(t) * g.sign()).clamp(0, 1)
            x_adv = project(x_adv, x, self.eps, "linf")
        return x_adv.detach()

    def _perturb(self, model, x, y):
        """All restarts inside the caller's mode context, the worst case judged by the model as it is set;
        :meth:`perturb` judges each restart in eval mode instead (see ``Attack._worst_case``)."""
        best = self._once(model, x, y)
        for _ in range(self.restarts - 1):
            with torch.no_grad():
                fooled = model(best).argmax(1) != y
            best = torch.where(fooled.view(-1, 1, 1, 1), best, self._once(model, x, y))
        return best

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The per-image worst case over ``restarts`` runs (the first whose output the model misclassifies in eval
        mode), inside the ε-ball and [0, 1]."""
        return self._worst_case(model, x, y, self._once, self.restarts)
