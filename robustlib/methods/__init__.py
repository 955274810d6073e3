"""Training methods. Each is one short module beside its paper's equations; all share the one Trainer."""
from __future__ import annotations

from typing import Callable

from ..registry import Registry
from .adversarial import PGDAT, fbf, fgsm_at, rfgsm_at
from .base import Method, Step, accuracy_log
from .standard import Standard

METHODS: Registry[Callable[..., Method]] = Registry("method")
METHODS.register("standard", Standard)
METHODS.register("pgd_at", PGDAT)
METHODS.register("fbf", fbf)
METHODS.register("fgsm_at", fgsm_at)
METHODS.register("rfgsm_at", rfgsm_at)


def build_method(name: str, **kwargs) -> Method:
    """Build a registered training method by name (``METHODS.names()``)."""
    return METHODS.build(name, **kwargs)


__all__ = ["METHODS", "build_method", "Method", "Step", "accuracy_log", "Standard", "PGDAT", "fbf", "fgsm_at",
           "rfgsm_at"]
