"""SegmentationFolder: images and index masks in two folders, paired by name, for FCN-style
semantic segmentation.

Every pair is checked when the dataset is built (``segmentation_checks``), so a mask of the
wrong size, a colour mask or a value that is no class stops the run before the first step with
the file and what was found, never as a CUDA assert hundreds of steps in.
"""

from __future__ import annotations

import glob
import logging
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np

from cvkit.data.image_folder import IMAGE_EXTENSIONS
from cvkit.data.image_io import read_image
from cvkit.data.segmentation_checks import (
    MaskError,
    MaskSpec,
    check_ignore_index,
    check_pairs,
    read_mask,
    value_counts,
)
from cvkit.data.transforms import compose_segmentation
from cvkit.registry import DATASETS

logger = logging.getLogger("cvkit.data")


@DATASETS.register()
class SegmentationFolder:
    """Images in ``image_dir``, their index masks in ``mask_dir``, paired by name.

    A file's name is its path under its folder minus its suffix: ``img/a/b.jpg`` and
    ``masks/a/b.png`` are the pair ``a/b``. Suffixes are whole endings, so Cityscapes-style
    names pair too (``image_suffixes: [_leftImg8bit.png]``, ``mask_suffix:
    _gtFine_labelIds.png``). Without ``split_file`` every image is used and must have a mask
    (masks without an image are ignored, with a warning); with one, only the names it lists
    (one per line, Pascal VOC's ``ImageSets/Segmentation/train.txt`` format).

    A mask's pixel values are class indices ``0..K-1``, and ``ignore_index`` marks unlabelled
    pixels: 8-bit grayscale, palette ('P', read as its indices, as VOC ships them) or 16-bit
    PNGs (see ``segmentation_checks.read_mask``).

    When the dataset is built, every pair is checked in parallel threads: that the mask has its
    image's size (both from the file headers) and is not a colour picture; with ``check:
    full`` (the default) every mask is also decoded and its values checked, at a few ms
    per VOC-sized mask per core. ``check: sizes`` skips the decoding for very large datasets;
    the values are then checked as each item is read. All bad files are reported together.

    Args:
        image_dir: the folder of images (any format ``read_image`` decodes).
        mask_dir: the folder of index masks (may be ``image_dir`` itself).
        classes: class names in index order; or give ``num_classes`` only.
        num_classes: the number of classes when ``classes`` is not given.
        split_file: a text file naming the images to use, one name per line.
        image_suffixes: file endings that are images (case-insensitive).
        mask_suffix: the ending of every mask file.
        transforms: albumentations transforms, moving the mask with the image
            (``transforms.compose_segmentation``).
        ignore_index: the mask value of unlabelled pixels.
        check: ``"full"``: sizes and values of every mask at construction; ``"sizes"``: sizes
            only (values when read); ``"none"``: nothing at construction, for a caller that
            checks every pair itself (``cvkit doctor``).
        exif_orientation: turn images upright by their EXIF tag (as ``read_image`` does);
            ``False`` when masks were drawn on the stored pixel grid.

    Items: a dict ``{"image": ndarray[H, W, 3] uint8 RGB, "mask": ndarray[H, W] uint8 (int64
    with more than 255 classes) class indices, ``ignore_index`` unlabelled, "orig_size":
    (H0, W0) of the image file, "name": str}``; ``H, W`` are after the transforms.

    Attributes:
        classes: ``[K]`` names; ``names``, ``files``, ``mask_files``: per item.
        class_pixels: ``int64 [K]`` pixels of each class over all masks (``check: full``; class
            weights can come from it), and ``ignored_pixels``; ``None`` with ``sizes`` or ``none``.

    Raises:
        FileNotFoundError: a folder, the split file, or a listed image is missing.
        MaskError: (a ``ValueError``) images without masks, or wrong masks; it names each.
        ValueError: an argument is wrong.
    """

    def __init__(
        self,
        image_dir: str,
        mask_dir: str,
        classes: list[str] | None = None,
        num_classes: int | None = None,
        split_file: str | None = None,
        image_suffixes: tuple[str, ...] = IMAGE_EXTENSIONS,
        mask_suffix: str = ".png",
        transforms: list | None = None,
        ignore_index: int = 255,
        check: Literal["full", "sizes", "none"] = "full",
        exif_orientation: bool = True,
    ) -> None:
        self.classes = _resolve_classes(classes, num_classes)
        check_ignore_index(ignore_index, len(self.classes))
        if check not in ("full", "sizes", "none"):
            raise ValueError(f"check must be 'full', 'sizes' or 'none', got {check!r}")
        # Before the files: a bad fill_mask should not wait for a scan of every mask.
        self.transforms = compose_segmentation(transforms, len(self.classes), ignore_index)
        self.image_dir, self.mask_dir, self.split_file = image_dir, mask_dir, split_file
        self.names, self.files, self.mask_files = pair_files(
            image_dir, mask_dir, image_suffixes, mask_suffix, split_file
        )
        self.ignore_index, self.check = ignore_index, check
        self.spec = MaskSpec(len(self.classes), ignore_index, exif_orientation)
        pairs = list(zip(self.files, self.mask_files))
        counts = None if check == "none" else check_pairs(pairs, self.spec, check == "full")
        self.class_pixels = None if counts is None else counts[:-1]
        self.ignored_pixels = None if counts is None else int(counts[-1])
        if counts is not None:
            _warn_binary_255(self.classes, counts, ignore_index, mask_dir)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict[str, Any]:
        image = read_image(self.files[i], exif_orientation=self.spec.exif_orientation)
        mask = read_mask(self.mask_files[i])
        if mask.shape != image.shape[:2]:
            raise MaskError(
                f"mask '{self.mask_files[i]}' is {mask.shape[1]}x{mask.shape[0]} but its image "
                f"'{self.files[i]}' decodes to {image.shape[1]}x{image.shape[0]} (width x height)"
            )
        if self.check != "full":
            value_counts(mask, self.mask_files[i], self.spec)  # raises on a value that is no class
        return segmentation_item(image, mask, self.names[i], self.transforms, self.spec)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}('{self.image_dir}', '{self.mask_dir}': {len(self)} images, "
            f"{len(self.classes)} classes)"
        )


