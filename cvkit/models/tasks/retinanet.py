"""RetinaNet (Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017)."""

from __future__ import annotations

from torch import nn

from cvkit.models.preprocessor import Preprocessor
from cvkit.models.task_utils.anchor_generator import AnchorGenerator, anchor_strides
from cvkit.models.task_utils.box_coder import DeltaBoxCoder
from cvkit.models.task_utils.matcher import MaxIoUMatcher
from cvkit.models.tasks.one_stage_detector import OneStageDetector
from cvkit.registry import MODELS

OCTAVE_SCALES = (1.0, 2 ** (1 / 3), 2 ** (2 / 3))


@MODELS.register()
class RetinaNet(OneStageDetector):
    """A ``OneStageDetector`` with the paper's defaults for what the config leaves out.

    Anchors: per level, size ``4 * stride`` (32 on P3 ... 512 on P7) at three octave scales
    and aspect ratios 0.5, 1, 2 (9 per location). Matching: IoU >= 0.5 foreground, < 0.4
    background, low-quality matches kept. Box coding: deltas with unit weights. Losses:
    focal (alpha 0.25, gamma 2) and L1 on deltas. All are arguments of
    ``OneStageDetector``; see there. The default anchors' sizes follow the head's strides
    (its ``in_strides``, wired from the neck).
    """

    def __init__(
        self,
        backbone: nn.Module,
        neck: nn.Module,
        head: nn.Module,
        anchor_generator: AnchorGenerator | None = None,
        box_coder: DeltaBoxCoder | None = None,
        matcher: MaxIoUMatcher | None = None,
        cls_loss: nn.Module | None = None,
        box_loss: nn.Module | None = None,
        preprocessor: Preprocessor | None = None,
        score_threshold: float = 0.05,
        topk_candidates: int = 1000,
        nms_threshold: float = 0.5,
        max_detections: int = 100,
        class_agnostic_nms: bool = False,
    ) -> None:
        if anchor_generator is None:
            anchor_generator = AnchorGenerator(
                sizes=[(4.0 * s,) for s in anchor_strides(getattr(head, "strides", None))],
                aspect_ratios=(0.5, 1.0, 2.0),
                scales=OCTAVE_SCALES,
            )
        super().__init__(
            backbone,
            neck,
            head,
            anchor_generator=anchor_generator,
            box_coder=box_coder or DeltaBoxCoder(weights=(1.0, 1.0, 1.0, 1.0)),
            matcher=matcher or MaxIoUMatcher(0.5, 0.4, allow_low_quality_matches=True),
            cls_loss=cls_loss,
            box_loss=box_loss,
            preprocessor=preprocessor,
            score_threshold=score_threshold,
            topk_candidates=topk_candidates,
            nms_threshold=nms_threshold,
            max_detections=max_detections,
            class_agnostic_nms=class_agnostic_nms,
        )
