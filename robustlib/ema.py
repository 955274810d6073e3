"""Exponential moving averages of a model's weights *and* buffers (NuAT-WA, GAT-WA, TRADES-WA, NuAT2-WA).

After every optimiser step, ω ← τ·ω + (1 − τ)·θ for every floating-point parameter and buffer (BatchNorm running
means and variances included, as in NuAT's code); integer buffers (``num_batches_tracked``) are copied. The average
starts from the initial weights. τ = 0.9998 averages over ≈ 5 000 steps.
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn


class EMA:
    def __init__(self, model: nn.Module, tau: float):
        if not 0.0 <= tau < 1.0:
            raise ValueError(f"EMA decay tau must be in [0, 1), got {tau}")
        self.tau = float(tau)
        self.model = copy.deepcopy(model)
        self.model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self._pairs = None

    @property
    def name(self) -> str:
        return f"ema{self.tau:g}"

    def _tensors(self, model: nn.Module):
        src = list(model.state_dict(keep_vars=True).values())
        dst = list(self.model.state_dict(keep_vars=True).values())
        fl = [(d, s) for d, s in zip(dst, src) if d.dtype.is_floating_point]
        it = [(d, s) for d, s in zip(dst, src) if not d.dtype.is_floating_point]
        return fl, it

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        fl, it = self._tensors(model)
        if fl:
            dst = [d.data for d, _ in fl]
            src = [s.data for _, s in fl]
            torch._foreach_lerp_(dst, src, 1.0 - self.tau)
        for d, s in it:
            d.copy_(s)

    def state_dict(self) -> dict:
        return self.model.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state)
