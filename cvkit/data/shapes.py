"""ShapesDetection: a generated COCO-format detection dataset that needs no download.

Coloured circles, squares and triangles are drawn with OpenCV on crops of the photographs that
ship inside scikit-image, written once to a cache folder as a real COCO dataset (a ``.json``
file and PNG images) and then read back through ``CocoDetection``, so the demo exercises
exactly the path a user's own COCO data takes.

Every image is drawn from its own random stream, seeded by ``(seed, split, index)``, so the
files are the same on every machine and run, ``train`` and ``val`` never share an image, and
image ``i`` does not depend on how many images were asked for.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from cvkit.data.coco import CocoDetection
from cvkit.data.generated_cache import cache_root, ensure_generated
from cvkit.registry import DATASETS

# Bump when the drawing changes: a new version is a new cache folder, never a stale one.
VERSION = "v1"
CLASSES = ("circle", "square", "triangle")
DEFAULT_NUM_IMAGES = {"train": 400, "val": 100}
_STREAM = {"train": 0, "val": 1}
# Colour photographs and textures stored inside the scikit-image package (no download).
_PHOTOS = (
    "astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field",
    "immunohistochemistry", "retina", "grass", "gravel", "brick", "camera",
)  # fmt: skip
# Saturated colours, none grey: a photo rarely holds one exactly, so the shapes stand out.
_PALETTE = (
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 90, 190),
    (0, 128, 128), (170, 110, 40),
)  # fmt: skip
_EMPTY_SHARE = 0.06  # images with no object: negatives, as real data has
_MIN_VISIBLE = 0.6  # an earlier shape keeps at least this share of its pixels when overlapped


@DATASETS.register()
class ShapesDetection(CocoDetection):
    """Generated shapes on real photographs, 3 classes: ``circle``, ``square``, ``triangle``.

    Each image is ``image_size`` pixels on a side give or take a quarter (sides drawn from
    ``[0.8, 1.25] x image_size``), a crop of a scikit-image photograph, holding 1-4 filled
    shapes of roughly ``image_size / 16`` to ``image_size / 2.4`` pixels (about 6% of images
    hold none). Shapes may overlap; an earlier shape always keeps most of its pixels. Each
    box is the exact extent of the shape's visible pixels.

    The split is generated on first use into ``<root>/shapes-v1/<split>-n<N>-s<size>-seed<S>/``
    (``<split>.json`` and ``images/``), atomically, and read from there afterwards.

    Args:
        split: ``"train"`` or ``"val"``; the two never share an image.
        num_images: images in the split; default 400 for train, 100 for val.
        image_size: the typical image side in pixels.
        seed: the same seed gives the same files.
        root: the cache folder; default ``$CVKIT_CACHE`` or ``~/.cache/cvkit``.
        transforms: albumentations transforms, box-aware (see ``CocoDetection``).

    Items and attributes: those of ``CocoDetection``.
    """

    def __init__(
        self,
        split: Literal["train", "val"] = "train",
        num_images: int | None = None,
        image_size: int = 192,
        seed: int = 0,
        root: str | None = None,
        transforms: list | None = None,
    ) -> None:
        if split not in _STREAM:
            raise ValueError(f"ShapesDetection: split must be 'train' or 'val', got {split!r}")
        count = DEFAULT_NUM_IMAGES[split] if num_images is None else num_images
        _check_positive("num_images", count, 1)
        _check_positive("image_size", image_size, 64)
        _check_positive("seed", seed, 0)
        folder = ensure_shapes(split, count, image_size, seed, root)
        super().__init__(
            ann_file=str(folder / f"{split}.json"),
            image_dir=str(folder / "images"),
            transforms=transforms,
            class_names=list(CLASSES),
        )
        self.split, self.folder = split, folder


def shapes_folder(
    split: str, num_images: int, image_size: int, seed: int, root: str | os.PathLike | None
) -> Path:
    """Where a split lives; every argument that changes the files is in the name."""
    name = f"{split}-n{num_images}-s{image_size}-seed{seed}"
    return cache_root(root) / f"shapes-{VERSION}" / name


def ensure_shapes(
    split: str, num_images: int, image_size: int, seed: int, root: str | os.PathLike | None
) -> Path:
    """The split's folder, generated first if it is not in the cache yet (atomically: see
    ``ensure_generated``)."""
    return ensure_generated(
        shapes_folder(split, num_images, image_size, seed, root),
        f"{split}.json",
        "ShapesDetection",
        lambda scratch: write_split(scratch, split, num_images, image_size, seed),
        f"{num_images} {split} images",
    )


def write_split(folder: Path, split: str, num_images: int, image_size: int, seed: int) -> None:
    """Draw ``num_images`` images into ``folder/images`` and write ``folder/<split>.json``."""
    (folder / "images").mkdir(parents=True)
    photos = _photos()
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for index in range(num_images):
        rng = np.random.default_rng([seed, _STREAM[split], index])
        picture, objects = draw_image(rng, image_size, photos)
        name = f"{index:06d}.png"
        _write_png(folder / "images" / name, picture)
        image_id = index + 1
        height, width = picture.shape[:2]
        images.append({"id": image_id, "file_name": name, "width": width, "height": height})
        for obj in objects:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, **obj})
    coco = {
        "info": {"description": f"cvkit ShapesDetection {VERSION}", "split": split, "seed": seed},
        "images": images,
        "annotations": annotations,
        "categories": [
            {"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(CLASSES)
        ],
    }
    (folder / f"{split}.json").write_text(json.dumps(coco, separators=(",", ":")))


def draw_image(
    rng: np.random.Generator, image_size: int, photos: list[np.ndarray]
) -> tuple[np.ndarray, list[dict]]:
    """One image and its objects.

    Returns:
        ``(image ndarray[H, W, 3] uint8 RGB, objects)``; each object a dict with COCO's
        ``category_id``, ``bbox`` ``[x, y, w, h]`` (the exact extent of its visible pixels),
        ``area`` (visible pixels), ``iscrowd`` 0 and ``color`` ``[r, g, b]``.
    """
    picture, objects, _ = draw_scene(rng, image_size, photos)
    return picture, objects


def draw_scene(
    rng: np.random.Generator, image_size: int, photos: list[np.ndarray]
) -> tuple[np.ndarray, list[dict], np.ndarray]:
    """``draw_image``'s image and objects, plus the class of every pixel.

    The same random draws as ``draw_image``, so the pictures are the same.

    Returns:
        ``(image, objects, classes)``; ``classes`` is ``ndarray[H, W]`` uint8, 0 where the
        photo shows and ``category_id`` (1 + index into ``CLASSES``) where a shape does.
    """
    height, width = (round(image_size * f) for f in rng.uniform(0.8, 1.25, size=2))
    picture = _background(rng, photos, height, width)
    count = 0 if rng.random() < _EMPTY_SHARE else int(rng.integers(1, 5))
    colours = rng.choice(len(_PALETTE), size=count, replace=False)
    owner = np.full((height, width), -1, dtype=np.int16)  # which shape each pixel shows
    shapes: list[tuple[int, int]] = []  # (class index, full pixel count)
    rgbs: list[list[int]] = []
    for colour in colours:
        placed = _place_shape(rng, owner, shapes, image_size)
        if placed is not None:
            shapes.append(placed)
            rgbs.append([int(c) for c in _PALETTE[colour]])
            picture[owner == len(shapes) - 1] = rgbs[-1]  # later shapes paint over earlier
    objects = []
    for k, ((cls, _), rgb) in enumerate(zip(shapes, rgbs)):
        ys, xs = np.nonzero(owner == k)
        x0, y0 = int(xs.min()), int(ys.min())
        box = [x0, y0, int(xs.max()) + 1 - x0, int(ys.max()) + 1 - y0]
        objects.append(
            {"category_id": cls + 1, "bbox": box, "area": len(xs), "iscrowd": 0, "color": rgb}
        )
    category = np.array([0] + [cls + 1 for cls, _ in shapes], dtype=np.uint8)
    return picture, objects, category[owner + 1]  # owner -1 (no shape) -> 0


def _place_shape(
    rng: np.random.Generator, owner: np.ndarray, shapes: list, image_size: int
) -> tuple[int, int] | None:
    """Draw one random shape into ``owner`` (as index ``len(shapes)``) if it fits.

    A placement that would hide more than ``1 - _MIN_VISIBLE`` of an earlier shape is drawn
    again, up to 10 times; then the shape is left out.
    """
    low, high = max(8, image_size / 16), image_size / 2.4
    for _ in range(10):
        cls = int(rng.integers(len(CLASSES)))
        size = float(rng.uniform(low, high))
        mask = _shape_mask(rng, cls, size, owner.shape)
        if mask is None:
            continue
        under = owner[mask]
        hidden = np.bincount(under[under >= 0], minlength=len(shapes))
        left = [np.count_nonzero(owner == k) - hidden[k] for k in range(len(shapes))]
        if all(left[k] >= _MIN_VISIBLE * full for k, (_, full) in enumerate(shapes)):
            owner[mask] = len(shapes)
            return cls, int(np.count_nonzero(mask))
    return None


def _shape_mask(
    rng: np.random.Generator, cls: int, size: float, shape: tuple[int, int]
) -> np.ndarray | None:
    """A bool mask of one filled shape about ``size`` pixels across, inside the image."""
    height, width = shape
    # The radius of the circle around the shape, so that any rotation stays inside the image.
    reach = size / 2 * (1.0, np.sqrt(2), 2 / np.sqrt(3))[cls]
    if 2 * reach + 2 > min(height, width):
        return None
    cx = rng.uniform(reach + 1, width - reach - 1)
    cy = rng.uniform(reach + 1, height - reach - 1)
    canvas = np.zeros(shape, dtype=np.uint8)
    if CLASSES[cls] == "circle":
        cv2.circle(canvas, (round(cx), round(cy)), round(size / 2), 1, -1, cv2.LINE_8)
    else:
        corners = 4 if CLASSES[cls] == "square" else 3
        tilt = rng.uniform(-np.pi / 6, np.pi / 6) if corners == 4 else rng.uniform(0, 2 * np.pi)
        angles = tilt + np.pi / 4 + np.arange(corners) * 2 * np.pi / corners
        if corners == 3:
            angles -= np.pi / 4
        points = np.stack([cx + reach * np.cos(angles), cy + reach * np.sin(angles)], axis=1)
        # Hard edges (LINE_8, no anti-aliasing): a pixel is the shape's colour or not at all.
        cv2.fillPoly(canvas, [np.round(points).astype(np.int32)], 1, cv2.LINE_8)
    return canvas.astype(bool)


def _background(
    rng: np.random.Generator, photos: list[np.ndarray], height: int, width: int
) -> np.ndarray:
    """A random crop of a random photo, resized to ``height x width``, maybe mirrored."""
    photo = photos[int(rng.integers(len(photos)))]
    ph, pw = photo.shape[:2]
    scale = rng.uniform(0.35, 1.0) * min(ph / height, pw / width)  # crop size / output size
    ch, cw = max(8, int(height * scale)), max(8, int(width * scale))
    y, x = int(rng.integers(ph - ch + 1)), int(rng.integers(pw - cw + 1))
    crop = cv2.resize(photo[y : y + ch, x : x + cw], (width, height), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(crop[:, ::-1] if rng.random() < 0.5 else crop)


@lru_cache(maxsize=1)
def _photos_cached() -> tuple[np.ndarray, ...]:
    try:
        from skimage import data
    except ImportError as err:
        raise ImportError(
            "ShapesDetection draws on the photographs that ship with scikit-image, which is not "
            "installed: pip install scikit-image (or cvkit[dev]); a generated cache folder "
            "can be used without it"
        ) from err
    photos = []
    for name in _PHOTOS:
        image = getattr(data, name)()
        if image.ndim == 2:  # grey textures: three equal channels
            image = np.repeat(image[:, :, None], 3, axis=2)
        image = np.ascontiguousarray(image[:, :, :3])
        # Crops are shrunk to ~200 px anyway; starting from at most 512 px halves the time.
        shrink = 512 / max(image.shape[:2])
        if shrink < 1:
            size = (round(image.shape[1] * shrink), round(image.shape[0] * shrink))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        photos.append(image)
    return tuple(photos)


def _photos() -> list[np.ndarray]:
    return list(_photos_cached())


def _write_png(path: Path, rgb: np.ndarray) -> None:
    ok, buffer = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"OpenCV could not encode '{path}' as PNG")
    buffer.tofile(str(path))  # works for any path, where cv2.imwrite needs ASCII on Windows


def _check_positive(name: str, value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"ShapesDetection: {name} must be an integer >= {minimum}, got {value!r}")


# The name before datasets were named <Source><Task> (or <Task>Folder): configs and code
# written with it keep working.
ShapesDataset = ShapesDetection
DATASETS.add(ShapesDetection, "ShapesDataset", source="cvkit (old name of ShapesDetection)")
