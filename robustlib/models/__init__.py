"""Model zoo: CIFAR ResNets, PreAct ResNet-18, WideResNet-34-10, the MNIST CNN, plus BatchNorm replacement.

All models take images in [0, 1]; an optional ``normalize=(mean, std)`` puts the normalisation inside the model.
Width and depth are parameters so that smoke runs use tiny versions of the same architectures.
"""
from __future__ import annotations

import torch.nn as nn

from .registry import MODELS, register_model
from .norm import Normalize, count_batchnorms, replace_batchnorm
from .resnet import PreActResNet, ResNet, preact_resnet18, resnet18, resnet50
from .wideresnet import WideResNet, wide_resnet
from .mnist import MNISTNet, mnist_cnn
from . import resnext, video  # noqa: E402,F401  (register their models)
from . import imagenet  # noqa: E402,F401  (registers tv_resnet18, tv_resnet50)

MODELS.register("resnet18", resnet18)
MODELS.register("resnet50", resnet50)
MODELS.register("preact_resnet18", preact_resnet18)
MODELS.register("wrn34_10", wide_resnet)
MODELS.register("mnist_cnn", mnist_cnn)


def build_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model by name (``MODELS.names()`` lists them); keyword arguments go to its constructor."""
    return MODELS.build(name, **kwargs)


def num_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["MODELS", "register_model", "build_model", "num_parameters", "Normalize", "replace_batchnorm", "count_batchnorms",
           "ResNet", "PreActResNet", "WideResNet", "MNISTNet", "resnet18", "resnet50", "preact_resnet18",
           "wide_resnet", "mnist_cnn"]
