"""YOLO txt labels -> a COCO detection file.

A YOLO dataset is an image folder and a label folder of the same layout: ``a/b.jpg`` has its
boxes in ``a/b.txt``, one line ``class cx cy w h`` per box, the class a 0-based index into the
class list and the box its centre and size as fractions of the image's width and height. An
image without a label file is an image with no objects (that is what YOLO means by it): it is
kept, as a negative.

Image sizes come from the image files, with their EXIF orientation applied as cvkit's
decoding does (``common.image_size``). Boxes become COCO ``[x, y, w, h]`` in pixels,
``x = (cx - w / 2) * width``, clipped to the image; every clipped or dropped box is counted.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cvkit.data.converters.common import (
    Conversion,
    ConversionError,
    Notes,
    annotation,
    categories,
    check_folder,
    check_names,
    coco_box,
    image_files,
    image_size,
)

# Where a class list is looked for, in this order, in the label folder and the folders above
CLASS_FILES = ("classes.txt", "data.yaml", "dataset.yaml", "obj.names")
# A normalised value above this is no fraction of the image: the file holds pixels
_MOST = 2.0


def default_label_dir(image_dir: str | os.PathLike) -> Path | None:
    """Ultralytics' rule: the image folder's path with its last ``images`` part turned into
    ``labels`` (``data/images/train`` -> ``data/labels/train``); ``None`` without one."""
    parts = list(Path(image_dir).parts)
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            return Path(*parts)
    return None


def find_class_file(*folders: str | os.PathLike) -> Path:
    """The first of :data:`CLASS_FILES` found in each folder and then its parents (two up).

    Raises:
        ConversionError: none found; the message lists where it looked.
    """
    looked: list[Path] = []
    for folder in map(Path, folders):
        for place in (folder, folder.parent, folder.parent.parent):
            if place in looked:
                continue
            looked.append(place)
            for name in CLASS_FILES:
                if (place / name).is_file():
                    return place / name
    raise ConversionError(
        f"no class list ({', '.join(CLASS_FILES)}) in {', '.join(f'{p}' for p in looked)}; "
        "pass --classes FILE (a classes.txt or a data.yaml with names:) or --classes a,b,c"
    )


def parse_line(
    line: str, source: str, number: int, num_classes: int
) -> tuple[int, float, float, float, float]:
    """One label line -> ``(class, cx, cy, w, h)``, checked.

    Args:
        line: the line's text (not blank).
        source: the label file, for messages.
        number: the 1-based line number, for messages.
        num_classes: the class list's length; the class must be below it.

    Raises:
        ConversionError: not 5 fields, a value that is not a finite number, a class that is
            not a whole number in ``0..num_classes-1``, a negative size, or values far above
            1 (pixels rather than fractions). The message names the file and line.
    """
    where = f"label file '{source}' line {number}"
    fields = line.split()
    if len(fields) != 5:
        raise ConversionError(
            f"{where} has {len(fields)} values ('{line.strip():.60}'); a YOLO box is 5: "
            f"class cx cy w h{_count_hint(len(fields))}"
        )
    numbers = []
    for text in fields:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise ConversionError(
                f"{where}: '{text}' is not a finite number; a YOLO line is class cx cy w h, "
                "all numbers"
            )
        numbers.append(value)
    cls, cx, cy, w, h = numbers
    if not cls.is_integer() or not 0 <= cls < num_classes:
        raise ConversionError(
            f"{where} has class {fields[0]}, but the class list has {num_classes} classes "
            f"(indices 0 to {num_classes - 1}); fix the line or the class list"
        )
    if w < 0 or h < 0:
        raise ConversionError(f"{where} has a negative width or height ({w:g}, {h:g})")
    if max(abs(cx), abs(cy), w, h) > _MOST:
        raise ConversionError(
            f"{where} has values above {_MOST:g} ({' '.join(fields[1:])}); YOLO boxes are "
            "fractions of the image size (0 to 1), so these look like pixels: divide x and w "
            "by the width, y and h by the height"
        )
    return int(cls), cx, cy, w, h


def yolo_to_coco(
    image_dir: str | os.PathLike,
    label_dir: str | os.PathLike,
    classes: Sequence[str],
) -> Conversion:
    """Convert a YOLO image folder and label folder to a COCO detection dict.

    Args:
        image_dir: the images (searched recursively); COCO ``file_name`` entries are
            relative to it.
        label_dir: the ``.txt`` label files, in the image folder's layout.
        classes: the class names, index ``i`` is category id ``i + 1``.

    Returns:
        The conversion: image ids ``1..N`` in sorted path order, annotation ids from 1, and
        notes counting images without labels, clipped and dropped boxes, label files without
        an image and other files skipped.

    Raises:
        ConversionError: a missing folder, an unreadable image, a bad label line (the file and
            line number), or a bad class list.
    """
    image_dir, label_dir = Path(image_dir), Path(label_dir)
    check_folder(image_dir, "image folder")
    check_folder(label_dir, "label folder")
    names = check_names(classes, "given")
    images_found, others = image_files(image_dir)
    # labels kept beside their images (darknet's layout) are no stray files
    others = [p for p in others if not p.is_relative_to(label_dir)]
    if not images_found:
        raise ConversionError(f"image folder '{image_dir}' holds no image files")
    notes = Notes()
    if others:
        notes.add("files that are not images in the image folder, skipped",
                  f"'{others[0].relative_to(image_dir)}'", len(others))  # fmt: skip
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    used: set[Path] = set()
    for image_id, path in enumerate(images_found, start=1):
        rel = path.relative_to(image_dir)
        width, height = image_size(path)
        images.append({"id": image_id, "file_name": rel.as_posix(), "width": width,
                       "height": height})  # fmt: skip
        label = label_dir / rel.with_suffix(".txt")
        if not label.is_file():
            notes.add("images without a label file, kept with no objects", f"'{rel}'")
            continue
        used.add(label)
        boxes = _read_label(label, len(names), width, height, notes)
        if not boxes:
            notes.add("images with an empty label file, kept with no objects", f"'{rel}'")
        for cls, bbox in boxes:
            annotations.append(annotation(len(annotations) + 1, image_id, cls + 1, bbox))
    _note_unused_labels(label_dir, used, notes)
    coco = {"images": images, "annotations": annotations, "categories": categories(names)}
    return Conversion(coco, notes.lines())


def _read_label(
    label: Path, num_classes: int, width: int, height: int, notes: Notes
) -> list[tuple[int, list[float]]]:
    boxes = []
    for number, line in enumerate(label.read_text(encoding="utf-8-sig").splitlines(), start=1):
        if not line.strip():
            continue
        cls, cx, cy, w, h = parse_line(line, str(label), number, num_classes)
        x1, y1 = (cx - w / 2) * width, (cy - h / 2) * height
        x2, y2 = (cx + w / 2) * width, (cy + h / 2) * height
        bbox, moved = coco_box(x1, y1, x2, y2, width, height)
        where = f"'{label.name}' line {number}"
        if bbox[2] <= 0 or bbox[3] <= 0:
            notes.add("boxes left out: no area inside their image", where)
            continue
        if moved:
            notes.add("boxes clipped to their image", where)
        boxes.append((cls, bbox))
    return boxes


def _note_unused_labels(label_dir: Path, used: set[Path], notes: Notes) -> None:
    unused = [
        p for p in sorted(label_dir.rglob("*.txt")) if p not in used and p.name not in CLASS_FILES
    ]
    if unused:
        notes.add("label files without an image, skipped", f"'{unused[0].relative_to(label_dir)}'",
                  len(unused))  # fmt: skip


def _count_hint(count: int) -> str:
    if count == 6:
        return "; a sixth value is usually a confidence score: is this a predictions file?"
    if count >= 7 and count % 2 == 1:
        return (
            "; class and x y pairs are a YOLO segmentation polygon: convert the polygons to "
            "boxes first"
        )
    return ""
