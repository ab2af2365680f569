"""RetinaNet head: two conv towers shared across pyramid levels."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, cast

import torch
from torch import nn

from cvkit.models.task_utils.anchor_generator import flatten_level
from cvkit.registry import HEADS


@HEADS.register()
class RetinaHead(nn.Module):
    """Class logits and box deltas for every anchor of every level.

    Args:
        in_channels: channels of every pyramid level (wired from the neck).
        num_classes: foreground classes ``K`` (no background class: sigmoid per class).
        num_anchors: anchors per location ``A`` (the detector checks it against its anchor
            generator).
        num_convs: 3x3 conv + ReLU layers in each tower.
        feat_channels: channels inside the towers.
        prior_prob: initial foreground probability, so the focal loss starts stable.
        norm: ``None`` (the paper) or ``"GN"``: GroupNorm after every tower conv, as
            torchvision's ``retinanet_resnet50_fpn_v2`` and MMDetection's GN heads; it helps
            deep towers train in short schedules.
        norm_groups: GroupNorm's groups (``feat_channels`` must divide by it).
        in_strides: stride of every level (wired from the neck), kept as ``strides``: the
            detector's anchors and padding use them. ``None`` when the detector's anchor
            generator fixes its own strides.
        tower_init: the towers' conv weights: ``"normal"``, N(0, 0.01) as in the paper (with
            SGD and 256 channels), or ``"kaiming"`` (He normal, fan-in, ReLU gain). The two
            output convs start at N(0, 0.01) and the class prior either way. With Adam and
            narrow towers, N(0, 0.01) shrinks the signal about 6x per 64-channel conv, and
            with GroupNorm it makes every Adam step a large turn of the weights; deep towers
            then train slowly. ``norm="GN"`` with ``"kaiming"`` (and the head at twice the
            backbone's LR, a longer warmup) trains them (``bench/small_data_detection.py``).

    Shapes: ``[Tensor[B, C, H_l, W_l]]`` -> ``([Tensor[B, H_l*W_l*A, K]], [Tensor[B, H_l*W_l*A,
    4]])``.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        num_anchors: int = 9,
        num_convs: int = 4,
        feat_channels: int = 256,
        prior_prob: float = 0.01,
        norm: Literal["GN"] | None = None,
        norm_groups: int = 32,
        in_strides: Sequence[int] | None = None,
        tower_init: Literal["normal", "kaiming"] = "normal",
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"RetinaHead: num_classes must be at least 1, got {num_classes}")
        if not 0.0 < prior_prob < 1.0:
            raise ValueError(f"RetinaHead: prior_prob must be in (0, 1), got {prior_prob}")
        if norm not in (None, "GN"):
            raise ValueError(f"RetinaHead: norm must be null or 'GN', got {norm!r}")
        if tower_init not in ("normal", "kaiming"):
            raise ValueError(
                f"RetinaHead: tower_init must be 'normal' or 'kaiming', got {tower_init!r}"
            )
        if norm and feat_channels % norm_groups:
            raise ValueError(
                f"RetinaHead: GroupNorm needs feat_channels ({feat_channels}) divisible by "
                f"norm_groups ({norm_groups}); set model.head.norm_groups to a divisor"
            )
        self.num_classes, self.num_anchors = num_classes, num_anchors
        self.strides = list(in_strides) if in_strides else None
        groups = norm_groups if norm else 0
        self.cls_tower = _tower(in_channels, feat_channels, num_convs, groups)
        self.box_tower = _tower(in_channels, feat_channels, num_convs, groups)
        self.cls_logits = nn.Conv2d(feat_channels, num_anchors * num_classes, 3, padding=1)
        self.box_deltas = nn.Conv2d(feat_channels, num_anchors * 4, 3, padding=1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        if tower_init == "kaiming":  # keeps the signal's scale through every tower conv
            for m in [*self.cls_tower.modules(), *self.box_tower.modules()]:
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        # every anchor starts as background with probability 1 - prior_prob (the paper, §4.1)
        nn.init.constant_(
            cast(torch.Tensor, self.cls_logits.bias), -math.log((1 - prior_prob) / prior_prob)
        )

    def forward(self, feats: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        logits = [
            flatten_level(self.cls_logits(self.cls_tower(f)), self.num_classes) for f in feats
        ]
        deltas = [flatten_level(self.box_deltas(self.box_tower(f)), 4) for f in feats]
        return logits, deltas


def _tower(in_channels: int, channels: int, depth: int, norm_groups: int = 0) -> nn.Sequential:
    """``depth`` x (3x3 conv [+ GroupNorm when ``norm_groups``] + ReLU)."""
    layers: list[nn.Module] = []
    for i in range(depth):
        # a conv followed by a norm needs no bias: the norm's shift replaces it
        conv = nn.Conv2d(in_channels if i == 0 else channels, channels, 3, padding=1,
                         bias=not norm_groups)  # fmt: skip
        norm = [nn.GroupNorm(norm_groups, channels)] if norm_groups else []
        layers += [conv, *norm, nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)
