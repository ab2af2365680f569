"""Region Proposal Network (Ren et al., "Faster R-CNN", NeurIPS 2015), on a feature pyramid.

The RPN scores every anchor as object or not and regresses it towards the object, then turns
the best-scoring anchors of each level into proposals for the second stage.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cvkit.models.losses.detection import SmoothL1Loss
from cvkit.models.losses.normalizer import loss_normalizer
from cvkit.models.task_utils.anchor_generator import AnchorGenerator, anchor_strides, flatten_level
from cvkit.models.task_utils.box_coder import DeltaBoxCoder
from cvkit.models.task_utils.matcher import MaxIoUMatcher
from cvkit.models.task_utils.sampler import RandomSampler
from cvkit.models.task_utils.training_targets import box_regression_loss, sample_labels
from cvkit.ops import batched_nms, clip_boxes, valid_boxes_mask
from cvkit.registry import HEADS
from cvkit.structures import DetTarget


@HEADS.register()
class RPNHead(nn.Module):
    """Objectness and box deltas for every anchor, the proposals they give, and their loss.

    A 3x3 conv + ReLU shared by all levels, then 1x1 convs for ``A`` objectness logits and
    ``A * 4`` deltas per location. Proposals: per level the ``pre_nms_top_n`` best anchors,
    decoded, clipped to the image, boxes under ``min_size`` dropped, NMS per level at
    ``nms_threshold``, then the ``post_nms_top_n`` best of the image. Training: anchors are
    matched to the gts and ``sampler`` picks positives and negatives (``training_targets``),
    and the loss is binary cross-entropy on the sampled anchors (mean) plus ``box_loss`` on
    the positives, divided by the number sampled. The defaults are Faster R-CNN's with FPN
    (torchvision, Detectron2).

    Args:
        in_channels: channels of every pyramid level (wired from the neck).
        in_strides: stride of every level (wired from the neck), for the anchors; kept as
            ``strides``. ``None`` only with an anchor generator built with its own strides.
        anchor_generator: default: one size per level, ``8 * stride`` (32 px on P2 ... 512 on
            P6), aspect ratios 0.5, 1, 2.
        box_coder: default: unit weights.
        matcher: default: IoU >= 0.7 object, < 0.3 background, low-quality matches kept.
        sampler: default: 256 anchors per image, at most half positive.
        box_loss: default: smooth-L1 with beta 1/9 on deltas, summed.
        pre_nms_top_n: anchors kept per level before NMS, ``(training, testing)``.
        post_nms_top_n: proposals kept per image after NMS, ``(training, testing)``.
        nms_threshold: IoU of the NMS between proposals.
        min_size: proposals with a side under this many pixels are dropped.

    Shapes: ``forward([Tensor[B, C, H_l, W_l]])`` -> ``([Tensor[B, H_l*W_l*A]],
    [Tensor[B, H_l*W_l*A, 4]])``.
    """

    def __init__(
        self,
        in_channels: int,
        in_strides: Sequence[int] | None = None,
        anchor_generator: AnchorGenerator | None = None,
        box_coder: DeltaBoxCoder | None = None,
        matcher: MaxIoUMatcher | None = None,
        sampler: RandomSampler | None = None,
        box_loss: nn.Module | None = None,
        pre_nms_top_n: tuple[int, int] = (2000, 1000),
        post_nms_top_n: tuple[int, int] = (2000, 1000),
        nms_threshold: float = 0.7,
        min_size: float = 1e-3,
    ) -> None:
        super().__init__()
        if anchor_generator is None:
            if not in_strides:
                raise ValueError("RPNHead: give in_strides (the neck's) or an anchor_generator")
            anchor_generator = AnchorGenerator(sizes=[(8.0 * s,) for s in in_strides])
        try:
            self.strides = anchor_strides(in_strides, anchor_generator)
        except ValueError as err:
            raise ValueError(f"RPNHead: {err}") from None
        per_location = set(anchor_generator.num_anchors_per_location())
        if len(per_location) != 1:
            raise ValueError(
                f"RPNHead: the anchor generator makes {sorted(per_location)} anchors per "
                "location on different levels; the shared conv needs one number"
            )
        self.num_anchors = per_location.pop()
        self.anchor_generator = anchor_generator
        self.box_coder = box_coder or DeltaBoxCoder()
        self.matcher = matcher or MaxIoUMatcher(0.7, 0.3, allow_low_quality_matches=True)
        self.sampler = sampler or RandomSampler(256, 0.5)
        self.box_loss = box_loss or SmoothL1Loss(beta=1 / 9)
        self.pre_nms_top_n, self.post_nms_top_n = pre_nms_top_n, post_nms_top_n
        self.nms_threshold, self.min_size = nms_threshold, min_size
        self.conv = nn.Conv2d(in_channels, in_channels, 3, padding=1)
        self.objectness = nn.Conv2d(in_channels, self.num_anchors, 1)
        self.box_deltas = nn.Conv2d(in_channels, self.num_anchors * 4, 1)
        for m in (self.conv, self.objectness, self.box_deltas):
            nn.init.normal_(m.weight, std=0.01)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward(self, feats: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        objectness, deltas = [], []
        for f in feats:
            t = F.relu(self.conv(f))
            objectness.append(flatten_level(self.objectness(t), 1).squeeze(2))
            deltas.append(flatten_level(self.box_deltas(t), 4))
        return objectness, deltas

    def anchors(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        """Per level ``Tensor[H_l*W_l*A, 4]``, in the order of ``forward``'s outputs."""
        sizes = [(f.shape[-2], f.shape[-1]) for f in feats]  # symbolic when exporting
        return self.anchor_generator(sizes, self.strides, feats[0].device, feats[0].dtype)

    @torch.no_grad()
    def proposals(
        self,
        objectness: list[torch.Tensor],
        deltas: list[torch.Tensor],
        anchors: list[torch.Tensor],
        image_sizes: list[tuple[int, int]],
    ) -> list[torch.Tensor]:
        """Proposals of each image, best first: ``[Tensor[R_i, 4]]`` xyxy, no gradient."""
        pre_n = self.pre_nms_top_n[0 if self.training else 1]
        post_n = self.post_nms_top_n[0 if self.training else 1]
        boxes, scores, levels = [], [], []
        for lv, (obj, dl, an) in enumerate(zip(objectness, deltas, anchors)):
            top = obj.topk(min(pre_n, obj.shape[1]), dim=1)  # [B, k]: best anchors per image
            k = top.indices.shape[1]
            picked = dl.gather(1, top.indices[..., None].expand(-1, -1, 4))  # [B, k, 4]
            decoded = self.box_coder.decode(
                picked.reshape(-1, 4), an.index_select(0, top.indices.flatten())
            )
            boxes.append(decoded.view(-1, k, 4))
            scores.append(top.values)
            levels.append(torch.full((k,), lv, dtype=torch.int64, device=obj.device))
        all_boxes, all_scores = torch.cat(boxes, 1), torch.cat(scores, 1)
        all_levels = torch.cat(levels)
        return [
            self._select(all_boxes[i], all_scores[i], all_levels, size, post_n)
            for i, size in enumerate(image_sizes)
        ]

    def _select(self, boxes, scores, levels, size, post_n: int) -> torch.Tensor:
        """One image: clip, drop tiny boxes, NMS within each level, keep the best ``post_n``."""
        boxes = clip_boxes(boxes, size)
        keep = torch.nonzero(valid_boxes_mask(boxes, self.min_size)).squeeze(1)
        boxes, scores, levels = boxes[keep], scores[keep], levels[keep]
        keep = batched_nms(boxes, scores, levels, self.nms_threshold)[:post_n]
        return boxes[keep]

    def loss(
        self,
        objectness: list[torch.Tensor],
        deltas: list[torch.Tensor],
        anchors: list[torch.Tensor],
        targets: list[DetTarget],
    ) -> dict[str, torch.Tensor]:
        """``{"loss_rpn_cls", "loss_rpn_box"}`` over the sampled anchors of the batch."""
        all_objectness, all_deltas = torch.cat(objectness, 1), torch.cat(deltas, 1)
        all_anchors = torch.cat(anchors)
        logits, labels, box_terms = [], [], []
        for i, target in enumerate(targets):
            sampled = sample_labels(self.matcher, self.sampler, target, all_anchors)
            pos, indices = sampled.pos, sampled.indices
            logits.append(all_objectness[i].index_select(0, indices))
            labels.append((torch.arange(len(indices), device=indices.device) < len(pos)).float())
            box_terms.append(
                box_regression_loss(
                    self.box_loss,
                    self.box_coder,
                    all_deltas[i].index_select(0, pos),
                    target.boxes.index_select(0, sampled.pos_gt),
                    all_anchors.index_select(0, pos),
                )
            )
        sampled_logits, sampled_labels = torch.cat(logits), torch.cat(labels)
        cls = F.binary_cross_entropy_with_logits(sampled_logits, sampled_labels, reduction="sum")
        box = functools.reduce(operator.add, box_terms)  # sum() would start at int 0
        # the anchors sampled in the batch (in every process's batch under DDP), at least one
        num_sampled = loss_normalizer(sampled_labels.numel(), like=cls)
        return {"loss_rpn_cls": cls / num_sampled, "loss_rpn_box": box / num_sampled}
