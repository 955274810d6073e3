"""3D (video) ResNets for ABNN's UCF-101 experiment, and synthetic clips to test them on.

* :class:`VideoResNet3D` subclasses torchvision's ``VideoResNet`` with a scalable ``width``/``blocks`` and the module
  names of torchvision's video models, so torchvision's Kinetics-400 checkpoints (``r3d_18``, ``mc3_18``,
  ``r2plus1d_18``) load at width 64 with :func:`robustlib.models.imagenet.load_torchvision_weights` (from a local file;
  nothing is downloaded here). ABNN's substitute in the paper is a Kinetics-pretrained 3D ResNet-18 [seed].
* :class:`ResNeXt3D` is a 3D ResNeXt in the layout of Hara et al.'s Kinetics models (the authors' target, 3D
  ResNeXt-101: bottleneck expansion 2, cardinality 32, blocks [3, 4, 23, 3], 7×7×7 stem with stride (1, 2, 2) and a
  3×3×3 max-pool, projection shortcuts) [code]; torchvision has no 3D ResNeXt. Its parameter names are this module's
  own, so Hara et al.'s checkpoints need a key map (not provided).

Both accept clips N×C×T×H×W in [0, 1] and, for the 4-D data pipeline (``ArrayDataset`` holds N×C×H×W), clips whose
T frames are **stacked along the height** (N×C×(T·H)×W) when built with ``frames=T``. Both provide
``forward(x, stage_fn=None)``, ``stage_outputs(x)`` (stem and four stages) and ``stage_channels`` for ABNN.

Training on a GPU: pass ``TrainConfig(channels_last=False)`` (channels-last is a 4-D memory format).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models.video import resnet as tvr

from ..data import ArrayDataset, load_synthetic
from ..errors import ConfigError
from .staged import StagedNet
from .registry import register_model

KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)


class Normalize3d(nn.Module):
    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1, 1), persistent=False)

    def forward(self, x):
        return (x - self.mean) / self.std


class _ClipInput(nn.Module):
    """Unstack N×C×(T·H)×W to N×C×T×H×W when ``frames`` is set and the input is 4-D; normalise if asked."""

    def __init__(self, frames: int | None, normalize):
        super().__init__()
        self.frames = frames
        self.norm = Normalize3d(*normalize) if normalize is not None else nn.Identity()

    def forward(self, x):
        if x.ndim == 4:
            if not self.frames:
                raise ValueError("a 4-D input needs a model built with frames=T (frames stacked along the height)")
            x = unstack_clips(x, self.frames)
        return self.norm(x)


class _StagedVideoNet(StagedNet):
    """``input → stem → layer1..4 → pool → fc`` as a :class:`~robustlib.models.staged.StagedNet`."""

    def stem_forward(self, x):
        return self.stem(self.input(x))

    def head_forward(self, out):
        return self.fc(torch.flatten(F.adaptive_avg_pool3d(out, 1), 1))


class VideoResNet3D(_StagedVideoNet, tvr.VideoResNet):
    """torchvision's VideoResNet (r3d_18 / mc3_18 / r2plus1d_18 layouts) with scalable width and depth."""

    def __init__(self, arch: str = "r3d_18", num_classes: int = 400, width: int = 64,
                 blocks: Sequence[int] = (2, 2, 2, 2), frames: int | None = None, normalize=None):
        nn.Module.__init__(self)
        conv = {"r3d_18": [tvr.Conv3DSimple] * 4, "mc3_18": [tvr.Conv3DSimple] + [tvr.Conv3DNoTemporal] * 3,
                "r2plus1d_18": [tvr.Conv2Plus1D] * 4}
        if arch not in conv:
            raise ValueError(f"unknown video ResNet {arch!r}; valid: {', '.join(conv)}")
        self.arch = arch
        self.input = _ClipInput(frames, normalize)
        if arch == "r2plus1d_18":
            mid = max(1, 45 * width // 64)
            self.stem = nn.Sequential(
                nn.Conv3d(3, mid, (1, 7, 7), (1, 2, 2), (0, 3, 3), bias=False), nn.BatchNorm3d(mid), nn.ReLU(True),
                nn.Conv3d(mid, width, (3, 1, 1), 1, (1, 0, 0), bias=False), nn.BatchNorm3d(width), nn.ReLU(True))
        else:
            self.stem = nn.Sequential(nn.Conv3d(3, width, (3, 7, 7), (1, 2, 2), (1, 3, 3), bias=False),
                                      nn.BatchNorm3d(width), nn.ReLU(inplace=True))
        self.inplanes = width
        block = tvr.BasicBlock
        self.layer1 = self._make_layer(block, conv[arch][0], width, blocks[0], stride=1)
        self.layer2 = self._make_layer(block, conv[arch][1], width * 2, blocks[1], stride=2)
        self.layer3 = self._make_layer(block, conv[arch][2], width * 4, blocks[2], stride=2)
        self.layer4 = self._make_layer(block, conv[arch][3], width * 8, blocks[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool3d((1, 1, 1))
        self.fc = nn.Linear(width * 8, num_classes)
        self.stage_channels = [width, width, width * 2, width * 4, width * 8]
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)


class ResNeXtBottleneck3D(nn.Module):
    """Hara et al.'s 3D ResNeXt block: 1×1×1 → grouped 3×3×3 (``cardinality`` groups, stride) → 1×1×1, expansion 2."""

    expansion = 2

    def __init__(self, in_planes: int, planes: int, cardinality: int, stride: int = 1):
        super().__init__()
        mid = planes  # Hara: cardinality · ⌊planes / 32⌋ = planes for cardinality 32
        self.conv1 = nn.Conv3d(in_planes, mid, 1, bias=False)
        self.bn1 = nn.BatchNorm3d(mid)
        self.conv2 = nn.Conv3d(mid, mid, 3, stride, 1, groups=cardinality, bias=False)
        self.bn2 = nn.BatchNorm3d(mid)
        self.conv3 = nn.Conv3d(mid, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm3d(planes * self.expansion)
        self.downsample = None
        if stride != 1 or in_planes != planes * self.expansion:  # shortcut type 'B': projection
            self.downsample = nn.Sequential(nn.Conv3d(in_planes, planes * self.expansion, 1, stride, bias=False),
                                            nn.BatchNorm3d(planes * self.expansion))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNeXt3D(_StagedVideoNet):
    """3D ResNeXt (Hara et al. layout). ResNeXt-101: ``blocks=(3, 4, 23, 3)``, ``width=64`` (planes 128…1024,
    outputs 256…2048), ``cardinality=32``. Tiny versions scale ``width`` and ``cardinality`` (which must divide
    2·width)."""

    def __init__(self, blocks: Sequence[int] = (3, 4, 23, 3), num_classes: int = 101, width: int = 64,
                 cardinality: int = 32, frames: int | None = None, normalize=None):
        super().__init__()
        self.input = _ClipInput(frames, normalize)
        self.stem = nn.Sequential(nn.Conv3d(3, width, 7, (1, 2, 2), 3, bias=False), nn.BatchNorm3d(width),
                                  nn.ReLU(inplace=True), nn.MaxPool3d(3, 2, 1))
        in_planes = width
        stages = []
        for i, (n, stride) in enumerate(zip(blocks, (1, 2, 2, 2))):
            planes = 2 * width * 2 ** i
            layers = []
            for s in [stride] + [1] * (n - 1):
                layers.append(ResNeXtBottleneck3D(in_planes, planes, cardinality, s))
                in_planes = planes * ResNeXtBottleneck3D.expansion
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.fc = nn.Linear(in_planes, num_classes)
        self.stage_channels = [width] + [4 * width * 2 ** i for i in range(4)]
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")


@register_model("r3d_18")
def r3d_18(num_classes: int = 400, width: int = 64, blocks: Sequence[int] = (2, 2, 2, 2), **kw) -> VideoResNet3D:
    """torchvision's 3D ResNet-18 (33.4 M parameters at width 64, 400 Kinetics classes)."""
    return VideoResNet3D("r3d_18", num_classes, width, blocks, **kw)


@register_model("mc3_18")
def mc3_18(num_classes: int = 400, width: int = 64, blocks: Sequence[int] = (2, 2, 2, 2), **kw) -> VideoResNet3D:
    return VideoResNet3D("mc3_18", num_classes, width, blocks, **kw)


@register_model("r2plus1d_18")
def r2plus1d_18(num_classes: int = 400, width: int = 64, blocks: Sequence[int] = (2, 2, 2, 2), **kw) -> VideoResNet3D:
    return VideoResNet3D("r2plus1d_18", num_classes, width, blocks, **kw)


@register_model("resnext3d_101")
def resnext3d_101(num_classes: int = 101, width: int = 64, blocks: Sequence[int] = (3, 4, 23, 3),
                  cardinality: int = 32, **kw) -> ResNeXt3D:
    """3D ResNeXt-101 (Hara et al. layout), ABNN's UCF-101 target."""
    return ResNeXt3D(blocks, num_classes, width, cardinality, **kw)


# ------------------------------------------------------------------------------------------- synthetic clips


def synthetic_clips(split: str = "train", n: int | None = None, *, num_classes: int = 5, frames: int = 4,
                    size: int = 16, seed: int = 0, **kw) -> ArrayDataset:
    """Tiny synthetic videos for tests and the smoke demo (no UCF-101 here): each clip is a synthetic image
    (:func:`robustlib.data.load_synthetic`: a robust colour pattern plus a brittle ±6/255 pattern per class) that
    moves by one pixel per frame in a class-dependent direction. Stored as N×3×(T·size)×size uint8, frames stacked
    along the height (build the video models with ``frames=T``)."""
    img = load_synthetic(split, n=n, num_classes=num_classes, size=size, seed=seed, **kw)
    dirs = torch.tensor([[0, 1], [1, 0], [0, -1], [-1, 0], [1, 1], [-1, -1], [1, -1], [-1, 1]])
    clips = []
    for x, y in zip(img.x, img.y):
        dy, dx = dirs[int(y) % len(dirs)].tolist()
        clips.append(torch.cat([torch.roll(x, (t * dy, t * dx), (1, 2)) for t in range(frames)], dim=1))
    x = torch.stack(clips)
    return ArrayDataset(x, img.y, "synthetic_clips", split, img.classes,
                        f"synthetic clips (seed={seed}, {frames}×{size}×{size})", len(x),
                        (f"frames={frames}",))


def unstack_clips(x: torch.Tensor, frames: int) -> torch.Tensor:
    """N×C×(T·H)×W → N×C×T×H×W. A stack whose height is not a multiple of T (clips of another length than the
    model was built for) raises :class:`~robustlib.errors.ConfigError`."""
    n, c, th, w = x.shape
    if th % frames:
        raise ConfigError(f"clips of height {th} cannot hold {frames} stacked frames (the height must be T·H): the "
                          f"data were cut with another clip length than the model's frames={frames}")
    return x.reshape(n, c, frames, th // frames, w)
