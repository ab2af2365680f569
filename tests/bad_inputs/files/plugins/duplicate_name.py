"""Registers a backbone under a name cvkit already has."""

from torch import nn

from cvkit.registry import BACKBONES


@BACKBONES.register("TinyNet")
class MyTinyNet(nn.Module):
    pass
