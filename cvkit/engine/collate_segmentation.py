"""Batching segmentation items: pad images with zeros and masks with the ignore index."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from cvkit.structures import SegBatch

IGNORE_INDEX = 255


def collate_segmentation(
    items: Sequence[dict[str, Any]], ignore_index: int = IGNORE_INDEX
) -> SegBatch:
    """Segmentation items -> ``SegBatch``.

    Images and masks are padded at the bottom and right to the largest height and width of
    the batch, so pixels keep their coordinates: images with zeros, masks with
    ``ignore_index`` so that padding adds nothing to the loss or the metrics.

    Args:
        items: dicts with ``image`` ndarray[H, W, 3] uint8 RGB; ``mask`` ndarray[H, W] of
            integer class indices (``ignore_index`` = unlabelled), absent when predicting;
            ``orig_size`` ``(h, w)`` of the image file (default: the image's size);
            ``name`` str (default: the item's position in the batch).
        ignore_index: the mask value of padding.

    Returns:
        ``SegBatch(images [B, 3, H_max, W_max] uint8, masks [B, H_max, W_max] int64 or None,
        image_sizes, orig_sizes, names)``.

    Raises:
        ValueError: an empty batch, an image that is not HWC uint8 RGB, a mask that is not
            ``[H, W]`` integers of its image's size, or masks on only some items.
    """
    if not items:
        raise ValueError("collate_segmentation got an empty batch")
    for index, item in enumerate(items):
        _check_item(item, index)
    has_mask = ["mask" in item for item in items]
    if any(has_mask) and not all(has_mask):
        raise ValueError(
            f"collate_segmentation: {sum(has_mask)} of {len(items)} items have a mask; "
            "a batch has masks on every item (training, evaluation) or on none (prediction)"
        )
    sizes = [(int(i["image"].shape[0]), int(i["image"].shape[1])) for i in items]
    height, width = max(h for h, _ in sizes), max(w for _, w in sizes)
    images = torch.zeros((len(items), 3, height, width), dtype=torch.uint8)
    masks = torch.full((len(items), height, width), ignore_index, dtype=torch.int64)
    for index, (item, (h, w)) in enumerate(zip(items, sizes)):
        image = torch.from_numpy(np.ascontiguousarray(item["image"]))
        images[index, :, :h, :w] = image.permute(2, 0, 1)
        if has_mask[index]:
            masks[index, :h, :w] = torch.from_numpy(np.asarray(item["mask"]).astype(np.int64))
    orig_sizes = [_size(item.get("orig_size"), size) for item, size in zip(items, sizes)]
    names = [str(item.get("name", index)) for index, item in enumerate(items)]
    return SegBatch(images, masks if all(has_mask) else None, sizes, orig_sizes, names)


def _check_item(item: dict[str, Any], index: int) -> None:
    image = item.get("image")
    if not isinstance(image, np.ndarray):
        raise ValueError(
            f"item {index} of the batch has a {type(image).__name__} image; cvkit expects an "
            "HWC uint8 NumPy array, so remove ToTensorV2 from the data transforms"
        )
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            f"item {index} of the batch has a {image.dtype} image of shape {image.shape}; "
            "cvkit expects [H, W, 3] uint8 RGB and normalises inside the model, so remove "
            "Normalize (or ToFloat) from the data transforms"
        )
    if "mask" not in item:
        return
    mask = np.asarray(item["mask"])
    if mask.shape != image.shape[:2] or not np.issubdtype(mask.dtype, np.integer):
        raise ValueError(
            f"item {index} ({item.get('name', '?')}) has a {mask.dtype} mask of shape "
            f"{mask.shape} for a {image.shape[0]}x{image.shape[1]} image; masks are [H, W] "
            "integer class indices of their image's size (pass them to albumentations as "
            "mask=, so every geometric transform moves them with the image)"
        )


def _size(orig_size: Any, fallback: tuple[int, int]) -> tuple[int, int]:
    if orig_size is None:
        return fallback
    h, w = orig_size
    return int(h), int(w)
