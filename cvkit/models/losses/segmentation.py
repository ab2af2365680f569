"""Semantic-segmentation losses on per-pixel logits: cross-entropy, soft Dice, their sum.

Every loss takes logits ``Tensor[B, K, H, W]`` at the target's resolution (upsample them
first) and a target ``Tensor[B, H, W]`` of class indices in ``[0, K)`` or ``ignore_index``.
Targets are checked before use: on a GPU an out-of-range class would otherwise surface as an
opaque device-side assert rather than a message naming the value.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cvkit.models.losses.normalizer import loss_normalizer
from cvkit.registry import LOSSES


@LOSSES.register()
class SegCrossEntropyLoss(nn.Module):
    """Per-pixel cross-entropy, averaged over the pixels whose target is not ignored.

    With ``class_weights`` it is ``F.cross_entropy``'s weighted mean: each pixel's loss is
    scaled by its true class's weight and the sum is divided by the sum of those weights. A
    batch whose pixels are all ignored gives 0 (with zero gradients) instead of ``NaN``.

    Args:
        ignore_index: target value of pixels that add no loss.
        class_weights: ``K`` non-negative weights, one per class; ``None``: all 1.
        weight: loss weight of this term in the task's total.

    Shapes: logits ``Tensor[B, K, H, W]``, target ``Tensor[B, H, W]`` int64 -> scalar.
    """

    class_weights: torch.Tensor | None

    def __init__(
        self,
        ignore_index: int = 255,
        class_weights: list[float] | None = None,
        weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.ignore_index = ignore_index
        self.weight = weight
        if class_weights is not None:
            if not class_weights or any(w < 0 for w in class_weights):
                raise ValueError(
                    f"SegCrossEntropyLoss: class_weights must be non-negative numbers, one per "
                    f"class, got {list(class_weights)}"
                )
            # A buffer follows the module's device; not persistent, so checkpoints of models
            # trained with and without weights load into each other.
            weights = torch.tensor(class_weights, dtype=torch.float32)
            self.register_buffer("class_weights", weights, persistent=False)
        else:
            self.class_weights = None

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        check_seg_target(logits, target, self.ignore_index, type(self).__name__)
        num_classes = logits.shape[1]
        cw = self.class_weights
        if cw is not None and cw.numel() != num_classes:
            raise ValueError(
                f"SegCrossEntropyLoss: {cw.numel()} class_weights for logits with "
                f"{num_classes} classes ({list(logits.shape)}); give one weight per class"
            )
        cw = None if cw is None else cw.to(logits.dtype)
        total = F.cross_entropy(
            logits, target, weight=cw, ignore_index=self.ignore_index, reduction="sum"
        )
        # F.cross_entropy's "mean" is this sum over the (weighted) count of counted pixels,
        # which is 0 / 0 = NaN when every pixel is ignored; clamping the count gives 0.
        counted = target != self.ignore_index
        if cw is None:
            count = counted.sum().to(total.dtype)
        else:
            safe = torch.where(counted, target, 0)
            count = (cw[safe].to(total.dtype) * counted).sum()
        # under DDP the count of every process's batch (see losses.normalizer)
        tiny = torch.finfo(total.dtype).tiny
        return self.weight * total / loss_normalizer(count, minimum=tiny, like=total)


@LOSSES.register()
class DiceLoss(nn.Module):
    """Soft multi-class Dice loss on softmax probabilities: ``1 - mean_k dice_k``.

    For each class ``k``, over all counted pixels of the batch (sums over ``B, H, W``;
    pixels whose target is ``ignore_index`` are excluded from every sum)::

        dice_k = (2 * sum(p_k * y_k) + smooth) / (sum(p_k) + sum(y_k) + smooth)

    with ``p_k`` the softmax probability and ``y_k`` the one-hot target. The mean is over
    the classes present in the batch's counted targets (``sum(y_k) > 0``); an absent class,
    whose dice would be set by ``smooth`` alone, is left out, though probability put on it
    still lowers the present classes' dice. No counted pixel at all gives 0.

    Args:
        ignore_index: target value of pixels that are left out.
        smooth: added to numerator and denominator; keeps small classes' gradients stable.
        weight: loss weight of this term in the task's total.

    Shapes: logits ``Tensor[B, K, H, W]``, target ``Tensor[B, H, W]`` int64 -> scalar.
    """

    def __init__(self, ignore_index: int = 255, smooth: float = 1.0, weight: float = 1.0) -> None:
        super().__init__()
        if smooth < 0:
            raise ValueError(f"DiceLoss: smooth must be >= 0, got {smooth}")
        self.ignore_index, self.smooth, self.weight = ignore_index, smooth, weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        check_seg_target(logits, target, self.ignore_index, type(self).__name__)
        num_classes = logits.shape[1]
        # at least float32 sums: a half-precision sum over 10^6 pixels (autocast) loses digits
        probs = logits.to(torch.promote_types(logits.dtype, torch.float32)).softmax(dim=1)
        counted = (target != self.ignore_index).unsqueeze(1)  # [B, 1, H, W]
        safe = torch.where(counted.squeeze(1), target, 0)
        one_hot = F.one_hot(safe, num_classes).permute(0, 3, 1, 2) * counted  # [B, K, H, W]
        probs = probs * counted
        dims = (0, 2, 3)
        intersection = (probs * one_hot).sum(dims)
        present = one_hot.sum(dims)
        dice = (2 * intersection + self.smooth) / (probs.sum(dims) + present + self.smooth)
        is_present = present > 0
        loss = ((1 - dice) * is_present).sum() / is_present.sum().clamp(min=1)
        return self.weight * loss


@LOSSES.register()
class CEDiceLoss(nn.Module):
    """``ce_weight * SegCrossEntropyLoss + dice_weight * DiceLoss``, one scalar.

    Args:
        ignore_index: target value of pixels that add no loss (both terms).
        class_weights: per-class weights of the cross-entropy term only (``SegCrossEntropyLoss``).
        ce_weight: factor of the cross-entropy term.
        dice_weight: factor of the Dice term.
        smooth: the Dice term's smoothing constant.

    Shapes: logits ``Tensor[B, K, H, W]``, target ``Tensor[B, H, W]`` int64 -> scalar.
    """

    def __init__(
        self,
        ignore_index: int = 255,
        class_weights: list[float] | None = None,
        ce_weight: float = 1.0,
        dice_weight: float = 1.0,
        smooth: float = 1.0,
    ) -> None:
        super().__init__()
        self.ce = SegCrossEntropyLoss(ignore_index, class_weights, weight=ce_weight)
        self.dice = DiceLoss(ignore_index, smooth, weight=dice_weight)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.ce(logits, target) + self.dice(logits, target)


def check_seg_target(
    logits: torch.Tensor, target: torch.Tensor, ignore_index: int, who: str
) -> None:
    """Raise a ``ValueError`` naming the problem unless ``logits`` and ``target`` fit.

    Args:
        logits: ``Tensor[B, K, H, W]``.
        target: ``Tensor[B, H, W]`` int64 in ``[0, K)`` or ``ignore_index``.
        who: the caller's name, for the message.
    """
    if logits.ndim != 4 or (logits.shape[0], *logits.shape[2:]) != tuple(target.shape):
        raise ValueError(
            f"{who}: expected logits [B, K, H, W] and target [B, H, W] with the same B, H, W, "
            f"got logits {tuple(logits.shape)} and target {tuple(target.shape)}; upsample the "
            "logits to the target's size first"
        )
    if target.dtype != torch.int64:
        raise TypeError(f"{who}: target must be int64 class indices, got {target.dtype}")
    num_classes = logits.shape[1]
    bad = (target != ignore_index) & ((target < 0) | (target >= num_classes))
    if bad.any():  # one host sync per step; the loss is read for logging anyway
        values = torch.unique(target[bad])[:5].tolist()
        raise ValueError(
            f"{who}: target values {values} are outside [0, {num_classes}) and are not "
            f"ignore_index={ignore_index} ({int(bad.sum())} of {target.numel()} pixels); is "
            "num_classes right, or are ignored pixels marked with another value?"
        )
