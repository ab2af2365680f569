"""CocoSegmentation: per-pixel class masks rendered from a COCO file's polygons and RLEs.

The instance masks of an image are painted into one index mask when the item is read, so a
COCO instance-segmentation file (or any tool that exports one) trains an FCN-style model
directly, with no conversion step and no second copy of the data on disk.
"""

from __future__ import annotations

import logging
import warnings
from collections import defaultdict
from typing import Any

import numpy as np

from cvkit.coco_file import CocoFormatError, image_paths, load_coco_json
from cvkit.data.image_io import read_image
from cvkit.data.segmentation import segmentation_item
from cvkit.data.segmentation_checks import (
    MaskError,
    MaskSpec,
    check_ignore_index,
    check_image_sizes,
)
from cvkit.data.transforms import compose_segmentation
from cvkit.registry import DATASETS

logger = logging.getLogger("cvkit.data")

# (label, iscrowd, segmentation) of one annotation, polygons already cleaned.
_Instance = tuple[int, bool, Any]


@DATASETS.register()
class CocoSegmentation:
    """A COCO file with instance masks, read as semantic masks: one class index per pixel.

    Labels: category ids become contiguous labels in sorted category-id order, as in
    ``CocoDetection``. With ``background_class`` (the Pascal VOC convention) label 0 is
    ``"background"``, every unannotated pixel, and category ``i`` (in that order) is label
    ``i + 1``; without it categories are labels ``0..K-1`` and unannotated pixels are
    ``ignore_index``, which suits files that annotate every pixel (COCO-Stuff).

    Painting order, where instances overlap: larger instances first, so a smaller one lying on
    a larger one (a cup on a table) stays visible; equal areas keep file order. Crowd regions
    (``iscrowd: 1``) become ``ignore_index`` wherever no single instance covers the pixel: a
    crowd is a coarse outline whose pixels are not all of its class.

    The file is checked at construction (``cvkit.coco_file`` plus every ``segmentation``: polygons
    or RLE of the image's size), and every image file's size against the file (headers only).
    Polygons with fewer than 3 points are dropped with one warning: pycocotools would read a
    4-number polygon as a box.

    Args:
        ann_file: the COCO ``.json`` file with ``segmentation`` on every annotation.
        image_dir: the folder that the images' ``file_name`` entries are relative to.
        transforms: albumentations transforms, moving the mask with the image
            (``transforms.compose_segmentation``).
        background_class: add class 0 ``"background"`` for unannotated pixels.
        class_names: if set, ``classes`` (with ``"background"`` first when added) must equal it.
        ignore_index: the mask value of crowd and (without a background class) unannotated
            pixels.
        exif_orientation: turn images upright by their EXIF tag (as ``read_image`` does).

    Items: as ``SegmentationFolder``'s; ``name`` is the image's ``file_name`` and
    ``image_id`` its COCO id.

    Attributes:
        classes: ``[K]`` names; ``cat_ids``: the COCO id of each category label (background
        has none); ``label_of_cat``: category id -> label; ``image_ids``, ``files``,
        ``sizes``: per image.

    Raises:
        FileNotFoundError: the annotation file, ``image_dir`` or an image is missing.
        CocoFormatError: (a ``ValueError``) the file is not valid COCO or a ``segmentation`` is
            malformed; the message names the annotation id.
        MaskError: image files whose size differs from the file's, all listed.
    """

    def __init__(
        self,
        ann_file: str,
        image_dir: str,
        transforms: list | None = None,
        background_class: bool = True,
        class_names: list[str] | None = None,
        ignore_index: int = 255,
        exif_orientation: bool = True,
    ) -> None:
        self.ann_file, self.image_dir = str(ann_file), str(image_dir)
        data = load_coco_json(self.ann_file)
        images = sorted(data["images"], key=lambda image: image["id"])
        self.files = image_paths(images, self.image_dir, self.ann_file)
        self.image_ids = [image["id"] for image in images]
        self.sizes = [(image["height"], image["width"]) for image in images]
        self.names = [str(image["file_name"]) for image in images]
        names = {c["id"]: c["name"] for c in data["categories"]}
        self.cat_ids = sorted(names)
        self.classes = _classes([names[c] for c in self.cat_ids], background_class, ann_file)
        if class_names is not None and list(class_names) != self.classes:
            raise ValueError(
                f"class_names {list(class_names)} do not match the classes of COCO file "
                f"'{ann_file}' (category-id order, background first if added): {self.classes}"
            )
        check_ignore_index(ignore_index, len(self.classes))
        offset = 1 if background_class else 0
        self.label_of_cat = {cat: offset + i for i, cat in enumerate(self.cat_ids)}
        self.background_class, self.ignore_index = background_class, ignore_index
        self.spec = MaskSpec(len(self.classes), ignore_index, exif_orientation)
        self.transforms = compose_segmentation(transforms, len(self.classes), ignore_index)
        self.instances = _instances(data, self.image_ids, self.sizes, self.label_of_cat, ann_file)
        check_image_sizes(self.files, self.sizes, f"COCO file '{ann_file}'", exif_orientation)

    def __len__(self) -> int:
        return len(self.files)

    def render_mask(self, i: int) -> np.ndarray:
        """The class-index mask of image ``i`` at its file size, before any transform."""
        height, width = self.sizes[i]
        dtype = np.uint8 if max(len(self.classes), self.ignore_index + 1) <= 256 else np.uint16
        empty = 0 if self.background_class else self.ignore_index
        out = np.full((height, width), empty, dtype=dtype)
        painted = np.zeros((height, width), dtype=bool)
        crowd = np.zeros((height, width), dtype=bool)
        shapes = []
        for label, iscrowd, segm in self.instances[i]:
            binary = decode_segmentation(segm, height, width)
            if iscrowd:
                crowd |= binary
            else:
                shapes.append((int(binary.sum()), label, binary))
        # Larger first, so smaller instances on top stay visible; the sort is stable.
        for _, label, binary in sorted(shapes, key=lambda s: -s[0]):
            out[binary] = label
            painted |= binary
        out[crowd & ~painted] = self.ignore_index
        return out

    def __getitem__(self, i: int) -> dict[str, Any]:
        image = read_image(self.files[i], exif_orientation=self.spec.exif_orientation)
        if image.shape[:2] != tuple(self.sizes[i]):
            height, width = self.sizes[i]
            raise MaskError(
                f"image '{self.files[i]}' decodes to {image.shape[1]}x{image.shape[0]} but COCO "
                f"file '{self.ann_file}' says {width}x{height}: its masks would not fit"
            )
        mask = self.render_mask(i)
        item = segmentation_item(image, mask, self.names[i], self.transforms, self.spec)
        item["image_id"] = self.image_ids[i]
        return item

    def __repr__(self) -> str:
        return (
            f"CocoSegmentation('{self.ann_file}': {len(self)} images, "
            f"{sum(map(len, self.instances))} instances, {len(self.classes)} classes)"
        )


