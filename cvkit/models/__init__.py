"""Every built-in model component; importing this module registers them all."""

from cvkit.models import preprocessor, task_utils
from cvkit.models.backbones import timm_backbone, tiny_net
from cvkit.models.heads import cls_head, fcn_head, retina_head, roi_head, rpn_head
from cvkit.models.losses import cross_entropy, detection, mse, segmentation
from cvkit.models.necks import fpn, global_pool
from cvkit.models.tasks import (
    classifier,
    one_stage_detector,
    retinanet,
    segmenter,
    two_stage_detector,
)

__all__ = [
    "classifier",
    "cls_head",
    "cross_entropy",
    "detection",
    "fcn_head",
    "fpn",
    "global_pool",
    "mse",
    "one_stage_detector",
    "preprocessor",
    "retina_head",
    "retinanet",
    "roi_head",
    "rpn_head",
    "segmentation",
    "segmenter",
    "task_utils",
    "timm_backbone",
    "tiny_net",
    "two_stage_detector",
]
