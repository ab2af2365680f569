"""Match anchors to ground-truth boxes by IoU: positive, background or ignored."""

from __future__ import annotations

from typing import Protocol

import torch

from cvkit.registry import MATCHERS

BACKGROUND = -1
IGNORE = -2


class Matcher(Protocol):
    """What a detector asks of a matcher (``MaxIoUMatcher`` or a plugin's).

    ``matcher(iou, ignore_mask)``: ``iou`` ``Tensor[G, A]`` (gts x anchors or proposals),
    ``ignore_mask`` ``Tensor[G]`` bool (crowd gts) -> ``Tensor[A]`` int64 on ``iou``'s device:
    the matched gt's index, ``BACKGROUND`` (-1) or ``IGNORE`` (-2).
    """

    def __call__(
        self, iou: torch.Tensor, ignore_mask: torch.Tensor | None = None
    ) -> torch.Tensor: ...


@MATCHERS.register()
class MaxIoUMatcher:
    """Each anchor gets the gt it overlaps most, if that IoU is high enough.

    With ``m`` the anchor's highest IoU over the non-crowd gts (ties: the lowest gt index):

    - ``m >= fg_iou_threshold``: positive, the value is that gt's index;
    - ``bg_iou_threshold <= m < fg_iou_threshold``: ``IGNORE`` (-2), no loss at all;
    - ``m < bg_iou_threshold``: ``BACKGROUND`` (-1).

    Then, with ``allow_low_quality_matches``, every non-crowd gt whose best IoU over the
    anchors is above 0 claims all anchors that reach that best IoU (ties included), even
    below ``fg_iou_threshold``, so a gt that no anchor fits well still trains some (Faster
    R-CNN, RetinaNet). An anchor claimed by several gts goes to the claimant it overlaps most
    (ties: lowest index), also when it was already positive for another gt. A gt that
    overlaps no anchor claims none: with a best IoU of 0 it would claim every anchor.

    Crowd gts (``ignore_mask``) never produce positives. An anchor that is not positive for a
    non-crowd gt and whose IoU with some crowd gt is ``>= bg_iou_threshold`` is ``IGNORE``: it
    overlaps a region of unlabelled objects as much as an ignored anchor overlaps its gt,
    so calling it background would teach the model that those objects are background. A
    positive match to a non-crowd gt wins, as in COCO evaluation, where a detection matches
    a crowd region only when no ordinary gt is left for it.

    Args:
        fg_iou_threshold: the lowest IoU of a positive.
        bg_iou_threshold: IoU below this is background; ``[bg, fg)`` is ignored. Equal
            thresholds leave no ignored band.
        allow_low_quality_matches: let each gt claim its best anchors, as above.

    Example:
        >>> matcher = MaxIoUMatcher(fg_iou_threshold=0.5, bg_iou_threshold=0.4)
        >>> iou = torch.tensor([[0.9, 0.45, 0.1, 0.0], [0.0, 0.0, 0.35, 0.42]])
        >>> matcher(iou)  # anchor 3 is gt 1's best anchor: a low-quality positive
        tensor([ 0, -2, -1,  1])
        >>> matcher(iou, ignore_mask=torch.tensor([False, True]))  # gt 1 is a crowd
        tensor([ 0, -2, -1, -2])
    """

    BACKGROUND = BACKGROUND
    IGNORE = IGNORE

    def __init__(
        self,
        fg_iou_threshold: float = 0.5,
        bg_iou_threshold: float = 0.4,
        allow_low_quality_matches: bool = True,
    ) -> None:
        if not 0.0 <= bg_iou_threshold <= fg_iou_threshold <= 1.0:
            raise ValueError(
                "MaxIoUMatcher: need 0 <= bg_iou_threshold <= fg_iou_threshold <= 1, got "
                f"bg_iou_threshold={bg_iou_threshold}, fg_iou_threshold={fg_iou_threshold}"
            )
        self.fg_iou_threshold = float(fg_iou_threshold)
        self.bg_iou_threshold = float(bg_iou_threshold)
        self.allow_low_quality_matches = bool(allow_low_quality_matches)

    def __call__(self, iou: torch.Tensor, ignore_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Match anchors to gts.

        Args:
            iou: ``Tensor[G, A]``, IoU of gt ``g`` and anchor ``a`` (``ops.box_iou(gts, anchors)``).
            ignore_mask: ``Tensor[G]`` bool, True for crowd gts; ``None`` when there are none.

        Returns:
            ``Tensor[A]`` int64: the matched gt index, ``BACKGROUND`` (-1) or ``IGNORE`` (-2).
        """
        crowd = self._check_inputs(iou, ignore_mask)
        num_gts, num_anchors = iou.shape
        if num_gts == 0 or num_anchors == 0:
            return torch.full((num_anchors,), BACKGROUND, dtype=torch.int64, device=iou.device)
        # Masks and where() only, no boolean indexing: nothing waits for the GPU.
        # -1 is below every threshold, so a crowd gt can never win an anchor.
        real_iou = iou.masked_fill(crowd[:, None], -1.0)
        best_iou, best_gt = real_iou.max(dim=0)
        matched = best_gt.masked_fill(best_iou < self.fg_iou_threshold, IGNORE)
        matched = matched.masked_fill(best_iou < self.bg_iou_threshold, BACKGROUND)
        if self.allow_low_quality_matches:
            matched = _with_low_quality_matches(matched, real_iou)
        crowd_iou = iou.masked_fill(~crowd[:, None], -1.0).max(dim=0).values
        return matched.masked_fill((matched < 0) & (crowd_iou >= self.bg_iou_threshold), IGNORE)

    def _check_inputs(self, iou: torch.Tensor, ignore_mask: torch.Tensor | None) -> torch.Tensor:
        if iou.dim() != 2 or not iou.is_floating_point():
            raise ValueError(
                f"MaxIoUMatcher: iou must be a float [G, A] matrix, got {iou.dtype} "
                f"{tuple(iou.shape)}"
            )
        if ignore_mask is None:
            return torch.zeros(iou.shape[0], dtype=torch.bool, device=iou.device)
        if ignore_mask.dtype != torch.bool or ignore_mask.shape != iou.shape[:1]:
            raise ValueError(
                f"MaxIoUMatcher: ignore_mask must be a bool [G] with G = {iou.shape[0]} gts, "
                f"got {ignore_mask.dtype} {tuple(ignore_mask.shape)}"
            )
        return ignore_mask.to(iou.device)


def _with_low_quality_matches(matched: torch.Tensor, real_iou: torch.Tensor) -> torch.Tensor:
    """Each gt's best anchors (all ties, IoU > 0) become positives for that gt."""
    gt_best = real_iou.max(dim=1, keepdim=True).values  # [G, 1]; crowd rows are -1
    claims = (real_iou == gt_best) & (gt_best > 0)  # [G, A]
    _, claimant = real_iou.masked_fill(~claims, -1.0).max(dim=0)
    return torch.where(claims.any(dim=0), claimant, matched)
