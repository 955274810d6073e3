"""Standard (undefended) training: minimise cross-entropy on clean images. Cost 2N per sample."""
from __future__ import annotations

import torch.nn.functional as F

from .base import Method, accuracy_log, register_method


@register_method("standard")
class Standard(Method):
    """min_θ E[CE(f_θ(x), y)] — the "Normal" / "No Defense" / "Undefended" / "Vanilla" rows."""

    name = "Normal"

    def __init__(self, label_smoothing: float = 0.0):
        self.label_smoothing = label_smoothing

    def derived_passes(self) -> float:
        """Forward 1 + backward 1 = 2N."""
        return 2.0

    def loss(self, model, x, y, step):
        logits = model(x)
        loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
        return loss, {"acc": accuracy_log(logits, y)}
