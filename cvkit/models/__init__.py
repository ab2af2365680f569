"""Every built-in model component; importing this module registers them all."""

from cvkit.models import preprocessor
from cvkit.models.backbones import timm_backbone, tiny_net
from cvkit.models.heads import cls_head
from cvkit.models.losses import cross_entropy, mse
from cvkit.models.necks import global_pool
from cvkit.models.tasks import classifier

__all__ = [
    "classifier",
    "cls_head",
    "cross_entropy",
    "global_pool",
    "mse",
    "preprocessor",
    "timm_backbone",
    "tiny_net",
]
