"""Reading index masks and checking them against their images and classes, before training.

A mask is a picture whose pixel values are class indices. Everything that can be wrong with
one (a colour mask, a size that is not its image's, values that are no class) is cheap to find
when the dataset is built and expensive to find at step 500, where it surfaces as a CUDA
device-side assert or as silently wrong targets. ``check_pairs`` checks every pair at
construction and reports all bad files in one message, each named with what was found.

Masks are read with PIL, not OpenCV: OpenCV turns a palette ('P') PNG into its colours, and
the palette *indices* are the classes (Pascal VOC ships its masks that way).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from cvkit.data.image_io import read_image
from cvkit.errors import DataError

# EXIF orientations that turn the picture a quarter (width and height swap when applied).
_QUARTER_TURNS = (5, 6, 7, 8)
_EXIF_ORIENTATION = 0x0112


class MaskError(DataError):
    """A mask does not fit its image or its classes; the message names each file."""


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """Read an index mask: the class index of every pixel.

    Accepted: 8-bit grayscale (``L``), palette (``P``, the indices are the values), 16-bit
    (``I;16``) and 32-bit integer (``I``) images, 1-bit (0/1), and grayscale saved as RGB (all
    three channels equal, read as one). An alpha channel is dropped.

    Returns:
        ``ndarray[H, W]``: uint8 for 8-bit files, uint16 for 16-bit, int32 for 32-bit.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        MaskError: the file is not an image, is a colour (RGB) picture, or holds floats.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"mask file '{path}' does not exist")
    try:
        with Image.open(path) as img:
            return _indices(img, path)
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise MaskError(f"mask file '{path}' could not be decoded as an image ({err})") from None


def _indices(img: Image.Image, path: str | os.PathLike) -> np.ndarray:
    if img.mode in ("LA", "PA"):
        img = img.getchannel(0)  # the alpha channel carries no class
    if img.mode in ("RGB", "RGBA"):
        rgb = np.asarray(img.convert("RGB"))
        if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 0] == rgb[..., 2]).all():
            return np.ascontiguousarray(rgb[..., 0])  # grayscale stored as RGB
        raise MaskError(_colour_message(path, rgb))
    if img.mode == "F":
        raise MaskError(
            f"mask file '{path}' holds floating-point pixels (mode F); masks hold integer "
            "class indices: save it as an 8-bit or 16-bit PNG"
        )
    mask = np.asarray(img)
    if mask.ndim != 2:
        raise MaskError(f"mask file '{path}' has {mask.shape[2]} channels (mode {img.mode})")
    return mask.astype(np.uint8) if mask.dtype == bool else mask


def _colour_message(path: str | os.PathLike, rgb: np.ndarray) -> str:
    colours, counts = np.unique(rgb.reshape(-1, 3), axis=0, return_counts=True)
    top = np.argsort(-counts)[:5]
    shown = ", ".join(f"{tuple(int(c) for c in colours[i])} {counts[i]:,} px" for i in top)
    return (
        f"mask file '{path}' is a colour RGB image ({len(colours)} colours: {shown}); an index "
        "mask is expected, whose pixel values are class indices (0..K-1, ignore_index for "
        "unlabelled): an 8-bit grayscale, 16-bit or palette ('P') PNG. Convert it once with "
        "your palette: cvkit.data.segmentation_checks.colours_to_indices(rgb, palette), then "
        "save the result as a PNG"
    )


def colours_to_indices(
    rgb: np.ndarray, palette: Sequence[Sequence[int]], ignore_index: int = 255
) -> np.ndarray:
    """Convert a colour mask to an index mask: ``palette[i]`` (an RGB triple) becomes ``i``.

    Pixels of a colour not in the palette become ``ignore_index``. Use it once, to convert a
    dataset's colour masks to index PNGs (e.g. ``PIL.Image.fromarray(indices).save(...)``).

    Args:
        rgb: ``ndarray[H, W, 3]`` uint8, RGB order (``read_image`` gives RGB).
        palette: ``[K]`` RGB triples, the colour of each class in class order.
        ignore_index: the value of pixels whose colour is not in the palette.

    Returns:
        ``ndarray[H, W]`` uint8 (uint16 when there are more than 255 classes).
    """
    wide = rgb.astype(np.int64)
    codes = (wide[..., 0] << 16) | (wide[..., 1] << 8) | wide[..., 2]
    keys = np.array([(int(r) << 16) | (int(g) << 8) | int(b) for r, g, b in palette])
    dtype = np.uint8 if max(len(keys), ignore_index + 1) <= 256 else np.uint16
    out = np.full(codes.shape, ignore_index, dtype=dtype)
    for index, key in enumerate(keys):
        out[codes == key] = index
    return out


