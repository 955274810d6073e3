"""Adapter for AutoAttack (Croce & Hein, ICML 2020) through its PyPI packaging ``pyautoattack``.

``version="standard"`` is today's AutoAttack: APGD-CE, APGD-T (9 targets), FAB-T (9 targets), Square (5 000
queries) — the "AA (v2)" of the NuAT WRN table and what every new number in this book uses. ``version="plus"`` and
custom attack lists are passed through. The model runs in eval mode with frozen parameters; AutoAttack's own
warnings (its checks for randomness, non-logit outputs, dynamic models) are captured in :attr:`warnings` so the
comparison chapter can report them. ``apgd_budget=(iterations, restarts)`` cuts APGD in a ``custom`` run (smoke
profiles: a custom APGD-CE otherwise runs 100 iterations × 5 restarts).
"""
from __future__ import annotations

import logging
from typing import Sequence

import torch
import torch.nn as nn

from ..errors import ConfigError
from .core import Attack, attack_mode, predict, project

VERSIONS = ("standard", "plus", "rand", "custom")


class _Capture(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.records: list[str] = []

    def emit(self, record):
        self.records.append(record.getMessage())


class AutoAttack(Attack):
    name = "aa"

    def __init__(self, eps: float, *, norm: str = "linf", version: str = "standard",
                 attacks: Sequence[str] | None = None, seed: int = 0, batch_size: int = 500,
                 apgd_budget: tuple[int, int] | None = None, square_queries: int | None = None,
                 name: str | None = None):
        super().__init__(eps, norm, "eval")
        if version not in VERSIONS:
            raise ConfigError(f"unknown AutoAttack version {version!r}; valid: {', '.join(VERSIONS)}")
        if attacks is not None and version != "custom":
            raise ConfigError("a list of attacks needs version='custom'")
        if (apgd_budget is not None or square_queries is not None) and version != "custom":
            raise ConfigError("apgd_budget and square_queries cut a custom AutoAttack run; the standard version keeps "
                              "its budgets")
        self.version, self.attacks, self.seed, self.batch_size = version, attacks, seed, batch_size
        self.apgd_budget, self.square_queries = apgd_budget, square_queries
        self.warnings: list[str] = []   # every distinct warning AutoAttack logged, over all batches so far
        if name:
            self.name = name

    def _adversary(self, model: nn.Module, device: torch.device):
        try:
            from pyautoattack import AutoAttack as _AA
        except ImportError as e:  # pragma: no cover - declared dependency
            raise ImportError("AutoAttack needs the 'pyautoattack' package: pip install pyautoattack") from e
        norm = {"linf": "Linf", "l2": "L2"}[self.norm]
        aa = _AA(model, attacks=list(self.attacks) if self.attacks else None, device=device, eps=self.eps,
                 norm=norm, seed=self.seed, version=self.version)
        aa.verbose = False
        if self.apgd_budget is not None:  # (iterations, restarts) of APGD-CE/DLR; smoke profiles only
            aa.apgd.n_iter, aa.apgd.n_restarts = self.apgd_budget
        if self.square_queries is not None:
            aa.square.n_queries = int(self.square_queries)
        return aa

    def _perturb(self, model, x, y):
        aa = self._adversary(model, x.device)
        logger = logging.getLogger("auto-attack")
        handler = _Capture()
        logger.addHandler(handler)
        try:
            x_adv, _ = aa.run_standard_evaluation(x, y, batch_size=self.batch_size)
        finally:
            logger.removeHandler(handler)
        self.warnings += [w for w in handler.records if w not in self.warnings]
        return x_adv

    def robust_flags(self, model, x, y):
        clean = predict(model, x) == y
        x_adv = self.perturb(model, x, y)
        return {self.name: clean & (predict(model, x_adv) == y)}
