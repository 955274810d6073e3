"""The small MNIST CNN of the GAT/NuAT line (Sriramanan et al., 2020, 2021).

conv5×5(32) → conv5×5(32) → max-pool → conv5×5(64) → conv5×5(64) → max-pool → fc 512 → fc 10, ReLU after every
hidden layer, 'same' padding (so the feature map is 64×7×7 before the first fully connected layer).
``width`` scales the channel counts (32 by default) for smoke runs.
"""
from __future__ import annotations

import torch.nn as nn

from .norm import make_input_layer


class MNISTNet(nn.Module):
    def __init__(self, num_classes: int = 10, width: int = 32, hidden: int = 512, in_channels: int = 1,
                 normalize=None):
        super().__init__()
        w = width
        self.input = make_input_layer(normalize)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, w, 5, padding=2), nn.ReLU(),
            nn.Conv2d(w, w, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 5, padding=2), nn.ReLU(),
            nn.Conv2d(2 * w, 2 * w, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(2 * w * 7 * 7, hidden), nn.ReLU(),
                                        nn.Linear(hidden, num_classes))

    def forward(self, x):
        return self.classifier(self.features(self.input(x)))


def mnist_cnn(num_classes: int = 10, width: int = 32, hidden: int = 512, **kw) -> MNISTNet:
    return MNISTNet(num_classes, width, hidden, **kw)
