"""CocoDetection: images and boxes from a COCO-format annotation file, for detection.

COCO's ``[x, y, width, height]`` boxes become cvkit's ``xyxy`` here, at the edge, and nowhere
else (through ``ops.box_convert``). The file is read and checked whole at construction
(:mod:`cvkit.coco_file`, the reader ``cvkit coco-eval`` shares), boxes are clipped to their
image and degenerate ones dropped once, with one warning that counts what changed. One file
can be split into seeded, stratified ``train`` and ``val`` images (:mod:`cvkit.data.splits`).
"""

from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from cvkit.coco_file import image_paths, load_coco_json
from cvkit.data.image_io import read_image
from cvkit.data.splits import check_split, select_split
from cvkit.data.transforms import compose_detection
from cvkit.ops import box_convert
from cvkit.registry import DATASETS

logger = logging.getLogger("cvkit.data")


@DATASETS.register()
class CocoDetection:
    """A COCO detection file and its image folder; every item an image with its boxes.

    Category ids become contiguous labels ``0..K-1`` in sorted category-id order. Crowd
    annotations (``iscrowd: 1``) are kept and flagged (matching ignores them); images without
    annotations are kept as negatives unless ``keep_empty`` is false. Boxes reaching outside
    their image are clipped to it, and boxes narrower or shorter than ``min_box_size`` after
    clipping are dropped; a missing ``iscrowd`` or ``area`` is filled (0, the box area). All of
    these are counted in one warning on the ``cvkit.data`` logger. Images are decoded with
    ``image_io.read_image`` when an item is read.

    One file can serve as both train and val: ``split`` ``"train"`` or ``"val"`` keeps a
    seeded share of its images (``cvkit.data.splits.stratified_split``), the same on every
    machine; a ``train`` and a ``val`` dataset built with the same ``val_fraction`` and
    ``seed`` never share an image and together hold every image of the file. The split is
    stratified by image: each image counts as the category most of its annotations have
    (crowd ones included; a tie goes to the smallest category id), images without
    annotations are a group of their own, and each group sends ``val_fraction`` of its images
    to ``val`` (a group of one image goes to ``train``). It depends only on the file, the
    seed and ``val_fraction``, so ``keep_empty`` and ``min_box_size`` (applied after it) never
    move an image from one part to the other. For separate train and val files, point two
    datasets with ``split="all"`` at them.

    Args:
        ann_file: the COCO ``.json`` file.
        image_dir: the folder that the images' ``file_name`` entries are relative to.
        transforms: albumentations transforms; they move the boxes with the image
            (``transforms.compose_detection``).
        min_box_size: boxes whose width or height (pixels, after clipping) is below this are
            dropped at load time.
        keep_empty: keep images that have no annotations (after dropping degenerate boxes).
        class_names: if set, the category names (in category-id order) must equal this list.
        min_visibility: share of a box's area that must survive a crop for it to be kept.
        split: ``"train"``, ``"val"`` or ``"all"`` (every image of the file).
        val_fraction: share of each group of images that goes to ``val``.
        seed: seed of the split; use the same one for ``train`` and ``val``.

    Items: a dict ``{"image": ndarray[H, W, 3] uint8 RGB, "boxes": float32 [N, 4] xyxy
    pixels, "labels": int64 [N], "iscrowd": bool [N], "image_id": int, "orig_size": (H0, W0)}``
    where ``H, W`` and the boxes are after the transforms and ``orig_size`` is the file's size.

    Attributes:
        classes: ``[K]`` category names, label ``i`` is ``classes[i]``; those of the whole
            file in every split, so ``train`` and ``val`` share one label map.
        cat_ids: ``[K]`` the COCO category id of each label.
        label_of_cat: COCO category id -> label.
        split: the ``split`` argument.
        image_ids, files, sizes: per image of the split, its id, path and ``(height, width)``.
        targets: per image, ``(boxes [N, 4], labels [N], iscrowd [N])`` as loaded (clipped,
            degenerate boxes dropped), before any transform.
        coco: the ``pycocotools.coco.COCO`` index of the split: the file with only the
            split's images and their annotations (all categories), with ``iscrowd`` and
            ``area`` filled in, for COCOeval; it keeps the boxes as written, unclipped. So a
            ``val`` split's COCO mAP counts its own images only, exactly what ``cvkit
            coco-eval`` gives on a file holding only those images.

    Raises:
        FileNotFoundError: the annotation file, ``image_dir`` or an image file is missing.
        CocoFormatError: (a ``ValueError``) the file is not valid COCO; the message names the
            file, the image or annotation id and the problem.
        ValueError: an argument is out of range (``split``, ``val_fraction``, ``seed``,
            ``min_box_size``; the message names it), the split has no images, or
            ``class_names`` does not match.
    """

    def __init__(
        self,
        ann_file: str,
        image_dir: str,
        transforms: list | None = None,
        min_box_size: float = 1.0,
        keep_empty: bool = True,
        class_names: list[str] | None = None,
        min_visibility: float = 0.0,
        split: Literal["train", "val", "all"] = "all",
        val_fraction: float = 0.2,
        seed: int = 0,
    ) -> None:
        if isinstance(min_box_size, bool) or not min_box_size >= 0:
            raise ValueError(f"min_box_size must be a number >= 0, got {min_box_size!r}")
        check_split(split, val_fraction, seed)  # before a large file is read
        self.ann_file, self.image_dir = str(ann_file), str(image_dir)
        data = load_coco_json(self.ann_file)
        names = {c["id"]: c["name"] for c in data["categories"]}
        self.cat_ids = sorted(names)
        self.classes = [names[c] for c in self.cat_ids]
        self.label_of_cat = {cat_id: label for label, cat_id in enumerate(self.cat_ids)}
        _check_class_names(class_names, self.classes, self.ann_file)
        images = sorted(data["images"], key=lambda image: image["id"])
        if split != "all":
            images = _split_images(
                data, images, self.label_of_cat, split, val_fraction, seed, self.ann_file
            )
            data = _subset(data, images)
        self.split = split
        notes = _fill_defaults(data["annotations"])
        self.files = image_paths(images, self.image_dir, self.ann_file)
        self.image_ids = [image["id"] for image in images]
        self.sizes = [(image["height"], image["width"]) for image in images]
        self.targets = _image_targets(
            data["annotations"], self.image_ids, self.sizes, self.label_of_cat, min_box_size, notes
        )
        where = f"'{self.ann_file}'" + ("" if split == "all" else f" (split {split!r})")
        _warn(where, notes, min_box_size)
        if not keep_empty:
            self._keep([i for i, t in enumerate(self.targets) if len(t[1]) > 0])
        self.coco = _coco_index(data)
        self.min_box_size = min_box_size
        self.transforms = compose_detection(transforms, min_visibility)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict[str, Any]:
        image = read_image(self.files[i])
        self._check_size(i, image)
        boxes, labels, iscrowd = (a.copy() for a in self.targets[i])
        if self.transforms is not None:
            out = self.transforms(image=image, bboxes=boxes, labels=labels, iscrowd=iscrowd)
            image = out["image"]
            boxes = np.asarray(out["bboxes"], dtype=np.float32).reshape(-1, 4)
            labels = np.asarray(out["labels"], dtype=np.int64).reshape(-1)
            iscrowd = np.asarray(out["iscrowd"], dtype=bool).reshape(-1)
            # A resize can round a sliver to zero width; such a box has no extent to learn.
            keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
            boxes, labels, iscrowd = boxes[keep], labels[keep], iscrowd[keep]
        return {
            "image": image,
            "boxes": boxes,
            "labels": labels,
            "iscrowd": iscrowd,
            "image_id": self.image_ids[i],
            "orig_size": self.sizes[i],
        }

    def __repr__(self) -> str:
        split = "" if self.split == "all" else f", split={self.split!r}"
        return (
            f"{type(self).__name__}('{self.ann_file}'{split}: {len(self)} images, "
            f"{sum(len(t[1]) for t in self.targets)} boxes, {len(self.classes)} classes)"
        )

    def _keep(self, rows: list[int]) -> None:
        for name in ("files", "image_ids", "sizes", "targets"):
            values = getattr(self, name)
            setattr(self, name, [values[r] for r in rows])

    def _check_size(self, i: int, image: np.ndarray) -> None:
        height, width = self.sizes[i]
        if image.shape[:2] == (height, width):
            return
        swapped = image.shape[:2] == (width, height)
        hint = (
            "; width and height are swapped, which usually means the file has an EXIF "
            "orientation that the annotation tool did not apply"
            if swapped
            else ""
        )
        raise ValueError(
            f"image file '{self.files[i]}' (image id {self.image_ids[i]}) is "
            f"{image.shape[1]}x{image.shape[0]} pixels but COCO file '{self.ann_file}' says "
            f"width {width}, height {height}: its boxes would not fit the pixels{hint}"
        )


