"""What the converters share: the error, class lists, image sizes, and the COCO file written.

A conversion is a :class:`Conversion`: the COCO dict (checked with :func:`cvkit.coco_file.
check_coco`, the checks training applies) and notes that count whatever was changed or left
out, so nothing is dropped without a word.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cvkit.coco_file import check_coco
from cvkit.data.image_io import read_image
from cvkit.errors import DataError

# The extensions an image folder is searched for (compared in lower case).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
_EXIF_ORIENTATION = 0x0112  # the EXIF tag; values 5-8 turn the image by 90 degrees


class ConversionError(DataError):
    """Input a converter cannot use; the message names the file (and line) and the fix."""


@dataclass
class Conversion:
    """The result of a converter: a COCO detection dict and what the conversion changed.

    Attributes:
        coco: ``{"images", "annotations", "categories"}``, ids from 1.
        notes: one line per kind of change or omission, each with a count and an example
            (``"boxes clipped to their image: 2 (e.g. 'a.txt' line 3)"``).
    """

    coco: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """``"3 images, 5 annotations, 2 categories"``, then each note on its own line."""
        coco = self.coco
        head = (
            f"{len(coco['images'])} images, {len(coco['annotations'])} annotations, "
            f"{len(coco['categories'])} categories"
        )
        return "\n".join([head, *self.notes])

    def write(self, path: str | os.PathLike) -> Path:
        """Check the COCO dict as cvkit's reader does, then write it as JSON (atomically).

        Raises:
            CocoFormatError: the dict breaks a rule of :func:`cvkit.coco_file.check_coco`
                (a converter bug, not the user's input).
        """
        path = Path(path)
        check_coco(self.coco, str(path))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.coco), encoding="utf-8")
        tmp.replace(path)
        return path


class Notes:
    """Counts of changes and omissions with the first example of each, in order of first use."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        self._examples: dict[str, str] = {}

    def add(self, what: str, example: str, count: int = 1) -> None:
        """Count ``count`` more of ``what`` (``"boxes clipped to their image"``)."""
        self._counts[what] = self._counts.get(what, 0) + count
        self._examples.setdefault(what, example)

    def lines(self) -> list[str]:
        """``["boxes clipped to their image: 2 (e.g. 'a.xml' object 1)", ...]``."""
        return [f"{what}: {n} (e.g. {self._examples[what]})" for what, n in self._counts.items()]


def categories(names: Sequence[str]) -> list[dict[str, Any]]:
    """COCO categories with ids ``1..K`` in the order of ``names``."""
    return [{"id": i, "name": name} for i, name in enumerate(names, start=1)]


def coco_box(
    x1: float, y1: float, x2: float, y2: float, width: int, height: int
) -> tuple[list[float], bool]:
    """``[x, y, w, h]`` of a corner box clipped to the image, and whether clipping moved it.

    Coordinates are continuous pixels (0 is the left edge of the first pixel, ``width`` the
    right edge of the last), rounded to 1/1000 px so the file holds no float noise.
    """
    clipped = (
        min(max(x1, 0.0), width),
        min(max(y1, 0.0), height),
        min(max(x2, 0.0), width),
        min(max(y2, 0.0), height),
    )
    moved = clipped != (x1, y1, x2, y2)
    a, b, c, d = (round(v, 3) for v in clipped)
    return [a, b, round(c - a, 3), round(d - b, 3)], moved


def annotation(
    ann_id: int, image_id: int, category_id: int, bbox: list[float], iscrowd: int = 0
) -> dict[str, Any]:
    """One COCO annotation; ``area`` is the box's (there is no mask)."""
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": category_id,
        "bbox": bbox,
        "area": round(bbox[2] * bbox[3], 3),
        "iscrowd": iscrowd,
    }


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(width, height)`` of an image file as cvkit decodes it: EXIF orientation applied.

    Reads the header only (PIL), so a large folder is measured quickly. A file whose EXIF
    orientation turns it a quarter (5-8) is decoded with ``read_image``, the reader training
    uses, since whether OpenCV applies the tag depends on the format (JPEG, PNG and WebP yes,
    TIFF no): the size written is then the size training finds.

    Raises:
        ConversionError: the file is not an image PIL can open.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            width, height = image.size
            orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
    except (UnidentifiedImageError, OSError) as err:
        raise ConversionError(
            f"image file '{path}' cannot be read as an image ({err}); replace or delete it"
        ) from None
    if orientation in (5, 6, 7, 8):
        decoded = read_image(path)
        return int(decoded.shape[1]), int(decoded.shape[0])
    return width, height