def decode_segmentation(segm: Any, height: int, width: int) -> np.ndarray:
    """A COCO ``segmentation`` (polygons, RLE or compressed RLE) -> ``bool [height, width]``.

    The same steps as ``pycocotools.coco.COCO.annToMask``, without building a COCO index.
    """
    from pycocotools import mask as coco_mask

    if isinstance(segm, list):  # polygons: one object may have several parts
        if not segm:
            return np.zeros((height, width), dtype=bool)
        rle = coco_mask.merge(coco_mask.frPyObjects(segm, height, width))
    elif isinstance(segm["counts"], list):  # uncompressed RLE (crowd regions)
        rle = coco_mask.frPyObjects(segm, height, width)
    else:
        rle = segm
    with warnings.catch_warnings():
        # pycocotools 2.0.x under NumPy 2 warns about its own __array__ on every decode.
        warnings.filterwarnings("ignore", "__array__ implementation", DeprecationWarning)
        return coco_mask.decode(rle).astype(bool)


def _classes(names: list[str], background_class: bool, ann_file: str) -> list[str]:
    if not background_class:
        return names
    if "background" in names:
        raise ValueError(
            f"COCO file '{ann_file}' has a category named 'background' and background_class "
            "is true, which would add a second one: set background_class: false"
        )
    return ["background", *names]


def _instances(
    data: dict[str, Any],
    image_ids: list[int],
    sizes: list[tuple[int, int]],
    label_of_cat: dict[int, int],
    ann_file: str,
) -> list[list[_Instance]]:
    """Per image, its annotations as ``(label, iscrowd, segmentation)``, checked, file order."""
    row_of = {image_id: row for row, image_id in enumerate(image_ids)}
    per_image: dict[int, list[_Instance]] = defaultdict(list)
    dropped: list[int] = []
    for ann in data["annotations"]:
        row = row_of[ann["image_id"]]
        segm = _checked_segmentation(ann, sizes[row], ann_file, dropped)
        per_image[row].append((label_of_cat[ann["category_id"]], bool(ann.get("iscrowd")), segm))
    if dropped:
        logger.warning(
            "CocoSegmentation '%s': dropped %d polygons with fewer than 3 points (e.g. in "
            "annotation id %d)",
            ann_file,
            len(dropped),
            dropped[0],
        )
    return [per_image[row] for row in range(len(image_ids))]


def _checked_segmentation(
    ann: dict, size: tuple[int, int], ann_file: str, dropped: list[int]
) -> Any:
    """The annotation's ``segmentation``, checked; polygons under 3 points removed."""
    segm, ann_id = ann.get("segmentation"), ann["id"]
    where = f"COCO file '{ann_file}': annotation id {ann_id} (image id {ann['image_id']})"
    if isinstance(segm, list):
        parts = []
        for part in segm:
            if not isinstance(part, list) or not all(_is_number(v) for v in part):
                raise CocoFormatError(
                    f"{where} has a polygon {str(part)[:60]}; a polygon is a flat list of "
                    "numbers [x1, y1, x2, y2, ...]"
                )
            if len(part) >= 6 and len(part) % 2 == 0:
                parts.append(part)
            else:
                dropped.append(ann_id)
        return parts
    if isinstance(segm, dict) and isinstance(segm.get("counts"), (list, str)):
        if list(segm.get("size", [])) != [size[0], size[1]]:
            raise CocoFormatError(
                f"{where} has an RLE of size {segm.get('size')!r} but its image is "
                f"[{size[0]}, {size[1]}] (height, width)"
            )
        return segm
    raise CocoFormatError(
        f"{where} has segmentation {str(segm)[:60]!s}; CocoSegmentation needs polygons "
        "([[x1, y1, ...], ...]) or an RLE ({'size': [h, w], 'counts': ...}) on every "
        "annotation: is this a detection-only file?"
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