@dataclass
class _Notes:
    """What loading changed, for the one warning: counts and an example annotation id each."""

    total: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    examples: dict[str, int] = field(default_factory=dict)

    def add(self, kind: str, ann_ids: list[int]) -> None:
        if ann_ids:
            self.counts[kind] = self.counts.get(kind, 0) + len(ann_ids)
            self.examples.setdefault(kind, ann_ids[0])


def _split_groups(
    annotations: list[dict], images: list[dict], label_of_cat: dict[int, int]
) -> np.ndarray:
    """Per image, the group a stratified split keeps the share of: ``int64 [N]``.

    The label of the category most of the image's annotations have (crowd ones too; a tie
    goes to the smallest label, which is the smallest category id), ``-1`` for an image
    without annotations.
    """
    groups = np.full(len(images), -1, dtype=np.int64)
    if not annotations:
        return groups
    row_of = {image["id"]: row for row, image in enumerate(images)}
    rows = np.array([row_of[a["image_id"]] for a in annotations], dtype=np.int64)
    labels = np.array([label_of_cat[a["category_id"]] for a in annotations], dtype=np.int64)
    width = len(label_of_cat)
    pairs, counts = np.unique(rows * width + labels, return_counts=True)
    pair_rows, pair_labels = np.divmod(pairs, width)
    order = np.lexsort((pair_labels, -counts, pair_rows))  # by row, most counted, smallest
    first = order[np.r_[True, pair_rows[order][1:] != pair_rows[order][:-1]]]
    groups[pair_rows[first]] = pair_labels[first]
    return groups


