"""Batching detection items: pad images to one size, keep each image's boxes apart."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from cvkit.structures import DetBatch, DetTarget


def collate_detection(items: Sequence[dict[str, Any]]) -> DetBatch:
    """Detection items (see ``CocoDetection``) -> ``DetBatch``.

    Images are zero-padded at the bottom and right to the largest height and width of the
    batch, so boxes keep their pixel coordinates; ``image_sizes`` records each image's size
    before padding. Targets are built when every item has ``"boxes"``; items with only
    ``"image"`` (and optionally ``"image_id"``, ``"orig_size"``) give ``targets=None``.

    Args:
        items: dicts with ``image`` ndarray[H, W, 3] uint8 and, for training, ``boxes``
            float [N, 4] xyxy, ``labels`` int [N], ``iscrowd`` bool [N], ``image_id`` and
            ``orig_size``.

    Returns:
        ``DetBatch(images [B, 3, H_max, W_max] uint8, image_sizes, targets)``.

    Raises:
        ValueError: an image is not ``uint8`` HWC with 3 channels, or the batch is empty.
    """
    if not items:
        raise ValueError("collate_detection got an empty batch")
    images = [item["image"] for item in items]
    for index, image in enumerate(images):
        _check_image(image, index)
    height = max(image.shape[0] for image in images)
    width = max(image.shape[1] for image in images)
    batch = torch.zeros((len(images), 3, height, width), dtype=torch.uint8)
    for index, image in enumerate(images):
        h, w = image.shape[:2]
        batch[index, :, :h, :w] = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
    sizes = [(int(image.shape[0]), int(image.shape[1])) for image in images]
    targets = [_target(item) for item in items] if all("boxes" in i for i in items) else None
    return DetBatch(batch, sizes, targets)


def _check_image(image: Any, index: int) -> None:
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


def _target(item: dict[str, Any]) -> DetTarget:
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
