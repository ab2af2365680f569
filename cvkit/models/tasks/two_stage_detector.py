"""Two-stage detector (Faster R-CNN): backbone -> FPN -> RPN proposals -> RoI head."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

from cvkit.models.heads.roi_head import RoIHead
from cvkit.models.heads.rpn_head import RPNHead
from cvkit.models.preprocessor import Preprocessor
from cvkit.registry import MODELS
from cvkit.structures import DetBatch, DetPrediction, DetTarget


class RPNOutputs(NamedTuple):
    """What the RPN gives for a batch: its raw outputs, anchors and proposals.

    Attributes:
        objectness: per level ``Tensor[B, H_l*W_l*A]``.
        deltas: per level ``Tensor[B, H_l*W_l*A, 4]``.
        anchors: per level ``Tensor[H_l*W_l*A, 4]``.
        proposals: per image ``Tensor[R_i, 4]`` ``xyxy``, best first, no gradient.
    """

    objectness: list[torch.Tensor]
    deltas: list[torch.Tensor]
    anchors: list[torch.Tensor]
    proposals: list[torch.Tensor]


@MODELS.register()
class TwoStageDetector(nn.Module):
    """Proposals from a region proposal network, classified and refined by a RoI head.

    Args:
        backbone: returns ``list[Tensor]`` and has ``feature_info``.
        neck: e.g. ``FPN``; every level has the same channels.
        rpn_head: scores anchors and proposes boxes (``RPNHead``), with its own loss; its
            ``strides`` (its ``in_strides``, wired from the neck) are every level's.
        roi_head: classifies and refines the proposals (``RoIHead``), with its own loss.
        preprocessor: normalises and pads to the coarsest stride.

    ``loss`` returns the RPN's and the RoI head's terms (``loss_rpn_cls``, ``loss_rpn_box``,
    ``loss_roi_cls``, ``loss_roi_box``); the proposals the RoI head trains on carry no
    gradient (approximate joint training, as in torchvision and Detectron2). ``loss``,
    ``predict`` and ``loss_and_predict`` (both from one forward pass) share their steps. The
    RPN keeps its training or its testing number of proposals after ``self.training``, so in
    eval mode ``loss_and_predict`` equals ``loss`` and ``predict``; in train mode its
    predictions come from the training proposals.
    """

    task = "detection"

    def __init__(
        self,
        backbone: nn.Module,
        neck: nn.Module,
        rpn_head: RPNHead,
        roi_head: RoIHead,
        preprocessor: Preprocessor | None = None,
    ) -> None:
        super().__init__()
        self.backbone, self.neck = backbone, neck
        self.rpn_head, self.roi_head = rpn_head, roi_head
        self.preprocessor = preprocessor or Preprocessor(size_divisor=max(rpn_head.strides))

    @property
    def num_classes(self) -> int:
        return int(self.roi_head.num_classes)

    def features(self, batch: DetBatch) -> tuple[list[torch.Tensor], tuple[int, int]]:
        """Pyramid levels of the batch and the padded input's ``(H, W)``."""
        x = self.preprocessor(batch.images, batch.image_sizes)
        return self.neck(self.backbone(x)), (int(x.shape[-2]), int(x.shape[-1]))

    def forward(
        self, images: torch.Tensor, image_sizes: list[tuple[int, int]] | None = None
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Raw RPN outputs: per level ``(objectness [B, HWA], box_deltas [B, HWA, 4])``."""
        x = self.preprocessor(images, image_sizes)
        return self.rpn_head(self.neck(self.backbone(x)))

    def loss(self, batch: DetBatch) -> dict[str, torch.Tensor]:
        """The four loss terms; needs ``batch.targets``."""
        targets = _targets_of(batch)
        feats, batch_shape = self.features(batch)
        return self._losses(feats, batch_shape, self._propose(feats, batch), targets)

    @torch.no_grad()
    def predict(self, batch: DetBatch) -> list[DetPrediction]:
        """Detections per image, in the pixels of the original image files."""
        feats, batch_shape = self.features(batch)
        return self._predictions(feats, batch_shape, self._propose(feats, batch), batch)

    def loss_and_predict(
        self, batch: DetBatch
    ) -> tuple[dict[str, torch.Tensor], list[DetPrediction]]:
        """``loss(batch)`` and ``predict(batch)`` from one pass of the backbone, the neck and
        the RPN (evaluation). The predictions carry no gradient; the samplers draw as in
        ``loss``."""
        targets = _targets_of(batch)
        feats, batch_shape = self.features(batch)
        rpn = self._propose(feats, batch)
        losses = self._losses(feats, batch_shape, rpn, targets)
        with torch.no_grad():
            return losses, self._predictions(feats, batch_shape, rpn, batch)

    def _propose(self, feats: list[torch.Tensor], batch: DetBatch) -> RPNOutputs:
        objectness, deltas = self.rpn_head(feats)
        anchors = self.rpn_head.anchors(feats)
        proposals = self.rpn_head.proposals(objectness, deltas, anchors, batch.image_sizes)
        return RPNOutputs(objectness, deltas, anchors, proposals)

    def _losses(
        self,
        feats: list[torch.Tensor],
        batch_shape: tuple[int, int],
        rpn: RPNOutputs,
        targets: list[DetTarget],
    ) -> dict[str, torch.Tensor]:
        # the RPN samples first, then the RoI head: the order the random draws come in
        losses = self.rpn_head.loss(rpn.objectness, rpn.deltas, rpn.anchors, targets)
        return losses | self.roi_head.loss(feats, rpn.proposals, targets, batch_shape)

    def _predictions(
        self,
        feats: list[torch.Tensor],
        batch_shape: tuple[int, int],
        rpn: RPNOutputs,
        batch: DetBatch,
    ) -> list[DetPrediction]:
        detections = self.roi_head.predict(feats, rpn.proposals, batch.image_sizes, batch_shape)
        targets: Sequence[DetTarget | None] = batch.targets or [None] * len(batch)
        return [
            DetPrediction.from_batch_pixels(boxes, scores, labels, size, target)
            for (boxes, scores, labels), size, target in zip(detections, batch.image_sizes, targets)
        ]


def _targets_of(batch: DetBatch) -> list[DetTarget]:
    if batch.targets is None:
        raise ValueError("TwoStageDetector.loss needs targets; this batch has none")
    return batch.targets


@MODELS.register()
class FasterRCNN(TwoStageDetector):
    """Faster R-CNN with FPN (Ren et al. 2015; Lin et al. 2017): a ``TwoStageDetector``.

    The paper's defaults live in ``RPNHead`` (anchors ``8 * stride`` at three aspect ratios,
    IoU 0.7 / 0.3, 256 samples, 2000 / 1000 proposals) and ``RoIHead`` (RoIAlign 7x7 on
    P2-P5, two 1024-wide FC layers, IoU 0.5, 512 samples, coder weights 10, 10, 5, 5). Use it
    with an ``FPN`` whose one extra level is max-pooled (P6, for the RPN only).
    """