def _split_images(
    data: dict[str, Any],
    images: list[dict],
    label_of_cat: dict[int, int],
    split: str,
    val_fraction: float,
    seed: int,
    ann_file: str,
) -> list[dict]:
    """The images of ``split`` (``"train"`` or ``"val"``), in id order, stratified by
    ``_split_groups``.

    Raises:
        ValueError: the split has no images.
    """
    source = f"COCO file '{ann_file}'"
    if not images:
        raise ValueError(f"{source} has no images to split into train and val")
    groups = _split_groups(data["annotations"], images, label_of_cat)
    keep = select_split(groups, split, val_fraction=val_fraction, seed=seed)
    if keep.size == 0:
        raise ValueError(
            f"split {split!r} of {source} has no images: a group of a single image always "
            "goes to train; add images, or use split: all"
        )
    return [images[i] for i in keep]


def _subset(data: dict[str, Any], images: list[dict]) -> dict[str, Any]:
    """``data`` with only ``images`` and their annotations; every category, every other key."""
    kept = {image["id"] for image in images}
    annotations = [a for a in data["annotations"] if a["image_id"] in kept]
    return {**data, "images": images, "annotations": annotations}


def _fill_defaults(annotations: list[dict]) -> _Notes:
    """Fill a missing ``iscrowd`` (0) and ``area`` (box area) in place, as COCOeval needs them."""
    notes = _Notes(total=len(annotations))
    no_crowd = [a["id"] for a in annotations if "iscrowd" not in a]
    no_area = [a["id"] for a in annotations if "area" not in a]
    for ann in annotations:
        ann.setdefault("iscrowd", 0)
        ann.setdefault("area", float(ann["bbox"][2] * ann["bbox"][3]))
    notes.add("iscrowd", no_crowd)
    notes.add("area", no_area)
    return notes