def parse_class_list(text: str, source: str) -> list[str]:
    """Class names, one per line (blank lines at the end ignored), each once.

    Args:
        text: the file's text.
        source: the file, for messages.

    Raises:
        ConversionError: a blank line between names (it would shift every later index), a
            name given twice, or no name at all.
    """
    lines = [line.strip() for line in text.rstrip().splitlines()]
    for number, name in enumerate(lines, start=1):
        if not name:
            raise ConversionError(
                f"class list '{source}' line {number} is blank; write one class name per "
                "line with no gaps (a gap would shift every later class index)"
            )
    return check_names(lines, source)


def check_names(names: Sequence[str], source: str) -> list[str]:
    """``names`` as a list, after checking it is non-empty and has no repeats."""
    names = [str(n) for n in names]
    if not names:
        raise ConversionError(f"class list {source} is empty; give at least one class name")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConversionError(
            f"class list {source} names {', '.join(map(repr, repeated))} more than once; "
            "each class is one line"
        )
    return names


def read_class_file(path: str | os.PathLike) -> list[str]:
    """Class names from a file: a YOLO ``data.yaml`` (its ``names:``, a list or a mapping
    ``{0: name, 1: name}``), or text with one name per line (``classes.txt``).

    YAML is read with ``yaml.safe_load``: a file never runs code.

    Raises:
        ConversionError: the file is missing, has no usable ``names:``, or a bad list.
    """
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"class list file '{path}' does not exist")
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() not in (".yaml", ".yml"):
        return parse_class_list(text, str(path))
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConversionError(f"class list '{path}' is not valid YAML: {err}") from None
    names = data.get("names") if isinstance(data, dict) else None
    if isinstance(names, dict):
        keys = sorted(names, key=lambda k: (not isinstance(k, int), k))
        if keys != list(range(len(keys))):
            raise ConversionError(
                f"class list '{path}': 'names' maps {keys[:10]}; the keys must be the class "
                "indices 0, 1, 2, ... with none missing"
            )
        names = [names[k] for k in keys]
    if not isinstance(names, list):
        raise ConversionError(
            f"class list '{path}' has no 'names:' list; write `names: [cat, dog]` (or "
            "`names: {0: cat, 1: dog}`) as in a YOLO data.yaml"
        )
    return check_names(names, f"'{path}'")


def class_names_argument(value: str) -> list[str]:
    """A ``--classes`` value: a file (:func:`read_class_file`) if it names one, else
    comma-separated names ``a,b,c``."""
    if Path(value).is_file() or (
        "," not in value and value.lower().endswith((".txt", ".yaml", ".yml"))
    ):
        return read_class_file(value)
    return check_names([n.strip() for n in value.split(",") if n.strip()], f"'{value}'")


def image_files(folder: Path) -> tuple[list[Path], list[Path]]:
    """The image files under ``folder`` (recursive, sorted) and the other files there."""
    images: list[Path] = []
    others: list[Path] = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        (images if path.suffix.lower() in IMAGE_EXTENSIONS else others).append(path)
    return images, others


def check_folder(folder: Path, what: str) -> None:
    """Raise ``ConversionError`` unless ``folder`` is an existing folder."""
    if not folder.is_dir():
        state = "is a file, not a folder" if folder.exists() else "does not exist"
        raise ConversionError(f"{what} '{folder}' {state}")
