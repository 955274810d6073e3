"""WideResNet (Zagoruyko & Komodakis, 2016) in the form used by Madry et al., TRADES and most AT papers.

WRN-34-10: depth 34 ⇒ 5 pre-activation blocks per group, widths 16 / 160 / 320 / 640, stride on the block's first
conv, no conv biases, 8×8 average pool. (NuAT's own WRN file differs: biased convolutions and the stride on the second
conv; its state dicts do not load here. The NuAT chapter says so.)
"""
from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F

from .norm import make_input_layer


class WideBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int, norm_layer=nn.BatchNorm2d, dropout: float = 0.0):
        super().__init__()
        self.bn1 = norm_layer(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn2 = norm_layer(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.dropout = dropout
        self.equal = in_planes == planes and stride == 1
        self.shortcut = None if self.equal else nn.Conv2d(in_planes, planes, 1, stride, bias=False)

    def forward(self, x):
        o = F.relu(self.bn1(x))
        shortcut = x if self.equal else self.shortcut(o)
        out = F.relu(self.bn2(self.conv1(o)))
        if self.dropout:
            out = F.dropout(out, self.dropout, self.training)
        return self.conv2(out) + shortcut


class WideResNet(nn.Module):
    def __init__(self, depth: int = 34, widen: int = 10, num_classes: int = 10, in_channels: int = 3,
                 norm_layer=nn.BatchNorm2d, normalize=None, dropout: float = 0.0):
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"WideResNet depth must be 6n + 4 (e.g. 16, 28, 34), got {depth}")
        n = (depth - 4) // 6
        widths = [16, 16 * widen, 32 * widen, 64 * widen]
        self.input = make_input_layer(normalize)
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        groups = []
        in_planes = widths[0]
        for planes, stride in zip(widths[1:], (1, 2, 2)):
            blocks = []
            for s in [stride] + [1] * (n - 1):
                blocks.append(WideBlock(in_planes, planes, s, norm_layer, dropout))
                in_planes = planes
            groups.append(nn.Sequential(*blocks))
        self.block1, self.block2, self.block3 = groups
        self.bn = norm_layer(in_planes)
        self.linear = nn.Linear(in_planes, num_classes)
        self.stage_channels = widths

    def forward(self, x):
        out = self.conv1(self.input(x))
        out = self.block3(self.block2(self.block1(out)))
        out = F.relu(self.bn(out))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


def wide_resnet(depth: int = 34, widen: int = 10, num_classes: int = 10, **kw) -> WideResNet:
    """WRN-34-10 by default (46.2 M parameters)."""
    return WideResNet(depth, widen, num_classes, **kw)