def _image_targets(
    annotations: list[dict],
    image_ids: list[int],
    sizes: list[tuple[int, int]],
    label_of_cat: dict[int, int],
    min_box_size: float,
    notes: _Notes,
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per image ``(boxes float32 [N, 4] xyxy, labels int64 [N], iscrowd bool [N])``.

    Boxes are clipped to their image, then those narrower or shorter than ``min_box_size``
    are dropped; both are recorded in ``notes``.
    """
    row_of = {image_id: row for row, image_id in enumerate(image_ids)}
    rows = np.array([row_of[a["image_id"]] for a in annotations], dtype=np.int64)
    ann_ids = np.array([a["id"] for a in annotations], dtype=np.int64)
    xywh = np.array([a["bbox"] for a in annotations], dtype=np.float64).reshape(-1, 4)
    xyxy = box_convert(torch.from_numpy(xywh), "xywh", "xyxy").numpy()  # float64, [N, 4]
    height_width = np.array(sizes, dtype=np.float64).reshape(-1, 2)[rows]
    limits = np.concatenate([height_width[:, ::-1], height_width[:, ::-1]], axis=1)
    clipped = np.clip(xyxy, 0.0, limits)
    extent = clipped[:, 2:] - clipped[:, :2]
    # `<= 0` as well: with min_box_size 0 a box must still have an extent.
    keep = ~((extent < min_box_size) | (extent <= 0)).any(axis=1)
    moved = (clipped != xyxy).any(axis=1) & keep
    notes.add("dropped", ann_ids[~keep].tolist())
    notes.add("clipped", ann_ids[moved].tolist())

    labels = np.array([label_of_cat[a["category_id"]] for a in annotations], dtype=np.int64)
    crowd = np.array([bool(a["iscrowd"]) for a in annotations], dtype=bool)
    kept = np.flatnonzero(keep)
    order = kept[np.argsort(rows[kept], kind="stable")]  # by image, file order within
    bounds = np.searchsorted(rows[order], np.arange(len(image_ids) + 1))
    boxes = clipped.astype(np.float32)
    return [
        (boxes[idx], labels[idx], crowd[idx])
        for idx in (order[bounds[r] : bounds[r + 1]] for r in range(len(image_ids)))
    ]


def _warn(where: str, notes: _Notes, min_box_size: float) -> None:
    what = {
        "dropped": f"dropped {{n}} of {notes.total} boxes narrower or shorter than "
        f"min_box_size={min_box_size:g} px after clipping",
        "clipped": "clipped {n} boxes that reached outside their image",
        "iscrowd": "set a missing 'iscrowd' to 0 in {n} annotations",
        "area": "set a missing 'area' to the box area in {n} annotations",
    }
    parts = [
        f"{text.format(n=notes.counts[kind])} (e.g. annotation id {notes.examples[kind]})"
        for kind, text in what.items()
        if kind in notes.counts
    ]
    if parts:
        logger.warning("CocoDetection %s: %s", where, "; ".join(parts))


def _check_class_names(expected: list[str] | None, found: list[str], ann_file: str) -> None:
    if expected is not None and list(expected) != found:
        raise ValueError(
            f"class_names {list(expected)} do not match the categories of COCO file "
            f"'{ann_file}' (in category-id order): {found}; fix class_names or the file"
        )


def _coco_index(data: dict[str, Any]):
    """A pycocotools ``COCO`` over the checked data, without its progress prints."""
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco
