"""torchvision's ImageNet ResNets (7×7 stride-2 stem, 3×3 max-pool, torchvision's module names so its checkpoints
load), width- and depth-scalable for smoke runs, with the staged interface of robustlib's ResNets.

ABNN's substitute is "a public model trained on large-scale datasets (e.g., ImageNet)" [seed]: :func:`tv_resnet18`
builds that layout; :func:`load_torchvision_weights` loads a **local** torchvision checkpoint into it (nothing is
downloaded) for readers who have ImageNet weights. On 32×32 inputs the stage maps of the ImageNet layout are 8, 8, 4,
2 and 1 pixels wide.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
import torch.nn as nn
import torchvision

from ..errors import ConfigError
from .norm import Normalize
from .registry import register_model
from .staged import StagedNet

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ImageNetResNet(StagedNet, torchvision.models.resnet.ResNet):
    """torchvision's ImageNet ResNet (7×7 stride-2 stem, 3×3 max-pool, module names as torchvision's, so its
    checkpoints load) with a scalable ``width`` and ``blocks``, input in [0, 1] normalised inside with ImageNet
    statistics, and ``stage_outputs``/``forward(x, stage_fn)`` like robustlib's CIFAR ResNets (the StagedNet
    forward comes first in the method order, replacing torchvision's)."""

    def __init__(self, block, blocks: Sequence[int] = (2, 2, 2, 2), num_classes: int = 1000, width: int = 64,
                 normalize=(IMAGENET_MEAN, IMAGENET_STD)):
        nn.Module.__init__(self)
        self._norm_layer = nn.BatchNorm2d
        self.inplanes, self.dilation, self.groups, self.base_width = width, 1, 1, 64
        self.input = Normalize(*normalize) if normalize is not None else nn.Identity()
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._make_layer(block, width, blocks[0])
        self.layer2 = self._make_layer(block, width * 2, blocks[1], stride=2)
        self.layer3 = self._make_layer(block, width * 4, blocks[2], stride=2)
        self.layer4 = self._make_layer(block, width * 8, blocks[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width * 8 * block.expansion, num_classes)
        self.stage_channels = [width] + [width * 2 ** i * block.expansion for i in range(4)]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def stem_forward(self, x):
        return self.maxpool(self.relu(self.bn1(self.conv1(self.input(x)))))

    def head_forward(self, out):
        return self.fc(torch.flatten(self.avgpool(out), 1))


@register_model("tv_resnet18")
def tv_resnet18(num_classes: int = 1000, width: int = 64, blocks: Sequence[int] = (2, 2, 2, 2), **kw):
    """torchvision's ImageNet ResNet-18 layout (ABNN's substitute; 11.7 M parameters at width 64, 1000 classes)."""
    return ImageNetResNet(torchvision.models.resnet.BasicBlock, blocks, num_classes, width, **kw)


@register_model("tv_resnet50")
def tv_resnet50(num_classes: int = 1000, width: int = 64, blocks: Sequence[int] = (3, 4, 6, 3), **kw):
    """torchvision's ImageNet ResNet-50 layout."""
    return ImageNetResNet(torchvision.models.resnet.Bottleneck, blocks, num_classes, width, **kw)


def load_torchvision_weights(model: nn.Module, path: str | Path, *, strict_fc: bool = False) -> nn.Module:
    """Load a **local** torchvision checkpoint (e.g. ``resnet18-f37072fd.pth`` or ``r3d_18-b3b3357e.pth``) into a
    model with torchvision's module names (or into the ``net`` of a wrapper such as ABNN's substitute features).
    Nothing is downloaded. ``fc`` is skipped when its shape differs (ABNN never uses the substitute's classifier)
    unless ``strict_fc``."""
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"no weights file at {path}. Download torchvision's checkpoint on a machine with "
                                "internet (e.g. torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url) and pass "
                                "its path.")
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    state = {k.removeprefix("module."): v for k, v in state.items()}
    inner = getattr(model, "net", None)
    target = inner if isinstance(inner, nn.Module) else model
    own = target.state_dict()
    skipped = []
    if not strict_fc:
        skipped = [k for k, v in state.items() if k.startswith("fc.") and k in own and own[k].shape != v.shape]
        state = {k: v for k, v in state.items() if k not in skipped}
    missing, unexpected = target.load_state_dict(state, strict=False)
    missing = [k for k in missing if k not in skipped]
    if missing or unexpected:
        raise ConfigError(f"{path} does not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model