def image_size(path: str | os.PathLike, exif_orientation: bool = True) -> tuple[int, int]:
    """``(height, width)`` of an image as ``read_image`` returns it, from the header if it can.

    PIL reads only the header; files it cannot open are decoded in full with ``read_image``.
    """
    try:
        with Image.open(path) as img:
            width, height = img.size
            turned = img.getexif().get(_EXIF_ORIENTATION, 1) in _QUARTER_TURNS
    except (UnidentifiedImageError, OSError, SyntaxError):
        return read_image(path, exif_orientation=exif_orientation).shape[:2]
    return (width, height) if exif_orientation and turned else (height, width)


def _quarter_turned(path: str | os.PathLike) -> bool:
    """Whether the image's EXIF orientation turns it a quarter (swapping width and height)."""
    try:
        with Image.open(path) as img:
            return img.getexif().get(_EXIF_ORIENTATION, 1) in _QUARTER_TURNS
    except (UnidentifiedImageError, OSError, SyntaxError):
        return False


def check_ignore_index(ignore_index: int, num_classes: int) -> None:
    """Raise ``ValueError`` unless ``ignore_index`` lies above the classes and fits 16 bits."""
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
        raise ValueError(f"ignore_index must be an integer, got {ignore_index!r}")
    if not num_classes <= ignore_index <= 65535:
        raise ValueError(
            f"ignore_index {ignore_index} must lie in {num_classes}..65535, outside the "
            f"classes 0..{num_classes - 1}, or it would hide a class"
        )


@dataclass
class MaskSpec:
    """What a mask of this dataset may hold: ``0..num_classes-1`` and ``ignore_index``."""

    num_classes: int
    ignore_index: int = 255
    exif_orientation: bool = True


def check_pair(
    image_path: str, mask_path: str, spec: MaskSpec, values: bool = True
) -> np.ndarray | None:
    """Check one image/mask pair; with ``values`` return the mask's value histogram.

    The sizes come from the file headers; a mismatch is confirmed by decoding the image as
    training would, so an EXIF quirk that PIL and OpenCV read differently is no false alarm.

    Returns:
        ``int64 [num_classes + 1]``: pixels of each class, then ignored pixels; ``None`` when
        ``values`` is false.

    Raises:
        MaskError: the mask is unreadable, in colour, of another size, or holds values that are
            neither a class nor ``ignore_index``; the message names the file.
    """
    size, mode = _mask_header(mask_path)
    mask = read_mask(mask_path) if values or mode in ("RGB", "RGBA") else None
    expected = image_size(image_path, spec.exif_orientation)
    if (size[1], size[0]) != expected:
        expected = read_image(image_path, exif_orientation=spec.exif_orientation).shape[:2]
        if (size[1], size[0]) != expected:
            raise MaskError(_size_message(image_path, mask_path, size, expected, spec))
    return None if mask is None else value_counts(mask, mask_path, spec)


def _mask_header(path: str) -> tuple[tuple[int, int], str]:
    """``((width, height), mode)`` of a mask file, from its header."""
    try:
        with Image.open(path) as img:
            return img.size, img.mode
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise MaskError(f"mask file '{path}' could not be read as an image ({err})") from None


def _size_message(
    image_path: str,
    mask_path: str,
    size: tuple[int, int],
    expected: tuple[int, int],
    spec: MaskSpec,
) -> str:
    message = (
        f"mask '{mask_path}' is {size[0]}x{size[1]} (width x height) but its image "
        f"'{image_path}' is {expected[1]}x{expected[0]}"
    )
    if tuple(size) == tuple(expected) and _quarter_turned(image_path):
        setting = "false" if spec.exif_orientation else "true"
        message += (
            "; width and height are swapped, which usually means the image has an EXIF "
            f"orientation that the mask was not drawn with: set exif_orientation: {setting}"
        )
    return message + "; a mask must have its image's size, pixel for pixel"


