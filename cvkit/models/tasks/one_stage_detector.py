"""One-stage anchor-based detector (RetinaNet): backbone -> FPN -> dense head."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cvkit.models.losses.detection import FocalLoss, SmoothL1Loss
from cvkit.models.preprocessor import Preprocessor
from cvkit.models.task_utils.det_utils import box_regression_loss, match_target, to_original
from cvkit.models.task_utils.matcher import IGNORE
from cvkit.ops.boxes import batched_nms, clip_boxes
from cvkit.registry import MODELS
from cvkit.structures import DetBatch, DetPrediction, DetTarget


@MODELS.register()
class OneStageDetector(nn.Module):
    """A dense detector composed of built parts.

    Args:
        backbone: returns ``list[Tensor]`` and has ``feature_info``.
        neck: e.g. ``FPN``; its ``feature_info`` gives the strides the anchors use.
        head: returns per-level ``(cls_logits [B, HWA, K], box_deltas [B, HWA, 4])``.
        anchor_generator: anchors per level, in the head's order.
        box_coder: encodes matched boxes as deltas and decodes predictions.
        matcher: IoU matrix -> matched gt index, ``-1`` background, ``-2`` ignore.
        cls_loss: summed over the non-ignored anchors (default ``FocalLoss()``). A loss with
            ``forward_labels(logits, labels, weights)`` (``FocalLoss``) gets class indices;
            any other gets one-hot targets.
        box_loss: on deltas (``SmoothL1Loss``) or decoded boxes (``IoULoss``), summed.
        preprocessor: normalises and pads to the coarsest stride.
        score_threshold, topk_candidates, nms_threshold, max_detections: prediction.

    Both losses are divided by the number of positive anchors in the batch (at least 1).
    """

    task = "detection"

    def __init__(
        self,
        backbone: nn.Module,
        neck: nn.Module,
        head: nn.Module,
        anchor_generator: object,
        box_coder: object,
        matcher: object,
        cls_loss: nn.Module | None = None,
        box_loss: nn.Module | None = None,
        preprocessor: Preprocessor | None = None,
        score_threshold: float = 0.05,
        topk_candidates: int = 1000,
        nms_threshold: float = 0.5,
        max_detections: int = 100,
    ) -> None:
        super().__init__()
        self.backbone, self.neck, self.head = backbone, neck, head
        self.anchor_generator, self.box_coder, self.matcher = anchor_generator, box_coder, matcher
        self.cls_loss = cls_loss or FocalLoss()
        self.box_loss = box_loss or SmoothL1Loss()
        self.strides = [f.stride for f in neck.feature_info]
        self.preprocessor = preprocessor or Preprocessor(size_divisor=max(self.strides))
        per_location = set(anchor_generator.num_anchors_per_location())
        if per_location != {head.num_anchors}:
            raise ValueError(
                f"the head predicts {head.num_anchors} anchors per location but the anchor "
                f"generator makes {sorted(per_location)}; set model.head.num_anchors to match "
                "(sizes x scales x aspect_ratios)"
            )
        self.score_threshold, self.topk_candidates = score_threshold, topk_candidates
        self.nms_threshold, self.max_detections = nms_threshold, max_detections

    @property
    def num_classes(self) -> int:
        return int(self.head.num_classes)

    def forward(self, images: torch.Tensor, image_sizes=None):
        """Raw head outputs: per level ``(cls_logits [B, HWA, K], box_deltas [B, HWA, 4])``."""
        x = self.preprocessor(images, image_sizes)
        feats = self.neck(self.backbone(x))
        return self.head(feats), [tuple(f.shape[-2:]) for f in feats]

    def anchors(self, feature_sizes: list, like: torch.Tensor) -> torch.Tensor:
        """All anchors, levels concatenated: ``Tensor[sum(H*W*A), 4]``."""
        per_level = self.anchor_generator(feature_sizes, self.strides, like.device, like.dtype)
        return torch.cat(per_level)

    def loss(self, batch: DetBatch) -> dict[str, torch.Tensor]:
        """``{"loss_cls", "loss_box"}``; needs ``batch.targets``.

        Every image is matched first; then each loss is computed once over the whole batch,
        not image by image: the classification logits ``[B, A, K]`` are the largest tensor
        of the step, and per-image one-hot targets and boolean-mask copies of them cost
        more than the loss itself.
        """
        if batch.targets is None:
            raise ValueError("OneStageDetector.loss needs targets; this batch has none")
        (logits, deltas), sizes = self(batch.images, batch.image_sizes)
        anchors = self.anchors(sizes, deltas[0])
        matched = torch.stack([self.match(t, anchors) for t in batch.targets])  # [B, A]
        norm = max(1.0, float((matched >= 0).sum()))
        labels = _matched_labels(matched, batch.targets).flatten()
        keep = (matched != IGNORE).flatten()
        loss_cls = self._cls_loss(torch.cat(logits, 1).flatten(0, 1), labels, keep)
        loss_box = self._positive_box_loss(deltas, anchors, matched, batch.targets)
        return {"loss_cls": loss_cls / norm, "loss_box": loss_box / norm}

    def _cls_loss(
        self, logits: torch.Tensor, labels: torch.Tensor, keep: torch.Tensor
    ) -> torch.Tensor:
        """Summed classification loss of the kept rows.

        Args:
            logits: ``Tensor[N, K]``.
            labels: ``Tensor[N]`` int64, the matched gt's class or ``-1`` (background).
            keep: ``Tensor[N]`` bool, False for ignored anchors.
        """
        if hasattr(self.cls_loss, "forward_labels"):  # FocalLoss: no one-hot, no row copies
            return self.cls_loss.forward_labels(logits, labels, keep.to(logits.dtype))
        # any other loss takes one-hot targets; -1 -> the dropped column 0 -> all zeros
        rows = torch.nonzero(keep).squeeze(1)
        onehot = F.one_hot(labels.index_select(0, rows) + 1, logits.shape[1] + 1)[:, 1:]
        return self.cls_loss(logits.index_select(0, rows), onehot.to(logits.dtype))

    def _positive_box_loss(
        self,
        deltas: list[torch.Tensor],
        anchors: torch.Tensor,
        matched: torch.Tensor,
        targets: list[DetTarget],
    ) -> torch.Tensor:
        """Summed box loss of the positive anchors of the whole batch.

        Each level's positives are gathered from that level's deltas, never from all levels
        concatenated: a level with no positives then stays out of the backward pass. Its
        gradient is zero, but autograd would still run the box tower's backward on it (on
        P3, the largest level, about a quarter of the head's backward).

        Args:
            deltas: per level ``Tensor[B, A_l, 4]``.
            anchors: ``Tensor[A, 4]``, levels concatenated (``A = sum(A_l)``).
            matched: ``Tensor[B, A]``, the matcher's output per image.
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
            return self._box_loss(deltas[-1].reshape(-1, 4)[:0], anchors[:0], anchors[:0])
        rows = torch.cat(pos_rows)
        gt = torch.cat([t.boxes for t in targets]).index_select(0, gt_rows.index_select(0, rows))
        pos_anchors = anchors.index_select(0, rows % num_anchors)
        return self._box_loss(torch.cat(pos_deltas), gt, pos_anchors)

    def match(self, target: DetTarget, anchors: torch.Tensor) -> torch.Tensor:
        """Anchor -> matched gt index, ``-1`` background, ``-2`` ignore: ``Tensor[A]``."""
        return match_target(self.matcher, target, anchors)

    def _box_loss(self, deltas: torch.Tensor, gt: torch.Tensor, anchors: torch.Tensor):
        return box_regression_loss(self.box_loss, self.box_coder, deltas, gt, anchors)

    @torch.no_grad()
    def predict(self, batch: DetBatch) -> list[DetPrediction]:
        """Detections per image, in the pixels of the original image files."""
        (logits, deltas), sizes = self(batch.images, batch.image_sizes)
        per_level = self.anchor_generator(sizes, self.strides, deltas[0].device, deltas[0].dtype)
        out = []
        for i, (h, w) in enumerate(batch.image_sizes):
            boxes, scores, labels = self._candidates(
                [lv[i] for lv in logits], [lv[i] for lv in deltas], per_level, (h, w)
            )
            keep = batched_nms(boxes, scores, labels, self.nms_threshold)[: self.max_detections]
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            target = None if batch.targets is None else batch.targets[i]
            out.append(to_original(boxes, scores, labels, (h, w), target))
        return out

    def _candidates(self, logits, deltas, anchors, size):
        """Per level: scores above threshold, the top-k of them, decoded and clipped."""
        boxes, scores, labels = [], [], []
        k = self.num_classes
        for lg, dl, an in zip(logits, deltas, anchors):
            s = lg.sigmoid().flatten()
            keep = torch.nonzero(s > self.score_threshold).squeeze(1)
            if keep.numel() > self.topk_candidates:
                keep = keep[s[keep].topk(self.topk_candidates).indices]
            idx = keep // k
            boxes.append(clip_boxes(self.box_coder.decode(dl[idx], an[idx]), size))
            scores.append(s[keep])
            labels.append(keep % k)
        return torch.cat(boxes), torch.cat(scores), torch.cat(labels)


def _matched_labels(matched: torch.Tensor, targets: list[DetTarget]) -> torch.Tensor:
    """The class of each anchor's matched gt, ``-1`` where it has none: ``Tensor[B, A]``.

    Args:
        matched: ``Tensor[B, A]``, gt index per anchor or a negative matcher code.
        targets: the batch's ``B`` targets.
    """
    labels = torch.full_like(matched, -1)
    for i, target in enumerate(targets):
        if len(target.labels):
            gt_labels = target.labels.index_select(0, matched[i].clamp(min=0))
            labels[i] = torch.where(matched[i] >= 0, gt_labels, -1)
    return labels