def segmentation_item(
    image: np.ndarray, mask: np.ndarray, name: str, transforms: Any, spec: MaskSpec
) -> dict[str, Any]:
    """The item dict: the transforms applied to image and mask together, and the mask typed.

    Masks stay uint8 when every value fits (up to 255 classes with ignore 255), else they go
    through the transforms as uint16 (OpenCV warps no int64) and come out int64.
    """
    orig_size = (int(image.shape[0]), int(image.shape[1]))
    narrow = spec.num_classes <= 255 and spec.ignore_index <= 255
    mask = mask.astype(np.uint8 if narrow else np.uint16, copy=False)
    if transforms is not None:
        out = transforms(image=image, mask=mask)
        image, mask = out["image"], out["mask"]
    if not narrow:
        mask = mask.astype(np.int64)
    return {"image": image, "mask": mask, "orig_size": orig_size, "name": name}


def _resolve_classes(classes: list[str] | None, num_classes: int | None) -> list[str]:
    if classes is None:
        if num_classes is None:
            raise ValueError(
                "give classes (the class names in index order) or num_classes; the mask "
                "values are checked against them"
            )
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
        return [f"class_{i}" for i in range(num_classes)]
    if isinstance(classes, str) or not classes:
        raise ValueError(f"classes must be a non-empty list of names, got {classes!r}")
    repeated = sorted({c for c in classes if list(classes).count(c) > 1})
    if repeated:
        raise ValueError(f"classes lists {', '.join(map(repr, repeated))} more than once")
    if num_classes is not None and num_classes != len(classes):
        raise ValueError(
            f"num_classes is {num_classes} but classes names {len(classes)}; give one of them"
        )
    return list(classes)


def pair_files(
    image_dir: str,
    mask_dir: str,
    image_suffixes: tuple[str, ...],
    mask_suffix: str,
    split_file: str | None = None,
) -> tuple[list[str], list[str], list[str]]:
    """``(names, image paths, mask paths)`` of the pairs, sorted by name or in split order.

    Raises:
        FileNotFoundError: a folder or the split file is missing, or the split file names an
            image that is not there.
        MaskError: images without a mask (counted, the first named with its expected mask).
        ValueError: no images, or two images with one name.
    """
    suffixes = _suffixes(image_suffixes, "image_suffixes")
    (mask_end,) = _suffixes((mask_suffix,), "mask_suffix")
    same = os.path.abspath(image_dir) == os.path.abspath(mask_dir)
    # With one folder for both, mask files must not count as images too.
    images = _index(image_dir, suffixes, "image_dir", skip=mask_end if same else None)
    masks = _index(mask_dir, (mask_end,), "mask_dir")
    if split_file is None:
        names = sorted(images)
        unused = len(set(masks) - set(images))
        if unused:
            logger.warning(
                "SegmentationFolder: %d masks in '%s' have no image in '%s'; they are ignored",
                unused,
                mask_dir,
                image_dir,
            )
    else:
        names = _read_split(split_file, images, suffixes, image_dir)
    if not names:
        raise ValueError(f"image_dir '{image_dir}' holds no images ({', '.join(suffixes)})")
    missing = [n for n in names if n not in masks]
    if missing:
        raise MaskError(_missing_message(missing, names, images, mask_dir, mask_end, split_file))
    return names, [images[n] for n in names], [masks[n] for n in names]


