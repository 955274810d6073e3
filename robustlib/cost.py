"""Training cost in network passes, the unit N of the ABNN slides.

One forward pass *or* one backward pass of one sample through one network costs 1 N. Standard training is therefore
2N per sample, PGD-AT with t attack steps 2N(t + 1) (t forward/backward pairs for the attack plus one for the update;
12N at t = 5), and ABNN 3N (target forward + backward, substitute forward).

The meter counts by hooks, not by declaration: a forward hook on each watched network adds the batch size when the
network runs, and — if the output is part of an autograd graph — a tensor hook on the output adds the batch size
again when a backward pass reaches it (whether it goes on to parameters or only to the input, as in an attack).
Passes only count while the meter is :meth:`active` (the Trainer activates it around each training step, so
checkpoint selection and evaluation are not charged to training). Work the hooks cannot see (the second-order
pass of double backpropagation) is added explicitly with :meth:`add`.
"""
from __future__ import annotations

import contextlib
from collections import defaultdict

import torch
import torch.nn as nn


class CostMeter:
    def __init__(self):
        self.forward: dict[str, int] = defaultdict(int)
        self.backward: dict[str, int] = defaultdict(int)
        self.samples = 0
        self._active = False
        self._handles: list = []

    def watch(self, module: nn.Module, name: str = "model") -> "CostMeter":
        """Count passes through ``module`` under ``name`` (several modules may share a name)."""
        self._handles.append(module.register_forward_hook(self._make_hook(name)))
        return self

    def _make_hook(self, name: str):
        def hook(module, inputs, output):
            if not self._active:
                return
            out = output[0] if isinstance(output, (tuple, list)) else output
            if not isinstance(out, torch.Tensor):
                return
            n = out.shape[0] if out.ndim else 1
            self.forward[name] += n
            if out.requires_grad:
                def on_backward(grad, n=n):
                    if self._active:
                        self.backward[name] += n
                out.register_hook(on_backward)
        return hook

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    @contextlib.contextmanager
    def active(self, samples: int = 0):
        """Count passes inside the block; ``samples`` training samples are charged for them."""
        prev, self._active = self._active, True
        try:
            yield self
        finally:
            self._active = prev
            self.samples += samples

    def add(self, name: str, forward: int = 0, backward: int = 0) -> None:
        """Charge passes the hooks cannot see (e.g. the extra pass of double backpropagation)."""
        if self._active:
            self.forward[name] += forward
            self.backward[name] += backward

    @property
    def total_passes(self) -> int:
        return sum(self.forward.values()) + sum(self.backward.values())

    def per_sample(self) -> dict[str, float]:
        """Passes per training sample: {"<net>.forward", "<net>.backward", …, "total"}."""
        s = max(self.samples, 1)
        out = {}
        for name in sorted(set(self.forward) | set(self.backward)):
            out[f"{name}.forward"] = self.forward[name] / s
            out[f"{name}.backward"] = self.backward[name] / s
        out["total"] = self.total_passes / s
        return out

    @property
    def passes_per_sample(self) -> float:
        """Total N per training sample."""
        return self.total_passes / max(self.samples, 1)

    def state_dict(self) -> dict:
        return {"forward": dict(self.forward), "backward": dict(self.backward), "samples": self.samples}

    def load_state_dict(self, state: dict) -> None:
        self.forward = defaultdict(int, state["forward"])
        self.backward = defaultdict(int, state["backward"])
        self.samples = int(state["samples"])

    def __repr__(self):
        return f"CostMeter({self.passes_per_sample:.2f} N per sample over {self.samples} samples)"


def format_passes(n: float) -> str:
    """12.0 → '12N', 2.5 → '2.5N'."""
    return f"{n:.0f}N" if abs(n - round(n)) < 1e-6 else f"{n:.2f}N"
