"""Fast R-CNN box head (Girshick, ICCV 2015) on FPN levels: RoIAlign -> two FC layers ->
class scores and class-specific box deltas, with its training targets and its detections."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cvkit.models.losses.detection import SmoothL1Loss
from cvkit.models.losses.normalizer import loss_normalizer
from cvkit.models.task_utils.box_coder import DeltaBoxCoder
from cvkit.models.task_utils.matcher import MaxIoUMatcher
from cvkit.models.task_utils.sampler import RandomSampler
from cvkit.models.task_utils.training_targets import box_regression_loss, sample_labels
from cvkit.ops import batched_nms, clip_boxes, valid_boxes_mask
from cvkit.registry import HEADS
from cvkit.structures import DetTarget


@HEADS.register()
class RoIHead(nn.Module):
    """Classify and refine proposals: ``K + 1`` scores (background last) and ``K * 4`` deltas.

    Each proposal is pooled from one pyramid level (``roi_strides``; larger boxes from coarser
    levels, FPN paper eq. 1) to ``roi_size x roi_size`` with torchvision's
    ``MultiScaleRoIAlign``, then goes through two ``fc_channels`` FC layers. Training: the gt
    boxes join the proposals, proposals are matched to gts (``matcher``), ``sampler`` picks
    positives and negatives (both through ``training_targets``), and the loss is
    cross-entropy on the sampled (mean) plus ``box_loss`` on the positives' deltas of their gt
    class, divided by the number sampled. Prediction: softmax scores, per-class boxes clipped
    to the image, scores above ``score_threshold``, NMS per class (across classes with
    ``class_agnostic_nms``), the best ``max_detections``. The defaults are Faster R-CNN's with FPN.

    Args:
        in_channels: channels of the pyramid levels (wired from the neck).
        num_classes: foreground classes ``K``.
        in_strides: the stride of every level the neck gives (wired), to find ``roi_strides``.
        roi_strides: the levels RoIs are pooled from (P2-P5; the RPN's P6 is not used).
        roi_size: side of the pooled grid.
        sampling_ratio: RoIAlign sampling points per bin side.
        fc_channels: width of the two FC layers.
        box_coder: default: weights ``(10, 10, 5, 5)``.
        matcher: default: IoU >= 0.5 foreground, below background, no low-quality matches.
        sampler: default: 512 proposals per image, at most a quarter positive.
        box_loss: default: smooth-L1 with beta 1/9 on deltas, summed.
        score_threshold, nms_threshold, max_detections, min_size: prediction.
        class_agnostic_nms: NMS across classes (a box suppresses overlapping boxes of any
            class, so a proposal keeps only its best class); off (the default): per class.

    Shapes: ``forward(feats, rois [Tensor[R_i, 4]], batch_shape)`` ->
    ``(Tensor[sum R_i, K + 1], Tensor[sum R_i, K * 4])``.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        in_strides: Sequence[int] | None = None,
        roi_strides: Sequence[int] = (4, 8, 16, 32),
        roi_size: int = 7,
        sampling_ratio: int = 2,
        fc_channels: int = 1024,
        box_coder: DeltaBoxCoder | None = None,
        matcher: MaxIoUMatcher | None = None,
        sampler: RandomSampler | None = None,
        box_loss: nn.Module | None = None,
        score_threshold: float = 0.05,
        nms_threshold: float = 0.5,
        max_detections: int = 100,
        min_size: float = 1e-2,
        class_agnostic_nms: bool = False,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"RoIHead: num_classes must be at least 1, got {num_classes}")
        strides = list(in_strides) if in_strides else list(roi_strides)
        missing = [s for s in roi_strides if s not in strides]
        if missing:
            raise ValueError(
                f"RoIHead: roi_strides {list(roi_strides)} name strides {missing} that the neck "
                f"does not give (its strides: {strides})"
            )
        self.num_classes = num_classes
        self.levels = [strides.index(s) for s in roi_strides]
        self.roi_strides = tuple(int(s) for s in roi_strides)
        self.sampling_ratio = sampling_ratio
        names = [str(i) for i in self.levels]
        from torchvision.ops import MultiScaleRoIAlign  # slow to import: see cvkit.ops.iou

        self.roi_align = MultiScaleRoIAlign(names, roi_size, sampling_ratio)
        self.fc1 = nn.Linear(in_channels * roi_size * roi_size, fc_channels)
        self.fc2 = nn.Linear(fc_channels, fc_channels)
        self.cls_score = nn.Linear(fc_channels, num_classes + 1)
        self.box_deltas = nn.Linear(fc_channels, num_classes * 4)
        # Detectron2's init: small outputs, so early training is not thrown by wild deltas
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.normal_(self.box_deltas.weight, std=0.001)
        for layer in (self.cls_score, self.box_deltas):
            nn.init.zeros_(layer.bias)
        self.box_coder = box_coder or DeltaBoxCoder(weights=(10.0, 10.0, 5.0, 5.0))
        self.matcher = matcher or MaxIoUMatcher(0.5, 0.5, allow_low_quality_matches=False)
        self.sampler = sampler or RandomSampler(512, 0.25)
        self.box_loss = box_loss or SmoothL1Loss(beta=1 / 9)
        self.score_threshold, self.nms_threshold = score_threshold, nms_threshold
        self.max_detections, self.min_size = max_detections, min_size
        self.class_agnostic_nms = class_agnostic_nms

    def forward(
        self, feats: list[torch.Tensor], rois: list[torch.Tensor], batch_shape: tuple[int, int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        named = {str(i): feats[i] for i in self.levels}
        # The padded batch shape, not each image's size: MultiScaleRoIAlign infers each level's
        # scale from feature size / image size, which is exact only for the padded input.
        pooled = self.roi_align(named, rois, [batch_shape] * len(rois))
        x = F.relu(self.fc1(pooled.flatten(1)))
        x = F.relu(self.fc2(x))
        return self.cls_score(x), self.box_deltas(x)

    def loss(
        self,
        feats: list[torch.Tensor],
        proposals: list[torch.Tensor],
        targets: list[DetTarget],
        batch_shape: tuple[int, int],
    ) -> dict[str, torch.Tensor]:
        """``{"loss_roi_cls", "loss_roi_box"}`` over the sampled proposals of the batch."""
        rois, per_image_labels, per_image_gts = zip(
            *(self._sample(p, t) for p, t in zip(proposals, targets))
        )
        logits, deltas = self(feats, list(rois), batch_shape)
        labels, gt_boxes = torch.cat(per_image_labels), torch.cat(per_image_gts)
        rois_flat = torch.cat(rois)
        pos = torch.nonzero(labels < self.num_classes).squeeze(1)
        # each positive regresses only the deltas of its own class: [P, K, 4] -> [P, 4]
        pos_labels = labels.index_select(0, pos)[:, None, None].expand(-1, 1, 4)
        pos_deltas = deltas.view(len(labels), -1, 4).index_select(0, pos)
        pos_deltas = pos_deltas.gather(1, pos_labels).squeeze(1)
        box = box_regression_loss(
            self.box_loss,
            self.box_coder,
            pos_deltas,
            gt_boxes.index_select(0, pos),
            rois_flat.index_select(0, pos),
        )
        # the RoIs sampled in the batch (in every process's batch under DDP); reached by
        # every process, even one whose batch sampled none, so that the all-reduce meets
        count = loss_normalizer(labels.numel(), like=logits)
        if labels.numel() == 0:  # no proposal and no gt in the batch: nothing to learn
            zero = logits.sum() * 0.0
            return {"loss_roi_cls": zero, "loss_roi_box": zero}
        cls = F.cross_entropy(logits, labels, reduction="sum")
        return {"loss_roi_cls": cls / count, "loss_roi_box": box / count}

    def _sample(self, proposals: torch.Tensor, target: DetTarget):
        """One image's training RoIs: ``(rois [S, 4], labels [S] (K = background),
        matched gt boxes [S, 4] (rows of negatives are unused))``."""
        gts = target.boxes[~target.iscrowd] if target.iscrowd.any() else target.boxes
        # gts as proposals give the head perfect positives from the first step
        proposals = torch.cat([proposals, gts.to(proposals.dtype)])
        sampled = sample_labels(self.matcher, self.sampler, target, proposals)
        indices, num_pos = sampled.indices, len(sampled.pos)
        rois = proposals.index_select(0, indices)
        labels = torch.full_like(indices, self.num_classes)
        gt = rois.clone()  # only the positives' rows are used
        if num_pos:
            labels[:num_pos] = target.labels.index_select(0, sampled.pos_gt)
            gt[:num_pos] = target.boxes.index_select(0, sampled.pos_gt)
        return rois, labels, gt

    @torch.no_grad()
    def predict(
        self,
        feats: list[torch.Tensor],
        proposals: list[torch.Tensor],
        image_sizes: list[tuple[int, int]],
        batch_shape: tuple[int, int],
    ) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Per image ``(boxes [D, 4], scores [D], labels [D])``, best first, in batch pixels."""
        logits, deltas = self(feats, proposals, batch_shape)
        probs = logits.softmax(dim=1)[:, : self.num_classes]
        boxes = self.box_coder.decode(deltas, torch.cat(proposals))
        out, start = [], 0
        for props, size in zip(proposals, image_sizes):
            end = start + len(props)
            out.append(self._detections(boxes[start:end], probs[start:end], size))
            start = end
        return out

    def _detections(self, boxes: torch.Tensor, probs: torch.Tensor, size: tuple[int, int]):
        """One image: ``boxes [R, K*4]``, ``probs [R, K]`` -> its final detections."""
        k = self.num_classes
        boxes = clip_boxes(boxes.view(-1, k, 4), size).view(-1, 4)
        scores = probs.flatten()
        labels = torch.arange(k, device=probs.device).repeat(len(probs))
        keep = torch.nonzero(
            (scores > self.score_threshold) & valid_boxes_mask(boxes, self.min_size)
        ).squeeze(1)
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        groups = torch.zeros_like(labels) if self.class_agnostic_nms else labels
        keep = batched_nms(boxes, scores, groups, self.nms_threshold)[: self.max_detections]
        return boxes[keep], scores[keep], labels[keep]
