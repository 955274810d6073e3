"""The Method interface: one small object per training method, shared Trainer for all.

A method turns a batch into the loss to minimise. The Trainer owns everything else (data, optimiser, schedules,
weight averages, checkpoints, the cost meter), so each paper's method module reads like the paper's equations.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn

from ..registry import Registry

if TYPE_CHECKING:  # pragma: no cover
    from ..training import Trainer


METHODS: Registry = Registry("method")


def register_method(name: str):
    """Decorator: register a Method subclass or factory under ``name`` (see ``METHODS.names()``)."""
    return METHODS.register(name)


@dataclass
class Step:
    """Where training is: ``epoch`` (0-based), ``iteration`` within the epoch, ``global_step``, and the Trainer."""
    epoch: int
    iteration: int
    global_step: int
    trainer: "Trainer"


class Method:
    """Base class. Override :meth:`loss`; optionally the hooks below.

    Class attributes:
      ``name``        the paper's label of the method;
      ``attack_steps`` attack gradient steps per update (the NuAT tables' "# AT steps");
      ``replays``     optimiser steps per minibatch (Free-AT replays a batch m times; 1 otherwise).
    """

    name = "method"
    attack_steps = 0
    replays = 1

    def setup(self, trainer: "Trainer") -> None:
        """Called once before training (e.g. to create an extra weight average)."""

    def start_epoch(self, trainer: "Trainer", epoch: int) -> None:
        """Called at the start of every epoch (e.g. NuAT's λ ramp)."""

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, step: Step):
        """Return the loss, or ``(loss, logs)`` with ``logs`` a dict of scalar tensors to average per epoch."""
        raise NotImplementedError

    def derived_passes(self) -> float | None:
        """The method's own statement of its training cost: passes N per training sample per epoch (a forward or a
        backward of one image through one network is 1 N), derived beside the loss in the subclass's docstring.
        The cost meter's test checks every registered method's measured N against it; the experiment layer's time
        model multiplies it by measured seconds per pass. None: not stated."""
        return None

    def post_backward(self, trainer: "Trainer") -> None:
        """Called after ``loss.backward()`` and before the optimiser step (AWP removes its weight perturbation)."""

    def hyperparameters(self) -> dict[str, Any]:
        """JSON-able hyperparameters, recorded with every run and part of its checkpoint fingerprint."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_") and _jsonable(v)}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}({args})"


def _jsonable(v) -> bool:
    return isinstance(v, (int, float, str, bool, type(None))) or (
        isinstance(v, (list, tuple)) and all(_jsonable(i) for i in v)) or (
        isinstance(v, dict) and all(isinstance(k, str) and _jsonable(i) for k, i in v.items()))


def accuracy_log(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Batch accuracy as a device tensor (no host sync)."""
    return (logits.detach().argmax(1) == y).float().mean()
