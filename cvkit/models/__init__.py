"""Every built-in model component; importing this module registers them all."""

from cvkit.models import preprocessor, task_utils
from cvkit.models.backbones import timm_backbone, tiny_net
from cvkit.models.heads import cls_head, retina_head
from cvkit.models.losses import cross_entropy, detection, mse
from cvkit.models.necks import fpn, global_pool
from cvkit.models.tasks import classifier, one_stage_detector, retinanet

__all__ = [
    "classifier",
    "cls_head",
    "cross_entropy",
    "detection",
    "fpn",
    "global_pool",
    "mse",
    "one_stage_detector",
    "preprocessor",
    "retina_head",
    "retinanet",
    "task_utils",
    "timm_backbone",
    "tiny_net",
]
