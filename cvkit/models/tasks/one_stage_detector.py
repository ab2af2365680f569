"""One-stage anchor-based detector (RetinaNet): backbone -> FPN -> dense head."""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import nn

from cvkit.models.losses.detection import FocalLoss, SmoothL1Loss
from cvkit.models.losses.normalizer import loss_normalizer
from cvkit.models.preprocessor import Preprocessor
from cvkit.models.task_utils.anchor_generator import AnchorGenerator, anchor_strides
from cvkit.models.task_utils.box_coder import BoxCoder
from cvkit.models.task_utils.matcher import IGNORE, Matcher
from cvkit.models.task_utils.training_targets import (
    classification_loss,
    dense_box_loss,
    label_anchors,
    match_boxes,
)
from cvkit.ops import batched_nms, clip_boxes
from cvkit.registry import MODELS
from cvkit.structures import DetBatch, DetPrediction, DetTarget

HeadOutputs = tuple[list[torch.Tensor], list[torch.Tensor]]


@MODELS.register()
class OneStageDetector(nn.Module):
    """A dense detector composed of built parts.

    Args:
        backbone: returns ``list[Tensor]`` and has ``feature_info``.
        neck: e.g. ``FPN``.
        head: returns per-level ``(cls_logits [B, HWA, K], box_deltas [B, HWA, 4])``; has
            ``num_classes``, ``num_anchors`` and ``strides`` (its ``in_strides``, which the
            builder wires from the neck).
        anchor_generator: anchors per level, in the head's order.
        box_coder: encodes matched boxes as deltas and decodes predictions.
        matcher: IoU matrix -> matched gt index, ``-1`` background, ``-2`` ignore.
        cls_loss: summed over the non-ignored anchors (default ``FocalLoss()``). A
            ``ClassIndexLoss`` (``FocalLoss``) gets class indices; any other gets one-hot
            targets.
        box_loss: summed over the positive anchors (default ``SmoothL1Loss()``): a
            ``DecodedBoxLoss`` (``IoULoss``) on decoded boxes, any other on deltas.
        preprocessor: normalises and pads to the coarsest stride.
        score_threshold, topk_candidates, nms_threshold, max_detections: prediction.
        class_agnostic_nms: NMS across classes (a box suppresses overlapping boxes of any
            class), so an object gets one label, the best scoring; off (the default): NMS
            within each class, as in the paper.

    The strides of the levels (``strides``) are the head's, else those the anchor generator
    was built with (``anchor_strides``). Both losses are divided by the number of positive
    anchors in the batch (at least 1); ``cvkit.models.task_utils.training_targets`` labels
    the anchors and computes them. ``loss``, ``predict`` and ``loss_and_predict`` (both from
    one forward pass) share their steps; in eval mode the last equals the first two.
    """

    task = "detection"
    head: Any  # duck-typed: num_classes, num_anchors, strides; per-level outputs

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
        class_agnostic_nms: bool = False,
    ) -> None:
        super().__init__()
        self.backbone, self.neck, self.head = backbone, neck, head
        # typed for the checker only: a plugin's parts need just these classes' interface
        self.anchor_generator = cast(AnchorGenerator, anchor_generator)
        self.box_coder, self.matcher = cast(BoxCoder, box_coder), cast(Matcher, matcher)
        self.cls_loss = cls_loss or FocalLoss()
        self.box_loss = box_loss or SmoothL1Loss()
        # a plugin's head may take no in_strides: then the generator's own strides
        self.strides = anchor_strides(getattr(head, "strides", None), anchor_generator)
        self.preprocessor = preprocessor or Preprocessor(size_divisor=max(self.strides))
        per_location = set(self.anchor_generator.num_anchors_per_location())
        if per_location != {head.num_anchors}:
            raise ValueError(
                f"the head predicts {head.num_anchors} anchors per location but the anchor "
                f"generator makes {sorted(per_location)}; set model.head.num_anchors to match "
                "(sizes x scales x aspect_ratios)"
            )
        self.score_threshold, self.topk_candidates = score_threshold, topk_candidates
        self.nms_threshold, self.max_detections = nms_threshold, max_detections
        self.class_agnostic_nms = class_agnostic_nms

    @property
    def num_classes(self) -> int:
        return int(self.head.num_classes)

    def forward(
        self, images: torch.Tensor, image_sizes: list[tuple[int, int]] | None = None
    ) -> tuple[HeadOutputs, list[tuple[int, int]]]:
        """Raw head outputs: per level ``(cls_logits [B, HWA, K], box_deltas [B, HWA, 4])``,
        and each level's ``(H, W)``."""
        x = self.preprocessor(images, image_sizes)
        feats = self.neck(self.backbone(x))
        return self.head(feats), [tuple(f.shape[-2:]) for f in feats]

    def anchors(self, feature_sizes: list, like: torch.Tensor) -> torch.Tensor:
        """All anchors, levels concatenated: ``Tensor[sum(H*W*A), 4]``."""
        return torch.cat(self._level_anchors(feature_sizes, like))

    def _level_anchors(self, feature_sizes: list, like: torch.Tensor) -> list[torch.Tensor]:
        """Per level ``Tensor[H_l*W_l*A, 4]``, on ``like``'s device and in its dtype."""
        return self.anchor_generator(feature_sizes, self.strides, like.device, like.dtype)

    def match(self, target: DetTarget, anchors: torch.Tensor) -> torch.Tensor:
        """Anchor -> matched gt index, ``-1`` background, ``-2`` ignore: ``Tensor[A]``."""
        return match_boxes(self.matcher, target, anchors)

    def loss(self, batch: DetBatch) -> dict[str, torch.Tensor]:
        """``{"loss_cls", "loss_box"}``; needs ``batch.targets``."""
        targets = _targets_of(batch)
        outputs, sizes = self(batch.images, batch.image_sizes)
        return self._losses(outputs, self._level_anchors(sizes, outputs[1][0]), targets)

    @torch.no_grad()
    def predict(self, batch: DetBatch) -> list[DetPrediction]:
        """Detections per image, in the pixels of the original image files."""
        outputs, sizes = self(batch.images, batch.image_sizes)
        return self._predictions(outputs, self._level_anchors(sizes, outputs[1][0]), batch)

    def loss_and_predict(
        self, batch: DetBatch
    ) -> tuple[dict[str, torch.Tensor], list[DetPrediction]]:
        """``loss(batch)`` and ``predict(batch)`` from one forward pass (evaluation).

        The predictions carry no gradient. In eval mode both parts equal what ``loss`` and
        ``predict`` give; in train mode the predictions come from train-mode features.
        """
        targets = _targets_of(batch)
        outputs, sizes = self(batch.images, batch.image_sizes)
        anchors = self._level_anchors(sizes, outputs[1][0])
        losses = self._losses(outputs, anchors, targets)
        with torch.no_grad():
            return losses, self._predictions(outputs, anchors, batch)

    def _losses(
        self, outputs: HeadOutputs, level_anchors: list[torch.Tensor], targets: list[DetTarget]
    ) -> dict[str, torch.Tensor]:
        """The loss terms of one forward pass.

        Every image is matched first; then each loss is computed once over the whole batch,
        not image by image: the classification logits ``[B, A, K]`` are the largest tensor
        of the step, and per-image one-hot targets and boolean-mask copies of them cost
        more than the loss itself.
        """
        logits, deltas = outputs
        anchors = torch.cat(level_anchors)
        labels = label_anchors(self.matcher, targets, anchors)
        keep = (labels.matched != IGNORE).flatten()
        all_logits = torch.cat(logits, 1).flatten(0, 1)  # [B * A, K]
        loss_cls = classification_loss(self.cls_loss, all_logits, labels.classes.flatten(), keep)
        loss_box = dense_box_loss(
            self.box_loss, self.box_coder, deltas, anchors, labels.matched, targets
        )
        # positive anchors of the batch (of every process's batch under DDP), at least one
        norm = loss_normalizer(labels.num_positives, like=loss_cls)
        return {"loss_cls": loss_cls / norm, "loss_box": loss_box / norm}

    def _predictions(
        self, outputs: HeadOutputs, level_anchors: list[torch.Tensor], batch: DetBatch
    ) -> list[DetPrediction]:
        """Per image: candidates, NMS, the best ``max_detections``, in the files' pixels."""
        logits, deltas = outputs
        out = []
        for i, size in enumerate(batch.image_sizes):
            boxes, scores, labels = self._candidates(
                [lv[i] for lv in logits], [lv[i] for lv in deltas], level_anchors, size
            )
            groups = torch.zeros_like(labels) if self.class_agnostic_nms else labels
            keep = batched_nms(boxes, scores, groups, self.nms_threshold)[: self.max_detections]
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            target = None if batch.targets is None else batch.targets[i]
            out.append(DetPrediction.from_batch_pixels(boxes, scores, labels, size, target))
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


def _targets_of(batch: DetBatch) -> list[DetTarget]:
    if batch.targets is None:
        raise ValueError("OneStageDetector.loss needs targets; this batch has none")
    return batch.targets
