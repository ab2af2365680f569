"""The weight initialisation the ReLU networks here share."""

from __future__ import annotations

from torch import nn


def he_init(module: nn.Module) -> None:
    """He et al. (2015) normal init for every conv, zero biases, unit batch-norm scales.

    PyTorch's default conv init shrinks the signal at each ReLU layer, which leaves deep plain
    nets (VGG, GoogLeNet without batch norm) barely trainable from scratch; He init keeps its
    variance, and is what the ResNet paper uses.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
