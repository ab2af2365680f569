"""Decoding image files into RGB uint8 arrays with OpenCV, for every task's datasets.

``read_image`` is the one way cvkit turns a file into pixels, so classification, detection and
segmentation see the same colours, orientation and error messages.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import cv2
import numpy as np

from cvkit.errors import DataError

# Keep 16-bit depth and grayscale as stored (converted below, by scaling, not truncation),
# let OpenCV drop alpha and convert CMYK, and let it apply the EXIF orientation unless told
# not to. IMREAD_UNCHANGED would skip the orientation and hand back CMYK as if it were BGRA.
_FLAGS = cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR

# A JPEG marker: 0xFF then a byte that is neither stuffing (0x00) nor a restart (0xD0-0xD7),
# the only two that may follow 0xFF inside compressed data.
_JPEG_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7]")
_JPEG_SOI, _JPEG_EOI, _JPEG_SOS = b"\xff\xd8", 0xD9, 0xDA


class ImageReadError(DataError):
    """An image file that cannot be decoded; ``reason`` is the why alone, for a report that
    names the file itself. One message argument, as a DataLoader worker's re-raise needs."""

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason or message


def read_image(path: str | os.PathLike, *, exif_orientation: bool = True) -> np.ndarray:
    """Read an image file as RGB.

    Any file OpenCV decodes is accepted (JPEG, PNG, BMP, TIFF, WebP, ...). Grayscale becomes
    three equal channels; an alpha channel is dropped, not composited, so a transparent
    pixel keeps the colour stored under it (as ``PIL``'s ``convert("RGB")`` does); 16-bit
    images are scaled to 8 bits (65535 -> 255), not truncated. The file is read into memory
    with NumPy first, so paths with non-ASCII characters work on every platform.

    Args:
        path: the image file.
        exif_orientation: rotate/flip by the EXIF orientation tag, so the pixels are upright
            as an image viewer shows them. ``False`` returns the stored pixel grid, as
            ``PIL.Image.open`` does; use that when annotations were drawn on the raw grid.

    Returns:
        ``ndarray[H, W, 3]`` uint8, RGB channel order.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ImageReadError: (a ``ValueError``) the file is empty, not an image, truncated or
            otherwise undecodable, or has a pixel type other than 8 or 16 bits.
    """
    path = Path(path)
    if not path.is_file():
        what = "is a folder, not an image file" if path.is_dir() else "does not exist"
        raise FileNotFoundError(f"image file '{path}' {what}")
    return decode_image(np.fromfile(path, dtype=np.uint8), path, exif_orientation=exif_orientation)


def decode_image(
    data: np.ndarray, path: str | os.PathLike, *, exif_orientation: bool = True
) -> np.ndarray:
    """``read_image`` of a file's bytes already in memory (``ndarray[N]`` uint8), for a
    reader that also hashes them; ``path`` is only named in errors.

    Raises:
        ImageReadError: as ``read_image``.
    """
    path = Path(path)
    image = _decode(data, exif_orientation)
    if image is None:
        raise ImageReadError(
            f"image file '{path}' could not be decoded: it is empty, not an image, truncated "
            "or corrupt; open it in an image viewer, then replace or delete it",
            reason="it is empty, not an image, truncated or corrupt",
        )
    return _to_rgb8(image, path)


def _decode(data: np.ndarray, exif_orientation: bool) -> np.ndarray | None:
    if data.size == 0:
        return None  # cv2.imdecode asserts on an empty buffer
    buffer = data.tobytes()
    # OpenCV 4 decodes a cut-off JPEG with only a warning on stderr, grey below the cut.
    if buffer.startswith(_JPEG_SOI) and not _jpeg_is_complete(buffer):
        return None
    flags = _FLAGS if exif_orientation else _FLAGS | cv2.IMREAD_IGNORE_ORIENTATION
    try:
        return cv2.imdecode(data, flags)
    except cv2.error:
        return None


def _jpeg_is_complete(data: bytes) -> bool:
    """Whether the JPEG stream in ``data`` reaches its end-of-image marker.

    Walks the segments by their lengths, so an end marker inside an embedded EXIF thumbnail
    or in data appended after the image (motion photos) does not count.
    """
    pos = len(_JPEG_SOI)
    while True:
        found = _JPEG_MARKER.search(data, pos)
        if found is None:
            return False
        marker = data[found.start() + 1]
        if marker == _JPEG_EOI:
            return True
        if marker == 0xFF or marker == 0x01:  # a fill byte, or a marker without a length
            pos = found.start() + 1 if marker == 0xFF else found.end()
            continue
        start = found.end()
        if start + 2 > len(data):
            return False
        pos = start + int.from_bytes(data[start : start + 2], "big")
        if pos > len(data):
            return False
        # After a scan header (SOS) comes compressed data; the search skips it in C.


def _to_rgb8(image: np.ndarray, path: Path) -> np.ndarray:
    if image.dtype == np.uint16:
        # Round to nearest: 65535 / 257 = 255 exactly, so white stays white.
        image = ((image.astype(np.uint32) + 128) // 257).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ImageReadError(
            f"image file '{path}' has {image.dtype} pixels; read_image reads 8- and 16-bit "
            "images only: convert it to an 8- or 16-bit PNG or TIFF",
            reason=f"it has {image.dtype} pixels (8- and 16-bit images only)",
        )
    if image.ndim == 2:
        return np.ascontiguousarray(np.repeat(image[:, :, None], 3, axis=2))
    channels = image.shape[2]
    if channels == 1:
        return np.ascontiguousarray(np.repeat(image, 3, axis=2))
    if channels == 2:  # gray + alpha
        return np.ascontiguousarray(np.repeat(image[:, :, :1], 3, axis=2))
    if channels == 4:  # BGRA
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
