"""Adapter for AutoAttack (Croce & Hein, ICML 2020) through its PyPI packaging ``pyautoattack``.

``version="standard"`` is today's AutoAttack: APGD-CE, APGD-T (9 targets), FAB-T (9 targets), Square (5 000
queries) — the "AA (v2)" of the NuAT WRN table and what every new number in this book uses. ``version="plus"`` and
custom attack lists are passed through. The model runs in eval mode with frozen parameters; AutoAttack's own
warnings (its checks for randomness, non-logit outputs, dynamic models) are captured in :attr:`warnings` so the
comparison chapter can report them. ``apgd_budget=(iterations, restarts)`` cuts APGD in a ``custom`` run (smoke
profiles: a custom APGD-CE otherwise runs 100 iterations × 5 restarts), and ``targets`` the number of target classes
of APGD-T and FAB-T in a ``custom`` run (cpu profiles: 9 by default, each a full attack on the surviving images).

**Batch-dependent models** (:func:`robustlib.evaluation.batch_dependent`, e.g. ABNN with batch-global μ/σ).
AutoAttack does not attack the batch it is given: it runs each of its attacks only on the images still classified
correctly, in sub-batches, and APGD (over restarts and target classes) and Square (at every query) shrink those
further to the images not yet fooled. A model whose prediction depends on its batch-mates is therefore attacked as a
different function in every one of those compositions, and none of them is the composition of the final scoring
(which puts the fooled images beside the clean, still-robust ones). Two ways out were weighed:

* AutoAttack's own per-image verdicts (``y_adv`` of ``run_standard_evaluation``) are each taken in the sub-batch the
  image was fooled in, so they are consistent image by image, but each in a batch of another size and membership:
  the count mixes many functions and estimates the robustness of none of them;
* running AutoAttack against the model's **batch-size-1 function** (:func:`robustlib.evaluation.batch_size_one`;
  for a batch-global ABNN exactly the same weights with per-sample μ/σ, see :mod:`robustlib.methods.abnn`) gives it
  the fixed per-image function it assumes: every sub-batch it forms computes the same per-image outputs, so the
  function it crafts against is the function it is scored on.

The adapter takes the second: on a batch-dependent model, :meth:`robust_flags` attacks and scores the batch-size-1
function (clean and adversarial prediction of each image alone), i.e. it measures robustness *at batch size 1*,
which :meth:`scoring` says and :func:`robustlib.evaluation.evaluate` records. Batch-independent models are attacked
and scored exactly as before.
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
    _omit_if_none = ("targets",)

    def __init__(self, eps: float, *, norm: str = "linf", version: str = "standard",
                 attacks: Sequence[str] | None = None, seed: int = 0, batch_size: int = 500,
                 apgd_budget: tuple[int, int] | None = None, square_queries: int | None = None,
                 targets: int | None = None, name: str | None = None):
        super().__init__(eps, norm, "eval")
        if version not in VERSIONS:
            raise ConfigError(f"unknown AutoAttack version {version!r}; valid: {', '.join(VERSIONS)}")
        if attacks is not None and version != "custom":
            raise ConfigError("a list of attacks needs version='custom'")
        if (apgd_budget is not None or square_queries is not None or targets is not None) and version != "custom":
            raise ConfigError("apgd_budget, square_queries and targets cut a custom AutoAttack run; the standard "
                              "version keeps its budgets")
        if targets is not None and not 1 <= int(targets) <= 9:
            raise ConfigError(f"targets = {targets!r}: APGD-T and FAB-T take 1 to 9 target classes")
        self.version, self.attacks, self.seed, self.batch_size = version, attacks, seed, batch_size
        self.apgd_budget, self.square_queries = apgd_budget, square_queries
        self.targets = None if targets is None else int(targets)
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
        if self.targets is not None:
            aa.apgd_targeted.n_target_classes = aa.fab.n_target_classes = self.targets
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

    @staticmethod
    def attacked_function(model: nn.Module) -> nn.Module:
        """What AutoAttack attacks and scores: ``model``, or its batch-size-1 function if it is batch-dependent."""
        from ..evaluation import batch_size_one  # evaluation imports the attacks
        return batch_size_one(model)

    def scoring(self, model: nn.Module) -> str:
        """How :meth:`robust_flags` scores ``model`` (recorded by :func:`robustlib.evaluation.evaluate`)."""
        f = self.attacked_function(model)
        if f is model:
            return "in the batch AutoAttack was given (a batch-independent model: composition does not matter)"
        return (f"batch size 1: AutoAttack attacks and scores the model's batch-size-1 function ({type(f).__name__}), "
                "because it attacks shrinking sub-batches of a batch-dependent model")

    def flags_and_adversarials(self, model, x, y):
        """``robust_flags`` and the adversarial batch behind them ({name: [x_adv]})."""
        f = self.attacked_function(model)
        clean = predict(f, x) == y
        x_adv = self.perturb(f, x, y)
        return {self.name: clean & (predict(f, x_adv) == y)}, {self.name: [x_adv]}

    def robust_flags(self, model, x, y):
        return self.flags_and_adversarials(model, x, y)[0]