def _suffixes(values: tuple[str, ...], what: str) -> tuple[str, ...]:
    if isinstance(values, str) or not values or not all(isinstance(v, str) and v for v in values):
        raise ValueError(f"{what} must be non-empty file endings like '.png', got {values!r}")
    return tuple(v.lower() if v.startswith((".", "_", "-")) else f".{v.lower()}" for v in values)


def _index(
    folder: str, suffixes: tuple[str, ...], what: str, skip: str | None = None
) -> dict[str, str]:
    """``name -> path`` of the files under ``folder`` that end with one of ``suffixes``."""
    if not os.path.isdir(folder):
        state = "is a file, not a folder" if os.path.exists(folder) else "does not exist"
        raise FileNotFoundError(f"{what} '{folder}' {state}")
    # Longest first, so '_leftImg8bit.png' wins over '.png'.
    ordered = sorted(suffixes, key=len, reverse=True)
    found: dict[str, str] = {}
    for parent, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for file in sorted(f for f in files if not f.startswith(".")):
            lower = file.lower()
            end = next((s for s in ordered if lower.endswith(s)), None)
            if end is None or (skip is not None and lower.endswith(skip)):
                continue
            path = os.path.join(parent, file)
            name = Path(os.path.relpath(path, folder)).as_posix()[: -len(end)]
            if name in found:
                raise ValueError(
                    f"{what} '{folder}' holds two files named '{name}': '{found[name]}' and "
                    f"'{path}'; names pair images with masks, so each must be unique"
                )
            found[name] = path
    return found


def _read_split(
    split_file: str, images: dict[str, str], suffixes: tuple[str, ...], image_dir: str
) -> list[str]:
    if not os.path.isfile(split_file):
        where = f"'{split_file}' (relative to '{Path.cwd()}')"
        raise FileNotFoundError(f"split_file {where} does not exist")
    lines = Path(split_file).read_text(encoding="utf-8").splitlines()
    entries = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    names = [_strip_suffix(entry, images, suffixes) for entry in entries]
    unknown = [n for n in names if n not in images]
    if unknown:
        raise FileNotFoundError(
            f"split_file '{split_file}' names {len(unknown)} images that are not in image_dir "
            f"'{image_dir}', e.g. '{unknown[0]}' (looked for "
            f"{', '.join(unknown[0] + s for s in suffixes[:3])}, ...)"
        )
    return names


def _strip_suffix(entry: str, images: dict[str, str], suffixes: tuple[str, ...]) -> str:
    """A split entry as a name: ``a/b`` as is, ``a/b.jpg`` without its image suffix."""
    if entry in images:
        return entry
    end = next((s for s in suffixes if entry.lower().endswith(s)), None)
    return entry[: -len(end)] if end else entry


def _missing_message(
    missing: list[str],
    names: list[str],
    images: dict[str, str],
    mask_dir: str,
    mask_suffix: str,
    split_file: str | None,
) -> str:
    first = missing[0]
    expected = os.path.join(mask_dir, first + mask_suffix)
    message = (
        f"{len(missing)} of {len(names)} images have no mask: e.g. image '{images[first]}' "
        f"has no mask '{expected}'"
    )
    near = sorted(glob.glob(glob.escape(os.path.join(mask_dir, first)) + "*"))
    if near:
        message += f"; found '{near[0]}': set mask_suffix to its ending"
    if split_file is None:
        message += "; to use only some images, list them in a split_file (one name per line)"
    return message


def _warn_binary_255(
    classes: list[str], counts: np.ndarray, ignore_index: int, mask_dir: str
) -> None:
    """Binary masks saved as 0/255 read as background + ignore: warn, the model learns nothing."""
    if len(classes) >= 2 and counts[1:-1].sum() == 0 and counts[-1] > 0 and ignore_index == 255:
        logger.warning(
            "SegmentationFolder: no mask in '%s' holds a pixel of classes 1..%d, but %d pixels "
            "are 255 (ignored); if these are binary masks saved as 0/255, divide them by 255 "
            "(foreground = 1)",
            mask_dir,
            len(classes) - 1,
            counts[-1],
        )
