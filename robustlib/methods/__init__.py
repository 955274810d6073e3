"""Training methods. Each is one short module beside its paper's equations; all share the one Trainer.

Modules register their methods with :func:`register_method`; ``METHODS.names()`` lists them.
"""
from __future__ import annotations

from .base import METHODS, Method, Step, accuracy_log, register_method
from .standard import Standard
from .adversarial import PGDAT, fbf, fgsm_at, rfgsm_at
from . import nuat, baselines, abnn, advprop, gradreg  # noqa: E402,F401  (register their methods)


def build_method(name: str, **kwargs) -> Method:
    """Build a registered training method by name (``METHODS.names()``)."""
    return METHODS.build(name, **kwargs)


__all__ = ["METHODS", "build_method", "register_method", "Method", "Step", "accuracy_log", "Standard", "PGDAT",
           "fbf", "fgsm_at", "rfgsm_at"]
