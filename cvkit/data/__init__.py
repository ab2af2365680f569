"""Datasets, transforms and loaders; importing this module registers the built-ins."""

from cvkit.data import (
    builtin,
    coco,
    coco_segmentation,
    image_folder,
    segmentation,
    shapes,
    shapes_segmentation,
    transforms,
)
from cvkit.data.collate import collate_detection

__all__ = [
    "builtin",
    "coco",
    "coco_segmentation",
    "collate_detection",
    "image_folder",
    "segmentation",
    "shapes",
    "shapes_segmentation",
    "transforms",
]
