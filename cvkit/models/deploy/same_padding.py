"""TF 'SAME' convolutions with constant padding, for tracing at symbolic sizes.

timm's ``Conv2dSame`` (the ``tf_`` backbones: EfficientNet-Lite, MixNet...) computes its
padding from the input size on every call, ``max((ceil(n / s) - 1) * s + (k - 1) * d + 1 - n,
0)``. Traced at a symbolic size, each layer nests the previous layer's expression twice, so the
exporter's symbolic reasoning grows exponentially with depth: the FCN on EfficientNet-Lite0
took over ten minutes to export. When ``n`` is a multiple of ``s`` the padding is the constant
``max((k - 1) * d + 1 - s, 0)``, and a model that pads every image to a multiple of its
backbone's coarsest stride gives every strided convolution such an ``n``; there the constant
is exact, and the graph keeps its symbolic sizes simple.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from timm.layers import Conv2dSame
from torch import nn

from cvkit.models.deploy.base import DeployGraph


class ConstantSamePadConv2d(nn.Conv2d):
    """A ``Conv2dSame``'s computation for inputs whose height and width are multiples of its
    stride: the same weights (shared), the padding a constant."""

    def __init__(self, conv: nn.Conv2d) -> None:
        (kh, kw), (sh, sw), (dh, dw) = conv.kernel_size, conv.stride, conv.dilation
        super().__init__(
            conv.in_channels,
            conv.out_channels,
            (kh, kw),
            (sh, sw),
            0,
            (dh, dw),
            conv.groups,
            conv.bias is not None,
        )
        self.weight, self.bias = conv.weight, conv.bias
        pads = [
            max((k - 1) * d + 1 - s, 0)
            for k, s, d in zip(self.kernel_size, self.stride, self.dilation, strict=True)
        ]
        pad_h, pad_w = pads
        self.pad = (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, C, H, W]`` with ``H`` and ``W`` multiples of the stride."""
        return super().forward(F.pad(x, self.pad))


def traceable(graph: DeployGraph) -> DeployGraph:
    """The graph to trace: a copy whose backbone's ``Conv2dSame`` layers pad by constants when
    its model pads every image to a multiple of the backbone's coarsest stride (sizes
    symbolic), else ``graph`` itself (a fixed input size keeps every size constant anyway).
    The export's parity check compares the traced copy with the original."""
    pre = graph.preprocessor
    backbone = getattr(graph.model, "backbone", None)
    if pre.input_size is not None or pre.pad_to is not None or backbone is None:
        return graph
    coarsest = max(int(f.stride) for f in backbone.feature_info)
    # only the backbone's: its strides are what the divisor is checked against
    convs = [name for name, m in backbone.named_modules() if isinstance(m, Conv2dSame)]
    if not convs or int(pre.size_divisor) % coarsest:
        return graph
    traced = copy.deepcopy(graph)
    for name in convs:
        parent_name, _, child = name.rpartition(".")
        parent = traced.model.backbone.get_submodule(parent_name)
        setattr(parent, child, ConstantSamePadConv2d(getattr(parent, child)))
    return traced
