"""ResNeXt34-2x32, Finlay & Oberman's CIFAR-10 network, and its smooth-ReLU variant (cfinlay/tulip ``cifar10/models``).

This is *not* torchvision's ResNeXt. Built from the description in the paper notes (§4), quirks included, so that
the architecture matches the released models:

* **Stem:** 3×3 conv 3 → ``width`` (no conv bias), BatchNorm with ``affine=False``, then a learned per-channel bias,
  then the activation. The same "conv → BN(affine=False) → bias → activation" block is used for the stage
  transitions and (as a linear layer) for the classifier head.
* **Stages:** three stages of ``blocks`` (5, 5, 5) BranchBlocks at widths ``width``·(1, 2, 4) = 32 / 64 / 128.
* **BranchBlock(C):** 3×3 conv C → 2C (no bias), BN (affine), activation; grouped 3×3 conv 2C → 2C with 2 groups, BN
  (affine); the two groups' outputs (the "branches") are **averaged** back to C channels (no 1×1 aggregation conv);
  residual add; activation.
* **Stage transition:** 1×1 conv block (BN(affine=False) + bias + activation) to the new width, then **AvgPool(2)**
  (no strided convolutions, no projection shortcuts).
* **Head:** global average pool, then Linear(128 → classes) followed by BatchNorm1d(affine=False), a bias, **and the
  activation on the logits** (the head reuses the block with its default non-linearity, so the logits of the ReLU
  network are non-negative). ``logit_activation=False`` drops that quirk; the default keeps it.
* Depth 1 + 30 + 2 + 1 = 34; 3.9 M parameters at width 32.

The **smooth ReLU** of the C-bound (:func:`smooth_relu`) is max(x, 0) for |x| ≥ ½ and −½(x + ½)⁴ + (x + ½)³ for
|x| < ½: twice continuously differentiable, so the loss has a Hessian everywhere and the curvature bound applies.
``smooth_resnext34_2x32`` uses it for every activation, logits included.

Inputs are images in [0, 1] without normalisation (the authors' data pipeline has none). ``width`` and ``blocks``
make tiny versions for smoke runs and tests.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .registry import register_model

ACTIVATIONS = ("relu", "smooth_relu")


def smooth_relu(x: torch.Tensor) -> torch.Tensor:
    """C² ReLU: x for x ≥ ½, −½(x + ½)⁴ + (x + ½)³ for |x| < ½, 0 for x ≤ −½."""
    z = x + 0.5
    poly = z.pow(3) - 0.5 * z.pow(4)
    return torch.where(x >= 0.5, x, torch.where(x > -0.5, poly, torch.zeros_like(x)))


def activation(name: str):
    if name == "relu":
        return F.relu
    if name == "smooth_relu":
        return smooth_relu
    raise ValueError(f"unknown activation {name!r}; valid: {', '.join(ACTIVATIONS)}")


class SmoothReLU(nn.Module):
    def forward(self, x):
        return smooth_relu(x)


class ConvBNBias(nn.Module):
    """conv (no bias) → BatchNorm(affine=False) → + bias → activation (tulip's ``Conv`` block)."""

    def __init__(self, cin: int, cout: int, kernel: int, act: str = "relu"):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout, affine=False)
        bound = 1.0 / math.sqrt(cin * kernel * kernel)
        self.bias = nn.Parameter(torch.empty(cout).uniform_(-bound, bound))
        self.act_name = act
        self.act = activation(act)

    def forward(self, x):
        return self.act(self.bn(self.conv(x)) + self.bias.view(1, -1, 1, 1))


class LinearBNBias(nn.Module):
    """Linear (no bias) → BatchNorm1d(affine=False) → + bias → optional activation (tulip's ``Linear`` block)."""

    def __init__(self, cin: int, cout: int, act: str | None = "relu"):
        super().__init__()
        self.linear = nn.Linear(cin, cout, bias=False)
        self.bn = nn.BatchNorm1d(cout, affine=False)
        bound = 1.0 / math.sqrt(cin)
        self.bias = nn.Parameter(torch.empty(cout).uniform_(-bound, bound))
        self.act = activation(act) if act else None

    def forward(self, x):
        y = self.bn(self.linear(x)) + self.bias
        return self.act(y) if self.act is not None else y


class BranchBlock(nn.Module):
    """Residual block with ``branches`` grouped branches averaged back to C channels."""

    def __init__(self, channels: int, branches: int = 2, act: str = "relu"):
        super().__init__()
        c, b = channels, branches
        self.channels, self.branches = c, b
        self.conv0 = nn.Conv2d(c, c * b, 3, padding=1, bias=False)
        self.bn0 = nn.BatchNorm2d(c * b)
        self.conv1 = nn.Conv2d(c * b, c * b, 3, padding=1, groups=b, bias=False)
        self.bn1 = nn.BatchNorm2d(c * b)
        self.act = activation(act)

    def forward(self, x):
        y = self.act(self.bn0(self.conv0(x)))
        y = self.bn1(self.conv1(y))
        n, _, h, w = y.shape
        y = y.reshape(n, self.branches, self.channels, h, w).mean(1)  # branch k = channels [kC, (k+1)C)
        return self.act(x + y)


class ResNeXtCifar(nn.Module):
    """Finlay & Oberman's CIFAR ResNeXt (see module docstring)."""

    def __init__(self, num_classes: int = 10, width: int = 32, blocks: Sequence[int] = (5, 5, 5),
                 branches: int = 2, activation: str = "relu", logit_activation: bool = True,
                 in_channels: int = 3):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; valid: {', '.join(ACTIVATIONS)}")
        self.activation = activation
        self.stem = ConvBNBias(in_channels, width, 3, activation)
        stages = []
        cin = width
        for i, n in enumerate(blocks):
            c = width * 2 ** i
            layers: list[nn.Module] = []
            if i > 0:
                layers += [ConvBNBias(cin, c, 1, activation), nn.AvgPool2d(2)]
            layers += [BranchBlock(c, branches, activation) for _ in range(n)]
            stages.append(nn.Sequential(*layers))
            cin = c
        self.stages = nn.Sequential(*stages)
        self.fc = LinearBNBias(cin, num_classes, activation if logit_activation else None)

    def forward(self, x):
        out = self.stages(self.stem(x))
        return self.fc(out.mean((2, 3)))


@register_model("resnext34_2x32")
def resnext34_2x32(num_classes: int = 10, width: int = 32, blocks: Sequence[int] = (5, 5, 5), branches: int = 2,
                   logit_activation: bool = True, **kw) -> ResNeXtCifar:
    """ResNeXt34-2x32 with ReLUs (3.9 M parameters at width 32); ReLU on the logits as in the released code."""
    return ResNeXtCifar(num_classes, width, blocks, branches, "relu", logit_activation, **kw)


@register_model("smooth_resnext34_2x32")
def smooth_resnext34_2x32(num_classes: int = 10, width: int = 32, blocks: Sequence[int] = (5, 5, 5),
                          branches: int = 2, logit_activation: bool = True, **kw) -> ResNeXtCifar:
    """SmoothResNeXt34-2x32: every activation (logits included) is the C² smooth ReLU, for the curvature bound."""
    return ResNeXtCifar(num_classes, width, blocks, branches, "smooth_relu", logit_activation, **kw)
