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
