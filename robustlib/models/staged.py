"""Networks made of a stem, four stages and a head — the shape every ResNet here shares (CIFAR, PreAct, ImageNet
layout, 3D video). ABNN needs two things from such a network: the feature maps after the stem and after each stage
(:meth:`StagedNet.stage_outputs`, for the substitute) and a hook that transforms them on the way
(``forward(x, stage_fn)``, for the target's adaptive BatchNorms)."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

StageFn = Callable[[int, torch.Tensor], torch.Tensor]


class StagedNet(nn.Module):
    """Subclasses define :meth:`stem_forward` and :meth:`head_forward` and have ``layer1`` … ``layer4``."""

    def stem_forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def head_forward(self, out: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def stages(self):
        return (self.layer1, self.layer2, self.layer3, self.layer4)

    def forward(self, x, stage_fn: StageFn | None = None):
        """Logits; ``stage_fn(i, z)`` (if given) replaces the map after the stem (i = 0) and after stage i."""
        out = self.stem_forward(x)
        if stage_fn is not None:
            out = stage_fn(0, out)
        for i, layer in enumerate(self.stages(), 1):
            out = layer(out)
            if stage_fn is not None:
                out = stage_fn(i, out)
        return self.head_forward(out)

    def stage_outputs(self, x) -> list[torch.Tensor]:
        """The feature maps after the stem and after each of the four stages."""
        outs = [self.stem_forward(x)]
        for layer in self.stages():
            outs.append(layer(outs[-1]))
        return outs
