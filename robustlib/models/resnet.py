"""CIFAR-style ResNets (He et al., 2016): 3×3 stem, no max-pool, four stages at strides 1, 2, 2, 2.

* :func:`resnet18` / :func:`resnet50`: post-activation ResNets (BasicBlock ×[2,2,2,2] / Bottleneck ×[3,4,6,3]).
  ``extra_relu=True`` reproduces the block of NuAT's code (a ReLU after bn2 *before* the residual add, as well as
  after it; val-iisc/NuAT issue #4) so its checkpoints load; the default is the standard block.
* :func:`preact_resnet18`: pre-activation ResNet-18 (He et al., 2016b), the FBF/"fast AT" architecture.

``width`` is the first stage's channel count (64 in the papers); ``blocks`` the blocks per stage. ``stage_fn`` lets a
caller transform the feature map after the stem and after each stage (ABNN's adaptive BN hooks in there), and
:meth:`ResNet.stage_outputs` returns those five maps (ABNN's substitute network provides them).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .norm import make_input_layer
from .staged import StagedNet, StageFn  # noqa: F401


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int, norm_layer=nn.BatchNorm2d, extra_relu: bool = False):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = norm_layer(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = norm_layer(planes)
        self.extra_relu = extra_relu
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False), norm_layer(planes))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.extra_relu:
            out = F.relu(out)
        return F.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int, norm_layer=nn.BatchNorm2d, extra_relu: bool = False):
        super().__init__()
        out_planes = planes * self.expansion
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = norm_layer(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = norm_layer(planes)
        self.conv3 = nn.Conv2d(planes, out_planes, 1, bias=False)
        self.bn3 = norm_layer(out_planes)
        self.extra_relu = extra_relu
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != out_planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, out_planes, 1, stride, bias=False),
                                          norm_layer(out_planes))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.extra_relu:
            out = F.relu(out)
        return F.relu(out + self.shortcut(x))


class ResNet(StagedNet):
    """A CIFAR ResNet. ``forward(x, stage_fn=None)``; ``stage_outputs(x)`` gives [stem, stage1, …, stage4]."""

    def __init__(self, block, blocks: Sequence[int], num_classes: int = 10, width: int = 64, in_channels: int = 3,
                 norm_layer=nn.BatchNorm2d, normalize=None, extra_relu: bool = False):
        super().__init__()
        self.input = make_input_layer(normalize)
        self.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        self.bn1 = norm_layer(width)
        in_planes = width
        stages = []
        for i, (n, stride) in enumerate(zip(blocks, (1, 2, 2, 2))):
            planes = width * 2 ** i
            layers = []
            for s in [stride] + [1] * (n - 1):
                layers.append(block(in_planes, planes, s, norm_layer, extra_relu))
                in_planes = planes * block.expansion
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.linear = nn.Linear(in_planes, num_classes)
        self.stage_channels = [width] + [width * 2 ** i * block.expansion for i in range(4)]

    def stem_forward(self, x):
        return F.relu(self.bn1(self.conv1(self.input(x))))

    def head_forward(self, out):
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


class PreActBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int, norm_layer=nn.BatchNorm2d, extra_relu: bool = False):
        super().__init__()
        self.bn1 = norm_layer(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn2 = norm_layer(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.shortcut = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride, bias=False)

    def forward(self, x):
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class PreActResNet(ResNet):
    """Pre-activation ResNet: the stem has no BN/ReLU; a final BN + ReLU precedes pooling."""

    def __init__(self, blocks: Sequence[int] = (2, 2, 2, 2), num_classes: int = 10, width: int = 64,
                 in_channels: int = 3, norm_layer=nn.BatchNorm2d, normalize=None):
        super().__init__(PreActBlock, blocks, num_classes, width, in_channels, norm_layer, normalize)
        del self.bn1
        self.bn_final = norm_layer(self.stage_channels[-1])

    def stem_forward(self, x):
        return self.conv1(self.input(x))

    def head_forward(self, out):
        out = F.relu(self.bn_final(out))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


def resnet18(num_classes: int = 10, width: int = 64, blocks: Sequence[int] = (2, 2, 2, 2), **kw) -> ResNet:
    """CIFAR ResNet-18 (11.2 M parameters at width 64)."""
    return ResNet(BasicBlock, blocks, num_classes, width, **kw)


def resnet50(num_classes: int = 10, width: int = 64, blocks: Sequence[int] = (3, 4, 6, 3), **kw) -> ResNet:
    """CIFAR ResNet-50 (23.5 M parameters at width 64)."""
    return ResNet(Bottleneck, blocks, num_classes, width, **kw)


def preact_resnet18(num_classes: int = 10, width: int = 64, blocks: Sequence[int] = (2, 2, 2, 2), **kw) -> PreActResNet:
    """Pre-activation ResNet-18 (the architecture of Wong et al.'s FBF)."""
    return PreActResNet(blocks, num_classes, width, **kw)
