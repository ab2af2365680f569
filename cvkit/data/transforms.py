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
