"""A backbone whose feature_info says 96 channels while its forward returns 72."""

from torch import nn

from cvkit.registry import BACKBONES
from cvkit.structures import FeatureSpec


@BACKBONES.register()
class LyingNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 72, 3, stride=2, padding=1)
        self.feature_info = [FeatureSpec(96, 2)]

    def forward(self, x):
        return [self.conv(x)]
