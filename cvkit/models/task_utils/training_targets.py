"""Training targets of anchors and proposals, and the detection losses against them.

The one place where a detector turns its ``DetTarget``s into loss terms: RetinaNet
(``OneStageDetector``), the RPN and the RoI head all go through it.

1. **Label** the reference boxes (anchors or proposals) of each image: ``box_iou`` -> the
   matcher (``match_boxes``). A dense detector keeps every anchor (``label_anchors``: the gt
   index and class of each anchor of the batch); a two-stage head then lets its sampler pick
   a few positives and negatives per image (``sample_labels``).
2. **Losses** against those labels: ``box_regression_loss`` (on deltas or decoded boxes),
   ``classification_loss`` (class indices or one-hot targets) and, for a dense head's
   per-level outputs, ``dense_box_loss``.

Matchers, samplers and box coders come in as built objects (Detectron2's wiring). Which kind
of input a loss takes is declared by its base class (:mod:`cvkit.models.losses.detection`:
``DecodedBoxLoss``, ``ClassIndexLoss``) and checked here with ``isinstance``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cvkit.models.losses.detection import ClassIndexLoss, DecodedBoxLoss
from cvkit.models.task_utils.box_coder import BoxCoder
from cvkit.models.task_utils.matcher import BACKGROUND, Matcher
from cvkit.models.task_utils.sampler import Sampler
from cvkit.ops import box_iou
from cvkit.structures import DetTarget


# -- labels ------------------------------------------------------------------------------------
def match_boxes(matcher: Matcher, target: DetTarget, boxes: torch.Tensor) -> torch.Tensor:
    """The gt each reference box learns from.

    Args:
        matcher: e.g. ``MaxIoUMatcher``; crowd gts go to it as the ignore mask.
        target: one image's ground truth.
        boxes: ``Tensor[A, 4]`` ``xyxy`` anchors or proposals.

    Returns:
        ``Tensor[A]`` int64: the matched gt's index in ``target``, ``-1`` background or
        ``-2`` ignore. An image without gts is all background (the matcher is not called).
    """
    if target.boxes.numel() == 0:
        return torch.full((boxes.shape[0],), BACKGROUND, dtype=torch.int64, device=boxes.device)
    return matcher(box_iou(target.boxes, boxes), target.iscrowd)


@dataclass(frozen=True)
class AnchorLabels:
    """The labels of every anchor of every image of a batch (dense detectors sample nothing).

    Attributes:
        matched: ``Tensor[B, A]`` int64, per image the matched gt's index, ``-1`` background
            or ``-2`` ignore.
        classes: ``Tensor[B, A]`` int64, the matched gt's class, ``-1`` where there is none.
    """

    matched: torch.Tensor
    classes: torch.Tensor

    @property
    def num_positives(self) -> int:
        """Anchors matched to a gt, over the whole batch."""
        return int((self.matched >= 0).sum())


def label_anchors(
    matcher: Matcher, targets: list[DetTarget], anchors: torch.Tensor
) -> AnchorLabels:
    """Match every image's gts to the same anchors.

    Args:
        matcher: e.g. ``MaxIoUMatcher``.
        targets: the batch's ``B`` targets.
        anchors: ``Tensor[A, 4]``, all levels concatenated.

    Example:
        >>> from cvkit.models.task_utils import MaxIoUMatcher
        >>> anchors = torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30], [0, 0, 9, 10]])
        >>> gt = DetTarget(torch.tensor([[0.0, 0, 10, 10]]), torch.tensor([2]),
        ...                torch.tensor([False]), image_id=1, orig_size=(32, 32))
        >>> labels = label_anchors(MaxIoUMatcher(0.5, 0.4), [gt], anchors)
        >>> labels.matched, labels.classes, labels.num_positives
        (tensor([[ 0, -1,  0]]), tensor([[ 2, -1,  2]]), 2)
    """
    matched = torch.stack([match_boxes(matcher, t, anchors) for t in targets])  # [B, A]
    classes = torch.full_like(matched, -1)
    for i, target in enumerate(targets):
        if len(target.labels):
            # clamp: negative codes index gt 0, then where() puts -1 back on them
            gt_labels = target.labels.index_select(0, matched[i].clamp(min=0))
            classes[i] = torch.where(matched[i] >= 0, gt_labels, -1)
    return AnchorLabels(matched, classes)


@dataclass(frozen=True)
class SampledLabels:
    """One image's sampled reference boxes.

    Attributes:
        pos: ``Tensor[P]`` int64, indices of the sampled positives (into the reference boxes).
        neg: ``Tensor[N]`` int64, indices of the sampled negatives (background).
        pos_gt: ``Tensor[P]`` int64, each positive's gt index in the image's target.
    """

    pos: torch.Tensor
    neg: torch.Tensor
    pos_gt: torch.Tensor

    @property
    def indices(self) -> torch.Tensor:
        """``Tensor[P + N]``: the positives, then the negatives."""
        return torch.cat([self.pos, self.neg])


def sample_labels(
    matcher: Matcher, sampler: Sampler, target: DetTarget, boxes: torch.Tensor
) -> SampledLabels:
    """Match one image's reference boxes (``Tensor[A, 4]``) to its gts, then sample them.

    The sampler draws from its random generator (the global one for ``RandomSampler``):
    heads call this image by image, in batch order.

    Example:
        >>> from cvkit.models.task_utils import MaxIoUMatcher, RandomSampler
        >>> boxes = torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30], [0, 0, 9, 10]])
        >>> gt = DetTarget(torch.tensor([[0.0, 0, 10, 10]]), torch.tensor([2]),
        ...                torch.tensor([False]), image_id=1, orig_size=(32, 32))
        >>> s = sample_labels(MaxIoUMatcher(0.5, 0.5), RandomSampler(4, 0.5), gt, boxes)
        >>> s.pos, s.neg, s.pos_gt, s.indices
        (tensor([0, 2]), tensor([1]), tensor([0, 0]), tensor([0, 2, 1]))
    """
    matched = match_boxes(matcher, target, boxes)
    pos, neg = sampler(matched)
    return SampledLabels(pos, neg, matched.index_select(0, pos))


# -- losses ------------------------------------------------------------------------------------
def box_regression_loss(
    box_loss: nn.Module,
    box_coder: BoxCoder,
    deltas: torch.Tensor,
    gt: torch.Tensor,
    refs: torch.Tensor,
) -> torch.Tensor:
    """``box_loss`` of predicted deltas against their gts, summed.

    A ``DecodedBoxLoss`` (the IoU family) compares the decoded boxes with the gts; any other
    box loss compares the deltas with the gts encoded against the reference boxes.

    Args:
        box_loss: the loss module.
        box_coder: e.g. ``DeltaBoxCoder``.
        deltas: ``Tensor[P, 4]`` predicted deltas.
        gt: ``Tensor[P, 4]`` ``xyxy`` gt boxes, row ``i`` the target of ``deltas[i]``.
        refs: ``Tensor[P, 4]`` ``xyxy`` anchors or proposals the deltas are relative to.

    Returns:
        What ``box_loss`` returns: a scalar.
    """
    if isinstance(box_loss, DecodedBoxLoss):
        return box_loss(box_coder.decode(deltas, refs), gt)
    return box_loss(deltas, box_coder.encode(gt, refs))


def classification_loss(
    cls_loss: nn.Module, logits: torch.Tensor, labels: torch.Tensor, keep: torch.Tensor
) -> torch.Tensor:
    """Summed sigmoid classification loss of the kept rows.

    A ``ClassIndexLoss`` (``FocalLoss``) gets the class indices and ``keep`` as row weights:
    no one-hot targets, no copies of the rows (the logits of a dense detector are the largest
    tensor of its step). Any other loss gets the kept rows and one-hot targets.

    Args:
        cls_loss: the loss module.
        logits: ``Tensor[N, K]``.
        labels: ``Tensor[N]`` int64, the row's class or ``-1`` (background).
        keep: ``Tensor[N]`` bool, False for ignored rows.
    """
    if isinstance(cls_loss, ClassIndexLoss):
        return cls_loss.forward_labels(logits, labels, keep.to(logits.dtype))
    rows = torch.nonzero(keep).squeeze(1)
    # -1 -> the dropped column 0 -> all zeros
    onehot = F.one_hot(labels.index_select(0, rows) + 1, logits.shape[1] + 1)[:, 1:]
    return cls_loss(logits.index_select(0, rows), onehot.to(logits.dtype))


def dense_box_loss(
    box_loss: nn.Module,
    box_coder: BoxCoder,
    deltas: list[torch.Tensor],
    anchors: torch.Tensor,
    matched: torch.Tensor,
    targets: list[DetTarget],
) -> torch.Tensor:
    """Summed box loss of the positive anchors of a whole batch of dense head outputs.

    Each level's positives are gathered from that level's deltas, never from all levels
    concatenated: a level with no positives then stays out of the backward pass. Its
    gradient is zero, but autograd would still run the box tower's backward on it (on
    P3, the largest level, about a quarter of the head's backward).

    Args:
        box_loss: the loss module (see ``box_regression_loss``).
        box_coder: e.g. ``DeltaBoxCoder``.
        deltas: per level ``Tensor[B, A_l, 4]``.
        anchors: ``Tensor[A, 4]``, levels concatenated (``A = sum(A_l)``).
        matched: ``Tensor[B, A]``, the matcher's output per image (``AnchorLabels.matched``).
        targets: the batch's targets.
    """
    num_anchors = anchors.shape[0]
    # rows into the gts of all images stacked (image i's gt j: counts[:i].sum() + j)
    counts = torch.tensor([len(t.boxes) for t in targets], device=matched.device)
    gt_rows = (matched + (torch.cumsum(counts, 0) - counts)[:, None]).flatten()
    pos_deltas, pos_rows = [], []  # rows into the B * A (image, anchor) pairs
    start = 0
    for level in deltas:
        size = level.shape[1]
        image, anchor = torch.nonzero(matched[:, start : start + size] >= 0, as_tuple=True)
        if len(image):
            # index_select, not tensor[idx]: on CPU it is much faster for [N, 4] rows
            pos_deltas.append(level.reshape(-1, 4).index_select(0, image * size + anchor))
            pos_rows.append(image * num_anchors + start + anchor)
        start += size
    if not pos_deltas:  # an empty slice of the smallest level keeps the loss in the graph
        empty = deltas[-1].reshape(-1, 4)[:0]
        return box_regression_loss(box_loss, box_coder, empty, anchors[:0], anchors[:0])
    rows = torch.cat(pos_rows)
    gt = torch.cat([t.boxes for t in targets]).index_select(0, gt_rows.index_select(0, rows))
    pos_anchors = anchors.index_select(0, rows % num_anchors)
    return box_regression_loss(box_loss, box_coder, torch.cat(pos_deltas), gt, pos_anchors)
