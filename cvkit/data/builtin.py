"""Embedded datasets that need no download: real data shipped inside installed packages."""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np

from cvkit.data.splits import select_split
from cvkit.data.transforms import compose
from cvkit.registry import DATASETS


@DATASETS.register()
class DigitsClassification:
    """scikit-learn's 1,797 real 8x8 handwritten digits as RGB images, 10 classes.

    The split is stratified and seeded (``cvkit.data.splits``), so ``train`` and ``val`` with
    the same seed (and ``folds``/``fold``) never share an image.

    Args:
        split: ``"train"``, ``"val"`` or ``"all"``.
        image_size: the 8x8 digits are resized (bilinear) to ``image_size`` squared.
        val_fraction: share of each class that goes to ``val`` (when ``folds`` is not set).
        seed: seed of the split or of the folds.
        folds: stratified k-fold with this many folds instead of the ``val_fraction`` split.
        fold: which fold is ``val`` (``0..folds-1``); ``train`` is the other folds.
        per_class: keep only this many images of each class (seeded), for few-shot runs.
        per_class_rest: keep every image *except* those ``per_class`` would keep, so a
            few-shot run can be scored on the rest with the same seed.
        transforms: an albumentations pipeline applied per sample (``image=`` HWC uint8).

    Items: ``(image ndarray[H, W, 3] uint8, label int)``.
    """

    def __init__(
        self,
        split: Literal["train", "val", "all"] = "train",
        image_size: int = 32,
        val_fraction: float = 0.2,
        seed: int = 0,
        folds: int | None = None,
        fold: int = 0,
        per_class: int | None = None,
        per_class_rest: bool = False,
        transforms: list | None = None,
    ) -> None:
        from sklearn.datasets import load_digits

        if image_size < 8:
            raise ValueError(
                f"DigitsClassification: image_size must be at least 8, got {image_size}"
            )
        digits = load_digits()
        images = (digits.images * (255.0 / 16.0)).round().astype(np.uint8)  # 0..16 -> 0..255
        labels = digits.target.astype(np.int64)
        index = select_split(
            labels, split, val_fraction=val_fraction, seed=seed, folds=folds, fold=fold
        )
        if per_class is not None:
            index = _per_class(index, labels, per_class, seed, per_class_rest)
        elif per_class_rest:
            raise ValueError("DigitsClassification: per_class_rest needs per_class")
        self.images = np.stack([_to_rgb(images[i], image_size) for i in index])
        self.labels = labels[index]
        self.classes = [str(d) for d in range(10)]
        self.transforms = compose(transforms)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        image = self.images[i]
        if self.transforms is not None:
            image = self.transforms(image=image)["image"]
        return image, int(self.labels[i])


def _per_class(index: np.ndarray, labels: np.ndarray, n: int, seed: int, rest: bool) -> np.ndarray:
    """The first ``n`` of each class in a seeded order (or, with ``rest``, all the others)."""
    if n < 1:
        raise ValueError(f"DigitsClassification: per_class must be at least 1, got {n}")
    rng = np.random.default_rng(seed + 7919)  # its own stream: independent of the split
    keep = []
    for c in np.unique(labels[index]):
        members = rng.permutation(index[labels[index] == c])
        if len(members) < n:
            raise ValueError(
                f"DigitsClassification: class {c} has {len(members)} images, fewer than "
                f"per_class={n}"
            )
        keep.append(members[n:] if rest else members[:n])
    return np.sort(np.concatenate(keep))


def _to_rgb(digit: np.ndarray, size: int) -> np.ndarray:
    big = cv2.resize(digit, (size, size), interpolation=cv2.INTER_LINEAR)
    return np.repeat(big[:, :, None], 3, axis=2)


# The name before datasets were named <Source><Task> (or <Task>Folder): configs and code
# written with it keep working.
DigitsDataset = DigitsClassification
DATASETS.add(
    DigitsClassification, "DigitsDataset", source="cvkit (old name of DigitsClassification)"
)