def value_counts(mask: np.ndarray, mask_path: str, spec: MaskSpec) -> np.ndarray:
    """Pixels per class and ignored pixels (``int64 [num_classes + 1]``) of one mask.

    Raises:
        MaskError: the mask holds values that are neither a class nor ``ignore_index``; the
            message lists each such value with its pixel count.
    """
    if mask.dtype == np.uint8 and mask.size < 2**24:
        # OpenCV's histogram is ~10x faster than bincount (which widens to int64 first); its
        # float32 bins count exactly below 2**24 pixels.
        counts = cv2.calcHist([mask], [0], None, [256], [0, 256]).ravel().astype(np.int64)
        found = np.flatnonzero(counts)
        found_counts = counts[found]
    elif mask.dtype.itemsize <= 2 and mask.dtype.kind == "u":
        counts = np.bincount(mask.ravel(), minlength=spec.num_classes)
        found = np.flatnonzero(counts)
        found_counts = counts[found]
    else:  # 32-bit (or signed) values: too wide for a bincount over the whole range
        found, found_counts = np.unique(mask, return_counts=True)
    bad = (found >= spec.num_classes) | (found < 0)
    bad &= found != spec.ignore_index
    if bad.any():
        shown = ", ".join(f"{v} ({c:,} px)" for v, c in zip(found[bad][:10], found_counts[bad]))
        more = f" and {int(bad.sum()) - 10} more values" if bad.sum() > 10 else ""
        raise MaskError(
            f"mask '{mask_path}' holds values that are neither a class (0..{spec.num_classes - 1}"
            f") nor ignore_index {spec.ignore_index}: {shown}{more}; name every class in "
            "classes (or num_classes), or map these values to ignore_index"
        )
    out = np.zeros(spec.num_classes + 1, dtype=np.int64)
    valid = found < spec.num_classes
    out[found[valid]] = found_counts[valid]
    out[-1] = found_counts[~valid].sum()
    return out


def check_pairs(
    pairs: Sequence[tuple[str, str]], spec: MaskSpec, values: bool = True, workers: int = 8
) -> np.ndarray | None:
    """Check every ``(image, mask)`` pair; raise one ``MaskError`` that lists every bad file.

    PIL releases the GIL while it decodes, so threads scan masks in parallel.

    Returns:
        with ``values``: pixels per class over all masks, then ignored pixels
        (``int64 [num_classes + 1]``); otherwise ``None``.
    """

    def one(pair: tuple[str, str]) -> np.ndarray | MaskError | None:
        try:
            return check_pair(pair[0], pair[1], spec, values)
        except MaskError as err:
            return err

    threads = max(1, min(workers, os.cpu_count() or 1, len(pairs)))
    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(one, pairs))
    errors = [str(r) for r in results if isinstance(r, MaskError)]
    if errors:
        listed = "\n  ".join(errors[:5])
        more = f"\n  ... and {len(errors) - 5} more" if len(errors) > 5 else ""
        raise MaskError(
            f"{len(errors)} of {len(pairs)} masks are wrong (checked before training):\n  "
            f"{listed}{more}"
        )
    if not values:
        return None
    counts = [r for r in results if isinstance(r, np.ndarray)]
    return np.asarray(np.sum(counts, axis=0, dtype=np.int64))


def check_image_sizes(
    files: Sequence[str],
    sizes: Sequence[tuple[int, int]],
    source: str,
    exif_orientation: bool = True,
    workers: int = 8,
) -> None:
    """Check that every image file has the ``(height, width)`` its annotations were drawn on.

    Headers only (PIL), in threads; a mismatch is confirmed by decoding the image.

    Raises:
        MaskError: listing every image whose pixels do not match ``source``'s size.
    """

    def one(k: int) -> str | None:
        found = image_size(files[k], exif_orientation)
        if found != tuple(sizes[k]):
            found = read_image(files[k], exif_orientation=exif_orientation).shape[:2]
        if found == tuple(sizes[k]):
            return None
        height, width = sizes[k]
        hint = ""
        if found == (width, height) and _quarter_turned(files[k]):
            setting = "false" if exif_orientation else "true"
            hint = f" (swapped by its EXIF orientation: set exif_orientation: {setting})"
        return (
            f"image '{files[k]}' is {found[1]}x{found[0]} (width x height) but {source} says "
            f"{width}x{height}{hint}"
        )

    threads = max(1, min(workers, os.cpu_count() or 1, len(files)))
    with ThreadPoolExecutor(threads) as pool:
        errors = [e for e in pool.map(one, range(len(files))) if e is not None]
    if errors:
        more = f"\n  ... and {len(errors) - 5} more" if len(errors) > 5 else ""
        raise MaskError(
            f"{len(errors)} of {len(files)} images do not have the size their masks are drawn "
            f"at, so the masks would not fit the pixels:\n  " + "\n  ".join(errors[:5]) + more
        )
