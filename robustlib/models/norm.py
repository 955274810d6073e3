"""Normalisation helpers: in-model input normalisation and a clean way to swap every BatchNorm for another module."""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn as nn

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2471, 0.2435, 0.2616)


class Normalize(nn.Module):
    """(x − mean) / std per channel, inside the model so attacks work in [0, 1] pixel space."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    def forward(self, x):
        return (x - self.mean) / self.std


def make_input_layer(normalize: tuple[Sequence[float], Sequence[float]] | None) -> nn.Module:
    return nn.Identity() if normalize is None else Normalize(*normalize)


_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def replace_batchnorm(model: nn.Module, factory: Callable[[nn.modules.batchnorm._BatchNorm], nn.Module],
                      predicate: Callable[[str, nn.Module], bool] | None = None) -> int:
    """Replace every BatchNorm in ``model`` (in place) by ``factory(bn)``; returns how many were replaced.

    ``factory`` receives the original layer (to copy its size, affine flag, momentum and weights); ``predicate(name,
    bn)`` may restrict the replacement to some layers. Used by AdvProp (dual BN) and ABNN (adaptive BN at every BN).
    """
    targets = [(name, m) for name, m in model.named_modules()
               if name and isinstance(m, _BN) and (predicate is None or predicate(name, m))]
    for name, bn in targets:
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        new = factory(bn)
        if isinstance(parent, (nn.Sequential, nn.ModuleList)) and attr.isdigit():
            parent[int(attr)] = new
        else:
            setattr(parent, attr, new)
    return len(targets)


def count_batchnorms(model: nn.Module) -> int:
    return sum(isinstance(m, _BN) for m in model.modules())
