"""Batching: a list of dataset items -> one batch of each task's type.

Every collate checks its images with ``check_image`` (one rule, one wording): the data
transforms must leave HWC uint8 RGB NumPy arrays, because cvkit normalises inside the model.
Images of different sizes are padded at the bottom and right, so pixels and boxes keep their
coordinates.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from cvkit.structures import ClsBatch, DetBatch, DetTarget, SegBatch

IGNORE_INDEX = 255


def check_image(image: Any, index: int) -> None:
    """Raise ``ValueError`` unless ``image`` (item ``index`` of a batch) is HWC uint8 RGB."""
    if not isinstance(image, np.ndarray):
        raise ValueError(
            f"item {index} of the batch has a {type(image).__name__} image; cvkit expects an "
            "HWC uint8 NumPy array, so remove ToTensorV2 from the data transforms"
        )
    if image.dtype != np.uint8:
        raise ValueError(
            f"the data transforms produced {image.dtype} images; cvkit expects uint8 and "
            "normalises inside the model (model.preprocessor: mean, std), so remove Normalize "
            "(or ToFloat) from the transforms"
        )
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            f"item {index} of the batch has an image of shape {image.shape}; cvkit expects "
            "[H, W, 3] RGB (image_io.read_image gives that for any file)"
        )


def collate_classification(items: Sequence[tuple[np.ndarray, int]]) -> ClsBatch:
    """``[(image HWC uint8, label)]`` -> ``ClsBatch(images [B, 3, H, W] uint8, labels [B])``.

    Raises:
        ValueError: an empty batch, an image that is not HWC uint8 RGB, or images that differ
            in size (add a resize or crop to the pipeline).
    """
    if not items:
        raise ValueError("collate_classification got an empty batch")
    for index, item in enumerate(items):
        check_image(item[0], index)
    shapes = {item[0].shape for item in items}
    if len(shapes) != 1:
        raise ValueError(
            f"images in one batch differ in shape {sorted(shapes)}; add a Resize or "
            "RandomResizedCrop to the data transforms so every image has one size"
        )
    images = torch.from_numpy(np.stack([item[0] for item in items])).permute(0, 3, 1, 2)
    labels = torch.tensor([item[1] for item in items], dtype=torch.int64)
    return ClsBatch(images.contiguous(), labels)


def collate_detection(items: Sequence[dict[str, Any]], pad_multiple: int = 1) -> DetBatch:
    """Detection items (see ``CocoDetection``) -> ``DetBatch``.

    Targets are built when every item has ``"boxes"``; items with only ``"image"`` (and
    optionally ``"image_id"``, ``"orig_size"``) give ``targets=None``.

    Args:
        items: dicts with ``image`` ndarray[H, W, 3] uint8 and, for training, ``boxes``
            float [N, 4] xyxy, ``labels`` int [N], ``iscrowd`` bool [N], ``image_id`` and
            ``orig_size``.
        pad_multiple: pad the batch's height and width up to a multiple of this (the
            data's ``pad_multiple``: fewer distinct batch shapes).

    Returns:
        ``DetBatch(images [B, 3, H, W] uint8, image_sizes, targets)``, ``H, W`` the largest
        height and width, rounded up to ``pad_multiple``; ``image_sizes`` holds each
        image's ``(h, w)`` before padding.

    Raises:
        ValueError: an empty batch, an image that is not HWC uint8 RGB, or an item whose
            boxes, labels and iscrowd flags differ in number.
    """
    if not items:
        raise ValueError("collate_detection got an empty batch")
    images = [item["image"] for item in items]
    for index, image in enumerate(images):
        check_image(image, index)
    batch, sizes = _pad_images(images, pad_multiple)
    targets = [_det_target(item) for item in items] if all("boxes" in i for i in items) else None
    return DetBatch(batch, sizes, targets)


def collate_segmentation(
    items: Sequence[dict[str, Any]], ignore_index: int = IGNORE_INDEX, pad_multiple: int = 1
) -> SegBatch:
    """Segmentation items -> ``SegBatch``; masks are padded with ``ignore_index``, so padding
    adds nothing to the loss or the metrics.

    Args:
        items: dicts with ``image`` ndarray[H, W, 3] uint8 RGB; ``mask`` ndarray[H, W] of
            integer class indices (``ignore_index`` = unlabelled), absent when predicting;
            ``orig_size`` ``(h, w)`` of the image file (default: the image's size);
            ``name`` str (default: the item's position in the batch).
        ignore_index: the mask value of padding.
        pad_multiple: as for ``collate_detection``.

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
        check_image(item.get("image"), index)
        _check_mask(item, index)
    has_mask = ["mask" in item for item in items]
    if any(has_mask) and not all(has_mask):
        raise ValueError(
            f"collate_segmentation: {sum(has_mask)} of {len(items)} items have a mask; "
            "a batch has masks on every item (training, evaluation) or on none (prediction)"
        )
    images, sizes = _pad_images([item["image"] for item in items], pad_multiple)
    masks = torch.full((len(items), *images.shape[-2:]), ignore_index, dtype=torch.int64)
    for index, (item, (h, w)) in enumerate(zip(items, sizes)):
        if has_mask[index]:
            masks[index, :h, :w] = torch.from_numpy(np.asarray(item["mask"]).astype(np.int64))
    orig_sizes = [_size(item.get("orig_size"), size) for item, size in zip(items, sizes)]
    names = [str(item.get("name", index)) for index, item in enumerate(items)]
    return SegBatch(images, masks if all(has_mask) else None, sizes, orig_sizes, names)


def with_pad_multiple(collate: Callable, multiple: int) -> Callable:
    """``collate`` padding every batch to a multiple of ``multiple`` (``data.pad_multiple``).

    Raises:
        ValueError: ``multiple`` is above 1 and ``collate`` pads nothing (a classification
            batch is of one size).
    """
    if multiple < 1:
        raise ValueError(f"data.pad_multiple must be at least 1, got {multiple}")
    if multiple == 1:
        return collate
    if "pad_multiple" not in inspect.signature(collate).parameters:
        raise ValueError(
            f"data.pad_multiple={multiple}, but {getattr(collate, '__name__', collate)} pads no "
            "batch: it applies to detection and segmentation, whose images differ in size"
        )
    return functools.partial(collate, pad_multiple=multiple)


def _pad_images(
    images: Sequence[np.ndarray], multiple: int = 1
) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """HWC uint8 arrays -> ``(Tensor[B, 3, H, W]`` zero-padded, sizes ``[(h, w)]``): ``H, W``
    the largest height and width, rounded up to ``multiple``."""
    sizes = [(int(image.shape[0]), int(image.shape[1])) for image in images]
    height, width = max(h for h, _ in sizes), max(w for _, w in sizes)
    height, width = -(-height // multiple) * multiple, -(-width // multiple) * multiple
    batch = torch.zeros((len(images), 3, height, width), dtype=torch.uint8)
    for index, (image, (h, w)) in enumerate(zip(images, sizes)):
        batch[index, :, :h, :w] = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
    return batch, sizes


def _check_mask(item: dict[str, Any], index: int) -> None:
    if "mask" not in item:
        return
    image, mask = item["image"], np.asarray(item["mask"])
    if mask.shape != image.shape[:2] or not np.issubdtype(mask.dtype, np.integer):
        raise ValueError(
            f"item {index} ({item.get('name', '?')}) has a {mask.dtype} mask of shape "
            f"{mask.shape} for a {image.shape[0]}x{image.shape[1]} image; masks are [H, W] "
            "integer class indices of their image's size (pass them to albumentations as "
            "mask=, so every geometric transform moves them with the image)"
        )


def _det_target(item: dict[str, Any]) -> DetTarget:
    boxes = torch.as_tensor(np.asarray(item["boxes"], dtype=np.float32)).reshape(-1, 4)
    labels = torch.as_tensor(np.asarray(item["labels"], dtype=np.int64)).reshape(-1)
    count = boxes.shape[0]
    iscrowd = item.get("iscrowd")
    crowd = (
        torch.zeros(count, dtype=torch.bool)
        if iscrowd is None
        else torch.as_tensor(np.asarray(iscrowd, dtype=bool)).reshape(-1)
    )
    if labels.shape[0] != count or crowd.shape[0] != count:
        raise ValueError(
            f"image id {item.get('image_id')}: {count} boxes but {labels.shape[0]} labels and "
            f"{crowd.shape[0]} iscrowd flags; a transform dropped boxes without their labels "
            "(pass labels through the pipeline's label_fields)"
        )
    orig_size = item.get("orig_size") or tuple(item["image"].shape[:2])
    return DetTarget(boxes, labels, crowd, int(item.get("image_id", -1)), tuple(orig_size))


def _size(orig_size: Any, fallback: tuple[int, int]) -> tuple[int, int]:
    if orig_size is None:
        return fallback
    h, w = orig_size
    return int(h), int(w)
