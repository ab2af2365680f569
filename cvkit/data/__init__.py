"""Datasets, transforms and loaders; importing this module registers the built-ins."""

from cvkit.data import builtin, coco, image_folder, shapes, transforms
from cvkit.data.detection_collate import collate_detection

__all__ = ["builtin", "coco", "collate_detection", "image_folder", "shapes", "transforms"]
