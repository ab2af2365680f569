"""Embedded datasets that need no download: real data shipped inside installed packages."""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np

from cvkit.registry import DATASETS


@DATASETS.register()
class DigitsDataset:
    """scikit-learn's 1,797 real 8x8 handwritten digits as RGB images, 10 classes.

    The split is stratified and seeded, so ``train`` and ``val`` with the same seed never
    share an image.

    Args:
        split: ``"train"``, ``"val"`` or ``"all"``.
        image_size: the 8x8 digits are resized (bilinear) to ``image_size`` squared.
        val_fraction: share of each class that goes to ``val``.
        seed: seed of the split.
        transforms: an albumentations pipeline applied per sample (``image=`` HWC uint8).

    Items: ``(image ndarray[H, W, 3] uint8, label int)``.
    """

    def __init__(
        self,
        split: Literal["train", "val", "all"] = "train",
        image_size: int = 32,
        val_fraction: float = 0.2,
        seed: int = 0,
        transforms: list | None = None,
    ) -> None:
        from sklearn.datasets import load_digits

        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"DigitsDataset: val_fraction must be in (0, 1), got {val_fraction}")
        if image_size < 8:
            raise ValueError(f"DigitsDataset: image_size must be at least 8, got {image_size}")
        digits = load_digits()
        images = (digits.images * (255.0 / 16.0)).round().astype(np.uint8)  # 0..16 -> 0..255
        labels = digits.target.astype(np.int64)
        index = _stratified_split(labels, val_fraction, seed, split)
        self.images = np.stack([_to_rgb(images[i], image_size) for i in index])
        self.labels = labels[index]
        self.classes = [str(d) for d in range(10)]
        self.transforms = _compose(transforms)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        image = self.images[i]
        if self.transforms is not None:
            image = self.transforms(image=image)["image"]
        return image, int(self.labels[i])


def _stratified_split(labels: np.ndarray, val_fraction: float, seed: int, split: str) -> np.ndarray:
    if split == "all":
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    chosen = []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_val = max(1, round(len(idx) * val_fraction))
        chosen.append(idx[:n_val] if split == "val" else idx[n_val:])
    return np.sort(np.concatenate(chosen))


def _to_rgb(digit: np.ndarray, size: int) -> np.ndarray:
    big = cv2.resize(digit, (size, size), interpolation=cv2.INTER_LINEAR)
    return np.repeat(big[:, :, None], 3, axis=2)


def _compose(transforms: list | None):
    if not transforms:
        return None
    import albumentations as A

    return A.Compose(transforms)
