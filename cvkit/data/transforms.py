"""Augmentation transforms: every albumentations transform is a TRANSFORMS entry by name.

A config writes ``transforms: [{type: HorizontalFlip, p: 0.5}, {type: Normalize}]``; the
builder finds each name here (albumentations is imported on the first lookup only) and checks
the arguments against the transform's signature, like any other component.
"""

from __future__ import annotations

import inspect
from typing import Any

from cvkit.registry import TRANSFORMS


def _albumentations_transforms() -> dict[str, Any]:
    import albumentations as A

    # Transforms and the compositions (OneOf, SomeOf, Sequential) that nest them; the
    # abstract bases that albumentations' own internals use are left out.
    kinds = (A.BasicTransform, A.BaseCompose)
    return {
        name: obj
        for name, obj in vars(A).items()
        if inspect.isclass(obj)
        and issubclass(obj, kinds)
        and not obj.__module__.startswith("albumentations.core.transforms_interface")
        and name not in ("BaseCompose", "Transform3D")
    }


TRANSFORMS.add_provider("albumentations", _albumentations_transforms)


def compose(transforms: list | None):
    """An ``albumentations.Compose`` of built transforms, or ``None`` for none.

    Datasets keep it as ``self.transforms``; the loader reseeds it per sample (see loader.py).
    """
    if not transforms:
        return None
    import albumentations as A

    return A.Compose(transforms)


# The names a detection pipeline passes its box labels under; albumentations drops the
# matching entries whenever it drops a box (cropped away, or below ``min_visibility``).
BOX_LABEL_FIELDS = ("labels", "iscrowd")


def compose_detection(transforms: list | None, min_visibility: float = 0.0):
    """An ``albumentations.Compose`` that moves ``xyxy`` boxes with the image, or ``None``.

    Call it as ``pipeline(image=HWC uint8, bboxes=float [N, 4] xyxy pixels, labels=[N],
    iscrowd=[N])``. Flips, resizes (``LongestMaxSize`` + ``PadIfNeeded``), crops
    (``RandomSizedBBoxSafeCrop``, ``AtLeastOneBBoxRandomCrop``), affine and colour transforms
    all keep the boxes consistent; boxes are clipped to the image, and a box cropped away
    entirely (or to less than ``min_visibility`` of its area) is dropped with its labels.

    Args:
        transforms: built albumentations transforms, applied in order.
        min_visibility: share of a box's area (0..1) that must stay in the image to keep it.

    Returns:
        the pipeline (datasets keep it as ``self.transforms``, so the loader reseeds it per
        sample), or ``None`` when ``transforms`` is empty.
    """
    if not 0.0 <= min_visibility <= 1.0:
        raise ValueError(f"min_visibility must be in [0, 1], got {min_visibility!r}")
    if not transforms:
        return None
    import albumentations as A

    boxes = A.BboxParams(
        format="pascal_voc",  # xyxy in absolute pixels, cvkit's one box format
        label_fields=list(BOX_LABEL_FIELDS),
        min_visibility=min_visibility,
        clip=True,
    )
    return A.Compose(transforms, bbox_params=boxes)


def compose_segmentation(
    transforms: list | None, num_classes: int | None = None, ignore_index: int = 255
):
    """An ``albumentations.Compose`` that moves an index mask with the image, or ``None``.

    Call it as ``pipeline(image=HWC uint8, mask=HW integer class indices)``. Geometric
    transforms (flips, resizes, crops, affine) apply to both, colour transforms to the image
    only. Masks always use nearest-neighbour interpolation, whatever a transform's own
    ``mask_interpolation`` says: between class 1 and class 3 lies no class 2.

    Mask pixels that a transform creates rather than moves (``PadIfNeeded``, the borders of
    ``Affine`` or ``Rotate``, ``RandomCrop(pad_if_needed=True)``) take the transform's
    ``fill_mask``, which albumentations defaults to 0: class 0. Set ``fill_mask: 255`` (the
    ignore index) so padding counts in neither the loss nor the metrics.

    Args:
        transforms: built albumentations transforms, applied in order.
        num_classes: if set, every constant ``fill_mask`` must be a class or ``ignore_index``.
        ignore_index: the mask value of unlabelled pixels.

    Returns:
        the pipeline (datasets keep it as ``self.transforms``, so the loader reseeds it per
        sample), or ``None`` when ``transforms`` is empty.

    Raises:
        ValueError: a transform fills masks with a value that is neither a class nor
            ``ignore_index`` (it would reach the loss as an out-of-range class).
    """
    if not transforms:
        return None
    import albumentations as A
    import cv2

    if num_classes is not None:
        _check_mask_fill(transforms, num_classes, ignore_index)
    # The Compose-level setting overrides every transform's, so no transform can blend classes.
    return A.Compose(transforms, mask_interpolation=cv2.INTER_NEAREST)


def _check_mask_fill(transforms: list, num_classes: int, ignore_index: int) -> None:
    import cv2

    for transform in transforms:
        _check_mask_fill(list(getattr(transform, "transforms", [])), num_classes, ignore_index)
        fill = getattr(transform, "fill_mask", None)
        if fill is None or getattr(transform, "border_mode", 0) != cv2.BORDER_CONSTANT:
            continue  # reflected or replicated borders copy mask pixels, which are valid
        for value in fill if isinstance(fill, (tuple, list)) else (fill,):
            if value != ignore_index and not (value == int(value) and 0 <= value < num_classes):
                raise ValueError(
                    f"{type(transform).__name__} fills masks with fill_mask={value!r}, which is "
                    f"neither a class (0..{num_classes - 1}) nor the ignore index "
                    f"{ignore_index}; set fill_mask: {ignore_index}"
                )
