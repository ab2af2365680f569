"""Batching and DataLoader construction."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from cvkit.structures import ClsBatch


def collate_classification(items: Sequence[tuple[np.ndarray, int]]) -> ClsBatch:
    """``[(image HWC uint8, label)]`` -> ``ClsBatch(images [B, C, H, W] uint8, labels [B])``.

    Raises:
        ValueError: if the images differ in size (add a resize or crop to the pipeline).
    """
    shapes = {item[0].shape for item in items}
    if len(shapes) != 1:
        raise ValueError(
            f"images in one batch differ in shape {sorted(shapes)}; add a Resize or "
            "RandomResizedCrop to the data transforms so every image has one size"
        )
    images = torch.from_numpy(np.stack([item[0] for item in items])).permute(0, 3, 1, 2)
    labels = torch.tensor([item[1] for item in items], dtype=torch.int64)
    return ClsBatch(images.contiguous(), labels)


def build_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    shuffle: bool,
    num_workers: int = 0,
    seed: int = 0,
    drop_last: bool = False,
) -> DataLoader:
    """A DataLoader with cvkit's collate and a seeded shuffle (same order on every run)."""
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        collate_fn=collate_classification,
        generator=generator,
        drop_last=drop_last,
        persistent_workers=num_workers > 0,
    )
