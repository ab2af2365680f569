"""ShapesSegmentation: the generated shapes of ``shapes.py`` with a class mask per image.

The images are drawn by ``shapes.draw_scene``, the generator of the detection demo, which also
returns the class of every pixel. Both are written once to a cache folder, images as PNG and
masks as palette PNGs with a split file, and read back through ``SegmentationFolder``, so the
demo takes exactly the path a user's own folder of masks takes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from cvkit.data import shapes
from cvkit.data.generated_cache import cache_root, ensure_generated
from cvkit.data.segmentation import SegmentationFolder
from cvkit.registry import DATASETS

# Bump when the files change: a new version is a new cache folder, never a stale one.
VERSION = "v1"
CLASSES = ("background", *shapes.CLASSES)
DEFAULT_NUM_IMAGES = {"train": 300, "val": 60}
# Pascal VOC's first colours, and its cream for 255 (ignore), so a viewer shows the masks.
_PALETTE = [(0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0)]
_IGNORE_COLOUR = (224, 224, 192)


@DATASETS.register()
class ShapesSegmentation(SegmentationFolder):
    """Generated shapes on real photographs, 4 classes: ``background``, ``circle``, ``square``,
    ``triangle``; a mask per image with the class of every pixel.

    The pictures are those of ``ShapesDetection`` for the same split, size and seed (sides of
    ``0.8..1.25 x image_size``, so a batch is padded, or cropped by the transforms). Shape
    edges are hard (no anti-aliasing): a pixel is a shape's colour exactly where its mask says.

    Generated on first use into ``<root>/shapes-seg-v1/<split>-n<N>-s<size>-seed<S>/``
    (``images/``, ``masks/`` and ``<split>.txt``), atomically, and read from there afterwards.

    Args:
        split: ``"train"`` or ``"val"``; the two never share an image.
        num_images: images in the split; default 300 for train, 60 for val.
        image_size: the typical image side in pixels (at least 64).
        seed: the same seed gives the same files.
        root: the cache folder; default ``$CVKIT_CACHE`` or ``~/.cache/cvkit``.
        transforms: albumentations transforms, moving the mask with the image.

    Items and attributes: those of ``SegmentationFolder``; ``name`` is the file stem.
    """

    def __init__(
        self,
        split: Literal["train", "val"] = "train",
        num_images: int | None = None,
        image_size: int = 128,
        seed: int = 0,
        root: str | None = None,
        transforms: list | None = None,
    ) -> None:
        if split not in DEFAULT_NUM_IMAGES:
            raise ValueError(f"ShapesSegmentation: split must be 'train' or 'val', got {split!r}")
        count = DEFAULT_NUM_IMAGES[split] if num_images is None else num_images
        for name, value, minimum in (("num_images", count, 1), ("image_size", image_size, 64)):
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(
                    f"ShapesSegmentation: {name} must be an integer >= {minimum}, got {value!r}"
                )
        folder = ensure_shapes_segmentation(split, count, image_size, seed, root)
        super().__init__(
            image_dir=str(folder / "images"),
            mask_dir=str(folder / "masks"),
            classes=list(CLASSES),
            split_file=str(folder / f"{split}.txt"),
            transforms=transforms,
        )
        self.split, self.folder = split, folder


def ensure_shapes_segmentation(
    split: str, num_images: int, image_size: int, seed: int, root: str | os.PathLike | None
) -> Path:
    """The split's folder, generated first if it is not in the cache yet (atomically: see
    ``ensure_generated``)."""
    name = f"{split}-n{num_images}-s{image_size}-seed{seed}"
    return ensure_generated(
        cache_root(root) / f"shapes-seg-{VERSION}" / name,
        f"{split}.txt",
        "ShapesSegmentation",
        lambda scratch: write_split(scratch, split, num_images, image_size, seed),
        f"{num_images} {split} images and masks",
    )


def write_split(folder: Path, split: str, num_images: int, image_size: int, seed: int) -> None:
    """Draw the images and masks into ``folder`` and list them in ``folder/<split>.txt``."""
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    photos = shapes._photos()
    palette = [c for rgb in _PALETTE for c in rgb] + [0] * 3 * (255 - len(_PALETTE))
    palette += list(_IGNORE_COLOUR)
    names = []
    for index in range(num_images):
        # The detection demo's stream for this image: the same picture as ShapesDetection.
        rng = np.random.default_rng([seed, shapes._STREAM[split], index])
        picture, _, classes = shapes.draw_scene(rng, image_size, photos)
        name = f"{index:06d}"
        shapes._write_png(folder / "images" / f"{name}.png", picture)
        mask = Image.fromarray(classes)
        mask.putpalette(palette)  # an 'L' image becomes 'P': the values stay the indices
        mask.save(folder / "masks" / f"{name}.png")
        names.append(name)
    # Written last: its presence marks a complete split.
    (folder / f"{split}.txt").write_text("".join(f"{n}\n" for n in names))
