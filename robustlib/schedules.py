"""Learning-rate (and momentum) schedules as pure functions of training progress.

A schedule maps the fractional epoch ``e = epoch + iteration / iterations_per_epoch`` to ``(lr, momentum)``; momentum
is None when the schedule leaves it alone. Being pure functions of progress, they need no state in a checkpoint, and
an interrupted run resumes on exactly the same values.

* :class:`Piecewise`: lr × γ at each milestone epoch (Madry, TRADES, Rice et al., Finlay & Oberman's ÷5 steps).
* :class:`Cyclic`: PyTorch's ``CyclicLR`` in triangular mode, stepped every iteration, *including* its default
  momentum cycling (momentum 0.9 at the LR trough, 0.8 at the peak) — NuAT's scripts rely on it — plus NuAT's
  "cyclic-step" extras: freeze the cycle at an epoch, then multiply by step drops.
* :func:`triangular`: one 0 → max_lr → 0 triangle, peak at half of training, momentum cycling on (Wong et al.'s FBF
  and locuslab's Free-AT scripts: ``CyclicLR`` with its defaults).
* :class:`Cosine` (with optional linear warm-up) and :class:`Constant`.
* :class:`StepDecay` (÷γ at fractions of training) and :class:`Compressed` (any schedule run faster, so that a
  shortened run follows the paper's curve as a function of progress).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Callable

from .errors import ConfigError
from .registry import Registry

SCHEDULES: Registry[Callable[..., "Schedule"]] = Registry("schedule")


class Schedule:
    def __call__(self, epoch: float) -> tuple[float, float | None]:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> dict:
        return {"name": type(self).__name__.lower(), **asdict(self)}  # type: ignore[arg-type]


@SCHEDULES.register("constant")
@dataclass
class Constant(Schedule):
    lr: float

    def __call__(self, epoch):
        return self.lr, None


@SCHEDULES.register("piecewise")
@dataclass
class Piecewise(Schedule):
    """``lr`` times ``gamma`` for every milestone ≤ the current (integer) epoch."""
    lr: float
    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.1

    def __call__(self, epoch):
        k = sum(int(epoch) >= m for m in self.milestones)
        return self.lr * self.gamma ** k, None


@SCHEDULES.register("cyclic")
@dataclass
class Cyclic(Schedule):
    """Triangular cycle base_lr → max_lr over ``up`` epochs, back over ``down`` epochs (torch ``CyclicLR``).

    ``freeze_at``: the scheduler stops stepping at this epoch (lr and momentum keep their values there).
    ``drops``: {epoch: factor} multiplied into the lr from that epoch on (cumulative), after the freeze.
    """
    max_lr: float
    up: float
    down: float
    base_lr: float = 0.0
    cycle_momentum: bool = True
    base_momentum: float = 0.8
    max_momentum: float = 0.9
    freeze_at: float | None = None
    drops: dict[int, float] = field(default_factory=dict)

    def __post_init__(self):
        if self.up <= 0 or self.down <= 0:
            raise ConfigError(f"cyclic schedule needs up > 0 and down > 0 epochs, got up={self.up}, down={self.down}")
        self.drops = {int(k): float(v) for k, v in self.drops.items()}

    def scale(self, epoch: float) -> float:
        total = self.up + self.down
        cycle = math.floor(1 + epoch / total)
        x = 1.0 + epoch / total - cycle
        ratio = self.up / total
        return x / ratio if x <= ratio else (x - 1) / (ratio - 1)

    def __call__(self, epoch):
        e = min(epoch, self.freeze_at) if self.freeze_at is not None else epoch
        s = self.scale(e)
        lr = self.base_lr + (self.max_lr - self.base_lr) * s
        for at, factor in self.drops.items():
            if int(epoch) >= at:
                lr *= factor
        mom = self.max_momentum - (self.max_momentum - self.base_momentum) * s if self.cycle_momentum else None
        return lr, mom


@SCHEDULES.register("cosine")
@dataclass
class Cosine(Schedule):
    lr: float
    epochs: float
    warmup: float = 0.0
    final_lr: float = 0.0

    def __call__(self, epoch):
        if epoch < self.warmup:
            return self.lr * epoch / self.warmup, None
        t = min(1.0, (epoch - self.warmup) / max(self.epochs - self.warmup, 1e-12))
        return self.final_lr + 0.5 * (self.lr - self.final_lr) * (1 + math.cos(math.pi * t)), None


@SCHEDULES.register("step_decay")
@dataclass
class StepDecay(Schedule):
    """lr × γ^k, k = number of fractions f with epoch ≥ f·epochs: Finlay & Oberman's ÷5 at epochs 60/120/160 of 200
    is ``fractions=(0.3, 0.6, 0.8), gamma=0.2``, and the same fractions compress it to shorter runs."""

    lr: float
    epochs: float
    fractions: tuple[float, ...] = (0.3, 0.6, 0.8)
    gamma: float = 0.2

    def __call__(self, epoch):
        k = sum(epoch >= f * self.epochs - 1e-9 for f in self.fractions)
        return self.lr * self.gamma ** k, None


@dataclass
class Compressed(Schedule):
    """A paper's schedule run ``factor`` times faster: lr(e) = base(e·factor) (factor = paper epochs / run epochs).

    Milestones and a cyclic-step freeze then fall at the same fraction of training as in the paper."""
    base: Schedule
    factor: float = 1.0

    def __call__(self, epoch):
        return self.base(epoch * self.factor)

    def describe(self) -> dict:
        return {"name": "compressed", "factor": self.factor, "base": self.base.describe()}


def build_schedule(spec: dict | Schedule) -> Schedule:
    """A schedule from ``{"name": ..., **params}`` (names: ``SCHEDULES.names()``) or a Schedule instance."""
    if isinstance(spec, Schedule):
        return spec
    spec = dict(spec)
    name = spec.pop("name", None)
    cls = SCHEDULES.get(name)
    try:
        return cls(**spec)
    except TypeError as e:
        raise ConfigError(f"bad parameters for the {name!r} schedule: {e}") from None


def triangular(max_lr: float, epochs: float, peak: float = 0.5, cycle_momentum: bool = True) -> Cyclic:
    """One triangle 0 → max_lr → 0 over ``epochs``, the peak at ``peak``·epochs, as PyTorch's ``CyclicLR`` with
    ``step_size_up = peak·iterations`` and ``step_size_down`` the rest, stepped every iteration — the schedule of Wong
    et al.'s ``train_fgsm.py`` (FBF, CIFAR-10: peak at ½, 0 → 0.2 → 0) and of locuslab's ``train_free.py``.

    Those scripts keep ``CyclicLR``'s defaults ``cycle_momentum=True``, ``base_momentum=0.8``,
    ``max_momentum=0.9``, so SGD momentum cycles inversely to the learning rate: 0.9 at the start and the end
    (learning rate 0), 0.8 at the peak. ``cycle_momentum=False`` leaves momentum to the optimiser. The schedule is
    frozen at ``epochs`` (no second cycle)."""
    if not 0 < peak < 1:
        raise ConfigError(f"triangular schedule needs 0 < peak < 1 (fraction of training at the top), got {peak}")
    return Cyclic(max_lr, up=peak * epochs, down=(1 - peak) * epochs, cycle_momentum=cycle_momentum,
                  freeze_at=epochs)
